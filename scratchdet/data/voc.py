"""PASCAL VOC reader: VOCdevkit XML -> the internal annotation format.

Coordinates: VOC corners are 1-based and inclusive, so `(xmin, ymin, xmax, ymax)` becomes
xyxy `[xmin-1, ymin-1, xmax, ymax]` and bbox `[xmin-1, ymin-1, xmax-xmin+1, ymax-ymin+1]`; the area
equals the devkit's `(xmax-xmin+1)*(ymax-ymin+1)`.

Box rule (after that conversion, in pixels of the image):
  - a box with width or height <= 0 is an error (zero-area, or inverted corners);
  - a box sticking out of the image by at most `CLIP_TOLERANCE` pixels on any side is clipped to
    the image (annotation tools that write 0 or width+1 at the border do this); each clip is
    recorded as a "clipped_box" warning and counted in `info["clipped_boxes"]`;
  - a box sticking out by more, or with nothing left inside after clipping, is an error.

Classes: a VOC tree may carry `classes.txt` (one name per line, in category-id order), as the
synthetic tree does; without it the 20 devkit classes apply. An object of any other class is an
error.

`difficult` and `truncated` are kept (a missing tag means 0). The image size comes from `<size>`;
when that is missing or 0 it is read from the image header with PIL (no full decode). A `<size>`
that disagrees with the JPEG is not caught here (that would open every image): `data check`
reports it, and `DetectionDataset` refuses such an image when it loads it.

Every reader takes an optional `ProblemLog`: the default raises `DataError` at the first fault
(naming the file and the item); a collecting log (`ProblemLog(strict=False)`) records the fault,
skips the bad object or image and carries on, which is what `scratchdet data check` uses.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from scratchdet.data.annotations import (
    CLIP_TOLERANCE,
    ProblemLog,
    merge_annotations,
    validate_annotations,
)
from scratchdet.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VOC_CLASSES",
    "annotation_classes",
    "class_conflict",
    "default_classes",
    "parse_classes",
    "read_split_ids",
    "read_voc",
    "read_voc_files",
    "read_voc_many",
]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


class _Builder:
    """Accumulates images and annotations with sequential ids."""

    def __init__(self, classes: Sequence[str], log: ProblemLog):
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"classes must be a non-empty list of unique names, got {classes!r}")
        self.classes = list(classes)
        self.cat_ids = {name: i + 1 for i, name in enumerate(classes)}
        self.log = log
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.clipped = 0

    def dataset(self, image_dir: str | Path, info: dict) -> dict:
        ds = {
            "info": {
                "image_dir": str(Path(image_dir).resolve()),
                "source": "voc",
                **info,
                "clipped_boxes": self.clipped,
            },
            "images": self.images,
            "categories": [{"id": i, "name": n} for n, i in self.cat_ids.items()],
            "annotations": self.annotations,
        }
        if self.log.strict:
            validate_annotations(ds, image_dir)
        return ds

    def add_image(self, xml_path: Path, root: ET.Element, image_path: Path, file_name: str) -> None:
        """Convert one parsed XML; in collect mode a faulty image or object is skipped."""
        log = self.log
        size = _xml_size(root)
        if size is None:
            try:
                with Image.open(image_path) as im:  # reads the header only
                    size = im.size
            except (OSError, ValueError) as exc:
                log.add(
                    "unreadable_image",
                    image_path,
                    f"cannot read the image size (the XML has no <size>): {exc}",
                )
                return
        width, height = size
        image_id = len(self.images) + 1
        objects = []
        for k, obj in enumerate(root.findall("object"), start=1):
            ann = self._object(xml_path, obj, k, width, height)
            if ann is not None:
                objects.append(ann)
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": width, "height": height}
        )
        for ann in objects:
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, **ann})

    def _object(
        self, xml_path: Path, obj: ET.Element, k: int, width: int, height: int
    ) -> dict | None:
        log = self.log
        name = (obj.findtext("name") or "").strip()
        where = f"object #{k}"
        if not name:
            log.add("schema", xml_path, f"{where} has no <name>")
            return None
        where = f"object #{k} ({name})"
        if name not in self.cat_ids:
            log.add(
                "unknown_category",
                xml_path,
                f"{where}: unknown class {name!r}; known classes: {', '.join(self.classes)}",
            )
            return None
        flags = {}
        for tag in ("difficult", "truncated"):
            text = (obj.findtext(tag) or "0").strip()
            if text not in ("0", "1"):
                log.add("schema", xml_path, f"{where}: <{tag}> must be 0 or 1, got {text!r}")
                return None
            flags[tag] = int(text)
        box = obj.find("bndbox")
        if box is None:
            log.add("bad_box", xml_path, f"{where} has no <bndbox>")
            return None
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = box.findtext(tag)
            if text is None or not text.strip():
                log.add("bad_box", xml_path, f"{where}: <bndbox> lacks <{tag}>")
                return None
            try:
                corners.append(float(text))
            except ValueError:
                log.add("bad_box", xml_path, f"{where}: <{tag}> is not a number: {text.strip()!r}")
                return None
        xmin, ymin, xmax, ymax = corners
        shown = f"(xmin, ymin, xmax, ymax) = ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
        x0, y0, x1, y1 = xmin - 1, ymin - 1, xmax, ymax
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            what = "zero area" if (x1 - x0 == 0 or y1 - y0 == 0) else "inverted corners"
            log.add("zero_area_box", xml_path, f"{where}: box {shown} has {what}")
            return None
        overshoot = max(-x0, -y0, x1 - width, y1 - height)
        if overshoot > 0:
            cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
            cx1, cy1 = min(x1, float(width)), min(y1, float(height))
            if overshoot > CLIP_TOLERANCE or cx1 <= cx0 or cy1 <= cy0:
                log.add(
                    "box_outside_image",
                    xml_path,
                    f"{where}: box {shown} lies outside the {width}x{height} image by "
                    f"{overshoot:g} px (at most {CLIP_TOLERANCE:g} px is clipped)",
                )
                return None
            x0, y0, x1, y1 = cx0, cy0, cx1, cy1
            self.clipped += 1
            log.add(
                "clipped_box",
                xml_path,
                f"{where}: box {shown} clipped to the {width}x{height} image",
            )
        w, h = x1 - x0, y1 - y0
        return {
            "category_id": self.cat_ids[name],
            "bbox": [x0, y0, w, h],
            "area": w * h,
            "iscrowd": 0,
            **flags,
        }


def _xml_size(root: ET.Element) -> tuple[int, int] | None:
    """(width, height) from <size>, or None when missing, unparsable or 0."""
    try:
        w = int(float(root.findtext("size/width") or 0))
        h = int(float(root.findtext("size/height") or 0))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def _parse_xml(xml_path: Path, log: ProblemLog) -> ET.Element | None:
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        log.add("missing_file", xml_path, "annotation XML not found")
        return None
    except ET.ParseError as exc:
        log.add("schema", xml_path, f"malformed XML: {exc}")
        return None
    except OSError as exc:
        log.add("schema", xml_path, f"cannot read: {exc}")
        return None
    if root.tag != "annotation":
        log.add("schema", xml_path, f"root element is <{root.tag}>, expected <annotation>")
        return None
    return root


def read_split_ids(voc_dir: str | Path, split: str) -> list[str]:
    """Image ids listed in ImageSets/Main/{split}.txt (first column, blank lines ignored)."""
    path = Path(voc_dir) / "ImageSets" / "Main" / f"{split}.txt"
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is no id
    except FileNotFoundError:
        available = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem)
        raise DataError(
            path, f"split list not found (splits present: {available or 'none'})"
        ) from None
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise DataError(path, "split list is empty")
    return ids


def default_classes(voc_dir: str | Path) -> tuple[str, ...]:
    """The tree's `classes.txt` if it has one, else `VOC_CLASSES`."""
    path = Path(voc_dir) / "classes.txt"
    if not path.is_file():
        return VOC_CLASSES
    names = tuple(
        line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()
    )
    if not names or len(set(names)) != len(names):
        raise DataError(path, "must list one or more distinct class names, one per line")
    return names


