"""Image-blind baselines: predictions that never look at the pixels.

A detector has learned to look at the image only if it beats what a prediction made without the
image scores on the same split. These baselines know the training annotations and each test
image's size, nothing else:

- ``mean-box``: for every class of the training set, its mean box (corners averaged in
  coordinates relative to the image size) in every test image, score 1;
- ``whole-image``: for every class, the whole image, score 1;
- ``image-blind``: both at once, the mean box ranked above the whole image (score 1 and 0.5). It
  scores at least as well as the better of the two alone on most splits, so it is the baseline
  that learning results are compared with.

Difficult training boxes count towards the mean (training uses them, see docs/ARCHITECTURE.md);
crowd boxes do not. The output is a list in the COCO results format, like ``scratchdet detect``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scratchdet.data.annotations import load_annotations
from scratchdet.errors import DataError

BASELINES = ("mean-box", "whole-image", "image-blind")

__all__ = ["BASELINES", "baseline_detections", "mean_boxes", "score_baselines"]


def mean_boxes(train: dict, source: str = "<train annotations>") -> dict[int, np.ndarray]:
    """Category id -> mean ``[x0, y0, x1, y1]`` relative to the image size (floats in [0, 1])."""
    sizes = {img["id"]: (float(img["width"]), float(img["height"])) for img in train["images"]}
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for ann in train["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        w, h = sizes[ann["image_id"]]
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        rel = np.array([x / w, y / h, (x + bw) / w, (y + bh) / h])
        cat = int(ann["category_id"])
        sums[cat] = sums.get(cat, 0.0) + rel
        counts[cat] = counts.get(cat, 0) + 1
    if not sums:
        raise DataError(
            source,
            "no (non-crowd) boxes to average: an image-blind baseline needs training annotations",
        )
    return {cat: sums[cat] / counts[cat] for cat in sorted(sums)}


def baseline_detections(
    kind: str, train: dict, test: dict, train_source: str = "<train annotations>"
) -> list[dict[str, Any]]:
    """Image-blind detections of kind ``kind`` (one of ``BASELINES``) for every image of ``test``.

    Classes are those of the training set that the test set also declares (by category id).
    """
    if kind not in BASELINES:
        raise DataError(
            train_source, f"unknown baseline {kind!r}; expected one of {', '.join(BASELINES)}"
        )
    means = mean_boxes(train, train_source)
    test_cats = {int(c["id"]) for c in test["categories"]}
    cats = [c for c in means if c in test_cats]
    if not cats:
        raise DataError(train_source, "no category of the training set is in the test set")
    whole = np.array([0.0, 0.0, 1.0, 1.0])
    ranked: list[tuple[dict[int, np.ndarray], float]] = []  # (relative box per class, score)
    if kind in ("mean-box", "image-blind"):
        ranked.append((means, 1.0))
    if kind in ("whole-image", "image-blind"):
        ranked.append(({cat: whole for cat in cats}, 1.0 if kind == "whole-image" else 0.5))
    out: list[dict[str, Any]] = []
    for img in test["images"]:
        w, h = float(img["width"]), float(img["height"])
        scale = np.array([w, h, w, h])
        for cat in cats:
            for rel, score in ranked:
                x0, y0, x1, y1 = rel[cat] * scale
                out.append(
                    {
                        "image_id": img["id"],
                        "category_id": cat,
                        "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                        "score": score,
                    }
                )
    return out


def score_baselines(
    train: str | Path, test: str | Path, metric: str = "voc07", kinds: tuple[str, ...] = BASELINES
) -> dict[str, tuple[dict, list]]:
    """Each baseline of ``kinds`` for the split ``test`` (boxes averaged over ``train``), scored
    with ``metric`` as ``scratchdet eval`` scores detections: kind -> (result, detections).

    The one scorer of the baselines (``scratchdet eval --baseline`` and the learning curves)."""
    from scratchdet.evaluation.coco import coco_eval
    from scratchdet.evaluation.voc import voc_ap

    train_ds = load_annotations(train, resolve_image_dir=False)
    test_ds = load_annotations(test, resolve_image_dir=False)
    out = {}
    for kind in kinds:
        dets = baseline_detections(kind, train_ds, test_ds, str(train))
        source = f"<{kind} baseline>"
        result = (
            coco_eval(test_ds, dets, gt_source=test, dets_source=source)
            if metric == "coco"
            else voc_ap(test_ds, dets, metric, gt_source=test, dets_source=source)
        )
        out[kind] = (result, dets)
    return out
