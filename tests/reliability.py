"""What the reliability probes share: run `scratchdet` as a user does and judge what it said.

A probe runs the command line in a subprocess and gives a verdict:
- good: the exit status expected (2 for bad input, 130 for Ctrl-C), no traceback, exactly one
  message line on stderr (progress and log lines aside) naming what was wrong;
- weak: no traceback, but the status, the number of lines or the names are wrong;
- traceback: Python's traceback reached the user;
- silent: the command succeeded (status 0) although it was given something it cannot do.
With SCRATCHDET_PROBE_LOG set, each verdict is appended to that file (one JSON object a line), so
a run of the probes can be counted by verdict.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CODE_BAD_INPUT",
    "CODE_INTERRUPTED",
    "assert_good",
    "judge",
    "mounted_tmpfs",
    "no_leftovers",
    "run_cli",
    "scratchdet_cmd",
    "start_cli",
    "stop_group",
]

CODE_BAD_INPUT = 2
CODE_INTERRUPTED = 130
# Lines that are not messages: progress on stderr in a log (`scratchdet.progress`), and log lines
# (`asctime LEVEL name: message`), which the -v option and warnings write.
_NOISE = re.compile(
    r"^(train|detect|eval|curve|precise-bn)\b.*\d+/\d+|"
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) "
)


def scratchdet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scratchdet", *args]


def _env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1"}


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        scratchdet_cmd(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        timeout=timeout,
        check=False,
    )


def start_cli(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """The command in its own process group (as a shell runs a job: Ctrl-C reaches the group)."""
    return subprocess.Popen(
        scratchdet_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=_env(),
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (its DataLoader workers too), whatever state it is in."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)


def message_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not _NOISE.match(line)]


def judge(code: int, stderr: str, names: tuple[str, ...], expected: int = CODE_BAD_INPUT) -> str:
    if "Traceback" in stderr:
        return "traceback"
    if code == 0:
        return "silent"
    lines = message_lines(stderr)
    if code != expected or len(lines) != 1 or not all(n in lines[0] for n in names):
        return "weak"
    return "good"


def assert_good(
    probe: str,
    proc: subprocess.CompletedProcess | subprocess.Popen,
    stderr: str,
    *names: str,
    expected: int = CODE_BAD_INPUT,
) -> str:
    """Assert the verdict is good; the one message line is returned."""
    verdict = judge(proc.returncode, stderr, names, expected)
    log = os.environ.get("SCRATCHDET_PROBE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "probe": probe,
                        "verdict": verdict,
                        "code": proc.returncode,
                        "stderr": stderr[-600:],
                    }
                )
                + "\n"
            )
    assert verdict == "good", (
        f"{probe}: {verdict} (exit {proc.returncode}, expected {expected},"
        f" naming {names}):\n{stderr[-3000:]}"
    )
    return message_lines(stderr)[0]


def no_leftovers(folder: Path) -> list[Path]:
    """Temporary files of interrupted writes under `folder` (there must be none)."""
    return sorted(p for p in folder.rglob("*.tmp"))


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs at `where` (root only; the caller skips when this raises OSError)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise OSError(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        for _ in range(50):  # a process that just exited may still hold a file in it
            if (
                subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode
                == 0
            ):
                break
            time.sleep(0.1)
