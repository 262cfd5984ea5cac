"""Atomic file output: a reader (Snakemake, a resumed run) never sees a half-written file; the
name of a CSV's sidecar (what its header row cannot say: config, notes, provenance)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["META_SUFFIX", "atomic_path", "meta_path", "read_json", "write_json", "write_text"]

META_SUFFIX = ".meta.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared like any file
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or malformed file into a DataError naming it."""
    from .errors import DataError

    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file: {exc}") from None


def meta_path(csv_path: str | Path) -> Path:
    """The sidecar of a CSV this package writes (reports, learning curves): ``<csv>.meta.json``."""
    return Path(str(csv_path) + META_SUFFIX)
