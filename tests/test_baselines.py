"""Image-blind baselines: what a prediction that never looks at the pixels scores."""

from __future__ import annotations

import pytest

from scratchdet.data.annotations import load_annotations
from scratchdet.errors import DataError
from scratchdet.evaluation.baselines import BASELINES, baseline_detections, mean_boxes
from scratchdet.evaluation.voc import voc_ap


def _dataset(boxes_per_image, size=(200, 100)):
    """Internal-format dataset: one image per entry, each entry a list of (category, xywh)."""
    w, h = size
    images = [
        {"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h}
        for i in range(len(boxes_per_image))
    ]
    anns = []
    for i, boxes in enumerate(boxes_per_image):
        for cat, bbox in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": list(bbox),
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                    "difficult": 0,
                }
            )
    return {
        "info": {"image_dir": "."},
        "images": images,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": anns,
    }


def test_mean_box_is_the_average_relative_box_per_class():
    train = _dataset([[(1, (0, 0, 100, 50))], [(1, (100, 50, 100, 50)), (2, (20, 10, 20, 10))]])
    train["annotations"].append(
        {
            "id": 9,
            "image_id": 1,
            "category_id": 2,
            "bbox": [0, 0, 200, 100],
            "area": 2e4,
            "iscrowd": 1,
            "difficult": 0,
        }
    )  # crowd: left out
    means = mean_boxes(train)
    assert means[1].tolist() == pytest.approx([0.25, 0.25, 0.75, 0.75])
    assert means[2].tolist() == pytest.approx([0.1, 0.1, 0.2, 0.2])


def test_a_fixed_layout_is_found_without_looking_and_a_random_one_is_not():
    fixed = _dataset([[(1, (50, 25, 100, 50))]] * 5)
    dets = baseline_detections("mean-box", fixed, fixed)
    assert len(dets) == 5  # every class with training boxes (only "a"), in every image
    assert voc_ap(fixed, dets, "voc07")["map"] == pytest.approx(1.0)
    whole = baseline_detections("whole-image", fixed, fixed)
    assert {tuple(d["bbox"]) for d in whole} == {(0.0, 0.0, 200.0, 100.0)}
    assert voc_ap(fixed, whole, "voc07")["map"] == 0.0  # IoU 0.25 with the object


def test_image_blind_scores_near_zero_on_the_synthetic_set(synth_splits):
    train = load_annotations(synth_splits["trainval"])
    test = load_annotations(synth_splits["test"])
    for kind in BASELINES:
        assert voc_ap(test, baseline_detections(kind, train, test), "voc07")["map"] < 0.1


def test_bad_inputs_name_the_problem():
    empty = _dataset([[]])
    with pytest.raises(DataError, match=r"no .*boxes to average"):
        mean_boxes(empty, "train.json")
    with pytest.raises(DataError, match="unknown baseline"):
        baseline_detections("median", _dataset([[(1, (0, 0, 5, 5))]]), empty)


def test_the_command_scores_a_baseline_and_refuses_a_muddle(tmp_path, synth_splits, capsys):
    from scratchdet.cli import main
    from scratchdet.io import read_json

    out, dets = tmp_path / "blind.json", tmp_path / "dets.json"
    assert (
        main(
            [
                "eval",
                "--gt",
                str(synth_splits["test"]),
                "--baseline",
                "mean-box",
                "--train",
                str(synth_splits["trainval"]),
                "--out",
                str(out),
                "--dets-out",
                str(dets),
            ]
        )
        == 0
    )
    result = read_json(out)
    test = load_annotations(synth_splits["test"], resolve_image_dir=False)
    assert result["baseline"] == "mean-box" and 0 <= result["map"] <= 1
    assert result["map"] == voc_ap(test, read_json(dets))["map"]
    assert result["provenance"]["code"]
    assert len(read_json(dets)) == len(test["images"]) * len(
        mean_boxes(load_annotations(synth_splits["trainval"], resolve_image_dir=False))
    )
    capsys.readouterr()
    assert (
        main(
            ["eval", "--gt", str(synth_splits["test"]), "--baseline", "mean-box", "--out", str(out)]
        )
        == 2
    )
    assert "--train" in capsys.readouterr().err
    assert main(["eval", "--gt", str(synth_splits["test"]), "--out", str(out)]) == 2
    assert "give either --dets or --baseline" in capsys.readouterr().err
