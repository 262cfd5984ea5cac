"""One writer per run folder (or output file): an exclusive lock held for the whole run.

Two `scratchdet train` on one folder would interleave their training logs and overwrite each
other's checkpoints, so the second one refuses at once, naming the folder and the holder's PID.
The lock is a small file in the folder (`.run.lock`; `.<name>.lock` beside a single output
file) that records the holder's PID and host. The file itself stays (an empty-handed lock file is
harmless, and DVC ignores `.*.lock`).

The lock is a POSIX record lock (`fcntl(F_SETLK)`), which belongs to the process that took it:
the kernel drops it when that process dies, however it dies, and a child it forks does not
inherit it. That matters: DataLoader workers are forked children, and after a SIGKILL of the
parent they live on for seconds (they notice its death on a timer). A `flock` lives as long as
any copy of its descriptor, so they held it, and a rerun at once (a Slurm requeue) was refused
"in use by PID N" with N dead. The price of a POSIX lock is that closing *any* descriptor of the
file drops it, so this module never opens a lock file its own process holds (it refuses from a
table of the locks it holds instead), and nothing else has a reason to open one.

Under torchrun only rank 0 takes the lock; the other ranks train in the folder with it. When
`scratchdet train --nproc N` launches the workers itself, the launcher holds the lock and passes
its path down in `HELD_ENV`, so rank 0 does not lock itself out.

On a cluster the lock works across nodes where the shared filesystem supports POSIX locks (NFS
with its lock manager or NFSv4, Lustre mounted with `-o flock`, GPFS).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from typing_extensions import Self

from scratchdet.errors import DataError
from scratchdet.io import writing

__all__ = ["HELD_ENV", "RUN_LOCK_NAME", "FileLock", "lock_output_file", "lock_run_folder"]

RUN_LOCK_NAME = ".run.lock"
_HELD: dict[str, int] = {}  # lock files this process holds (resolved path -> PID that took it)
HELD_ENV = "SCRATCHDET_HELD_LOCK"
"""Path of a lock the parent process holds on this process's behalf (torchrun workers)."""


class FileLock:
    """An exclusive, non-blocking lock of `path`; `release()` (or process exit) drops it.

    `path` None is a lock someone else holds for us (another rank, the launching process).
    """

    def __init__(
        self, path: Path | None, handle: IO[str] | None = None, created: Path | None = None
    ):
        self.path = path
        self._handle = handle
        self._created = created  # the folder this lock created, removed again if left unused
        self._key = str(path.resolve()) if path is not None else ""

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            _HELD.pop(self._key, None)
            self._handle.close()  # closing the descriptor drops the lock
            self._handle = None

    def intact(self) -> bool:
        """False when the lock file was removed or replaced since it was taken (the folder was
        deleted while the run went on): writing on would recreate a folder the user removed."""
        if self._handle is None or self.path is None:
            return True
        return _still_linked(self.path, self._handle)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.remove_if_unused()
        self.release()

    def remove_if_unused(self) -> None:
        """Remove the folder this lock created if nothing but the lock file is in it, and release.

        A run refused before it wrote anything (bad init_from, missing data) leaves no empty folder
        behind. Unlinking is safe: a process that opened the old file and locks it after us sees
        that it is gone (`_acquire` checks) and starts over.
        """
        folder, path = self._created, self.path
        if (
            folder is None
            or path is None
            or not self.held
            or not folder.is_dir()
            or [p.name for p in folder.iterdir()] != [path.name]
        ):
            return
        path.unlink(missing_ok=True)
        self.release()
        with contextlib.suppress(OSError):  # someone else just started using it
            folder.rmdir()


def _holder(handle: IO[str]) -> str:
    """'PID 123 on host' as written by the holder (it writes right after locking: retry briefly)."""
    for _ in range(20):
        handle.seek(0)
        text = handle.read().split()
        if len(text) >= 2 and text[0].isdigit():
            return f"PID {text[0]} on {text[1]}"
        time.sleep(0.01)
    return "a process whose PID is not recorded"


def _in_use(what: Path, kind: str, holder: str, lock_path: Path) -> DataError:
    return DataError(
        what,
        f"{kind} is in use by another scratchdet process ({holder}; lock file "
        f"{lock_path.name}); wait for it to end or stop it",
    )


def _acquire(lock_path: Path, what: Path, kind: str) -> FileLock:
    if os.environ.get(HELD_ENV) == str(lock_path.resolve()):
        return FileLock(None)  # the launching process holds it for us
    for _ in range(10):
        key = str(lock_path.resolve())
        if _HELD.get(key) == os.getpid():  # opening it again would drop our own lock
            raise _in_use(what, kind, f"PID {os.getpid()} on {socket.gethostname()}", lock_path)
        created = None if lock_path.parent.exists() else lock_path.parent
        if lock_path.parent.is_file():
            raise DataError(lock_path.parent, f"is a file; {kind} must be a folder")
        try:
            with writing(what):  # a full or read-only disk: named as the output it refuses
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(lock_path, "a+")  # noqa: SIM115 - held until release() or exit
        except FileNotFoundError:  # the folder was removed in between: start over
            continue
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
            holder = _holder(handle)
            handle.close()
            raise _in_use(what, kind, holder, lock_path) from None
        except OSError as exc:  # a filesystem without lock support
            handle.close()
            raise DataError(
                lock_path,
                f"cannot lock {kind} ({exc}); the filesystem must support "
                "POSIX locks (NFS with locking, Lustre with -o flock)",
            ) from None
        if not _still_linked(lock_path, handle):  # removed by its last holder: lock the new one
            handle.close()
            continue
        with writing(what):
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {socket.gethostname()}\n")
            handle.flush()
        _HELD[key] = os.getpid()  # a forked child (another PID) may lock anew: it holds nothing
        return FileLock(lock_path, handle, created)
    raise DataError(lock_path, f"cannot lock {kind}: its lock file keeps disappearing")


def _still_linked(path: Path, handle: IO[str]) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def lock_run_folder(run_dir: str | Path) -> FileLock:
    """Lock a training run folder (created if needed) for this process, or raise DataError.

    Rank r > 0 of a torchrun job gets a placeholder: rank 0 holds the folder for the job.
    """
    run_dir = Path(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return FileLock(None)
    return _acquire(run_dir / RUN_LOCK_NAME, run_dir, "this run folder")


def lock_output_file(out: str | Path) -> FileLock:
    """Lock one output file (its folder is created if needed) for this process, or raise."""
    out = Path(out)
    return _acquire(out.with_name(f".{out.name}.lock"), out, "this output file")
