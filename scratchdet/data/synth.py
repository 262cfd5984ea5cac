"""Deterministic synthetic VOCdevkit: the default dataset, so the whole pipeline runs on a CPU
without downloads and a detector can learn something in a few hundred steps.

Layout written (a real VOCdevkit tree, readable by `voc.read_voc`):

    out_root/VOCdevkit/VOCSYNTH/
        Annotations/000001.xml ...        VOC XML, 1-based inclusive integer corners
        JPEGImages/000001.jpg ...
        ImageSets/Main/{trainval,train,val,test}.txt
        classes.txt                       class names in category-id order (read by voc.py)
        generator.json                    the parameters that made the tree

Images are 200-500 px on each side with a smooth colour gradient plus pixel noise and a few grey
lines. Each class is a filled shape with its own colour (box/red, disc/blue, triangle/green,
cross/yellow, ring/magenta), sized from ~12 px to 70% of the short side, 1 to 5 per image, at
random places (``object_size`` and ``objects`` narrow both: the learning tests use a few mid-sized
objects, which a detector learns in minutes on a CPU while image-blind boxes still score ~0). About
10% of objects are
drawn at low contrast and marked `difficult`; about 15% are cut by the image border and marked
`truncated` (their box is the visible part). Boxes are the exact extent of the drawn pixels.

Every image has its own RNG stream `default_rng([seed, image_number])`, so the same seed gives
byte-identical files (for the same numpy / Pillow builds) and adding images leaves earlier ones
unchanged. The tree is built in a temporary folder and renamed into place, so a crashed run never
leaves a half-written dataset.
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scratchdet.errors import DataError

__all__ = [
    "GENERATOR_VERSION",
    "JPEG_QUALITY",
    "P_DIFFICULT",
    "P_TRUNCATED",
    "SHAPES",
    "SIZE_RANGE",
    "SYNTH_CLASSES",
    "make_synthetic_voc",
]

SYNTH_CLASSES: tuple[str, ...] = ("box", "disc", "triangle", "cross", "ring")
SHAPES = {  # name -> base colour (RGB)
    "box": (220, 40, 40),
    "disc": (40, 90, 230),
    "triangle": (40, 190, 60),
    "cross": (240, 200, 30),
    "ring": (200, 50, 200),
}
SIZE_RANGE = (200, 500)
P_DIFFICULT = 0.10
P_TRUNCATED = 0.15
JPEG_QUALITY = 90
GENERATOR_VERSION = 1


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Smooth random colour field + uniform noise + thin grey lines: texture, no class colours."""
    grid = rng.uniform(70, 180, size=(3, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR), dtype=np.int16)
    noise = rng.integers(0, 29, size=(h, w, 3), dtype=np.uint8)  # uniform +-14: cheap to draw
    img = Image.fromarray(np.clip(base + noise - 14, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 5))):
        g = int(rng.integers(60, 200))
        pts = rng.uniform(0, 1, 4) * [w, h, w, h]
        draw.line([float(v) for v in pts], fill=(g, g, g), width=int(rng.integers(1, 4)))
    return img


