"""Evaluation speed on a VOC07-test-sized case, checked against the straightforward reference.

The case (``make_case``, deterministic): 4,952 images x 20 classes, ~2.4 boxes per image (20%
difficult), 200 detections per image (990,400, ~150 MB of JSON). ``--scale`` shrinks the image
count for CI. Timed in one process, each with wall and CPU seconds (CPU time is the steadier
number on a shared machine):

* ``end_to_end``: ``scratchdet.evaluation.evaluate`` (reads both files, matches, AP);
* ``read_detections``: ``load_detections`` alone;
* ``match_and_ap``: ``voc_ap`` on data already in memory;
* ``naive``: ``json.load`` + the devkit's per-detection loop, the tests' oracle
  (``scratchdet.evaluation.reference.reference_voc_ap``).

All must agree (max per-class difference <= 1e-9) or the benchmark fails. COCO: every installed
backend (pycocotools, faster-coco-eval) on a smaller case (``--coco-images``); their 12 numbers
must be identical.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from scratchdet.benchmark.common import Record, check_positive, summary
from scratchdet.benchmark.fps import RESULTS_DIR
from scratchdet.errors import ConfigError
from scratchdet.evaluation import evaluate, load_detections, voc_ap
from scratchdet.evaluation.coco import BACKENDS, available_backends, coco_eval
from scratchdet.evaluation.reference import reference_voc_ap

__all__ = ["TOLERANCE", "make_case", "max_difference", "run_eval"]

VOC07_TEST_IMAGES, N_CLASSES, DETS_PER_IMAGE = 4952, 20, 200
TOLERANCE = 1e-9


def make_case(
    out_dir: Path,
    n_images: int = VOC07_TEST_IMAGES,
    seed: int = 0,
    dets_per_image: int = DETS_PER_IMAGE,
) -> tuple[Path, Path]:
    """Write gt.json and dets.json under ``out_dir``; the same bytes for the same arguments."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "width": 500, "height": 375}
        for i in range(n_images)
    ]
    cats = [{"id": c + 1, "name": f"class{c + 1:02d}"} for c in range(N_CLASSES)]
    n_obj = rng.integers(0, 5, n_images) + (rng.random(n_images) < 0.4)  # ~2.4 per image
    img_of = np.repeat(np.arange(1, n_images + 1), n_obj)
    n = len(img_of)
    wh = rng.uniform(10, 250, (n, 2)).round()
    xy = (rng.uniform(0, 1, (n, 2)) * (np.array([500, 375]) - wh)).round()
    cat = rng.integers(1, N_CLASSES + 1, n)
    diff = rng.random(n) < 0.2
    anns = [
        {
            "id": k + 1,
            "image_id": int(img_of[k]),
            "category_id": int(cat[k]),
            "bbox": [float(xy[k, 0]), float(xy[k, 1]), float(wh[k, 0]), float(wh[k, 1])],
            "area": float(wh[k, 0] * wh[k, 1]),
            "iscrowd": 0,
            "difficult": int(diff[k]),
            "truncated": 0,
        }
        for k in range(n)
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    gt_path = out_dir / "gt.json"
    gt = {
        "info": {"source": "synthetic", "image_dir": "JPEGImages"},
        "images": images,
        "categories": cats,
        "annotations": anns,
    }
    gt_path.write_text(json.dumps(gt))

    # Per image: three jittered copies of each box (TPs, duplicates, near misses), the rest
    # background boxes of random classes, like an SSD's top-200 output.
    total = n_images * dets_per_image
    d_img = np.repeat(np.arange(1, n_images + 1), dets_per_image)
    d_cat = rng.integers(1, N_CLASSES + 1, total)
    d_wh = rng.uniform(5, 300, (total, 2))
    d_xy = rng.uniform(0, 1, (total, 2)) * (np.array([500, 375]) - d_wh)
    d_score = rng.uniform(0.01, 0.6, total)
    first_of_image = np.searchsorted(img_of, np.arange(1, n_images + 1))
    for k in range(n):
        slot = (k - first_of_image[img_of[k] - 1]) * 3
        for j in range(3):
            i = (img_of[k] - 1) * dets_per_image + slot + j
            d_cat[i] = cat[k]
            d_xy[i] = xy[k] + rng.normal(0, 0.08 * wh[k].mean(), 2)
            d_wh[i] = np.abs(wh[k] + rng.normal(0, 0.08 * wh[k].mean(), 2))
            d_score[i] = rng.uniform(0.3, 1.0)
    dets = [
        {
            "image_id": int(i),
            "category_id": int(c),
            "bbox": [float(x), float(y), float(w), float(h)],
            "score": float(s),
        }
        for i, c, (x, y), (w, h), s in zip(d_img, d_cat, d_xy, d_wh, d_score)
    ]
    dets_path = out_dir / "dets.json"
    with open(dets_path, "w") as fh:
        json.dump(dets, fh)
    return gt_path, dets_path


def _measure(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, Any], Any]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": summary(walls), "cpu_s": summary(cpus)}, out


