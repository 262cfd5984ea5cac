"""Where the speed results live and the papers' FPS to compare with (no torch import)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAPER_FPS", "RESULTS_DIR"]

RESULTS_DIR = Path("benchmarks") / "results"
"""Where the speed results live, relative to the repository root (where the workflow and the
documented commands run): the one home of that path."""

#: FPS as printed in the papers (batch 1, NVIDIA Titan X, Caffe), for comparison columns.
PAPER_FPS: dict[str, tuple[float, str]] = {
    "dsod300": (17.4, "DSOD (ICCV 2017), Titan X"),
    "scratchdet300": (17.8, "ScratchDet (CVPR 2019), Titan X"),
}
