"""COCO box AP: pycocotools' 12 summary numbers plus per-class AP, computed in memory.

The numbers are pycocotools' own (`faster_coco_eval`, a C++ port that gives identical results,
is used when installed because pycocotools' Python loops take minutes on COCO val). Nothing is
written to disk: the COCO objects are built from the dicts already in memory, and the libraries'
printing is captured; `summary_lines` gives back pycocotools' 12-line summary from the numbers.
pycocotools evaluates the images in slices, so images done/total go to stderr
(``scratchdet.progress``); the slices give exactly the numbers of one call.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from typing import Any

import numpy as np

from scratchdet.errors import ConfigError, DataError
from scratchdet.evaluation.results_io import Source, as_detections, detections_to_list, index_of
from scratchdet.evaluation.voc import GroundTruth, prepare_ground_truth
from scratchdet.progress import Progress

__all__ = ["BACKENDS", "STAT_NAMES", "available_backends", "coco_eval", "summary_lines"]

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
BACKENDS = ("faster_coco_eval", "pycocotools")
# pycocotools' summarize(): (AP or AR, IoU, area, maxDets) of each of the 12 numbers.
_SUMMARY = [
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
]


def available_backends() -> list[str]:
    """Backends importable here, preferred first."""
    found = []
    for name in BACKENDS:
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return found


def _classes(backend: str) -> tuple[Any, Any]:
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise ConfigError(
        None, "backend", f"unknown COCO backend {backend!r}, expected one of {', '.join(BACKENDS)}"
    )


def _check_coco_fields(gt: dict, source: Source) -> None:
    """Fields pycocotools needs beyond the ones `prepare_ground_truth` checks.

    Annotation ids must be positive: pycocotools marks "unmatched" with id 0, so a ground-truth
    id of 0 would silently never count as matched.
    """
    seen: set[int] = set()
    for i, ann in enumerate(gt["annotations"]):
        ann_id = ann.get("id")
        if type(ann_id) is not int or ann_id <= 0 or ann_id in seen:
            raise DataError(
                source, f"annotation {i}: 'id' must be a unique positive integer, got {ann_id!r}"
            )
        seen.add(ann_id)
        area = ann.get("area")
        if type(area) not in (int, float) or not math.isfinite(area) or area < 0:
            raise DataError(
                source, f"annotation {i}: 'area' must be a non-negative number, got {area!r}"
            )


def _coco_from(coco_cls: Any, images: list, categories: list, annotations: list) -> Any:
    obj = coco_cls()
    obj.dataset = {"images": images, "categories": categories, "annotations": annotations}
    obj.createIndex()
    return obj


def summary_lines(stats: dict[str, float]) -> list[str]:
    """pycocotools' summary, as `summarize()` prints it, from `coco_eval`'s ``stats`` (NaN: -1)."""
    lines = []
    for name, (ap, iou, area, max_dets) in zip(STAT_NAMES, _SUMMARY):
        value = stats[name]
        lines.append(
            " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}".format(
                "Average Precision" if ap else "Average Recall",
                "(AP)" if ap else "(AR)",
                "0.50:0.95" if iou is None else f"{iou:0.2f}",
                area,
                max_dets,
                -1.0 if math.isnan(value) else value,
            )
        )
    return lines


def _evaluate_in_slices(evaluator: Any, progress: Progress) -> None:
    """pycocotools' ``evaluate()`` over slices of the images, then its state for all of them.

    Each image is scored alone (``evaluateImg`` per image, class and area), so the slices'
    ``evalImgs``, put back in pycocotools' [class][area][image] order, are one call's.
    """
    params = evaluator.params
    image_ids = [int(i) for i in np.unique(params.imgIds)]
    size = progress.every
    slices = [image_ids[i : i + size] for i in range(0, len(image_ids), size)]
    parts = []
    for ids in slices:
        params.imgIds = ids
        evaluator.evaluate()
        parts.append(evaluator.evalImgs)
        progress.update(len(ids))
    cells = len(params.catIds if params.useCats else [-1]) * len(params.areaRng)
    evaluator.evalImgs = [
        e
        for cell in range(cells)
        for ids, part in zip(slices, parts)
        for e in part[cell * len(ids) : (cell + 1) * len(ids)]
    ]
    params.imgIds = image_ids
    evaluator._paramsEval = copy.deepcopy(params)


def coco_eval(
    gt: Any,
    dets: Any,
    *,
    backend: str | None = None,
    gt_source: Source = "ground truth",
    dets_source: Source = "<detections>",
) -> dict:
    """pycocotools bbox evaluation of `dets` (COCO results list or DET_DTYPE array) against `gt`.

    Returns `{"metric": "coco", "map": AP, "per_class": {name: AP}, "stats": {AP, AP50, ...,
    ARl}, "backend"}`. pycocotools' -1 ("no ground truth in this area range") becomes NaN, so an
    undefined number is never averaged as a real one.
    """
    names = available_backends()
    if backend is None:
        if not names:
            raise ConfigError(
                None, "backend", "neither faster_coco_eval nor pycocotools is installed"
            )
        backend = names[0]
    coco_cls, eval_cls = _classes(backend)
    g: GroundTruth = prepare_ground_truth(gt, gt_source)
    _check_coco_fields(gt, gt_source)
    d = as_detections(dets, dets_source)
    index_of(d["image_id"], g.image_ids, key="image_id", source=dets_source, gt_source=gt_source)
    index_of(
        d["category_id"], g.category_ids, key="category_id", source=dets_source, gt_source=gt_source
    )

    # Copies: COCOeval writes 'ignore' into ground-truth dicts and loadRes writes into results.
    images = [dict(img) for img in gt["images"]]
    categories = [dict(cat) for cat in gt["categories"]]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco_from(coco_cls, images, categories, [dict(ann) for ann in gt["annotations"]])
        if len(d):
            coco_dt = coco_gt.loadRes(detections_to_list(d))
        else:  # loadRes cannot take an empty list; this is what it would build
            coco_dt = _coco_from(
                coco_cls, [dict(img) for img in images], [dict(cat) for cat in categories], []
            )
        evaluator = eval_cls(coco_gt, coco_dt, "bbox")
        with Progress("eval coco", len(images), unit="image") as progress:
            if backend == "pycocotools":
                _evaluate_in_slices(evaluator, progress)
            else:  # one C++ call
                evaluator.evaluate()
                progress.update(len(images))
        evaluator.accumulate()
        evaluator.summarize()

    raw = [float(v) for v in np.asarray(evaluator.stats)[: len(STAT_NAMES)]]
    stats = {name: (math.nan if v == -1 else v) for name, v in zip(STAT_NAMES, raw)}
    # precision[T, R, K, A, M]: area "all" (0), maxDets 100 (last); -1 marks "no ground truth".
    precision = np.asarray(evaluator.eval["precision"])
    cat_order = [int(c) for c in evaluator.params.catIds]
    name_of = dict(zip(g.category_ids.tolist(), g.category_names))
    per_class: dict[str, float] = {}
    for k, cat_id in enumerate(cat_order):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[name_of[cat_id]] = float(np.mean(p)) if p.size else math.nan
    return {
        "metric": "coco",
        "map": stats["AP"],
        "per_class": per_class,
        "stats": stats,
        "backend": backend,
    }
