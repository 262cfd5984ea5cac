"""VOC AP: the vectorised implementation against a plain devkit-style oracle, and by hand."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from scratchdet.errors import ConfigError, DataError
from scratchdet.evaluation import evaluate, results_io
from scratchdet.evaluation.reference import reference_voc_ap
from scratchdet.evaluation.results_io import DET_DTYPE, detections_from_list, load_detections
from scratchdet.evaluation.voc import ap_voc07, ap_voc12, prepare_ground_truth, voc_ap


# --------------------------------------------------------------------------- data
def random_case(seed: int) -> tuple[dict, list[dict]]:
    """Overlapping boxes on an integer grid (exact IoU ties, IoU exactly 0.5), duplicates,
    difficult and crowd boxes, images without boxes, a class with boxes but no detections
    (class3), one with detections but no boxes (class4), one whose boxes are all difficult
    (class1), tied (quantised) scores."""
    rng = random.Random(seed)
    n_img, n_cls = rng.randint(8, 25), 5
    cats = [{"id": 10 + 3 * k, "name": f"class{k}"} for k in range(n_cls)]
    images = [
        {"id": 1000 + 7 * i, "file_name": f"{i}.jpg", "width": 100, "height": 100}
        for i in range(n_img)
    ]
    anns = []
    for img in images[: n_img - 3]:  # the last three images have no boxes
        for _ in range(rng.randint(0, 6)):
            k = rng.randrange(n_cls - 1)  # the last class never has ground truth
            box = [rng.randint(0, 60), rng.randint(0, 60), rng.randint(2, 40), rng.randint(2, 40)]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": cats[k]["id"],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "difficult": int(k == 1 or rng.random() < 0.2),  # class1: all difficult
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
    dets = []
    for ann in anns:
        if ann["category_id"] == cats[3]["id"]:
            continue  # class3 has boxes but is never detected
        for _ in range(rng.randint(0, 3)):  # near-duplicates and exact duplicates
            j = [rng.choice([0, 0, 1, -1, 3, -5]) for _ in range(4)]
            b = ann["bbox"]
            box = [b[0] + j[0], b[1] + j[1], max(b[2] + j[2], 0), max(b[3] + j[3], 0)]
            cat = ann["category_id"] if rng.random() < 0.85 else rng.choice(cats[:3])["id"]
            dets.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": cat,
                    "bbox": box,
                    "score": round(rng.random(), 1),
                }
            )
    for _ in range(rng.randint(0, 4 * n_img)):  # background detections, any image
        box = [rng.uniform(0, 80), rng.uniform(0, 80), rng.uniform(0, 40), rng.uniform(0, 40)]
        dets.append(
            {
                "image_id": rng.choice(images)["id"],
                "category_id": rng.choice(cats[:3] + cats[4:])["id"],
                "bbox": box,
                "score": rng.choice([round(rng.random(), 2), 0.5]),
            }
        )
    rng.shuffle(dets)
    return {"images": images, "categories": cats, "annotations": anns}, dets


def _assert_same(got: dict, want: dict) -> None:
    assert got["per_class"].keys() == want["per_class"].keys()
    for name, ap in want["per_class"].items():
        if math.isnan(ap):
            assert math.isnan(got["per_class"][name]), name
        else:
            assert got["per_class"][name] == pytest.approx(ap, abs=1e-6), name
    assert got["map"] == pytest.approx(want["map"], abs=1e-6)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("metric", ["voc07", "voc12"])
@pytest.mark.parametrize("seed", range(8))
def test_matches_devkit_oracle_on_random_data(seed: int, metric: str) -> None:
    gt, dets = random_case(seed)
    got = voc_ap(gt, dets, metric)
    want = reference_voc_ap(gt, dets, metric)
    _assert_same(got, want)
    assert got["stats"]["npos"] == want["npos"]
    assert got["stats"]["ndet_total"] == len(dets)
    assert math.isnan(got["per_class"]["class1"])  # only difficult boxes: not a positive
    assert want["npos"]["class3"] == 0 or got["per_class"]["class3"] == 0.0  # never detected
    assert math.isnan(got["per_class"]["class4"])  # detections but no ground truth


@pytest.mark.parametrize("seed", range(3))
def test_oracle_agreement_at_other_thresholds(seed: int) -> None:
    gt, dets = random_case(100 + seed)
    for thr in (0.3, 0.7):
        _assert_same(
            voc_ap(gt, dets, "voc12", iou_threshold=thr), reference_voc_ap(gt, dets, "voc12", thr)
        )


def _hand_case() -> tuple[dict, list[dict]]:
    cats = [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "bird"},
        {"id": 4, "name": "cow"},
    ]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3)]

    def ann(i: int, img: int, cat: int, box: list, difficult: int = 0) -> dict:
        return {
            "id": i,
            "image_id": img,
            "category_id": cat,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": 0,
            "difficult": difficult,
        }

    anns = [
        ann(1, 1, 1, [0, 0, 10, 10]),  # A
        ann(2, 1, 1, [20, 0, 10, 10], difficult=1),  # D (difficult)
        ann(3, 2, 1, [0, 0, 10, 10]),  # B
        ann(4, 2, 2, [0, 0, 20, 20]),  # E
        ann(5, 1, 3, [0, 0, 30, 30], difficult=1),  # bird: difficult only
        ann(6, 3, 4, [5, 5, 10, 10]),
    ]  # cow: never detected

    def det(img: int, cat: int, box: list, score: float) -> dict:
        return {"image_id": img, "category_id": cat, "bbox": box, "score": score}

    dets = [
        det(2, 1, [50, 50, 5, 5], 0.5),  # d5: no overlap -> FP
        det(1, 1, [0, 0, 10, 10], 0.9),  # d1: A -> TP
        det(1, 2, [0, 0, 20, 20], 0.9),  # e1: dog on image 1 (no dog there) -> FP
        det(1, 1, [20, 0, 10, 10], 0.8),  # d2: D is difficult -> ignored
        det(2, 2, [0, 0, 20, 20], 0.9),  # e2: E -> TP, but after e1 (same score, later)
        det(1, 1, [0, 0, 10, 10], 0.7),  # d3: A already taken -> FP
        det(2, 1, [0, 0, 10, 20], 0.6),  # d4: IoU(B) = 100/200 = 0.5 exactly -> TP
        det(1, 3, [0, 0, 30, 30], 0.4),
    ]  # bird on its difficult box -> ignored
    return {"images": images, "categories": cats, "annotations": anns}, dets


def test_hand_computed_case() -> None:
    gt, dets = _hand_case()
    # cat (npos 2; d2 ignored, so the curve is d1 d3 d4 d5):
    #   d1 TP rec .5 prec 1 | d3 FP rec .5 prec .5 | d4 TP rec 1 prec 2/3 | d5 FP rec 1 prec .5
    #   VOC07: t = 0..0.5 (6 points) -> max prec 1; t = 0.6..1 (5 points) -> 2/3
    #          AP = (6 + 5 * 2/3) / 11 = 28/33
    #   VOC12: envelope 1 up to recall .5, then 2/3 up to 1: AP = .5 * 1 + .5 * 2/3 = 5/6
    # dog (npos 1; e1 and e2 tie at .9, e1 comes first in the file):
    #   e1 FP rec 0 prec 0 | e2 TP rec 1 prec .5  -> VOC07 = VOC12 = .5 (would be 1 if e2 first)
    # bird: no non-difficult box -> NaN, not in the mean.  cow: 1 box, no detection -> 0.
    v07 = voc_ap(gt, dets, "voc07")
    v12 = voc_ap(gt, dets, "voc12")
    assert v07["per_class"]["cat"] == pytest.approx(28 / 33, abs=1e-12)
    assert v12["per_class"]["cat"] == pytest.approx(5 / 6, abs=1e-12)
    for res in (v07, v12):
        assert res["per_class"]["dog"] == pytest.approx(0.5, abs=1e-12)
        assert math.isnan(res["per_class"]["bird"])
        assert res["per_class"]["cow"] == 0.0
        assert res["stats"]["npos"] == {"cat": 2, "dog": 1, "bird": 0, "cow": 1}
        assert res["stats"]["ndet"] == {"cat": 5, "dog": 2, "bird": 1, "cow": 0}
        assert res["stats"]["nignored"] == 2
    assert v07["map"] == pytest.approx((28 / 33 + 0.5 + 0) / 3, abs=1e-12)
    assert v12["map"] == pytest.approx((5 / 6 + 0.5 + 0) / 3, abs=1e-12)
    _assert_same(v07, reference_voc_ap(gt, dets, "voc07"))
    _assert_same(v12, reference_voc_ap(gt, dets, "voc12"))


def test_highest_iou_box_only_no_fallback() -> None:
    """Devkit rule: a detection whose best box is taken is a FP even if it overlaps another."""
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10]},
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8},
    ]
    # d2: IoU(box1) = 90/110, IoU(box2) = 90/110 -> tie, first box (taken) wins -> FP.
    # Curve: rec .5 prec 1, rec .5 prec .5 -> VOC12 AP = .5
    res = voc_ap(gt, dets, "voc12")
    assert res["per_class"]["a"] == pytest.approx(0.5, abs=1e-12)
    assert res["map"] == pytest.approx(reference_voc_ap(gt, dets, "voc12")["map"], abs=1e-12)


def test_ap_formulas_directly() -> None:
    rec = np.array([0.1, 0.3, 0.3, 1.0])
    prec = np.array([1.0, 0.5, 0.75, 0.25])
    # t=0,.1 -> 1 ; t=.2,.3 -> .75 ; t=.4...1 (7 points) -> .25
    assert ap_voc07(rec, prec) == pytest.approx((2 * 1 + 2 * 0.75 + 7 * 0.25) / 11, abs=1e-12)
    # envelope: 1 on (0,.1], .75 on (.1,.3], .25 on (.3,1]
    assert ap_voc12(rec, prec) == pytest.approx(0.1 + 0.2 * 0.75 + 0.7 * 0.25, abs=1e-12)
    assert ap_voc07(np.array([]), np.array([])) == 0.0
    assert ap_voc12(np.array([]), np.array([])) == 0.0


def test_no_detections_gives_zero_and_arrays_equal_lists() -> None:
    gt, dets = random_case(3)
    empty = voc_ap(gt, [], "voc07")
    assert all(v == 0.0 or math.isnan(v) for v in empty["per_class"].values())
    assert empty["map"] == 0.0
    as_list = voc_ap(gt, dets, "voc12")
    as_array = voc_ap(gt, detections_from_list(dets), "voc12")
    prepared = voc_ap(prepare_ground_truth(gt), detections_from_list(dets), "voc12")
    assert as_list["per_class"] == pytest.approx(as_array["per_class"], nan_ok=True)
    assert prepared["per_class"] == pytest.approx(as_array["per_class"], nan_ok=True)


def test_unknown_image_or_category_is_an_error() -> None:
    gt, dets = random_case(1)
    bad = [*dets, {"image_id": 424242, "category_id": 10, "bbox": [0, 0, 1, 1], "score": 0.1}]
    with pytest.raises(DataError, match=r"image_id.*424242"):
        voc_ap(gt, bad, "voc07")
    bad = [*dets, {"image_id": 1000, "category_id": 99, "bbox": [0, 0, 1, 1], "score": 0.1}]
    with pytest.raises(DataError, match=r"category_id.*99"):
        voc_ap(gt, bad, "voc07")
    with pytest.raises(ConfigError, match="metric"):
        voc_ap(gt, dets, "voc10")


def test_bad_ground_truth_is_named() -> None:
    gt, dets = random_case(2)
    gt["annotations"][0]["bbox"] = [0, 0, -3, 4]
    with pytest.raises(DataError, match=r"my_gt.json.*annotation 0.*bbox"):
        voc_ap(gt, dets, "voc07", gt_source="my_gt.json")
    gt, dets = random_case(2)
    gt["annotations"][1]["category_id"] = 5
    with pytest.raises(DataError, match=r"annotation 1.*category_id"):
        voc_ap(gt, dets, "voc07")
    gt["annotations"][1]["category_id"] = [10]  # unhashable: still a DataError, not a TypeError
    with pytest.raises(DataError, match=r"annotation 1.*category_id"):
        voc_ap(gt, dets, "voc07")
    gt, dets = random_case(2)
    gt["annotations"][2]["difficult"] = 2
    with pytest.raises(DataError, match="annotation 2: difficult must be 0 or 1"):
        voc_ap(gt, dets, "voc07")
    with pytest.raises(DataError, match="'images' must be a list"):
        voc_ap({"categories": [], "annotations": []}, [], "voc07")


# --------------------------------------------------------------------------- reading files
@pytest.fixture(params=["msgspec", "orjson"])
def parser(request, monkeypatch) -> str:
    """Run a test once per reading path: msgspec's typed decode, and the orjson dict path that
    reads a file msgspec rejects. Each must accept and reject the same files."""
    if request.param == "orjson":
        monkeypatch.setattr(results_io, "_from_msgspec", lambda raw, path: None)
    return request.param


def test_load_detections_round_trip(tmp_path, parser: str) -> None:
    _, dets = random_case(4)
    dets[0]["id"] = 7  # extra keys, as some writers add, are ignored
    dets[1]["bbox"] = [1, 2, 3, 4]  # integers are numbers too
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    arr = load_detections(path)
    assert arr.dtype == DET_DTYPE and len(arr) == len(dets)
    assert arr["image_id"].tolist() == [d["image_id"] for d in dets]
    assert arr["category_id"].tolist() == [d["category_id"] for d in dets]
    assert arr["score"].tolist() == [d["score"] for d in dets]
    assert np.stack([arr[k] for k in "xywh"], 1).tolist() == [
        [float(v) for v in d["bbox"]] for d in dets
    ]
    path.write_text("[]")
    assert len(load_detections(path)) == 0


@pytest.mark.parametrize(
    "content, problem",
    [
        ('[{"image_id": 1, ', "malformed JSON"),
        ('{"image_id": 1}', "expected a JSON list"),
        ("[1, 2]", "detection 0 is int"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]', "detection 0 has no 'score'"),
        (
            '[{"image_id": "1", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]',
            "image_id must be an integer",
        ),
        (
            '[{"image_id": 1, "category_id": 1.0, "bbox": [0, 0, 1, 1], "score": 1}]',
            "category_id must be an integer",
        ),
        (
            '[{"image_id": true, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]',
            "image_id must be an integer",
        ),
        (
            (
                '[{"image_id": 18446744073709551615, "category_id": 1, "bbox": [0, 0, 1, 1], '
                '"score": 1}]'
            ),
            "does not fit in 64 bits",
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 1}]',
            "bbox must be a list",
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}]',
            "detection 0: bbox .* non-negative width",
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1e999], "score": 1}]',
            "(must be finite|infinity)",
        ),  # json reads inf, orjson refuses to
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]',
            "(NaN: the detections hold non-finite numbers|score nan is not finite)",
        ),  # json reads NaN
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": -Infinity}]',
            "(Infinity: the detections hold non-finite numbers|score -inf is not finite)",
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": null}]',
            "score must be a number",
        ),
        (
            (
                '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1},'
                ' {"image_id": 1, "category_id": 1, "bbox": [0, "0", 1, 1], "score": 1}]'
            ),
            "detection 1: bbox values must be numbers",
        ),
    ],
)
def test_malformed_detection_files(tmp_path, parser: str, content: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match="bad.json: .*" + problem):
        load_detections(path)


def test_missing_file(tmp_path, parser: str) -> None:
    with pytest.raises(DataError, match=r"nope.json: file not found"):
        load_detections(tmp_path / "nope.json")


def test_lookup_table_and_binary_search_agree(monkeypatch) -> None:
    known = np.array([-5, 0, 3, 9, 2000], np.int64)
    values = np.array([3, -5, 4, 2000, 2001, -6, 9, 0, 2**62, -(2**62)], np.int64)
    want_found = [True, True, False, True, False, False, True, True, False, False]
    pos, found = results_io.lookup(known, values)
    assert found.tolist() == want_found
    assert pos[found].tolist() == [2, 0, 4, 3, 1]
    gt, dets = random_case(11)
    dense = voc_ap(gt, dets, "voc07")
    monkeypatch.setattr(results_io, "TABLE_MAX", 0)
    pos2, found2 = results_io.lookup(known, values)
    assert found2.tolist() == want_found and pos2[found2].tolist() == pos[found].tolist()
    _assert_same(voc_ap(gt, dets, "voc07"), dense)


def test_evaluate_end_to_end(tmp_path) -> None:
    gt, dets = random_case(6)
    gt = {"info": {"image_dir": "."}} | gt  # the internal format the CLI reads
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    res = evaluate(tmp_path / "gt.json", tmp_path / "dets.json", "voc07")
    assert res["metric"] == "voc07"
    _assert_same(res, reference_voc_ap(gt, dets, "voc07"))
    with pytest.raises(ConfigError, match="metric"):
        evaluate(tmp_path / "gt.json", tmp_path / "dets.json", "map")
