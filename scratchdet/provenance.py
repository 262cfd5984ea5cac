"""What every result file records so a number can be traced back: code, packages, hardware, seed.

Package versions come from package metadata, never from importing the packages: light commands
(eval, reports) record provenance too, and importing torch costs seconds per workflow job (98% of
`scratchdet eval`'s start-up, benchmarks/README.md). ``hardware`` asks torch about threads and GPUs
only in a process that already imported torch, or when given the device a number was measured on:
a process that never imported torch ran nothing on a GPU, and says so (``torch_imported``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "code_version",
    "describe_device",
    "hardware",
    "package_versions",
    "provenance",
    "seed_everything",
]

PACKAGES = (
    "scratchdet",
    "torch",
    "torchvision",
    "numpy",
    "pycocotools",
    "pillow",
    "snakemake",
    "dvc",
)


def code_version() -> dict[str, Any]:
    """Git commit of the source tree (and whether it had uncommitted changes), if it is a
    checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware(device: Any = None) -> dict[str, Any]:
    """The machine; torch's threads and GPUs where this process uses torch (module docstring)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_imported": "torch" in sys.modules or device is not None,
    }
    if not info["torch_imported"]:
        return info
    import torch

    info["torch_threads"] = torch.get_num_threads()
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if device is not None:
        info["device"] = str(device)
    return info


def describe_device(device: Any) -> str:
    """A human name for the device a number was measured on, for report headers."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def provenance(
    config: dict[str, Any] | None = None, seed: int | None = None, device: Any = None
) -> dict[str, Any]:
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "seed": seed,
        "code": code_version(),
        "packages": package_versions(),
        "hardware": hardware(device),
    }


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