def max_difference(a: dict, b: dict) -> float:
    """Largest |AP difference| over classes and the mean; NaN must match NaN."""
    worst = 0.0
    pairs = [(a["map"], b["map"])] + [(v, b["per_class"][k]) for k, v in a["per_class"].items()]
    for x, y in pairs:
        if math.isnan(x) or math.isnan(y):
            if math.isnan(x) != math.isnan(y):
                return math.inf
            continue
        worst = max(worst, abs(x - y))
    return worst


def _voc_part(args: SimpleNamespace, folder: Path, record: Record) -> None:
    n_images = max(1, round(VOC07_TEST_IMAGES * args.scale))
    t0 = time.perf_counter()
    gt_path, dets_path = make_case(folder / "voc", n_images, args.seed)
    generate_s = time.perf_counter() - t0
    with open(gt_path) as fh:
        gt = json.load(fh)

    def naive() -> dict:
        with open(gt_path) as fh:
            gt_naive = json.load(fh)
        with open(dets_path) as fh:
            return reference_voc_ap(gt_naive, json.load(fh), args.metric)

    end_to_end, res_e2e = _measure(lambda: evaluate(gt_path, dets_path, args.metric), args.repeats)
    read, dets = _measure(lambda: load_detections(dets_path), args.repeats)
    match_ap, res_ap = _measure(lambda: voc_ap(gt, dets, args.metric), args.repeats)
    naive_t, res_naive = _measure(naive, args.naive_repeats)
    diffs = {
        "end_to_end": max_difference(res_e2e, res_naive),
        "match_and_ap": max_difference(res_ap, res_naive),
    }
    if max(diffs.values()) > TOLERANCE:
        raise RuntimeError(f"evaluation disagrees with the reference implementation: {diffs}")

    def ratio(k: str) -> float:
        return round(naive_t[k]["median"] / end_to_end[k]["median"], 2)

    record.add(
        {
            "case": "voc",
            "metric": args.metric,
            "images": n_images,
            "classes": N_CLASSES,
            "detections": len(dets),
            "ground_truth_boxes": len(gt["annotations"]),
            "file_mb": round(dets_path.stat().st_size / 1e6, 1),
            "parser": "msgspec",
            "generate_s": round(generate_s, 2),
            "end_to_end": end_to_end,
            "read_detections": read,
            "match_and_ap": match_ap,
            "naive": naive_t,
            "speedup_end_to_end": {"wall": ratio("wall_s"), "cpu": ratio("cpu_s")},
            "map": res_e2e["map"],
            "max_abs_diff_vs_reference": diffs,
        }
    )


def _coco_part(args: SimpleNamespace, folder: Path, record: Record) -> None:
    gt_path, dets_path = make_case(folder / "coco", args.coco_images, args.seed + 1)
    with open(gt_path) as fh:
        gt = json.load(fh)
    dets = load_detections(dets_path)
    timings, stats = {}, {}
    for backend in available_backends():
        timings[backend], res = _measure(
            lambda b=backend: coco_eval(gt, dets, backend=b), args.repeats
        )
        stats[backend] = res["stats"]
    names = list(stats)
    identical = all(
        np.array_equal(
            np.array(list(stats[n].values())),
            np.array(list(stats[names[0]].values())),
            equal_nan=True,
        )
        for n in names[1:]
    )
    if not identical:
        raise RuntimeError(f"COCO backends disagree: {stats}")
    record.add(
        {
            "case": "coco",
            "images": args.coco_images,
            "detections": len(dets),
            "backends": timings,
            "stats": stats.get(names[0]) if names else None,
            "identical_across_backends": identical,
            "versions": _versions(names),
            "backends_missing": [b for b in BACKENDS if b not in names],
        }
    )


def _versions(names: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_eval(
    *,
    scale: float = 1.0,
    metric: str = "voc07",
    repeats: int = 5,
    naive_repeats: int = 1,
    coco_images: int = 500,
    seed: int = 0,
    workdir: str | Path | None = None,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark eval``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    if not 0 < args.scale <= 1:
        raise ConfigError(None, "--scale", f"must be in (0, 1], got {args.scale}")
    check_positive("--repeats", args.repeats)
    check_positive("--naive-repeats", args.naive_repeats)
    check_positive("--coco-images", args.coco_images, 0)
    device = torch.device("cpu")
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    record = Record("eval", device, config=config, argv=args.argv, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="scratchdet-eval-bench-") as tmp:
        folder = Path(args.workdir) if args.workdir else Path(tmp)
        _voc_part(args, folder, record)
        if args.coco_images:
            _coco_part(args, folder, record)
    return record.write(args.out or RESULTS_DIR / "eval_cpu.json")
