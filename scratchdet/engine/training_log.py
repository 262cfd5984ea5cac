"""The per-step training log: a CSV that a resumed run continues without duplicating rows.

Per row (one optimizer step; `step` counts from 0): the learning rate, the loss and its terms,
the gradient norm, the positives matched, and time as the training process saw it: `time_s`, the
seconds of training up to the end of this step (across resumes: a resumed run goes on from the
last kept row's), `step_s`, this step's seconds, and `images_per_s`, this step's images (the
batch) over them. On a CPU a step's time is exact; on a GPU the host queues steps ahead of the
device and waits at the reads (every `train.log_every` steps), so single rows spread unevenly
while their sum over a read window is exact: `window_images_per_s` is that window's throughput,
the same on every row of the window.

A log written before these columns existed (`images_per_s` and `elapsed_s` per window) is read
with the new columns empty; a resume rewrites it in the new layout (its per-window
`images_per_s` becomes `window_images_per_s`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from scratchdet.io import write_text, writing

__all__ = ["COLUMNS", "TrainingLog"]

COLUMNS = (
    "step",
    "lr",
    "loss",
    "loc_loss",
    "conf_loss",
    "grad_norm",
    "num_pos",
    "time_s",
    "step_s",
    "images_per_s",
    "window_images_per_s",
)


class TrainingLog:
    """Appends one row per optimizer step; `truncate(step)` drops rows a resumed run will redo."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def truncate(self, last_step: int) -> None:
        """Keep rows with step < last_step (rewritten atomically), i.e. those the checkpoint
        covers."""
        rows = [_new_layout(r) for r in self.read() if int(r["step"]) < last_step]
        lines = [",".join(COLUMNS)] + [",".join(str(r.get(c) or "") for c in COLUMNS) for r in rows]
        write_text(self.path, "\n".join(lines) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with writing(self.path), open(self.path, "a", newline="") as fh:  # a full disk: named
            if new:
                fh.write(",".join(COLUMNS) + "\n")
            fh.write(",".join(_fmt(row[c]) for c in COLUMNS) + "\n")
            fh.flush()

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            # A row cut short by a kill has fewer fields than the header; it is dropped and redone.
            reader = csv.DictReader(fh)
            return [
                r
                for r in reader
                if None not in r.values() and len(r) == len(reader.fieldnames or ())
            ]

    def last_time(self) -> float:
        """`time_s` of the last row (0 when there is none, or an old log has none): where a
        resumed run's clock goes on from."""
        rows = self.read()
        try:
            return float(rows[-1]["time_s"]) if rows else 0.0
        except (KeyError, ValueError):
            return 0.0


def _new_layout(row: dict[str, str]) -> dict[str, str]:
    """A row of the old layout, whose images_per_s was its window's, in the new columns."""
    if "elapsed_s" not in row:
        return row
    return row | {"window_images_per_s": row["images_per_s"], "images_per_s": ""}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)
