"""Evaluation-server naming: a row's upload file for the VOC 2012 or COCO test-dev server and the
VOC competition it enters.

The paper numbers of VOC 2012 test and COCO test-dev come from evaluation servers; the workflow
writes the file a person uploads (reports/submission.py) beside the run, where `RunPaths` names it.
"""

from __future__ import annotations

from pathlib import Path

from scratchdet.paper_tables import Row
from scratchdet.run_folder import RunPaths

__all__ = ["submission_file", "voc_competition"]


def submission_file(row: Row, paths: RunPaths) -> Path | None:
    """The evaluation-server upload file of a row (None when its metric is computed locally)."""
    return paths.server_file(row.server_split)


def voc_competition(row: Row) -> str:
    """VOC's comp3 = trained on VOC data only; comp4 = any other data (ImageNet, COCO) too."""
    return "comp4" if row.pretrained or row.init_from else "comp3"
