"""`data check`: every fault fed in is counted once, with examples naming the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from scratchdet.data.annotations import FATAL_KINDS, WARNING_KINDS, save_annotations
from scratchdet.data.check import check_dataset, format_report
from scratchdet.data.synth import make_synthetic_voc
from scratchdet.data.voc import read_voc

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def _counts(report: dict) -> dict[str, int]:
    return {k: v["count"] for k, v in report["faults"].items() if v["count"]}


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return make_synthetic_voc(tmp_path, n_trainval=8, n_test=2, seed=2)


def test_clean_dataset_is_ok(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    save_annotations(read_voc(voc, "trainval"), out)
    report = check_dataset(out)
    assert report["ok"] and report["fatal_faults"] == 0
    assert _counts(report) == {}
    assert report["images"] == 8 and report["categories"] == [
        "box",
        "disc",
        "triangle",
        "cross",
        "ring",
    ]
    assert set(report["faults"]) == set(FATAL_KINDS) | set(WARNING_KINDS)
    assert format_report(report).endswith("OK")
    json.dumps(report)  # the report is JSON-serialisable (the CLI may write it)


def test_counts_every_fault_in_a_json_split(voc: Path, tmp_path: Path) -> None:
    ds = read_voc(voc, "trainval")
    images = Path(ds["info"]["image_dir"])
    names = [img["file_name"] for img in ds["images"]]
    # image faults: truncated, unreadable, missing, wrong size
    data = (images / names[0]).read_bytes()
    (images / names[0]).write_bytes(data[: len(data) // 3])
    (images / names[1]).write_text("garbage")
    (images / names[2]).unlink()
    w, h = ds["images"][3]["width"], ds["images"][3]["height"]
    Image.new("RGB", (w + 7, h)).save(images / names[3])
    # annotation faults
    anns = ds["annotations"]
    img4 = next(i for i in ds["images"] if i["file_name"] == names[4])
    anns.append({"id": 1001, "image_id": img4["id"], "category_id": 1, "bbox": [5, 5, 0, 9]})
    anns.append(
        {
            "id": 1002,
            "image_id": img4["id"],
            "category_id": 1,
            "bbox": [img4["width"] - 5, 5, 30, 9],
        }
    )
    anns.append({"id": 1003, "image_id": img4["id"], "category_id": 77, "bbox": [5, 5, 9, 9]})
    anns.append({"id": 1004, "image_id": 999, "category_id": 1, "bbox": [5, 5, 9, 9]})
    # an image without boxes (a warning)
    Image.new("RGB", (64, 48)).save(images / "lonely.jpg")
    ds["images"].append({"id": 500, "file_name": "lonely.jpg", "width": 64, "height": 48})
    out = tmp_path / "broken.json"
    out.write_text(json.dumps(ds))  # save_annotations would refuse it

    report = check_dataset(out, max_examples=1)
    assert _counts(report) == {
        "truncated_image": 1,
        "unreadable_image": 1,
        "missing_image": 1,
        "size_mismatch": 1,
        "zero_area_box": 1,
        "box_outside_image": 1,
        "unknown_category": 1,
        "unknown_image": 1,
        "empty_image": 1,
    }
    assert not report["ok"] and report["fatal_faults"] == 8
    f = report["faults"]
    assert f["truncated_image"]["examples"] == [f"{images / names[0]}: image file is truncated"]
    assert str(images / names[2]) in f["missing_image"]["examples"][0]
    assert f"is {w + 7}x{h} but the annotations say {w}x{h}" in f["size_mismatch"]["examples"][0]
    assert "annotation id 1003" in f["unknown_category"]["examples"][0]
    assert "lonely.jpg" in f["empty_image"]["examples"][0] and not f["empty_image"]["fatal"]
    text = format_report(report)
    for kind in _counts(report):
        assert kind in text
    assert "warning empty_image: 1" in text and "ERROR size_mismatch: 1" in text
    assert text.endswith("FAILED: 8 fatal fault(s)")

    # header-only scan: fast, finds size problems but cannot see the truncation
    quick = _counts(check_dataset(out, decode=False))
    assert "truncated_image" not in quick and quick["size_mismatch"] == 1


def test_examples_are_capped_but_counts_are_not(voc: Path) -> None:
    ds = read_voc(voc, "trainval")
    for img in ds["images"]:
        img["width"] += 1
    report = check_dataset(ds, max_examples=3)
    entry = report["faults"]["size_mismatch"]
    assert entry["count"] == 8 and len(entry["examples"]) == 3
    assert "... and 5 more" in format_report(report)


def test_voc_folder_is_checked_in_collect_mode(voc: Path) -> None:
    ann = voc / "Annotations"
    (ann / "000001.xml").write_text("<annotation><size>")  # malformed
    xml = (ann / "000002.xml").read_text()
    (ann / "000002.xml").write_text(xml.replace("<name>", "<name>x", 1))  # unknown class
    (voc / "JPEGImages" / "000003.jpg").unlink()
    xml = (ann / "000004.xml").read_text()
    start = xml.index("<xmax>") + len("<xmax>")
    end = xml.index("</xmax>")
    (ann / "000004.xml").write_text(xml[:start] + "2000" + xml[end:])  # far outside
    report = check_dataset(voc, "trainval")
    counts = _counts(report)
    assert counts == {
        "schema": 1,
        "unknown_category": 1,
        "missing_image": 1,
        "box_outside_image": 1,
    }
    assert report["images"] == 6  # the unreadable XML and the missing image are skipped
    assert str(ann / "000001.xml") in report["faults"]["schema"]["examples"][0]
    assert "unknown class 'x" in report["faults"]["unknown_category"]["examples"][0]


def test_unusable_inputs_give_a_report_not_a_traceback(tmp_path: Path, voc: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    report = check_dataset(bad)
    assert not report["ok"] and "malformed JSON" in report["faults"]["schema"]["examples"][0]
    bad.write_text(json.dumps({"images": []}))
    assert _counts(check_dataset(bad)) == {"schema": 1}
    report = check_dataset(voc, "nosuchsplit")
    assert "split list not found" in report["faults"]["schema"]["examples"][0]
