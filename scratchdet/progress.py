"""Progress of long commands on stderr: a tqdm bar on a terminal, plain lines in a log.

On a terminal the bar redraws in place. Anywhere else (a file, a Snakemake job log, a pipe) a
line is written at each multiple of ``every`` units, whenever ``interval`` seconds passed with
something done, and at the end, e.g.::

    train: step 40/100 (40%), 2.51 step/s, elapsed 0:00:16, ETA 0:00:24, loss 3.142, lr 0.01
    download VOCtrainval.tar: 120.0 MiB/439.0 MiB (27%), 5.12 MiB/s, elapsed 0:00:23, ETA 0:01:02

``SCRATCHDET_PROGRESS=0`` silences it; ``SCRATCHDET_PROGRESS=lines`` writes lines on a terminal
too. Nothing here touches a device: callers pass numbers the host already holds.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import IO, Any

from tqdm import tqdm
from typing_extensions import Self

__all__ = ["ENV", "Progress", "format_bytes", "format_duration"]

ENV = "SCRATCHDET_PROGRESS"
"""Environment variable: 0 (or off) silences progress, 'lines' never draws a bar."""


def format_duration(seconds: float) -> str:
    """``h:mm:ss``."""
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}"


def format_bytes(n: float) -> str:
    """Binary units with one decimal: ``512 B``, ``1.5 KiB``, ``439.0 MiB``."""
    if n < 1024:
        return f"{int(n)} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    for step, unit in enumerate(units):
        n /= 1024
        if n < 1024 or step == len(units) - 1:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def _format_field(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _has_width(stream: IO[str]) -> bool:
    """Whether the terminal reports its width (a pseudo-terminal may say 0 columns)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """Counted progress of one task (``with Progress(...) as p: ... p.update(k)``).

    `total`: units in the task (None: unknown; no percentage or ETA). `initial`: units already
    done before this process started (a resumed run): the count starts there, the rate and
    ETA count only what this process does. `every`: units between lines, which fall on its
    multiples (default: 5% of `total`). `in_bytes`: units are bytes, shown as KiB/MiB/GiB. `fields`
    (``set``) are
    shown after the count, e.g. the loss; set them when their values are already on the host.
    """

    def __init__(
        self,
        desc: str,
        total: int | None,
        *,
        unit: str = "item",
        initial: int = 0,
        every: int | None = None,
        interval: float = 30.0,
        in_bytes: bool = False,
        stream: IO[str] | None = None,
        enabled: bool = True,
    ):
        self.desc, self.total, self.unit, self.in_bytes = desc, total, unit, in_bytes
        self.n = self.initial = initial
        if every is None:
            every = math.ceil(total / 20) if total else 1
        self.every, self.interval = max(1, every), interval
        self.stream = stream if stream is not None else sys.stderr
        mode = os.environ.get(ENV, "").strip().lower()
        self.enabled = enabled and mode not in ("0", "off", "false", "no")
        self.fields: dict[str, str] = {}
        self._t0 = self._last_t = time.monotonic()
        self._last_n = initial
        self._bar: tqdm | None = None
        if self.enabled and mode != "lines" and _isatty(self.stream):
            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit="B" if in_bytes else unit,
                unit_scale=in_bytes,
                unit_divisor=1024,
                file=self.stream,
                **({"dynamic_ncols": True} if _has_width(self.stream) else {"ncols": 100}),
            )

    def set(self, **fields: Any) -> None:
        """Values shown after the count from now on (floats with 4 significant digits)."""
        self.fields.update({k: _format_field(v) for k, v in fields.items()})
        if self._bar is not None:
            self._bar.set_postfix_str(
                ", ".join(f"{k}={v}" for k, v in self.fields.items()), refresh=False
            )

    def update(self, k: int = 1) -> None:
        """`k` more units done."""
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(k)
            return
        now = time.monotonic()
        if (
            self.n // self.every > self._last_n // self.every
            or self.n == self.total
            or (now - self._last_t >= self.interval and self.n > self._last_n)
        ):
            self._write(now)

    def line(self, now: float | None = None) -> str:
        """The progress as one line (what a log receives)."""
        now = time.monotonic() if now is None else now
        elapsed, done = now - self._t0, self.n - self.initial
        if self.in_bytes:
            count = format_bytes(self.n) + (
                f"/{format_bytes(self.total)}" if self.total is not None else ""
            )
        else:
            count = f"{self.unit} {self.n}" + (f"/{self.total}" if self.total is not None else "")
        parts = [f"{self.desc}: {count}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        if rate is None:
            parts.append(f"? {'B' if self.in_bytes else self.unit}/s")
        elif self.in_bytes:
            parts.append(f"{format_bytes(rate)}/s")
        else:
            parts.append(
                f"{rate:.2f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.2f} s/{self.unit}"
            )
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.total is not None:
            eta = format_duration((self.total - self.n) / rate) if rate else "?"
            parts.append(f"ETA {eta}")
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        return ", ".join(parts)

    def _write(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self._last_n, self._last_t = self.n, now

    def close(self) -> None:
        """End the bar; in a log, write the last count unless its line is already there."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.n != self._last_n:
            self._write(time.monotonic())
        self.enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
