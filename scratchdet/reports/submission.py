"""Files for the evaluation servers, and the unlabelled test sets they are made from.

- VOC 2012 test: a tar of `results/VOC2012/Main/<comp>_det_test_<class>.txt`, one line per box,
  `<image> <score> <xmin> <ymin> <xmax> <ymax>` in VOC's 1-based inclusive pixel corners
  (comp3: trained on VOC data only; comp4: with outside data such as ImageNet or COCO).
- COCO test-dev: a zip holding `detections_test-dev2017_<alg>_results.json` (COCO results format).
- `voc_test_list` / `coco_test_list`: the images of a split without labels, in the internal
  annotation format (no annotations), so `scratchdet detect` can run over them.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

from ..data.annotations import load_annotations, save_annotations
from ..data.voc import IMAGE_EXTENSIONS, VOC_CLASSES
from ..errors import DataError
from ..io import atomic_path, read_json

__all__ = ["coco_submission", "coco_test_list", "voc_submission", "voc_test_list"]


def _checked_detections(data: str | Path, dets: str | Path) -> tuple[dict, list[dict]]:
    ds = load_annotations(data, resolve_image_dir=False)
    results = read_json(dets)
    if not isinstance(results, list):
        raise DataError(dets, "expected a list of detections (COCO results format)")
    images = {img["id"] for img in ds["images"]}
    cats = {c["id"] for c in ds["categories"]}
    for i, d in enumerate(results):
        if d.get("image_id") not in images or d.get("category_id") not in cats:
            raise DataError(dets, f"detection {i} names image {d.get('image_id')!r} / category "
                                  f"{d.get('category_id')!r}, which {data} does not have")
    return ds, results


def voc_submission(data: str | Path, dets: str | Path, out: str | Path, *, comp: str = "comp4",
                   year: str = "VOC2012") -> int:
    """Write the VOC evaluation server's tar for `dets` on split `data`; returns the box count."""
    ds, results = _checked_detections(data, dets)
    stem = {img["id"]: Path(img["file_name"]).stem for img in ds["images"]}
    lines: dict[int, list[str]] = defaultdict(list)
    for d in results:
        x, y, w, h = d["bbox"]
        lines[d["category_id"]].append(
            f"{stem[d['image_id']]} {d['score']:.6f} {x + 1:.1f} {y + 1:.1f} {x + w:.1f} {y + h:.1f}\n")
    with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for cat in ds["categories"]:  # every class gets a file, empty or not
            blob = "".join(lines[cat["id"]]).encode()
            info = tarfile.TarInfo(f"results/{year}/Main/{comp}_det_test_{cat['name']}.txt")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return len(results)


def coco_submission(data: str | Path, dets: str | Path, out: str | Path) -> int:
    """Zip `dets` as the COCO server wants it; `out` is `detections_<set>_<alg>_results.zip`."""
    out = Path(out)
    if not (out.name.startswith("detections_") and out.name.endswith("_results.zip")):
        raise DataError(out, "the COCO server wants detections_<testset>_<alg>_results.zip")
    _checked_detections(data, dets)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(dets, out.with_suffix(".json").name)
    return len(read_json(dets))


def _classes(voc_dir: Path) -> list[str]:
    listed = voc_dir / "classes.txt"  # the synthetic devkit names its own classes
    return listed.read_text().split() if listed.exists() else list(VOC_CLASSES)


def voc_test_list(voc_dir: str | Path, split: str, out: str | Path) -> int:
    """The images of `ImageSets/Main/<split>.txt` (sizes read from the files), no annotations."""
    voc_dir = Path(voc_dir)
    ids_file = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.exists():
        raise DataError(ids_file, "split list not found")
    images = []
    for n, stem in enumerate(ids_file.read_text().split(), start=1):
        path = next((p for ext in IMAGE_EXTENSIONS
                     if (p := voc_dir / "JPEGImages" / f"{stem}{ext}").exists()), None)
        if path is None:
            raise DataError(voc_dir / "JPEGImages", f"no image for id {stem!r} of {ids_file}")
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
        images.append({"id": n, "file_name": path.name, "width": width, "height": height})
    ds = {"info": {"image_dir": str((voc_dir / "JPEGImages").resolve()), "source": "voc",
                   "split": split, "labels": False},
          "images": images,
          "categories": [{"id": i, "name": c} for i, c in enumerate(_classes(voc_dir), start=1)],
          "annotations": []}
    save_annotations(ds, out)
    return len(images)


def coco_test_list(image_info: str | Path, images_dir: str | Path, out: str | Path) -> int:
    """COCO's `image_info_*.json` (images and categories, no labels) in the internal format."""
    src = read_json(image_info)
    if not isinstance(src, dict) or not isinstance(src.get("images"), list) \
            or not isinstance(src.get("categories"), list):
        raise DataError(image_info, "expected 'images' and 'categories' lists (image_info_*.json)")
    ds = {"info": {"image_dir": str(Path(images_dir).resolve()), "source": "coco",
                   "labels": False},
          "images": [{k: img[k] for k in ("id", "file_name", "width", "height")}
                     for img in src["images"]],
          "categories": [{"id": c["id"], "name": c["name"]} for c in src["categories"]],
          "annotations": []}
    save_annotations(ds, out)
    return len(ds["images"])
