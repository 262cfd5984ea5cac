"""Datasets: readers (VOC, COCO, synthetic) into one COCO-style annotation format, a torch Dataset
over it, and a checker that counts every fault. See docs/ARCHITECTURE.md for the format."""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562): `scratchdet eval` and the report commands need the annotation
# format but not torch, whose import costs seconds per workflow job.
_EXPORTS = {
    "class_names": "annotations",
    "image_dir": "annotations",
    "label_maps": "annotations",
    "load_annotations": "annotations",
    "merge_annotations": "annotations",
    "save_annotations": "annotations",
    "validate_annotations": "annotations",
    "check_dataset": "check",
    "format_report": "check",
    "read_coco": "coco",
    "DetectionDataset": "dataset",
    "read_image": "dataset",
    "SYNTH_CLASSES": "synth",
    "make_synthetic_voc": "synth",
    "VOC_CLASSES": "voc",
    "read_voc": "voc",
    "read_voc_files": "voc",
    "read_voc_many": "voc",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
