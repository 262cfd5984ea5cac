"""The internal annotation format: one COCO-style JSON per split (see docs/ARCHITECTURE.md).

Every reader (VOC, COCO, synthetic) produces this dict and every consumer (dataset, evaluation,
check) reads it, so validation lives here once. It is written as a stream of `Problem`s: loading
stops at the first one (fail fast, with the file and the item named), while `scratchdet data check`
collects them all.

`info.image_dir` convention: in memory (what the readers return and what `load_annotations` gives
back) it is an absolute path; on disk `save_annotations` writes it relative to the JSON's own
directory, so that a data folder can be moved as a whole and DVC hashes do not depend on the
machine. `image_dir()` resolves either form.

Boxes are `[x, y, w, h]` in continuous pixel coordinates; a box must lie inside the image within
`BOX_TOLERANCE` pixels (readers clip small overshoots before this check, see voc.py / coco.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from scratchdet.errors import DataError
from scratchdet.io import read_json, write_json

__all__ = [
    "BOX_TOLERANCE",
    "CLIP_TOLERANCE",
    "FATAL_KINDS",
    "FLAG_KEYS",
    "WARNING_KINDS",
    "BoxTable",
    "ImageBoxes",
    "Problem",
    "ProblemLog",
    "boxes_by_image",
    "check_trainable",
    "class_names",
    "data_record",
    "image_dir",
    "iter_problems",
    "label_maps",
    "load_annotations",
    "merge_annotations",
    "same_data",
    "save_annotations",
    "structure_problem",
    "validate_annotations",
]

BOX_TOLERANCE = 0.01
"""Pixels a box may exceed the image by in the internal format (float round-off only)."""

CLIP_TOLERANCE = 5.0
"""Pixels a source box (VOC, COCO) may stick out of its image and still be clipped by the readers
rather than rejected: annotation tools write 0 or width+1 at the border."""

FLAG_KEYS = ("iscrowd", "difficult", "truncated")

# Fault kinds, shared with check.py. Warnings are reported but never stop a load.
FATAL_KINDS = (
    "schema",
    "duplicate_id",
    "unknown_image",
    "unknown_category",
    "bad_box",
    "zero_area_box",
    "box_outside_image",
    "missing_image",
    "missing_file",
    "unreadable_image",
    "truncated_image",
    "size_mismatch",
)
WARNING_KINDS = ("empty_image", "clipped_box", "dropped_box", "exif_orientation")


@dataclass(frozen=True)
class Problem:
    """One fault in a dataset: what kind, in which file, and a message naming the item."""

    kind: str
    path: str
    message: str

    @property
    def fatal(self) -> bool:
        return self.kind not in WARNING_KINDS


@dataclass
class ProblemLog:
    """Where readers report faults: strict mode raises the first fatal one as a DataError,
    collect mode (for `data check`) records everything and lets the reader skip the bad item."""

    strict: bool = True
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, path: str | Path, message: str) -> None:
        problem = Problem(kind, str(path), message)
        if self.strict and problem.fatal:
            raise DataError(path, message)
        self.problems.append(problem)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _image_label(image: dict | None, image_id: Any) -> str:
    if image is not None and isinstance(image.get("file_name"), str):
        return image["file_name"]
    return f"id {image_id!r}"


def structure_problem(ds: Any) -> str | None:
    """What is wrong with the top-level layout, or None; nothing else can be checked if broken."""
    if not isinstance(ds, dict):
        return f"top level must be a JSON object, got {type(ds).__name__}"
    for key in ("info", "images", "categories", "annotations"):
        if key not in ds:
            return f"missing top-level key '{key}'"
    if not isinstance(ds["info"], dict) or not isinstance(ds["info"].get("image_dir"), str):
        return "'info' must be an object with a string 'image_dir'"
    for key in ("images", "categories", "annotations"):
        if not isinstance(ds[key], list):
            return f"'{key}' must be a list, got {type(ds[key]).__name__}"
    return None


def iter_problems(ds: Any, path: str | Path = "<annotations>") -> Iterator[Problem]:
    """Yield every fault of an internal-format dict, in file order.

    A structural fault (not a dict, a missing list) ends the scan since nothing after it can be
    checked. Empty images are reported as warnings ("empty_image").
    """
    path = str(path)

    def problem(kind: str, message: str) -> Problem:
        return Problem(kind, path, message)

    broken = structure_problem(ds)
    if broken:
        yield problem("schema", broken)
        return

    images: dict[int, dict] = {}
    file_names: set[str] = set()
    for i, img in enumerate(ds["images"]):
        if not isinstance(img, dict):
            yield problem("schema", f"images[{i}] must be an object")
            continue
        img_id = img.get("id")
        where = f"image {_image_label(img, img_id)}"
        if not _is_int(img_id):
            yield problem(
                "schema", f"images[{i}] ({where}): 'id' must be an integer, got {img_id!r}"
            )
            continue
        if img_id in images:
            yield problem("duplicate_id", f"image id {img_id} ({where}) appears more than once")
            continue
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            yield problem("schema", f"image id {img_id}: 'file_name' must be a non-empty string")
            continue
        if name in file_names:
            yield problem("duplicate_id", f"image id {img_id}: file_name {name!r} listed twice")
            continue
        w, h = img.get("width"), img.get("height")
        if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
            yield problem(
                "schema",
                f"image id {img_id} ({name}): width and height must be positive integers, "
                f"got {w!r} x {h!r}",
            )
            continue
        images[img_id] = img
        file_names.add(name)

    categories: set[int] = set()
    cat_names: set[str] = set()
    for i, cat in enumerate(ds["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            yield problem("schema", f"categories[{i}] must be an object with an integer 'id'")
            continue
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            yield problem("schema", f"category id {cat['id']}: 'name' must be a non-empty string")
            continue
        if cat["id"] in categories or name in cat_names:
            yield problem("duplicate_id", f"category id {cat['id']} ({name}) appears twice")
            continue
        categories.add(cat["id"])
        cat_names.add(name)

    ann_ids: set[int] = set()
    annotated: set[int] = set()
    tol = BOX_TOLERANCE
    for i, ann in enumerate(ds["annotations"]):
        if not isinstance(ann, dict):
            yield problem("schema", f"annotations[{i}] must be an object")
            continue
        ann_id = ann.get("id")
        if not _is_int(ann_id):
            yield problem("schema", f"annotations[{i}]: 'id' must be an integer, got {ann_id!r}")
            continue
        image_id = ann.get("image_id")
        img = images.get(image_id) if _is_int(image_id) else None
        where = f"annotation id {ann_id} (image {_image_label(img, image_id)})"
        if ann_id in ann_ids:
            yield problem("duplicate_id", f"{where}: annotation id appears more than once")
            continue
        ann_ids.add(ann_id)
        if img is None:
            yield problem("unknown_image", f"{where}: image_id {image_id!r} is not in 'images'")
            continue
        annotated.add(image_id)
        if ann.get("category_id") not in categories or not _is_int(ann.get("category_id")):
            yield problem(
                "unknown_category",
                f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'",
            )
        bad_flag = next(
            (k for k in FLAG_KEYS if k in ann and not (_is_int(ann[k]) and ann[k] in (0, 1))),
            None,
        )
        if bad_flag is not None:
            yield problem("schema", f"{where}: '{bad_flag}' must be 0 or 1, got {ann[bad_flag]!r}")
        if "area" in ann and not (
            _is_number(ann["area"]) and math.isfinite(ann["area"]) and ann["area"] >= 0
        ):
            yield problem("schema", f"{where}: 'area' must be a finite number >= 0")
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(_is_number(v) for v in bbox)
            and all(math.isfinite(v) for v in bbox)
        ):
            yield problem(
                "bad_box", f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"
            )
            continue
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            what = "zero-area" if (w == 0 or h == 0) else "inverted (negative width or height)"
            yield problem("zero_area_box", f"{where}: bbox {bbox} is {what}")
            continue
        W, H = img["width"], img["height"]
        if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
            yield problem(
                "box_outside_image",
                f"{where}: bbox {bbox} (xyxy [{x:g}, {y:g}, {x + w:g}, {y + h:g}]) is not inside "
                f"the {W}x{H} image",
            )
    for img_id, img in images.items():
        if img_id not in annotated:
            yield problem(
                "empty_image", f"image id {img_id} ({img['file_name']}) has no annotations"
            )


def validate_annotations(ds: Any, path: str | Path = "<annotations>") -> dict:
    """Raise DataError(path, ...) for the first fatal fault; return `ds` unchanged otherwise."""
    for p in iter_problems(ds, path):
        if p.fatal:
            raise DataError(p.path, p.message)
    return ds


def load_annotations(path: str | Path, resolve_image_dir: bool = True) -> dict:
    """Read and validate an internal-format JSON.

    With `resolve_image_dir` (the default) `info.image_dir` is made absolute, so the dict can be
    used without remembering where it came from. Without it (scoring, baselines: no pixel is
    read) a standard COCO file is accepted as it is: an `info` without `image_dir`, or no `info`
    at all, as in files other tools write.
    """
    path = Path(path)
    raw = read_json(path)
    if not resolve_image_dir and isinstance(raw, dict):
        info = raw.setdefault("info", {})
        if isinstance(info, dict) and "image_dir" not in info:
            raw["info"] = {**info, "image_dir": "."}  # never read: scoring needs no images
    ds = validate_annotations(raw, path)
    if resolve_image_dir:
        ds["info"]["image_dir"] = str(image_dir(ds, path))
    return ds


def save_annotations(ds: dict, path: str | Path, relative_image_dir: bool = True) -> None:
    """Validate, then write atomically; an absolute image_dir becomes relative to the JSON."""
    path = Path(path)
    validate_annotations(ds, path)
    out = dict(ds)
    info = dict(ds["info"])
    img_dir = info["image_dir"]
    if relative_image_dir and os.path.isabs(img_dir):
        info["image_dir"] = os.path.relpath(img_dir, path.parent.resolve())
    out["info"] = info
    write_json(path, out)


def merge_annotations(parts: list[dict], source: str = "merged") -> dict:
    """Concatenate splits (e.g. VOC07 trainval + VOC12 trainval) into one dict.

    Image and annotation ids are renumbered 1..N; `file_name`s become paths relative to the
    common folder of all parts' (absolute) image dirs, so images stay unambiguous. All parts must
    have the same categories. An image present in two parts is a duplicate (DataError on save/load).
    """
    if not parts:
        raise ValueError("merge_annotations needs at least one dataset")
    cats = parts[0]["categories"]
    for p in parts[1:]:
        if p["categories"] != cats:
            raise DataError(
                p["info"].get("image_dir", "<annotations>"),
                "cannot merge splits with different categories: "
                f"{[c['name'] for c in p['categories']]} vs {[c['name'] for c in cats]}",
            )
    dirs = [os.path.abspath(p["info"]["image_dir"]) for p in parts]
    root = os.path.commonpath(dirs)
    images: list[dict] = []
    annotations: list[dict] = []
    info: dict[str, Any] = {"image_dir": root, "source": source, "parts": []}
    for part, d in zip(parts, dirs, strict=True):
        id_map: dict[int, int] = {}
        for img in part["images"]:
            new = dict(img, id=len(images) + 1)
            new["file_name"] = os.path.relpath(os.path.join(d, img["file_name"]), root)
            id_map[img["id"]] = new["id"]
            images.append(new)
        for ann in part["annotations"]:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=id_map[ann["image_id"]]))
        info["parts"].append({k: v for k, v in part["info"].items() if k != "image_dir"})
    return {
        "info": info,
        "images": images,
        "categories": [dict(c) for c in cats],
        "annotations": annotations,
    }


def image_dir(ds: dict, json_path: str | Path | None = None) -> Path:
    """The image folder: absolute as is, else relative to the JSON's folder (or the cwd)."""
    d = Path(ds["info"]["image_dir"])
    if d.is_absolute():
        return d
    base = Path(json_path).resolve().parent if json_path is not None else Path.cwd()
    return Path(os.path.normpath(base / d))


