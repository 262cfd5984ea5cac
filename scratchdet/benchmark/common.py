"""What every benchmark shares: device handling, timing, summaries and the result record.

A result file is one JSON object: ``benchmark``, ``device`` (a human name), ``device_type``,
``command`` (the ``scratchdet benchmark ...`` line that reproduces it), ``config`` (the parsed
options), ``load_average`` (before/after: the CPU numbers come from a shared machine),
``provenance`` (code version, packages, hardware) and ``results`` (a list of rows whose timings
are ``summary`` dicts: raw values per repeat, median, quartiles, min, max).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scratchdet.benchmark.fps import RESULTS_DIR
from scratchdet.errors import ConfigError
from scratchdet.io import write_json
from scratchdet.provenance import describe_device, provenance
from scratchdet.yaml_io import parse_yaml

__all__ = [
    "NUM_CLASSES",
    "SCHEMA",
    "Record",
    "check_positive",
    "command_line",
    "default_out",
    "device_slug",
    "load_average",
    "parse_model",
    "summary",
    "sync",
    "timed",
]

SCHEMA = 1
# Object classes of the benchmarked heads (VOC: 20 + background); the synthetic dataset's labels
# are valid VOC labels.
NUM_CLASSES = 20


def device_slug(device: torch.device) -> str:
    """File-name part for a device: ``cpu`` or the GPU's name, e.g. ``nvidia_h100_80gb_hbm3``."""
    if device.type == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "_", describe_device(device).lower()).strip("_")


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a wall-clock interval covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of ``fn()`` including its device work."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(values: Sequence[float], digits: int = 6) -> dict[str, Any]:
    """Median and spread of repeated measurements, with the raw values kept."""
    if not values:
        raise ValueError("summary of no values")
    s = sorted(float(v) for v in values)

    def r(v: float) -> float:
        return round(v, digits)

    return {
        "median": r(_quantile(s, 0.5)),
        "q1": r(_quantile(s, 0.25)),
        "q3": r(_quantile(s, 0.75)),
        "min": r(s[0]),
        "max": r(s[-1]),
        "n": len(s),
        "raw": [r(float(v)) for v in values],
    }


def parse_model(spec: str) -> tuple[str, str | dict[str, Any]]:
    """``--models`` entry -> (label, build_model config): a canonical name or an inline YAML
    mapping such as ``{family: dsod, growth: 8}`` (for tiny CI runs)."""
    spec = spec.strip()
    if spec.startswith("{"):
        cfg = parse_yaml(spec, None, "--models")
        if not isinstance(cfg, dict):
            raise ConfigError(None, "--models", f"{spec!r} is not a mapping")
        return spec, cfg
    return spec, spec


def command_line(argv: Sequence[str] | None) -> str:
    """The ``scratchdet benchmark ...`` command that reproduces this run, from the command line
    after the program's name (default ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    args = args[args.index("benchmark") :] if "benchmark" in args else ["benchmark", *args]
    return "scratchdet " + shlex.join(args)


def default_out(kind: str, device: torch.device) -> Path:
    return RESULTS_DIR / f"{kind}_{device_slug(device)}.json"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on this platform
        return None


class Record:
    """Collects one benchmark run; ``write`` stores it atomically."""

    def __init__(
        self,
        benchmark: str,
        device: torch.device,
        *,
        config: Mapping[str, Any],
        argv: Sequence[str] | None,
        seed: int | None = None,
    ):
        # paths as text: a benchmark called from Python may be given Path objects
        config = {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            "benchmark": benchmark,
            "device": describe_device(device),
            "device_type": device.type,
            "command": command_line(argv),
            "config": dict(config),
            "load_average": {"start": load_average()},
            "provenance": provenance(dict(config), seed, device),
            "results": [],
        }

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        self.data["results"].append(row)
        return row

    def write(self, path: str | Path) -> dict[str, Any]:
        self.data["load_average"]["end"] = load_average()
        write_json(path, self.data)
        return self.data


def check_positive(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(None, name, f"must be >= {minimum}, got {value}")