def read_voc(
    voc_dir: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    log: ProblemLog | None = None,
) -> dict:
    """Read `voc_dir` (e.g. VOCdevkit/VOC2007) split `split` (trainval, test, ...).

    Images are `JPEGImages/{id}.jpg`; ids are numbered 1..N in split-list order and categories
    1..C in `classes` order (default: `default_classes(voc_dir)`). `info.image_dir` is the
    absolute JPEGImages path (saved relative).
    """
    log = log if log is not None else ProblemLog()
    voc_dir = Path(voc_dir)
    if not voc_dir.is_dir():
        raise DataError(voc_dir, "VOC folder not found (expected e.g. VOCdevkit/VOC2007)")
    list_path = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
    ids = read_split_ids(voc_dir, split)
    jpeg_dir = voc_dir / "JPEGImages"
    if not jpeg_dir.is_dir():
        raise DataError(jpeg_dir, "image folder not found")
    present = set(os.listdir(jpeg_dir))
    builder = _Builder(classes if classes is not None else default_classes(voc_dir), log)
    seen: set[str] = set()
    for stem in ids:
        if stem in seen:
            log.add("duplicate_id", list_path, f"image id {stem!r} is listed more than once")
            continue
        seen.add(stem)
        xml_path = voc_dir / "Annotations" / f"{stem}.xml"
        if not xml_path.is_file():
            log.add("missing_file", xml_path, f"image id {stem!r} from {list_path} has no XML")
            continue
        # 000005.jpg as in the devkit, else the same stem with another image extension in any
        # case (000005.JPG, as cameras and some exports name them)
        file_name = next(
            (stem + ext for ext in IMAGE_EXTENSIONS if stem + ext in present), None
        ) or next(
            (
                n
                for n in sorted(present)
                if Path(n).stem == stem and Path(n).suffix.lower() in IMAGE_EXTENSIONS
            ),
            None,
        )
        if file_name is None:
            log.add(
                "missing_image",
                jpeg_dir / f"{stem}.jpg",
                f"image of {xml_path.name} not found (nor {stem} with another image "
                f"extension: {', '.join(sorted({e.lower() for e in IMAGE_EXTENSIONS}))}, any case)",
            )
            continue
        root = _parse_xml(xml_path, log)
        if root is not None:
            builder.add_image(xml_path, root, jpeg_dir / file_name, file_name)
    return builder.dataset(jpeg_dir, {"splits": [f"{voc_dir.name}/{split}"]})