def _draw_shape(
    mask: ImageDraw.ImageDraw, shape: str, x0: float, y0: float, x1: float, y1: float
) -> None:
    w, h = x1 - x0, y1 - y0
    if shape == "box":
        mask.rectangle([x0, y0, x1, y1], fill=255)
    elif shape == "disc":
        mask.ellipse([x0, y0, x1, y1], fill=255)
    elif shape == "triangle":
        mask.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=255)
    elif shape == "cross":
        tx, ty = 0.17 * w, 0.17 * h
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        mask.rectangle([x0, cy - ty, x1, cy + ty], fill=255)
        mask.rectangle([cx - tx, y0, cx + tx, y1], fill=255)
    elif shape == "ring":
        mask.ellipse([x0, y0, x1, y1], fill=255)
        mask.ellipse([x0 + 0.28 * w, y0 + 0.28 * h, x1 - 0.28 * w, y1 - 0.28 * h], fill=0)
    else:
        raise ValueError(f"unknown synthetic shape {shape!r}; known: {sorted(SHAPES)}")


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place(
    rng: np.random.Generator, W: int, H: int, truncate: bool, size: tuple[float, float] | None
) -> tuple[float, ...]:
    """Corners of one object: log-uniform size (12 px to 70% of the short side, or the fractions
    of the short side in `size`), aspect 1:2..2:1; cut by a border if `truncate`."""
    lo, hi = (12.0, 0.7 * min(W, H)) if size is None else (size[0] * min(W, H), size[1] * min(W, H))
    side = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    ar = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = min(max(side * math.sqrt(ar), 8.0), 0.9 * W)
    h = min(max(side / math.sqrt(ar), 8.0), 0.9 * H)
    x0, y0 = rng.uniform(0, W - w), rng.uniform(0, H - h)
    if truncate:  # push it 20-50% past one border
        cut = rng.uniform(0.2, 0.5)
        border = int(rng.integers(4))
        if border == 0:
            x0 = -cut * w
        elif border == 1:
            x0 = W - (1 - cut) * w
        elif border == 2:
            y0 = -cut * h
        else:
            y0 = H - (1 - cut) * h
    return (x0, y0, x0 + w, y0 + h)


def _make_image(
    seed: int,
    number: int,
    classes: Sequence[str],
    size: tuple[float, float] | None = None,
    count: tuple[int, int] = (1, 5),
) -> tuple[Image.Image, list[dict]]:
    rng = np.random.default_rng([seed, number])
    W, H = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=2))
    img = _background(rng, W, H)
    objects: list[dict] = []
    placed: list[tuple[float, ...]] = []
    n_obj = int(rng.integers(count[0], count[1] + 1))
    for k in range(n_obj):
        # the first object cycles through the classes so that every class occurs even in tiny sets
        name = classes[(number % len(classes)) if k == 0 else int(rng.integers(len(classes)))]
        truncated = bool(rng.random() < P_TRUNCATED)
        difficult = bool(rng.random() < P_DIFFICULT)
        for _ in range(20):
            corners = _place(rng, W, H, truncated, size)
            if all(_iou(corners, p) < 0.1 for p in placed):
                break
        else:
            continue
        mask = Image.new("L", (W, H), 0)
        _draw_shape(ImageDraw.Draw(mask), name, *corners)
        extent = mask.getbbox()  # (left, top, right, bottom), right/bottom exclusive
        if extent is None or extent[2] - extent[0] < 2 or extent[3] - extent[1] < 2:
            continue
        placed.append(corners)
        jitter = rng.integers(-25, 26, size=3)
        colour = tuple(int(v) for v in np.clip(np.array(SHAPES[name]) + jitter, 0, 255))
        if difficult:  # low contrast: blend the shape 35% over the background
            mask = mask.point(lambda v: v * 35 // 100)
        img.paste(colour, (0, 0, W, H), mask)
        left, top, right, bottom = extent
        cut = left == 0 or top == 0 or right == W or bottom == H
        objects.append(
            {
                "name": name,
                "difficult": int(difficult),
                "truncated": int(truncated and cut),
                # 1-based inclusive corners of the drawn pixels
                "xmin": left + 1,
                "ymin": top + 1,
                "xmax": right,
                "ymax": bottom,
            }
        )
    return img, objects


def _voc_xml(folder: str, stem: str, W: int, H: int, objects: list[dict]) -> str:
    parts = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{stem}.jpg</filename>",
        "\t<source>\n\t\t<database>scratchdet synthetic</database>\n\t</source>",
        f"\t<size>\n\t\t<width>{W}</width>\n\t\t<height>{H}</height>\n\t\t<depth>3</depth>\n\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for o in objects:
        parts += [
            "\t<object>",
            f"\t\t<name>{o['name']}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{o['truncated']}</truncated>",
            f"\t\t<difficult>{o['difficult']}</difficult>",
            "\t\t<bndbox>",
            *(f"\t\t\t<{k}>{o[k]}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax")),
            "\t\t</bndbox>",
            "\t</object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def make_synthetic_voc(
    out_root: str | Path,
    n_trainval: int = 160,
    n_test: int = 80,
    *,
    seed: int = 0,
    classes: Sequence[str] = SYNTH_CLASSES,
    name: str = "VOCSYNTH",
    overwrite: bool = False,
    object_size: tuple[float, float] | None = None,
    objects: tuple[int, int] = (1, 5),
) -> Path:
    """Write the synthetic tree and return its VOC folder (`out_root/VOCdevkit/{name}`).

    trainval holds images 1..n_trainval, test the next n_test; train/val split trainval by odd /
    even image number. An existing folder is an error unless `overwrite`. `object_size`: object
    sides as (min, max) fractions of the image's short side (default: 12 px to 0.7); `objects`:
    (min, max) objects per image. Both are recorded in generator.json.
    """
    if n_trainval < 2 or n_test < 1:
        raise ValueError(f"need n_trainval >= 2 and n_test >= 1, got {n_trainval}, {n_test}")
    if object_size is not None and not 0 < object_size[0] <= object_size[1] <= 0.9:
        raise ValueError(f"object_size must be 0 < min <= max <= 0.9, got {object_size}")
    if not 1 <= objects[0] <= objects[1]:
        raise ValueError(f"objects must be 1 <= min <= max, got {objects}")
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {list(SHAPES)}, got {list(classes)}")
    devkit = Path(out_root) / "VOCdevkit"
    target = devkit / name
    if target.exists() and not overwrite:
        raise DataError(target, "already exists; delete it or pass overwrite=True")
    devkit.mkdir(parents=True, exist_ok=True)
    # One writer per tree: two at once (other seeds) would both report success while the folder
    # holds one's data. The lock file stays (removing it would let a third writer in unlocked).
    with open(devkit / f".{name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                target,
                "another process is writing this dataset now; wait for it "
                "(or write to another --out)",
            ) from None
        if target.exists() and not overwrite:  # finished by another writer meanwhile
            raise DataError(target, "already exists; delete it or pass overwrite=True")
        return _write_tree(
            devkit, target, name, n_trainval, n_test, seed, classes, object_size, objects
        )


