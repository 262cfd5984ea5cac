"""COCO reader: an `instances_*.json` -> the internal annotation format.

COCO ids (images, sparse category ids, annotations) and `iscrowd` are kept, so detections written
with these ids can be scored by pycocotools against the official file. `area` is kept as COCO's own
(segmentation) area rather than w*h, because COCOeval's small/medium/large split reads it; it is
w*h only when the source lacks it. `difficult` and `truncated` are added as 0. Segmentations are
dropped.

Box rule: boxes that stick out of the image by at most `CLIP_TOLERANCE` pixels are clipped (counted
in `info["clipped_boxes"]`); boxes with width or height <= 0 are dropped with a "dropped_box"
warning (the official files contain a few) and counted in `info["dropped_boxes"]`; anything else
malformed is an error naming the annotation.
"""

from __future__ import annotations

import math
from pathlib import Path

from scratchdet.data.annotations import CLIP_TOLERANCE, ProblemLog, validate_annotations
from scratchdet.errors import DataError
from scratchdet.io import read_json

__all__ = ["read_coco"]


def read_coco(
    instances_json: str | Path, image_dir: str | Path, log: ProblemLog | None = None
) -> dict:
    """Read a COCO instances file whose images live in `image_dir` (e.g. train2017/)."""
    log = log if log is not None else ProblemLog()
    path = Path(instances_json)
    src = read_json(path)
    if not isinstance(src, dict):
        raise DataError(path, "top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(src.get(key), list):
            raise DataError(path, f"missing list '{key}' (is this an instances_*.json file?)")

    images = []
    sizes: dict[int, tuple[int, int]] = {}
    for i, img in enumerate(src["images"]):
        try:
            entry = {k: img[k] for k in ("id", "file_name", "width", "height")}
        except (KeyError, TypeError):
            log.add("schema", path, f"images[{i}] lacks one of id, file_name, width, height")
            continue
        images.append(entry)
        sizes[entry["id"]] = (entry["width"], entry["height"])
    categories = []
    for i, cat in enumerate(src["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            log.add("schema", path, f"categories[{i}] lacks id or name")
            continue
        categories.append({k: cat[k] for k in ("id", "name", "supercategory") if k in cat})

    annotations = []
    clipped = dropped = 0
    for i, ann in enumerate(src["annotations"]):
        if not isinstance(ann, dict) or not all(k in ann for k in ("id", "image_id", "bbox")):
            log.add("schema", path, f"annotations[{i}] lacks id, image_id or bbox")
            continue
        where = f"annotation id {ann['id']} (image id {ann['image_id']})"
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
        ):
            log.add("bad_box", path, f"{where}: bbox must be 4 finite numbers, got {bbox!r}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            dropped += 1
            log.add("dropped_box", path, f"{where}: degenerate bbox {bbox} dropped")
            continue
        if ann["image_id"] not in sizes:
            log.add("unknown_image", path, f"{where}: image_id is not in 'images'")
            continue
        W, H = sizes[ann["image_id"]]
        overshoot = max(-x, -y, x + w - W, y + h - H)
        if overshoot > 0:
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(x + w, float(W)), min(y + h, float(H))
            if overshoot > CLIP_TOLERANCE or x1 <= x0 or y1 <= y0:
                log.add(
                    "box_outside_image",
                    path,
                    f"{where}: bbox {bbox} lies outside the {W}x{H} image by {overshoot:g} px",
                )
                continue
            x, y, w, h = x0, y0, x1 - x0, y1 - y0
            clipped += 1
            log.add("clipped_box", path, f"{where}: bbox {bbox} clipped to the {W}x{H} image")
        area = ann.get("area", w * h)
        annotations.append(
            {
                "id": ann["id"],
                "image_id": ann["image_id"],
                "category_id": ann.get("category_id"),
                "bbox": [x, y, w, h],
                "area": area,
                "iscrowd": ann.get("iscrowd", 0),
                "difficult": 0,
                "truncated": 0,
            }
        )

    ds = {
        "info": {
            "image_dir": str(Path(image_dir).resolve()),
            "source": "coco",
            "instances": path.name,
            "clipped_boxes": clipped,
            "dropped_boxes": dropped,
        },
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }
    if log.strict:
        validate_annotations(ds, path)
    return ds