def read_voc_many(
    parts: Iterable[tuple[str | Path, str]],
    classes: Sequence[str] | None = None,
    log: ProblemLog | None = None,
) -> dict:
    """Merge several (voc_dir, split) pairs, e.g. VOC2007 trainval + VOC2012 trainval.

    file_names become paths relative to the common folder (e.g. "VOC2007/JPEGImages/000005.jpg").
    """
    dsets = [read_voc(d, s, classes, log) for d, s in parts]
    merged = merge_annotations(dsets, source="voc")
    merged["info"] = {
        "image_dir": merged["info"]["image_dir"],
        "source": "voc",
        "splits": [s for d in dsets for s in d["info"]["splits"]],
        "clipped_boxes": sum(d["info"]["clipped_boxes"] for d in dsets),
    }
    return merged


def _find_image(image_dir: Path, root: ET.Element, xml_path: Path) -> Path | None:
    """The XML's <filename> if it exists in image_dir, else the XML's stem with an image suffix."""
    name = (root.findtext("filename") or "").strip()
    candidates = [image_dir / Path(name).name] if name else []
    candidates += [image_dir / (xml_path.stem + ext) for ext in IMAGE_EXTENSIONS]
    return next((c for c in candidates if c.is_file()), None)


def read_voc_files(
    xml_paths: Iterable[str | Path],
    image_dir: str | Path,
    classes: Sequence[str] | None = None,
    log: ProblemLog | None = None,
) -> dict:
    """Read VOC XMLs from a flat layout (e.g. annots/*.xml next to images/*.jpg).

    Images are found by the XML's <filename>, else by the XML's stem. With `classes=None` the class
    list is the sorted set of names found. Images are numbered in the order of `xml_paths`.
    """
    log = log if log is not None else ProblemLog()
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(image_dir, "image folder not found")
    parsed = []
    for p in map(Path, xml_paths):
        root = _parse_xml(p, log)
        if root is not None:
            parsed.append((p, root))
    if not parsed and log.strict:
        raise DataError(image_dir, "no annotation XML files given")
    if classes is None:
        classes = sorted(
            {(o.findtext("name") or "").strip() for _, r in parsed for o in r.findall("object")}
            - {""}
        )
        if not classes:
            raise DataError(image_dir, "no object names found in the XML files; pass classes=")
    builder = _Builder(classes, log)
    for xml_path, root in parsed:
        image_path = _find_image(image_dir, root, xml_path)
        if image_path is None:
            log.add(
                "missing_image",
                xml_path,
                f"no image for this XML in {image_dir} (tried <filename> and "
                f"{xml_path.stem}.jpg/.jpeg/.png)",
            )
            continue
        builder.add_image(xml_path, root, image_path, image_path.name)
    return builder.dataset(image_dir, {"layout": "flat"})


