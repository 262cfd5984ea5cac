"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint holds only tensors and plain containers (dicts, lists, strings, numbers), so it loads
with `torch.load(weights_only=True)`: a file from an untrusted source cannot run code on load.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError
from ..io import atomic_path


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(path, f"refused to load: the checkpoint holds objects other than tensors "
                              f"and plain containers ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(path, f"unreadable or truncated checkpoint ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a checkpoint dictionary, got {type(obj).__name__}")
    return obj
