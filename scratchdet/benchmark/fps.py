"""The measured FPS column for the reports, read back from ``infer_*.json`` (no torch import)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAPER_FPS", "RESULTS_DIR", "measured_fps"]

RESULTS_DIR = Path("benchmarks") / "results"
"""Where the speed results live, relative to the repository root (where the workflow and the
documented commands run): the one home of that path."""

#: FPS as printed in the papers (batch 1, NVIDIA Titan X, Caffe), for comparison columns.
PAPER_FPS: dict[str, tuple[float, str]] = {
    "dsod300": (17.4, "DSOD (ICCV 2017), Titan X"),
    "scratchdet300": (17.8, "ScratchDet (CVPR 2019), Titan X"),
}


def measured_fps(model_name: str, batch_size: int = 1, results_dir: str | Path | None = None,
                 device_type: str | None = None) -> tuple[float, str] | None:
    """(median FPS, device name) for ``model_name`` at ``batch_size``, NMS included, or None.

    A GPU measurement is preferred over a CPU one (the papers' column is GPU), then the newest
    file; ``device_type`` ("cuda"/"cpu") restricts the choice.
    """
    from ..io import read_json

    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    best: tuple[tuple[bool, str], float, str] | None = None
    for path in sorted(folder.glob("infer_*.json")):
        data = read_json(path)
        if device_type is not None and data.get("device_type") != device_type:
            continue
        for row in data.get("results", []):
            if row.get("model") != model_name or row.get("batch_size") != batch_size \
                    or "fps" not in row:
                continue
            key = (data.get("device_type") == "cuda", data["provenance"]["created"])
            if best is None or key > best[0]:
                best = (key, float(row["fps"]["median"]), data["device"])
    return None if best is None else (best[1], best[2])
