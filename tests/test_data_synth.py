"""Synthetic VOCdevkit: deterministic, a valid VOC tree, and the boxes sit on the drawn shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchdet.data.annotations import class_names
from scratchdet.data.synth import SHAPES, SIZE_RANGE, SYNTH_CLASSES, make_synthetic_voc
from scratchdet.data.voc import read_split_ids, read_voc
from scratchdet.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_voc(tmp_path_factory.mktemp("synth"), n_trainval=60, n_test=30, seed=0)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = make_synthetic_voc(tmp_path / "a", n_trainval=8, n_test=4, seed=3)
    b = make_synthetic_voc(tmp_path / "b", n_trainval=8, n_test=4, seed=3)
    c = make_synthetic_voc(tmp_path / "c", n_trainval=8, n_test=4, seed=4)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 12 + 12 + 4 + 2  # 12 XML, 12 JPEG, 4 split lists, classes + generator
    assert fa == fb
    assert fa["JPEGImages/000001.jpg"] != fc["JPEGImages/000001.jpg"]
    # adding images leaves the earlier ones unchanged
    d = make_synthetic_voc(tmp_path / "d", n_trainval=10, n_test=4, seed=3)
    assert _files(d)["JPEGImages/000008.jpg"] == fa["JPEGImages/000008.jpg"]


def test_layout_and_splits(synth: Path) -> None:
    assert synth.name == "VOCSYNTH" and synth.parent.name == "VOCdevkit"
    trainval, test = read_split_ids(synth, "trainval"), read_split_ids(synth, "test")
    train, val = read_split_ids(synth, "train"), read_split_ids(synth, "val")
    assert len(trainval) == 60 and len(test) == 30
    assert sorted(train + val) == sorted(trainval) and not set(train) & set(val)
    assert not set(trainval) & set(test)
    # no temporary folder left behind (the writers' lock file stays: .*.lock is never data)
    assert [p.name for p in synth.parent.glob(".*")] == [".VOCSYNTH.lock"]


def test_readable_by_voc_reader_with_all_kinds_of_objects(synth: Path) -> None:
    for split in ("trainval", "test"):
        ds = read_voc(synth, split)  # classes come from the tree's classes.txt
        assert class_names(ds) == list(SYNTH_CLASSES)
        anns = ds["annotations"]
        assert {a["category_id"] for a in anns} == set(range(1, len(SYNTH_CLASSES) + 1))
        assert any(a["difficult"] for a in anns) and any(a["truncated"] for a in anns)
        assert not all(a["difficult"] for a in anns)
        assert ds["info"]["clipped_boxes"] == 0  # generated boxes are inside by construction
        sizes = [(i["width"], i["height"]) for i in ds["images"]]
        assert all(SIZE_RANGE[0] <= s <= SIZE_RANGE[1] for wh in sizes for s in wh)
        assert len(set(sizes)) > len(sizes) // 2  # several sizes and aspect ratios
        sides = np.sqrt([a["area"] for a in anns])
        assert sides.min() < 24 and sides.max() > 150  # small and large objects
        by_id = {i["id"]: i for i in ds["images"]}
        for a in anns:
            if a["truncated"]:  # cut by the border: the box touches it
                x, y, w, h = a["bbox"]
                img = by_id[a["image_id"]]
                assert x == 0 or y == 0 or x + w == img["width"] or y + h == img["height"]


def test_boxes_sit_on_the_drawn_shapes(synth: Path) -> None:
    """The centre of every clearly visible, isolated filled rectangle has the class colour."""
    ds = read_voc(synth, "trainval")
    root = Path(ds["info"]["image_dir"])
    by_image: dict[int, list[dict]] = {}
    for a in ds["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    checked = 0
    for img in ds["images"]:
        anns = by_image.get(img["id"], [])
        pixels = None
        for a in anns:
            x, y, w, h = a["bbox"]
            others = [b["bbox"] for b in anns if b is not a]
            isolated = all(
                x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y
                for bx, by, bw, bh in others
            )
            if a["category_id"] != 1 or a["difficult"] or min(w, h) < 12 or not isolated:
                continue
            if pixels is None:
                pixels = np.asarray(Image.open(root / img["file_name"]), dtype=np.int32)
            centre = pixels[int(y + h / 2), int(x + w / 2)]
            assert np.abs(centre - SHAPES["box"]).max() < 60, (img["file_name"], a, centre)
            # and just outside the box the colour is not the shape's (tight box)
            if x >= 3:
                outside = pixels[int(y + h / 2), int(x) - 3]
                assert np.abs(outside - SHAPES["box"]).max() > 25
            checked += 1
    assert checked >= 5


def test_existing_tree_needs_overwrite(tmp_path: Path) -> None:
    make_synthetic_voc(tmp_path, n_trainval=2, n_test=1)
    with pytest.raises(DataError, match="already exists"):
        make_synthetic_voc(tmp_path, n_trainval=2, n_test=1)
    out = make_synthetic_voc(tmp_path, n_trainval=4, n_test=2, overwrite=True)
    assert len(list((out / "JPEGImages").iterdir())) == 6


def test_subset_of_classes_and_bad_arguments(tmp_path: Path) -> None:
    out = make_synthetic_voc(tmp_path, n_trainval=6, n_test=2, classes=("ring", "box"))
    ds = read_voc(out, "trainval")
    assert class_names(ds) == ["ring", "box"]
    with pytest.raises(ValueError, match="classes"):
        make_synthetic_voc(tmp_path / "x", classes=("box", "hexagon"))
    with pytest.raises(ValueError, match="n_trainval"):
        make_synthetic_voc(tmp_path / "y", n_trainval=0)


def test_object_size_and_count_knobs(tmp_path):
    import json

    from scratchdet.data.voc import read_voc

    voc = make_synthetic_voc(
        tmp_path,
        n_trainval=12,
        n_test=2,
        seed=3,
        object_size=(0.2, 0.5),
        objects=(1, 2),
        classes=("box", "disc"),
    )
    ds = read_voc(voc, "trainval")
    per_image = {}
    for a in ds["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        img = next(i for i in ds["images"] if i["id"] == a["image_id"])
        if a["truncated"]:
            continue  # cut by the border: only its visible part is the box
        side = max(a["bbox"][2], a["bbox"][3]) / min(img["width"], img["height"])
        assert 0.2 * 0.7 <= side <= 0.5 * 1.42 + 0.01  # side x aspect (1:2..2:1) stretch
    assert set(per_image.values()) <= {1, 2} and len(per_image) == 12
    recorded = json.loads((voc / "generator.json").read_text())
    assert recorded["object_size"] == [0.2, 0.5] and recorded["objects"] == [1, 2]
    with pytest.raises(ValueError, match="object_size"):
        make_synthetic_voc(tmp_path / "bad", 2, 1, object_size=(0.5, 0.2))


def test_the_command_takes_the_object_knobs(tmp_path):
    import json

    from scratchdet.cli import main

    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(tmp_path),
                "--trainval",
                "4",
                "--test",
                "2",
                "--seed",
                "5",
                "--objects",
                "1",
                "2",
                "--object-size",
                "0.2",
                "0.4",
                "--classes",
                "box",
                "ring",
            ]
        )
        == 0
    )
    recorded = json.loads((tmp_path / "VOCdevkit/VOCSYNTH/generator.json").read_text())
    assert recorded["objects"] == [1, 2] and recorded["object_size"] == [0.2, 0.4]
    classes = (tmp_path / "VOCdevkit/VOCSYNTH/classes.txt").read_text().split()
    assert classes == ["box", "ring"]
