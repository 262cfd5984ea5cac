"""PASCAL VOC average precision (VOC07 11-point, VOC12 area), devkit rules, vectorised.

The devkit walks detections one by one. Its greedy matching only looks sequential: each detection
is compared with its *highest-IoU* ground truth only (there is no fall-back to the second best
when that one is taken), so which box a detection points at does not depend on earlier
detections. The only order-dependent part is "the first detection (by score) to reach a
non-difficult box is the TP, later ones are duplicates (FP)", which is `np.unique(...,
return_index=True)` over the boxes hit, in score order. Everything else is array arithmetic over
(detection, ground-truth) pairs of the same image and class, so ~1M detections take well under a
second instead of many.

Conventions (see docs/ARCHITECTURE.md): boxes are continuous `[x, y, w, h]`, IoU has no `+1`.
A match needs IoU >= threshold (the MATLAB devkit's `ovmax >= minoverlap`). Detections are
sorted by descending score with a stable sort, so tied scores keep file order. `iscrowd` boxes are
treated like difficult ones (ignored), which only matters when COCO-style data is scored with VOC
rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchdet.errors import ConfigError, DataError
from scratchdet.evaluation.results_io import Source, as_detections, float_rows, index_of, lookup

__all__ = [
    "VOC_METRICS",
    "GroundTruth",
    "ap_voc07",
    "ap_voc12",
    "match_detections",
    "prepare_ground_truth",
    "voc_ap",
]

VOC_METRICS = ("voc07", "voc12")
"""The VOC devkit's two AP rules (11-point, all-point) that `voc_ap` scores with."""


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth as arrays. Per-annotation arrays are in file order."""

    image_ids: np.ndarray  # int64 [I], sorted, unique (every image, with or without boxes)
    category_ids: np.ndarray  # int64 [C], sorted, unique
    category_names: list[str]  # [C], same order as category_ids
    image: np.ndarray  # int64 [N], index into image_ids
    label: np.ndarray  # int64 [N], index into category_ids
    xywh: np.ndarray  # float64 [N, 4]
    ignore: np.ndarray  # bool [N]: difficult or crowd, never a positive


def _flag(ann: dict, key: str, i: int, source: Source) -> bool:
    value = ann.get(key, 0)
    if value not in (0, 1) or type(value) not in (int, bool):
        raise DataError(source, f"annotation {i}: {key} must be 0 or 1, got {value!r}")
    return bool(value)


def _number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def prepare_ground_truth(gt: Any, source: Source = "ground truth") -> GroundTruth:
    """Check the fields evaluation relies on and turn them into arrays (DataError otherwise)."""
    if not isinstance(gt, dict):
        raise DataError(
            source,
            f"expected a JSON object with images, categories and "
            f"annotations, got {type(gt).__name__}",
        )
    for key in ("images", "categories", "annotations"):
        if not isinstance(gt.get(key), list):
            raise DataError(source, f"'{key}' must be a list")
    image_ids: list[int] = []
    for i, img in enumerate(gt["images"]):
        if not isinstance(img, dict) or type(img.get("id")) is not int:
            raise DataError(source, f"image {i} has no integer 'id'")
        image_ids.append(img["id"])
    if len(set(image_ids)) != len(image_ids):
        raise DataError(source, "image ids are not unique")
    cats: dict[int, str] = {}
    for i, cat in enumerate(gt["categories"]):
        if (
            not isinstance(cat, dict)
            or type(cat.get("id")) is not int
            or not isinstance(cat.get("name"), str)
        ):
            raise DataError(source, f"category {i} needs an integer 'id' and a string 'name'")
        if cat["id"] in cats:
            raise DataError(source, f"category id {cat['id']} appears twice")
        cats[cat["id"]] = cat["name"]
    if len(set(cats.values())) != len(cats):
        raise DataError(source, "category names are not unique")

    img_sorted = np.array(sorted(image_ids), dtype=np.int64)
    cat_sorted = np.array(sorted(cats), dtype=np.int64)
    img_set, n = set(image_ids), len(gt["annotations"])
    img_col = np.empty(n, np.int64)
    cat_col = np.empty(n, np.int64)
    xywh = np.empty((n, 4), np.float64)
    ignore = np.empty(n, bool)
    for i, ann in enumerate(gt["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(source, f"annotation {i} is not an object")
        if type(ann.get("image_id")) is not int or ann["image_id"] not in img_set:
            raise DataError(
                source,
                f"annotation {i}: image_id {ann.get('image_id')!r} is not an image of this file",
            )
        if type(ann.get("category_id")) is not int or ann["category_id"] not in cats:
            raise DataError(
                source,
                f"annotation {i}: category_id {ann.get('category_id')!r} "
                "is not a category of this file",
            )
        box = ann.get("bbox")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(map(_number, box))
            and box[2] >= 0
            and box[3] >= 0
        ):
            raise DataError(
                source,
                f"annotation {i}: bbox must be [x, y, w, h] with finite "
                f"values and w, h >= 0, got {box!r}",
            )
        img_col[i], cat_col[i], xywh[i] = ann["image_id"], ann["category_id"], box
        ignore[i] = _flag(ann, "difficult", i, source) | _flag(ann, "iscrowd", i, source)
    return GroundTruth(
        image_ids=img_sorted,
        category_ids=cat_sorted,
        category_names=[cats[c] for c in cat_sorted.tolist()],
        image=np.searchsorted(img_sorted, img_col),
        label=np.searchsorted(cat_sorted, cat_col),
        xywh=xywh,
        ignore=ignore,
    )


def ap_voc07(rec: np.ndarray, prec: np.ndarray) -> float:
    """11-point interpolated AP: mean over t in {0, 0.1, ..., 1} of max precision at recall >= t.

    The thresholds are `i / 10` (exactly rounded), so a recall of 3/10 counts at t = 0.3; the
    py-faster-rcnn port's `np.arange(0, 1.1, 0.1)` would use 0.30000000000000004 there.
    """
    if len(rec) == 0:
        return 0.0
    best_after = np.maximum.accumulate(prec[::-1])[::-1]  # max precision at index >= i
    first = np.searchsorted(rec, np.arange(11) / 10.0, side="left")  # rec is non-decreasing
    p = np.where(first < len(rec), best_after[np.minimum(first, len(rec) - 1)], 0.0)
    return float(p.sum() / 11.0)


def ap_voc12(rec: np.ndarray, prec: np.ndarray) -> float:
    """Area under the precision envelope (precision made monotone from the right)."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def match_detections(
    gt: GroundTruth, *, image: np.ndarray, label: np.ndarray, xywh: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Devkit matching of detections that are already in evaluation order (class, score desc).

    Returns `(tp, ignored)` booleans; a detection that is neither is a false positive.
    """
    n_det, n_img = len(image), len(gt.image_ids)
    tp = np.zeros(n_det, bool)
    ignored = np.zeros(n_det, bool)
    if n_det == 0 or len(gt.image) == 0:
        return tp, ignored
    # Ground truth grouped by (class, image); each detection reads the group of its own key.
    gkey = gt.label * n_img + gt.image
    gorder = np.argsort(gkey, kind="stable")  # keeps file order inside a group (argmax ties)
    keys, gstart, gcount = np.unique(gkey[gorder], return_index=True, return_counts=True)
    pos, found = lookup(keys, label * n_img + image)
    count = np.where(found, gcount[pos], 0)
    has_gt = count > 0
    n_pair = int(count.sum())
    if n_pair == 0:
        return tp, ignored
    # One row per (detection, ground truth of its group), detection-major.
    pair_det = np.repeat(np.arange(n_det), count)
    first_pair = np.cumsum(count) - count
    pair_gt = gorder[np.arange(n_pair) + np.repeat(gstart[pos] - first_pair, count)]

    d, g = xywh[pair_det], gt.xywh[pair_gt]
    ix1 = np.maximum(d[:, 0], g[:, 0])
    iy1 = np.maximum(d[:, 1], g[:, 1])
    ix2 = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2])
    iy2 = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3])
    inter = np.maximum(ix2 - ix1, 0.0) * np.maximum(iy2 - iy1, 0.0)
    union = d[:, 2] * d[:, 3] + g[:, 2] * g[:, 3] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)

    # Highest IoU per detection; ties go to the first ground truth in file order (np.argmax).
    ovmax = np.maximum.reduceat(iou, first_pair[has_gt])
    at_max = np.flatnonzero(iou == np.repeat(ovmax, count[has_gt]))
    first_at_max = at_max[np.r_[True, pair_det[at_max[1:]] != pair_det[at_max[:-1]]]]
    dets_with_gt = np.flatnonzero(has_gt)
    hit = ovmax >= iou_threshold
    det_hit = dets_with_gt[hit]
    gt_hit = pair_gt[first_at_max][hit]

    ign = gt.ignore[gt_hit]
    ignored[det_hit[ign]] = True
    # The first detection (in score order) to hit a box takes it; later ones are duplicates.
    _, first = np.unique(gt_hit[~ign], return_index=True)
    tp[det_hit[~ign][first]] = True
    return tp, ignored


def voc_ap(
    gt: Any,
    dets: Any,
    metric: str = "voc07",
    iou_threshold: float = 0.5,
    *,
    gt_source: Source = "ground truth",
    dets_source: Source = "<detections>",
) -> dict:
    """Per-class AP and mAP with the VOC devkit rules.

    `gt` is the internal annotation dict (or a `GroundTruth`); `dets` a COCO results list or a
    `results_io.DET_DTYPE` array. Returns `{"metric", "map", "per_class": {name: AP}, "stats":
    {"iou_threshold", "npos": {name: n}, "ndet": {name: n}, "ndet_total", "nignored"}}`. Classes
    without a non-difficult box get AP NaN and are left out of the mAP (NaN if no class has one).
    """
    if metric not in VOC_METRICS:
        raise ConfigError(
            None,
            "metric",
            f"unknown VOC metric {metric!r}, expected one of {', '.join(VOC_METRICS)}",
        )
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(None, "iou_threshold", f"must be in (0, 1], got {iou_threshold}")
    g = gt if isinstance(gt, GroundTruth) else prepare_ground_truth(gt, gt_source)
    d = as_detections(dets, dets_source)
    image = index_of(
        d["image_id"], g.image_ids, key="image_id", source=dets_source, gt_source=gt_source
    )
    label = index_of(
        d["category_id"], g.category_ids, key="category_id", source=dets_source, gt_source=gt_source
    )

    n_cls = len(g.category_ids)
    # Evaluation order: by class, then descending score; stable, so ties keep file order.
    order = np.argsort(-d["score"], kind="stable")
    small = np.int16 if n_cls < 2**15 else np.int64  # int16 keys get numpy's radix sort
    order = order[np.argsort(label[order].astype(small), kind="stable")]
    image, label = image[order], label[order]
    xywh = float_rows(d)[order, 2:6]
    tp, ignored = match_detections(
        g, image=image, label=label, xywh=xywh, iou_threshold=iou_threshold
    )

    npos = np.bincount(g.label[~g.ignore], minlength=n_cls)
    ndet = np.bincount(label, minlength=n_cls)
    # Ignored detections leave tp and fp unchanged: their curve point repeats the previous one (or
    # is (0, 0) before any counted detection), which changes neither AP, so they are dropped.
    kept = ~ignored
    tp_k, label_k = tp[kept], label[kept]
    bounds = np.searchsorted(label_k, np.arange(n_cls + 1))
    ap_fn = ap_voc07 if metric == "voc07" else ap_voc12
    per_class: dict[str, float] = {}
    for c, name in enumerate(g.category_names):
        if npos[c] == 0:
            per_class[name] = math.nan
            continue
        hits = tp_k[bounds[c] : bounds[c + 1]]
        ctp = np.cumsum(hits)
        rank = np.arange(1, len(hits) + 1)
        per_class[name] = ap_fn(ctp / npos[c], ctp / rank)
    valid = [per_class[name] for c, name in enumerate(g.category_names) if npos[c] > 0]
    return {
        "metric": metric,
        "map": float(np.mean(valid)) if valid else math.nan,
        "per_class": per_class,
        "stats": {
            "iou_threshold": iou_threshold,
            "npos": dict(zip(g.category_names, npos.tolist())),
            "ndet": dict(zip(g.category_names, ndet.tolist())),
            "ndet_total": len(d),
            "nignored": int(ignored.sum()),
        },
    }