def _write_tree(
    devkit: Path,
    target: Path,
    name: str,
    n_trainval: int,
    n_test: int,
    seed: int,
    classes: Sequence[str],
    object_size: tuple[float, float] | None,
    objects: tuple[int, int],
) -> Path:
    """Build the tree in a temporary folder beside `target`, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=devkit))
    try:
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (tmp / sub).mkdir(parents=True)
        stems = [f"{i:06d}" for i in range(1, n_trainval + n_test + 1)]
        for number, stem in enumerate(stems, start=1):
            img, drawn = _make_image(seed, number, list(classes), object_size, objects)
            img.save(tmp / "JPEGImages" / f"{stem}.jpg", "JPEG", quality=JPEG_QUALITY)
            xml = _voc_xml(name, stem, img.width, img.height, drawn)
            (tmp / "Annotations" / f"{stem}.xml").write_text(xml)
        trainval, test = stems[:n_trainval], stems[n_trainval:]
        splits = {
            "trainval": trainval,
            "test": test,
            "train": trainval[0::2],
            "val": trainval[1::2],
        }
        for split, ids in splits.items():
            (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(s + "\n" for s in ids))
        params = {
            "generator": "scratchdet.data.synth",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "n_trainval": n_trainval,
            "n_test": n_test,
            "classes": list(classes),
        }
        if object_size is not None or tuple(objects) != (1, 5):
            params |= {"object_size": object_size and list(object_size), "objects": list(objects)}
        (tmp / "classes.txt").write_text("".join(c + "\n" for c in classes))
        (tmp / "generator.json").write_text(json.dumps(params, indent=1) + "\n")
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
