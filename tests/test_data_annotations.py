"""Internal annotation format: validation, save/load, label maps, grouping, merge; COCO reader."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from scratchdet.data.annotations import (
    BoxTable,
    boxes_by_image,
    class_names,
    image_dir,
    iter_problems,
    label_maps,
    load_annotations,
    merge_annotations,
    save_annotations,
    validate_annotations,
)
from scratchdet.data.coco import read_coco
from scratchdet.errors import DataError


def _dataset(img_dir: str = "/data/images") -> dict:
    return {
        "info": {"image_dir": img_dir, "source": "test"},
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 20, "file_name": "b.jpg", "width": 50, "height": 40},
            {"id": 30, "file_name": "c.jpg", "width": 64, "height": 64},
        ],
        # unsorted and sparse on purpose (COCO-like)
        "categories": [
            {"id": 90, "name": "zebra"},
            {"id": 1, "name": "person"},
            {"id": 5, "name": "car"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 1,
                "bbox": [0, 0, 100, 80],
                "area": 8000,
                "iscrowd": 0,
                "difficult": 0,
                "truncated": 0,
            },
            {
                "id": 2,
                "image_id": 20,
                "category_id": 90,
                "bbox": [10.5, 5, 20, 30],
                "area": 600,
                "iscrowd": 0,
                "difficult": 1,
                "truncated": 1,
            },
            {
                "id": 3,
                "image_id": 10,
                "category_id": 5,
                "bbox": [20, 30, 10, 5],
                "area": 50,
                "iscrowd": 1,
                "difficult": 0,
                "truncated": 0,
            },
        ],
    }


def test_valid_dataset_passes_and_reports_only_empty_image() -> None:
    ds = _dataset()
    assert validate_annotations(ds) is ds
    kinds = [p.kind for p in iter_problems(ds)]
    assert kinds == ["empty_image"]  # image 30 has no boxes: a warning, not an error


def test_box_within_float_tolerance_is_accepted() -> None:
    ds = _dataset()
    ds["annotations"][1]["bbox"] = [10, 5, 40.005, 35.004]  # x+w = 50.005 on a 50 px image
    validate_annotations(ds)


def _break(mutate) -> dict:
    ds = copy.deepcopy(_dataset())
    mutate(ds)
    return ds


BROKEN = {
    "missing images": (lambda d: d.pop("images"), "missing top-level key 'images'"),
    "no image_dir": (lambda d: d["info"].pop("image_dir"), "image_dir"),
    "duplicate image id": (lambda d: d["images"][1].update(id=10), "image id 10"),
    "duplicate file name": (lambda d: d["images"][1].update(file_name="a.jpg"), "listed twice"),
    "zero width image": (lambda d: d["images"][0].update(width=0), "width and height"),
    "duplicate annotation id": (
        lambda d: d["annotations"][1].update(id=1),
        "annotation id 1 (image b.jpg): annotation id appears more",
    ),
    "unknown image": (
        lambda d: d["annotations"][0].update(image_id=99),
        "annotation id 1 (image id 99): image_id 99 is not in 'images'",
    ),
    "unknown category": (
        lambda d: d["annotations"][1].update(category_id=7),
        "annotation id 2 (image b.jpg): category_id 7 is not in 'categories'",
    ),
    "short bbox": (
        lambda d: d["annotations"][1].update(bbox=[1, 2, 3]),
        "annotation id 2 (image b.jpg): bbox must be 4 finite numbers",
    ),
    "nan bbox": (
        lambda d: d["annotations"][1].update(bbox=[1, 2, math.nan, 3]),
        "bbox must be 4 finite numbers",
    ),
    "string bbox": (
        lambda d: d["annotations"][1].update(bbox=["1", 2, 3, 4]),
        "bbox must be 4 finite numbers",
    ),
    "zero area": (lambda d: d["annotations"][1].update(bbox=[1, 2, 0, 3]), "is zero-area"),
    "inverted": (lambda d: d["annotations"][1].update(bbox=[1, 2, 5, -3]), "inverted"),
    "outside right": (
        lambda d: d["annotations"][1].update(bbox=[40, 5, 11, 10]),
        "annotation id 2 (image b.jpg): bbox [40, 5, 11, 10]",
    ),
    "outside top": (
        lambda d: d["annotations"][1].update(bbox=[4, -1, 11, 10]),
        "is not inside the 50x40 image",
    ),
    "difficult flag 2": (
        lambda d: d["annotations"][1].update(difficult=2),
        "'difficult' must be 0 or 1",
    ),
    "bool flag": (lambda d: d["annotations"][1].update(iscrowd=True), "'iscrowd' must be 0 or 1"),
    "negative area": (lambda d: d["annotations"][1].update(area=-1), "'area' must be"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_load_rejects_broken_file_naming_file_and_item(tmp_path: Path, case: str) -> None:
    mutate, expected = BROKEN[case]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(_break(mutate)))
    with pytest.raises(DataError) as info:
        load_annotations(path)
    assert info.value.path == str(path)
    assert expected in info.value.problem


def test_load_rejects_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="malformed JSON") as info:
        load_annotations(path)
    assert info.value.path == str(path)


def test_save_is_relative_and_load_resolves_back(tmp_path: Path) -> None:
    images = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages"
    ds = _dataset(str(images))
    out = tmp_path / "processed" / "voc07_test.json"
    save_annotations(ds, out)
    on_disk = json.loads(out.read_text())
    assert on_disk["info"]["image_dir"] == "../VOCdevkit/VOC2007/JPEGImages"
    assert sorted(p.name for p in out.parent.iterdir()) == ["voc07_test.json"]  # no temp files
    assert image_dir(on_disk, out) == images
    loaded = load_annotations(out)
    assert loaded["info"]["image_dir"] == str(images)
    assert loaded["annotations"] == ds["annotations"]
    # saving the loaded dict to the same place reproduces the same bytes
    before = out.read_bytes()
    save_annotations(loaded, out)
    assert out.read_bytes() == before


def test_save_refuses_invalid_dataset_and_keeps_old_file(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    save_annotations(_dataset(), out)
    before = out.read_bytes()
    bad = _break(lambda d: d["annotations"][0].update(bbox=[0, 0, 0, 0]))
    with pytest.raises(DataError, match="zero-area"):
        save_annotations(bad, out)
    assert out.read_bytes() == before


def test_label_maps_and_class_names_follow_sorted_category_ids() -> None:
    ds = _dataset()
    cat_to_label, label_to_cat = label_maps(ds)
    assert cat_to_label == {1: 1, 5: 2, 90: 3}
    assert label_to_cat == {1: 1, 2: 5, 3: 90}
    assert class_names(ds) == ["person", "car", "zebra"]


def test_box_table_groups_per_image_in_xyxy() -> None:
    ds = _dataset()
    table = BoxTable(ds)
    assert len(table) == 3
    a = table[0]  # image 10: annotations 1 and 3, in file order
    expected = np.array([[0, 0, 100, 80], [20, 30, 30, 35]], np.float32)
    np.testing.assert_array_equal(a.boxes, expected)
    np.testing.assert_array_equal(a.labels, [1, 2])
    np.testing.assert_array_equal(a.iscrowd, [False, True])
    b = table[1]
    np.testing.assert_allclose(b.boxes, [[10.5, 5, 30.5, 35]])
    assert b.labels.tolist() == [3] and b.difficult.tolist() == [True]
    c = table[2]
    assert c.boxes.shape == (0, 4) and c.boxes.dtype == np.float32 and c.labels.dtype == np.int64

    no_crowd = boxes_by_image(ds, skip_crowd=True)
    assert no_crowd[10].labels.tolist() == [1]
    assert set(no_crowd) == {10, 20, 30}


def test_merge_renumbers_and_keeps_images_apart(tmp_path: Path) -> None:
    a = _dataset(str(tmp_path / "VOC2007" / "JPEGImages"))
    b = _dataset(str(tmp_path / "VOC2012" / "JPEGImages"))
    merged = merge_annotations([a, b], source="voc")
    validate_annotations(merged)
    assert merged["info"]["image_dir"] == str(tmp_path)
    assert [img["id"] for img in merged["images"]] == [1, 2, 3, 4, 5, 6]
    assert merged["images"][0]["file_name"] == "VOC2007/JPEGImages/a.jpg"
    assert merged["images"][3]["file_name"] == "VOC2012/JPEGImages/a.jpg"
    assert [a["id"] for a in merged["annotations"]] == [1, 2, 3, 4, 5, 6]
    # annotation 5 is part b's annotation 2, which belonged to b.jpg -> new image id 5
    assert merged["annotations"][4]["image_id"] == 5
    assert merged["annotations"][4]["bbox"] == [10.5, 5, 20, 30]


def test_merge_same_split_twice_is_a_duplicate(tmp_path: Path) -> None:
    a = _dataset(str(tmp_path / "JPEGImages"))
    with pytest.raises(DataError, match="listed twice"):
        validate_annotations(merge_annotations([a, copy.deepcopy(a)]))


def test_merge_rejects_different_categories(tmp_path: Path) -> None:
    a = _dataset(str(tmp_path / "x"))
    b = _break(lambda d: d["categories"].pop())
    with pytest.raises(DataError, match="different categories"):
        merge_annotations([a, b])


# --- COCO reader ----------------------------------------------------------------------------


def _coco_instances() -> dict:
    return {
        "info": {"description": "tiny"},
        "images": [
            {
                "id": 397133,
                "file_name": "000000397133.jpg",
                "width": 640,
                "height": 427,
                "license": 4,
            },
            {"id": 37777, "file_name": "000000037777.jpg", "width": 352, "height": 230},
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 44, "name": "bottle", "supercategory": "kitchen"},
        ],
        "annotations": [
            {
                "id": 82445,
                "image_id": 397133,
                "category_id": 44,
                "bbox": [217.6, 240.5, 38.99, 57.7],
                "area": 1675.5,
                "iscrowd": 0,
                "segmentation": [[1, 2, 3, 4, 5, 6]],
            },
            {
                "id": 900100,
                "image_id": 397133,
                "category_id": 1,
                "bbox": [0, 10, 200, 300],
                "area": 40000.0,
                "iscrowd": 1,
                "segmentation": {"counts": [], "size": [427, 640]},
            },
            # sticks out by 0.6 px at the right: clipped
            {
                "id": 5,
                "image_id": 37777,
                "category_id": 1,
                "bbox": [300, 10, 52.6, 20],
                "area": 900.0,
                "iscrowd": 0,
            },
            # degenerate: dropped
            {
                "id": 6,
                "image_id": 37777,
                "category_id": 1,
                "bbox": [30, 10, 0.0, 20],
                "area": 0.0,
                "iscrowd": 0,
            },
        ],
    }


def test_read_coco_keeps_ids_crowd_and_area(tmp_path: Path) -> None:
    src = tmp_path / "instances_val2017.json"
    src.write_text(json.dumps(_coco_instances()))
    ds = read_coco(src, tmp_path / "val2017")
    assert ds["info"]["image_dir"] == str(tmp_path / "val2017")
    assert ds["info"]["clipped_boxes"] == 1 and ds["info"]["dropped_boxes"] == 1
    assert [c["id"] for c in ds["categories"]] == [1, 44]
    anns = {a["id"]: a for a in ds["annotations"]}
    assert set(anns) == {82445, 900100, 5}
    assert anns[82445]["area"] == 1675.5  # COCO's own area, used by COCOeval's size ranges
    assert anns[900100]["iscrowd"] == 1
    assert all(a["difficult"] == 0 and "segmentation" not in a for a in anns.values())
    assert anns[5]["bbox"] == pytest.approx([300, 10, 52, 20])
    assert label_maps(ds)[0] == {1: 1, 44: 2}

    # pycocotools reads what we save (evaluation can use it as ground truth)
    out = tmp_path / "coco_val.json"
    save_annotations(ds, out)
    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == [37777, 397133]
    assert coco.getAnnIds(imgIds=[397133], iscrowd=False) == [82445]


def test_read_coco_errors_name_file_and_annotation(tmp_path: Path) -> None:
    src = tmp_path / "instances_bad.json"
    data = _coco_instances()
    data["annotations"][0]["bbox"] = [600, 10, 200, 20]  # 160 px past the right edge
    src.write_text(json.dumps(data))
    with pytest.raises(DataError) as info:
        read_coco(src, tmp_path)
    assert info.value.path == str(src)
    assert "annotation id 82445" in info.value.problem and "outside" in info.value.problem

    data = _coco_instances()
    data["annotations"][0]["category_id"] = 3
    src.write_text(json.dumps(data))
    with pytest.raises(DataError, match="category_id 3 is not in 'categories'"):
        read_coco(src, tmp_path)

    src.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="missing list 'annotations'"):
        read_coco(src, tmp_path)


def test_split_is_reproducible_disjoint_and_complete():
    from scratchdet.data.split import split_dataset

    images = [{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in range(1, 21)]
    anns = [
        {
            "id": i,
            "image_id": 1 + i % 20,
            "category_id": 1,
            "bbox": [0, 0, 5, 5],
            "area": 25.0,
            "iscrowd": 0,
        }
        for i in range(1, 41)
    ]
    ds = {
        "info": {"image_dir": "."},
        "categories": [{"id": 1, "name": "a"}],
        "images": images,
        "annotations": anns,
    }
    train, test = split_dataset(ds, 5, seed=3)
    again_train, again_test = split_dataset({**ds, "images": images[::-1]}, 5, seed=3)

    def ids(part):
        return sorted(img["id"] for img in part["images"])

    assert len(ids(test)) == 5 and len(ids(train)) == 15
    assert ids(test) == ids(again_test) and ids(train) == ids(again_train)
    assert not set(ids(test)) & set(ids(train))
    assert {a["image_id"] for a in test["annotations"]} <= set(ids(test))
    assert len(test["annotations"]) + len(train["annotations"]) == 40
    assert ids(split_dataset(ds, 5, seed=4)[1]) != ids(test)
    with pytest.raises(DataError, match="at least one image"):
        split_dataset(ds, 20)
