"""Atomic file output: a reader (Snakemake, a resumed run) never sees a half-written file; the
name of a CSV's sidecar (what its header row cannot say: config, notes, provenance).

A write that the disk refuses (full, read-only, no permission, a folder where the file goes)
is a DataError naming the output and what to do, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "META_SUFFIX",
    "atomic_path",
    "meta_path",
    "output_error",
    "read_json",
    "write_json",
    "write_text",
    "writing",
]

META_SUFFIX = ".meta.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


def output_error(path: str | Path, exc: OSError) -> Exception | None:
    """What a failed write of `path` means for the user, as a DataError; None for other errors.

    A full disk names the output and says the disk is full (torch's own message on a short write,
    "unexpected pos", does not); a read-only or forbidden folder is named with the cause.
    """
    from scratchdet.errors import DataError

    path = Path(path)
    where = path.parent  # the folder refused: the one named in the error, or the file's folder
    if isinstance(exc.filename, str):
        where = Path(exc.filename) if Path(exc.filename).is_dir() else Path(exc.filename).parent
    if exc.errno == errno.ENOSPC:
        return DataError(
            path,
            "cannot write: the disk is full (no space left on device); free "
            "space there or write to another disk",
        )
    if exc.errno == errno.EDQUOT:
        return DataError(
            path,
            "cannot write: disk quota exceeded; free space within your quota "
            "or write to another disk",
        )
    if exc.errno == errno.EROFS:
        return DataError(
            where,
            f"cannot write {path.name} here: read-only file system; give an "
            "output path on a writable disk",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DataError(
            where,
            f"cannot write {path.name} here: permission denied; give an "
            "output path you may write to",
        )
    if exc.errno == errno.EISDIR:
        return DataError(path, "is a folder; give the path of a file to write")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        named = Path(exc.filename) if isinstance(exc.filename, str) else path
        blocking = next(
            (p for p in (named, *named.parents) if p.exists() and not p.is_dir()), named
        )
        return DataError(blocking, f"is a file, not a folder, so {path} cannot be written")
    return None


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError of writing `path` in the block into `output_error`'s DataError."""
    try:
        yield
    except OSError as exc:
        error = output_error(path, exc)
        if error is None:
            raise
        raise error from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file is removed whatever stops the block (an error, a full disk, Ctrl-C).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with writing(path):
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared like any file
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
    except FileNotFoundError:
        if path.parent.is_dir():
            raise
        from scratchdet.errors import DataError

        raise DataError(
            path.parent,
            f"was deleted while {path.name} was being written there; nothing was written",
        ) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or malformed file into a DataError naming it."""
    from scratchdet.errors import DataError

    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder; give the JSON file itself") from None
    except PermissionError:
        raise DataError(path, "permission denied: this file cannot be read") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file: {exc}") from None


def meta_path(csv_path: str | Path) -> Path:
    """The sidecar of a CSV this package writes (reports, learning curves): ``<csv>.meta.json``."""
    return Path(str(csv_path) + META_SUFFIX)
