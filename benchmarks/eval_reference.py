"""Time VOC evaluation on a VOC07-test-sized synthetic case (not a test; prints numbers).

4,952 images, 20 classes, ~2.4 boxes per image (20% difficult), 200 detections per image
(990,400 in all, ~150 MB of JSON with full-precision floats), generated deterministically.
Timed:
  (a) `scratchdet.evaluation.evaluate(gt, dets, "voc07")`: read both files + AP;
  (b) `voc_ap` on data already in memory: matching + AP only;
  (c) the naive reference: `json.load` + the devkit's per-detection loop (the test oracle).
The three must agree to 1e-6 or the script fails.

    .venv/bin/python benchmarks/eval_reference.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_eval_voc import reference_voc_ap  # the oracle the tests trust

from scratchdet.evaluation import evaluate
from scratchdet.evaluation.results_io import load_detections, parser_name
from scratchdet.evaluation.voc import voc_ap

N_IMAGES, N_CLASSES, DETS_PER_IMAGE = 4952, 20, 200


def make_case(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write gt.json and dets.json; same bytes for the same seed."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "width": 500, "height": 375}
              for i in range(N_IMAGES)]
    cats = [{"id": c + 1, "name": f"class{c + 1:02d}"} for c in range(N_CLASSES)]
    n_obj = rng.integers(0, 5, N_IMAGES) + (rng.random(N_IMAGES) < 0.4)  # ~2.4 per image
    img_of = np.repeat(np.arange(1, N_IMAGES + 1), n_obj)
    n = len(img_of)
    wh = rng.uniform(10, 250, (n, 2)).round()
    xy = (rng.uniform(0, 1, (n, 2)) * (np.array([500, 375]) - wh)).round()
    cat = rng.integers(1, N_CLASSES + 1, n)
    diff = rng.random(n) < 0.2
    anns = [{"id": k + 1, "image_id": int(img_of[k]), "category_id": int(cat[k]),
             "bbox": [float(xy[k, 0]), float(xy[k, 1]), float(wh[k, 0]), float(wh[k, 1])],
             "area": float(wh[k, 0] * wh[k, 1]), "iscrowd": 0, "difficult": int(diff[k]),
             "truncated": 0} for k in range(n)]
    gt_path = out_dir / "gt.json"
    gt_path.write_text(json.dumps({"info": {"source": "synthetic"}, "images": images,
                                   "categories": cats, "annotations": anns}))

    # Per image: a few jittered copies of each box (TPs, duplicates, near misses), the rest
    # background boxes of random classes, like an SSD's top-200 output.
    total = N_IMAGES * DETS_PER_IMAGE
    d_img = np.repeat(np.arange(1, N_IMAGES + 1), DETS_PER_IMAGE)
    d_cat = rng.integers(1, N_CLASSES + 1, total)
    d_wh = rng.uniform(5, 300, (total, 2))
    d_xy = rng.uniform(0, 1, (total, 2)) * (np.array([500, 375]) - np.minimum(d_wh, 300))
    d_score = rng.uniform(0.01, 0.6, total)
    first_of_image = np.searchsorted(img_of, np.arange(1, N_IMAGES + 1))
    for k in range(n):  # overwrite the first slots of each image with copies of its boxes
        slot = (k - first_of_image[img_of[k] - 1]) * 3
        for j in range(3):
            i = (img_of[k] - 1) * DETS_PER_IMAGE + slot + j
            d_cat[i] = cat[k]
            d_xy[i] = xy[k] + rng.normal(0, 0.08 * wh[k].mean(), 2)
            d_wh[i] = np.abs(wh[k] + rng.normal(0, 0.08 * wh[k].mean(), 2))
            d_score[i] = rng.uniform(0.3, 1.0)
    dets = [{"image_id": int(i), "category_id": int(c), "bbox": [float(x), float(y), float(w),
                                                                  float(h)], "score": float(s)}
            for i, c, (x, y), (w, h), s in zip(d_img, d_cat, d_xy, d_wh, d_score)]
    dets_path = out_dir / "dets.json"
    with open(dets_path, "w") as fh:
        json.dump(dets, fh)
    return gt_path, dets_path


def naive(gt_path: Path, dets_path: Path) -> dict:
    with open(gt_path) as fh:
        gt = json.load(fh)
    with open(dets_path) as fh:
        dets = json.load(fh)
    return reference_voc_ap(gt, dets, "voc07")


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall seconds, best CPU seconds of this process, result). CPU time is the steadier
    number on a shared machine; both are reported."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="best of N for (a) and (b)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        gt_path, dets_path = make_case(Path(tmp))
        gen_s = time.perf_counter() - t0
        size_mb = dets_path.stat().st_size / 1e6

        t_a, c_a, res_a = best_of(lambda: evaluate(gt_path, dets_path, "voc07"), args.repeat)
        t_read, c_read, dets = best_of(lambda: load_detections(dets_path), args.repeat)
        with open(gt_path) as fh:
            gt = json.load(fh)
        t_b, c_b, res_b = best_of(lambda: voc_ap(gt, dets, "voc07"), args.repeat)
        t_c, c_c, res_c = best_of(lambda: naive(gt_path, dets_path), 1)

    for res in (res_a, res_b):
        diff = max(abs(res["per_class"][k] - v) for k, v in res_c["per_class"].items()
                   if not math.isnan(v))
        if diff > 1e-6 or abs(res["map"] - res_c["map"]) > 1e-6:
            raise SystemExit(f"MISMATCH with the reference: per-class diff {diff}")
    numbers = {
        "detections": len(dets), "file_mb": round(size_mb, 1), "parser": parser_name(),
        "a_evaluate_end_to_end_s": round(t_a, 3), "a_cpu_s": round(c_a, 3),
        "read_detections_s": round(t_read, 3), "read_cpu_s": round(c_read, 3),
        "b_match_and_ap_s": round(t_b, 3), "b_cpu_s": round(c_b, 3),
        "c_naive_json_load_plus_loop_s": round(t_c, 3), "c_cpu_s": round(c_c, 3),
        "speedup_end_to_end_wall": round(t_c / t_a, 1),
        "speedup_end_to_end_cpu": round(c_c / c_a, 1),
        "map_voc07": res_a["map"],
        "generate_s": round(gen_s, 1),
        "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    for k, v in numbers.items():
        print(f"{k:32s} {v}")
    if args.json:
        from scratchdet.io import write_json
        write_json(args.json, numbers)


if __name__ == "__main__":
    main()
