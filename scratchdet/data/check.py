"""`scratchdet data check`: scan a whole dataset and count every kind of fault instead of stopping
at the first, so a user fixes a dataset in one pass.

Accepts an internal-format JSON, an in-memory dict, or a VOC folder (read in collect mode, so
faults in the XML are counted too). Fault kinds are those of `annotations.FATAL_KINDS` (the
dataset cannot be used as is) and `annotations.WARNING_KINDS` (reported, harmless: empty images,
boxes the reader clipped or dropped).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from scratchdet.data.annotations import (
    FATAL_KINDS,
    WARNING_KINDS,
    Problem,
    ProblemLog,
    image_dir,
    iter_problems,
    structure_problem,
)
from scratchdet.data.dataset import read_image
from scratchdet.data.voc import read_voc
from scratchdet.errors import DataError
from scratchdet.io import read_json

__all__ = ["EXIF_ORIENTATION", "check_dataset", "format_report", "verify_images"]

EXIF_ORIENTATION = 0x0112
"""The EXIF tag that asks viewers to rotate or mirror an image (1 = as stored)."""


def _image_problems(path: Path, width: int, height: int, decode: bool) -> list[Problem]:
    """Problems of one image file: missing, unreadable, truncated, or a size unlike the JSON's."""
    p = str(path)
    if not path.is_file():
        return [Problem("missing_image", p, "image file not found")]
    try:
        if decode:
            h, w = read_image(path).shape[1:]
        else:
            with Image.open(path) as im:  # header only
                w, h = im.size
    except DataError as exc:
        kind = "truncated_image" if "truncated" in exc.problem else "unreadable_image"
        return [Problem(kind, p, exc.problem)]
    except (OSError, ValueError) as exc:
        return [Problem("unreadable_image", p, f"cannot read image header: {exc}")]
    if (w, h) != (width, height):
        return [
            Problem(
                "size_mismatch", p, f"image is {w}x{h} but the annotations say {width}x{height}"
            )
        ]
    orientation = _exif_orientation(path)
    if orientation not in (1, None):
        return [
            Problem(
                "exif_orientation",
                p,
                f"EXIF orientation {orientation} is not applied: "
                "pixels and boxes are used as stored (VOC boxes are in stored pixels)",
            )
        ]
    return []


def _exif_orientation(path: Path) -> int | None:
    """The image's EXIF orientation tag (None when it has none or it cannot be read)."""
    try:
        with Image.open(path) as im:
            return im.getexif().get(EXIF_ORIENTATION)
    except (OSError, ValueError, SyntaxError):
        return None


def _summarise(
    source: str, ds: dict | None, problems: Iterable[Problem], max_examples: int
) -> dict[str, Any]:
    faults = {
        k: {"count": 0, "fatal": k in FATAL_KINDS, "examples": []}
        for k in (*FATAL_KINDS, *WARNING_KINDS)
    }
    for p in problems:
        entry = faults.setdefault(p.kind, {"count": 0, "fatal": p.fatal, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < max_examples:
            entry["examples"].append(f"{p.path}: {p.message}")
    n_fatal = sum(f["count"] for f in faults.values() if f["fatal"])
    return {
        "source": source,
        "images": len(ds["images"]) if ds else 0,
        "annotations": len(ds["annotations"]) if ds else 0,
        "categories": [c.get("name") for c in ds["categories"]] if ds else [],
        "ok": n_fatal == 0,
        "fatal_faults": n_fatal,
        "faults": faults,
    }


def check_dataset(
    source: dict | str | Path,
    split: str = "trainval",
    *,
    decode: bool = True,
    max_examples: int = 5,
    workers: int = 0,
) -> dict[str, Any]:
    """Scan `source` and return a report: counts and first examples per fault kind.

    `source`: an internal-format dict or JSON path, or a VOC folder (with ImageSets/Main/) whose
    `split` is read. `decode=False` reads image headers only (fast, but misses truncated files).
    `workers` threads decode images (0 = one per CPU).
    """
    problems: list[Problem] = []
    json_path: Path | None = None
    if isinstance(source, dict):
        label, ds = "<annotations>", source
    elif Path(source).is_dir():
        label = f"{source} ({split})"
        log = ProblemLog(strict=False)
        try:
            ds = read_voc(source, split, log=log)
        except DataError as exc:  # no split list, no JPEGImages/: nothing further to scan
            return _summarise(label, None, [Problem("schema", exc.path, exc.problem)], max_examples)
        problems += log.problems
    else:
        label, json_path = str(source), Path(source)
        try:
            ds = read_json(json_path)
        except DataError as exc:
            return _summarise(label, None, [Problem("schema", exc.path, exc.problem)], max_examples)

    problems += iter_problems(ds, str(json_path) if json_path else label)
    if structure_problem(ds):
        return _summarise(label, None, problems, max_examples)

    root = image_dir(ds, json_path)
    valid = [
        img
        for img in ds["images"]
        if isinstance(img, dict)
        and isinstance(img.get("file_name"), str)
        and isinstance(img.get("width"), int)
        and isinstance(img.get("height"), int)
    ]
    jobs = [(root / img["file_name"], img["width"], img["height"], decode) for img in valid]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for found in pool.map(lambda job: _image_problems(*job), jobs):
            problems += found
    return _summarise(label, ds, problems, max_examples)


def verify_images(
    ds: dict, json_path: str | Path | None = None, workers: int = 0, drop: bool = False
) -> list[str]:
    """Decode every image of `ds` in full; DataError naming the first one that fails.

    What `scratchdet data voc` runs before it writes a split: a truncated, empty or unreadable
    JPEG (or one whose size disagrees with its XML) stops the conversion instead of the first
    training batch that reads it. With `drop`, such images (and their boxes) are removed from
    `ds` instead, and the returned list says which and why. `workers` threads decode (0 = one per
    CPU).
    """
    root = image_dir(ds, json_path)
    jobs = [(root / img["file_name"], img["width"], img["height"], True) for img in ds["images"]]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        per_image = list(pool.map(lambda job: _image_problems(*job), jobs))
    found = [p for problems in per_image for p in problems if p.fatal]
    if found and not drop:
        more = (
            f" ({len(found) - 1} more image(s) fail too: `scratchdet data check` lists them)"
            if len(found) > 1
            else ""
        )
        raise DataError(found[0].path, found[0].message + more)
    bad = {
        img["id"]
        for img, problems in zip(ds["images"], per_image)
        if any(p.fatal for p in problems)
    }
    ds["images"] = [img for img in ds["images"] if img["id"] not in bad]
    ds["annotations"] = [a for a in ds["annotations"] if a["image_id"] not in bad]
    return [f"{p.path}: {p.message}" for p in found]


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary: one line per fault kind that occurred, with its first examples."""
    lines = [
        f"dataset: {report['source']}",
        (
            f"  {report['images']} images, {report['annotations']} annotations, "
            f"{len(report['categories'])} categories"
        ),
    ]
    for kind, entry in report["faults"].items():
        if not entry["count"]:
            continue
        level = "ERROR" if entry["fatal"] else "warning"
        lines.append(f"  {level} {kind}: {entry['count']}")
        lines += [f"      {ex}" for ex in entry["examples"]]
        if entry["count"] > len(entry["examples"]):
            lines.append(f"      ... and {entry['count'] - len(entry['examples'])} more")
    lines.append("OK" if report["ok"] else f"FAILED: {report['fatal_faults']} fatal fault(s)")
    return "\n".join(lines)
