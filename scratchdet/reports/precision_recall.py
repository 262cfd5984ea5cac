"""Per-class precision-recall curves with the VOC devkit's matching, for the PR figures.

Built from scratchdet.evaluation's public pieces (ground-truth preparation, detection loading,
`match_detections`), in the same evaluation order as `voc_ap`, so a curve's 11-point AP equals the
AP that `scratchdet eval --metric voc07` reports for the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluation.results_io import index_of, load_detections
from ..evaluation.voc import ap_voc07, match_detections, prepare_ground_truth
from ..io import read_json

__all__ = ["Curve", "precision_recall"]


@dataclass
class Curve:
    recall: np.ndarray
    precision: np.ndarray
    ap: float
    """VOC07 11-point AP; NaN when the class has no non-difficult box."""


def precision_recall(gt_path: str | Path, dets_path: str | Path,
                     iou_threshold: float = 0.5) -> dict[str, Curve]:
    g = prepare_ground_truth(read_json(gt_path), gt_path)
    d = load_detections(dets_path)
    image = index_of(d["image_id"], g.image_ids, key="image_id", source=dets_path,
                     gt_source=gt_path)
    label = index_of(d["category_id"], g.category_ids, key="category_id", source=dets_path,
                     gt_source=gt_path)
    order = np.lexsort((-d["score"], label))  # by class, then descending score (stable)
    image, label = image[order], label[order]
    xywh = np.stack([d[k][order] for k in ("x", "y", "w", "h")], axis=1)
    tp, ignored = match_detections(g, image=image, label=label, xywh=xywh,
                                   iou_threshold=iou_threshold)
    npos = np.bincount(g.label[~g.ignore], minlength=len(g.category_ids))
    curves = {}
    for c, name in enumerate(g.category_names):
        hits = tp[(label == c) & ~ignored]
        ctp = np.cumsum(hits)
        if npos[c] == 0:
            curves[name] = Curve(np.zeros(0), np.zeros(0), math.nan)
            continue
        recall = ctp / npos[c]
        precision = ctp / np.arange(1, len(hits) + 1)
        curves[name] = Curve(recall, precision, ap_voc07(recall, precision))
    return curves
