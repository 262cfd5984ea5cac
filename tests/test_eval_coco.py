"""COCO metrics: our wrapper must give exactly what pycocotools gives when called directly."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scratchdet.errors import DataError
from scratchdet.evaluation import evaluate
from scratchdet.evaluation.coco import available_backends, coco_eval
from scratchdet.evaluation.results_io import detections_from_list

BACKENDS = available_backends()
# The order of COCOeval.stats, as summarize() prints it.
STAT_NAMES = [
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
]
# faster_coco_eval sums in another order: equal to pycocotools up to the last bit or so.
TOLERANCE = {"pycocotools": 0.0, "faster_coco_eval": 1e-12}


def random_case(seed: int) -> tuple[dict, list[dict]]:
    """Small, medium and large boxes, crowd boxes, images without boxes, unused categories."""
    rng = random.Random(seed)
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 3, 7, 8, 20)]
    images = [
        {"id": 5 + 2 * i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(12)
    ]
    anns, dets = [], []
    for img in images[:-2]:
        for _ in range(rng.randint(0, 7)):
            side = rng.choice([12, 24, 40, 70, 150, 300])
            box = [
                rng.uniform(0, 300),
                rng.uniform(0, 200),
                side * rng.uniform(0.6, 1.4),
                side * rng.uniform(0.6, 1.4),
            ]
            cat = rng.choice(cats[:4])["id"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": cat,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "difficult": 0,
                    "iscrowd": int(rng.random() < 0.08),
                }
            )
            for _ in range(rng.randint(0, 3)):
                jit = [v + rng.gauss(0, 0.15 * side) for v in box]
                jit[2], jit[3] = abs(jit[2]), abs(jit[3])
                dets.append(
                    {
                        "image_id": img["id"],
                        "category_id": cat,
                        "bbox": jit,
                        "score": round(rng.random(), 2),
                    }
                )
    for _ in range(40):
        side = rng.choice([10, 30, 90, 200])
        dets.append(
            {
                "image_id": rng.choice(images)["id"],
                "category_id": rng.choice(cats)["id"],
                "bbox": [rng.uniform(0, 400), rng.uniform(0, 300), side, side],
                "score": rng.random(),
            }
        )
    return {"images": images, "categories": cats, "annotations": anns}, dets


def pycocotools_direct(gt: dict, dets: list[dict], cat_ids: list[int] | None = None) -> list:
    """The textbook pycocotools call sequence (the reference)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def _nan_if_missing(v: float) -> float:
    return math.nan if v == -1 else v


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(3))
def test_equals_pycocotools(seed: int, backend: str) -> None:
    gt, dets = random_case(seed)
    res = coco_eval(gt, dets, backend=backend)
    want = pycocotools_direct(gt, dets)
    tol = TOLERANCE[backend]
    assert list(res["stats"]) == STAT_NAMES
    got = [res["stats"][name] for name in STAT_NAMES]
    assert got == pytest.approx([_nan_if_missing(v) for v in want], abs=tol, rel=0, nan_ok=True)
    assert res["map"] == pytest.approx(want[0], abs=tol, rel=0)
    assert res["backend"] == backend
    assert 0.0 < res["map"] < 1.0
    # Per-class AP equals pycocotools restricted to that one category.
    for cat in gt["categories"]:
        one = _nan_if_missing(pycocotools_direct(gt, dets, [cat["id"]])[0])
        assert res["per_class"][cat["name"]] == pytest.approx(one, abs=tol, rel=0, nan_ok=True)
    assert math.isnan(res["per_class"]["c20"])  # no ground truth for it


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_detections_give_one(backend: str) -> None:
    gt, _ = random_case(7)
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    res = coco_eval(gt, detections_from_list(perfect), backend=backend)
    assert res["map"] == 1.0
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "ARs", "ARm", "ARl"):
        assert res["stats"][name] == 1.0, name
    assert all(v == 1.0 or math.isnan(v) for v in res["per_class"].values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_give_zero_and_input_not_mutated(backend: str) -> None:
    gt, dets = random_case(8)
    before = copy.deepcopy((gt, dets))
    assert coco_eval(gt, [], backend=backend)["map"] == 0.0
    coco_eval(gt, dets, backend=backend)
    assert (gt, dets) == before  # pycocotools writes into dicts it is given


def test_bad_input_is_named() -> None:
    gt, dets = random_case(9)
    with pytest.raises(DataError, match=r"image_id.*999"):
        coco_eval(
            gt, [*dets, {"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]
        )
    gt["annotations"][0]["id"] = 0  # pycocotools' "unmatched" marker
    with pytest.raises(DataError, match=r"gt.json: annotation 0: 'id'"):
        coco_eval(gt, dets, gt_source="gt.json")


def test_evaluate_coco_end_to_end(tmp_path) -> None:
    gt, dets = random_case(10)
    gt = {"info": {"image_dir": "."}} | gt  # the internal format the CLI reads
    for image in gt["images"]:  # random boxes may overhang; the loader checks they fit
        image["width"] = image["height"] = 4000
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    res = evaluate(tmp_path / "gt.json", tmp_path / "dets.json", "coco")
    assert res["metric"] == "coco"
    assert res["map"] == pytest.approx(
        pycocotools_direct(gt, dets)[0], abs=TOLERANCE[res["backend"]], rel=0
    )
    assert np.isfinite(res["map"])


@pytest.mark.parametrize("info", [None, {"description": "other tool", "year": 2017}])
def test_a_standard_coco_ground_truth_is_scored_as_it_is(tmp_path, synth_splits, info):
    """Ground truth written by other tools has no `info.image_dir` (or no `info`): scoring needs
    no image, so it is accepted, with the same result as the internal file."""
    ours = json.loads(Path(synth_splits["test"]).read_text())
    standard = {
        "images": [
            {k: i[k] for k in ("id", "file_name", "width", "height")} for i in ours["images"]
        ],
        "annotations": [
            {
                **{k: a[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd")},
                "segmentation": [],
            }
            for a in ours["annotations"]
        ],
        "categories": ours["categories"],
        "licenses": [],
    }
    if info is not None:
        standard["info"] = info
    gt = tmp_path / "instances.json"
    gt.write_text(json.dumps(standard))
    dets = tmp_path / "dets.json"
    dets.write_text(
        json.dumps(
            [
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "bbox": a["bbox"],
                    "score": 1.0,
                }
                for a in ours["annotations"]
            ]
        )
    )
    assert evaluate(gt, dets, "coco")["map"] == evaluate(synth_splits["test"], dets, "coco")["map"]
    assert evaluate(gt, dets, "voc07")["map"] == pytest.approx(1.0)