def label_maps(ds: dict) -> tuple[dict[int, int], dict[int, int]]:
    """(category id -> model label, model label -> category id); label 0 is background."""
    ids = sorted(c["id"] for c in ds["categories"])
    cat_to_label = {cid: i + 1 for i, cid in enumerate(ids)}
    return cat_to_label, {v: k for k, v in cat_to_label.items()}


def class_names(ds: dict) -> list[str]:
    """Category names in model-label order (label i+1 -> names[i]); background not included."""
    return [c["name"] for c in sorted(ds["categories"], key=lambda c: c["id"])]


class ImageBoxes(NamedTuple):
    """Ground truth of one image as numpy arrays (boxes are xyxy pixels)."""

    boxes: np.ndarray  # float32 [N, 4]
    labels: np.ndarray  # int64 [N], contiguous 1..C
    difficult: np.ndarray  # bool [N]
    iscrowd: np.ndarray  # bool [N]


class BoxTable:
    """All annotations grouped per image in flat arrays plus offsets.

    Built in one pass over the annotation list (fast for COCO's 860k boxes) and stored without
    per-image Python objects, so DataLoader workers do not copy it page by page through reference
    counting. Row order within an image follows the annotation list.
    """

    def __init__(self, ds: dict, skip_crowd: bool = False):
        cat_to_label, _ = label_maps(ds)
        index = {img["id"]: i for i, img in enumerate(ds["images"])}
        anns = [a for a in ds["annotations"] if not (skip_crowd and a.get("iscrowd", 0))]
        n = len(anns)
        img_idx = np.fromiter((index[a["image_id"]] for a in anns), dtype=np.int64, count=n)
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
        labels = np.fromiter((cat_to_label[a["category_id"]] for a in anns), np.int64, count=n)
        difficult = np.fromiter((a.get("difficult", 0) for a in anns), np.bool_, count=n)
        crowd = np.fromiter((a.get("iscrowd", 0) for a in anns), np.bool_, count=n)
        order = np.argsort(img_idx, kind="stable")
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        self.boxes = xyxy[order].astype(np.float32)
        self.labels = labels[order]
        self.difficult = difficult[order]
        self.iscrowd = crowd[order]
        counts = np.bincount(img_idx, minlength=len(ds["images"]))
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> ImageBoxes:
        """Ground truth of the i-th image of `ds["images"]` (position, not image id)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return ImageBoxes(self.boxes[a:b], self.labels[a:b], self.difficult[a:b], self.iscrowd[a:b])


def boxes_by_image(ds: dict, skip_crowd: bool = False) -> dict[int, ImageBoxes]:
    """Ground truth keyed by image id (convenience for evaluation code)."""
    table = BoxTable(ds, skip_crowd=skip_crowd)
    return {img["id"]: table[i] for i, img in enumerate(ds["images"])}


def check_trainable(ds: dict, path: str | Path) -> None:
    """DataError unless `ds` has a category and a box to learn from: a split without either
    would "train" with a zero loss (or build a model of no classes) and report a finished run."""
    if not ds["categories"]:
        raise DataError(path, "the category list is empty: no class to train a detector of")
    if not any(not a.get("iscrowd") for a in ds["annotations"]):
        raise DataError(
            path,
            f"no boxes to train on ({len(ds['images'])} images, no non-crowd "
            "annotation): is this the right split?",
        )


def data_record(path: str | Path) -> dict[str, str]:
    """What a run trains on, to record with it: the annotation file's SHA-256 and that of its
    image list (file names and sizes), and one digest of both. A resume compares it
    (`same_data`), so a run whose split was replaced does not continue on other data."""
    import hashlib
    import json

    raw = Path(path).read_bytes()
    try:
        images = json.loads(raw).get("images") or []
        listing = "\n".join(
            f"{i.get('file_name')}\t{i.get('width')}x{i.get('height')}"
            for i in images
            if isinstance(i, dict)
        )
    except (ValueError, AttributeError):
        listing = ""  # not loadable: load_annotations names the fault
    ann = hashlib.sha256(raw).hexdigest()
    img = hashlib.sha256(listing.encode()).hexdigest()
    return {
        "file": str(path),
        "annotations_sha256": ann,
        "images_sha256": img,
        "sha256": hashlib.sha256(f"{ann}\n{img}".encode()).hexdigest(),
    }


def same_data(recorded: Any, current: dict[str, str] | None) -> bool:
    """Whether a recorded `data_record` is `current`; a run of an older version recorded none,
    and is taken as the same (nothing to compare)."""
    if not isinstance(recorded, dict) or current is None:
        return True
    return recorded.get("sha256") == current["sha256"]
