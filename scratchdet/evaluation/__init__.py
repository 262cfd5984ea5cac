"""Score a detections file against a ground-truth file: VOC07, VOC12 or COCO metrics.

`evaluate` only reads and computes; the command line writes its result (metrics.json) atomically.
"""

from __future__ import annotations

from pathlib import Path

from scratchdet.data.annotations import load_annotations
from scratchdet.errors import ConfigError
from scratchdet.evaluation.coco import coco_eval
from scratchdet.evaluation.results_io import load_detections
from scratchdet.evaluation.voc import VOC_METRICS, voc_ap

EVAL_METRICS = (*VOC_METRICS, "coco")
"""What `evaluate` (and `scratchdet eval --metric`) can score a detections file with."""

__all__ = ["EVAL_METRICS", "coco_eval", "evaluate", "load_detections", "voc_ap"]


def evaluate(gt_path: str | Path, dets_path: str | Path, metric: str) -> dict:
    """Evaluate the COCO results file `dets_path` against the annotation file `gt_path`.

    Returns `{"metric", "map", "per_class": {class name: AP}, "stats": {...}}`: for VOC metrics
    the stats are the counts (npos, ndet per class, ndet_total, nignored), for COCO the 12
    pycocotools numbers by name. `map` is a fraction in [0, 1] (NaN when undefined).
    """
    if metric not in EVAL_METRICS:
        raise ConfigError(
            None, "metric", f"unknown metric {metric!r}, expected one of {', '.join(EVAL_METRICS)}"
        )
    gt = load_annotations(gt_path, resolve_image_dir=False)
    dets = load_detections(dets_path)
    if metric == "coco":
        return coco_eval(gt, dets, gt_source=gt_path, dets_source=dets_path)
    return voc_ap(gt, dets, metric, gt_source=gt_path, dets_source=dets_path)