# --- one class numbering for every split -----------------------------------------------------
# A flat folder's classes default to the sorted names found in it, so a test folder that lacks a
# class, or has one more, numbers them differently from its training folder; the model's labels
# then mean other classes, which nothing noticed before `detect`. These helpers let the command
# take the training set's classes (`--classes`, `--like`) and refuse a mismatch at conversion.


def annotation_classes(path: str | Path) -> tuple[str, ...]:
    """The class names of an internal-format (or COCO) annotation file, in category-id order:
    the order that fixes the model's labels."""
    from scratchdet.io import read_json

    raw = read_json(path)
    cats = raw.get("categories") if isinstance(raw, dict) else None
    if (
        not isinstance(cats, list)
        or not cats
        or not all(isinstance(c, dict) and "id" in c and "name" in c for c in cats)
    ):
        raise DataError(
            path,
            "not an annotation file with categories (expected the JSON that "
            "`scratchdet data voc|coco` writes)",
        )
    return tuple(str(c["name"]) for c in sorted(cats, key=lambda c: c["id"]))


def parse_classes(spec: str) -> tuple[str, ...]:
    """`--classes`: a text file (one name a line), an annotation JSON (its categories), or a
    comma-separated list of names."""
    path = Path(spec)
    if path.is_file():
        if path.suffix == ".json":
            return annotation_classes(path)
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    else:
        names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if not names or len(set(names)) != len(names):
        raise DataError(
            spec,
            "--classes must name one or more distinct classes (a file with one "
            "name a line, or a comma-separated list)",
        )
    return names


def class_conflict(out: str | Path, classes: Sequence[str]) -> tuple[Path, tuple[str, ...]] | None:
    """The first annotation file beside `out` (same folder, *.json) whose classes differ from
    `classes`, with its classes; None when every sibling agrees (or there is none)."""
    out = Path(out)
    if not out.parent.is_dir():
        return None
    for sibling in sorted(out.parent.glob("*.json")):
        if sibling.resolve() == out.resolve() or sibling.name.endswith(".meta.json"):
            continue
        try:
            theirs = annotation_classes(sibling)
        except (DataError, OSError, ValueError):
            continue  # not an annotation file (detections, metrics, ...)
        if tuple(classes) != theirs:
            return sibling, theirs
    return None
