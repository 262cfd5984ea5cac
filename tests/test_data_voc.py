"""VOC reader: corner conversion, flags, sizes, merging, every error path, and real photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchdet.data.annotations import ProblemLog, save_annotations
from scratchdet.data.dataset import read_image
from scratchdet.data.voc import (
    VOC_CLASSES,
    default_classes,
    read_voc,
    read_voc_files,
    read_voc_many,
)
from scratchdet.errors import DataError
from tests.paths import KANGAROO

# torchvision 0.29 announces that its codecs move to torchcodec; the decoder itself is what we test
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def _xml(stem: str, size: tuple[int, int] | None, objects: list[dict]) -> str:
    size_xml = (
        ""
        if size is None
        else (f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    )
    objs = []
    for o in objects:
        flags = "".join(f"<{k}>{o[k]}</{k}>" for k in ("difficult", "truncated") if k in o)
        box = "".join(f"<{k}>{o[k]}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax") if k in o)
        objs.append(f"<object><name>{o['name']}</name>{flags}<bndbox>{box}</bndbox></object>")
    return (
        f"<annotation><folder>T</folder><filename>{stem}.jpg</filename>{size_xml}"
        f"{''.join(objs)}</annotation>"
    )


def make_voc(
    root: Path,
    images: dict[str, tuple[int, int, list[dict]]],
    split: str = "trainval",
    size_in_xml: bool = True,
) -> Path:
    """A minimal VOC tree: real JPEGs of the given sizes, XMLs with the given objects."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, (w, h, objects) in images.items():
        Image.new("RGB", (w, h), (90, 120, 150)).save(root / "JPEGImages" / f"{stem}.jpg")
        size = (w, h) if size_in_xml else None
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(stem, size, objects))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(s + "\n" for s in images))
    return root


def obj(name: str = "dog", xmin=1, ymin=1, xmax=10, ymax=10, **flags) -> dict:
    return {"name": name, "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, **flags}


@pytest.mark.parametrize(
    "corners", [(1, 1, 10, 20), (48, 240, 195, 371), (5, 7, 5, 7), (1, 1, 300, 400)]
)
def test_corner_conversion_matches_devkit_area(tmp_path: Path, corners) -> None:
    xmin, ymin, xmax, ymax = corners
    voc = make_voc(tmp_path / "VOC2007", {"000001": (300, 400, [obj("cat", *corners)])})
    ds = read_voc(voc, "trainval")
    (ann,) = ds["annotations"]
    assert ann["bbox"] == [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]
    x, y, w, h = ann["bbox"]
    assert [x, y, x + w, y + h] == [xmin - 1, ymin - 1, xmax, ymax]
    assert ann["area"] == w * h == (xmax - xmin + 1) * (ymax - ymin + 1)
    assert ann["category_id"] == VOC_CLASSES.index("cat") + 1


def test_difficult_truncated_and_ids(tmp_path: Path) -> None:
    voc = make_voc(
        tmp_path / "VOC2007",
        {
            "000005": (
                60,
                50,
                [obj("chair", difficult=1, truncated=0), obj("person", truncated=1)],
            ),
            "000007": (40, 30, [obj("car", 2, 3, 20, 30)]),  # no <difficult> tag -> 0
        },
    )
    ds = read_voc(voc, "trainval")
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in ds["images"]] == [
        (1, "000005.jpg", 60, 50),
        (2, "000007.jpg", 40, 30),
    ]
    flags = [(a["image_id"], a["difficult"], a["truncated"]) for a in ds["annotations"]]
    assert flags == [(1, 1, 0), (1, 0, 1), (2, 0, 0)]
    assert [c["name"] for c in ds["categories"]] == list(VOC_CLASSES)
    assert ds["info"]["image_dir"] == str((voc / "JPEGImages").resolve())
    assert ds["info"]["splits"] == ["VOC2007/trainval"]


def test_size_read_from_image_when_xml_lacks_it(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (123, 45, [obj()])}, size_in_xml=False)
    ds = read_voc(voc, "trainval")
    assert (ds["images"][0]["width"], ds["images"][0]["height"]) == (123, 45)


def test_small_overshoot_is_clipped_and_counted(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (50, 40, [obj("dog", 0, 1, 52, 40), obj("cat")])})
    log = ProblemLog()
    ds = read_voc(voc, "trainval", log=log)
    assert ds["annotations"][0]["bbox"] == [0, 0, 50, 40]
    assert ds["info"]["clipped_boxes"] == 1
    assert [p.kind for p in log.problems] == ["clipped_box"]


def _expect_error(
    voc: Path, file: Path, *needles: str, split: str = "trainval", classes=None
) -> None:
    with pytest.raises(DataError) as info:
        read_voc(voc, split, classes=classes)
    assert Path(info.value.path) == file
    for needle in needles:
        assert needle in info.value.problem


def test_missing_split_list(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj()])})
    _expect_error(
        voc, voc / "ImageSets/Main/test.txt", "split list not found", "trainval", split="test"
    )


def test_id_without_xml(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj()])})
    (voc / "ImageSets/Main/trainval.txt").write_text("a\nghost\n")
    _expect_error(voc, voc / "Annotations/ghost.xml", "'ghost'", "has no XML")


def test_missing_image_file(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj()]), "b": (20, 20, [obj()])})
    (voc / "JPEGImages/b.jpg").unlink()
    _expect_error(voc, voc / "JPEGImages/b.jpg", "not found")


def test_malformed_xml_names_file_and_parse_error(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj()])})
    (voc / "Annotations/a.xml").write_text("<annotation><object><name>dog</name></annotation>")
    _expect_error(voc, voc / "Annotations/a.xml", "malformed XML", "mismatched tag")


def test_unknown_class_names_it_and_the_known_ones(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj(), obj("kangaroo")])})
    _expect_error(
        voc,
        voc / "Annotations/a.xml",
        "object #2",
        "'kangaroo'",
        "known classes: aeroplane, bicycle",
    )


def test_missing_bndbox_field(tmp_path: Path) -> None:
    bad = obj()
    del bad["ymax"]
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [bad])})
    _expect_error(voc, voc / "Annotations/a.xml", "object #1 (dog)", "lacks <ymax>")


@pytest.mark.parametrize(
    "corners,what",
    [
        ((5, 5, 4, 10), "zero area"),
        ((5, 5, 2, 10), "inverted corners"),
        ((5, 9, 10, 6), "inverted corners"),
    ],
)
def test_zero_area_and_inverted_boxes(tmp_path: Path, corners, what: str) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj("dog", *corners)])})
    _expect_error(voc, voc / "Annotations/a.xml", what, f"({', '.join(map(str, corners))})")


def test_box_far_outside_image_is_an_error(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (50, 40, [obj("dog", 10, 10, 90, 30)])})
    _expect_error(voc, voc / "Annotations/a.xml", "outside the 50x40 image by 40 px")


def test_non_numeric_coordinate_and_bad_flag(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj("dog", "abc")])})
    _expect_error(voc, voc / "Annotations/a.xml", "<xmin> is not a number")
    voc = make_voc(tmp_path / "W", {"a": (20, 20, [obj("dog", difficult="yes")])})
    _expect_error(voc, voc / "Annotations/a.xml", "<difficult> must be 0 or 1")


def test_duplicate_id_in_split_list(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj()])})
    (voc / "ImageSets/Main/trainval.txt").write_text("a\na\n")
    _expect_error(voc, voc / "ImageSets/Main/trainval.txt", "listed more than once")


def test_collect_mode_records_all_faults_and_keeps_good_items(tmp_path: Path) -> None:
    voc = make_voc(
        tmp_path / "V",
        {
            "good": (30, 30, [obj(), obj("kangaroo"), obj("cat", 5, 5, 4, 9)]),
            "bad": (30, 30, [obj()]),
        },
    )
    (voc / "Annotations/bad.xml").write_text("<annotation>")
    log = ProblemLog(strict=False)
    ds = read_voc(voc, "trainval", log=log)
    assert sorted(p.kind for p in log.problems) == ["schema", "unknown_category", "zero_area_box"]
    assert [i["file_name"] for i in ds["images"]] == ["good.jpg"]
    assert len(ds["annotations"]) == 1


def test_classes_txt_and_custom_classes(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "V", {"a": (20, 20, [obj("wombat"), obj("emu")])})
    (voc / "classes.txt").write_text("wombat\nemu\n")
    assert default_classes(voc) == ("wombat", "emu")
    ds = read_voc(voc, "trainval")
    assert [a["category_id"] for a in ds["annotations"]] == [1, 2]
    ds = read_voc(voc, "trainval", classes=["emu", "wombat"])
    assert [a["category_id"] for a in ds["annotations"]] == [2, 1]


def test_read_voc_many_merges_years_with_unique_ids(tmp_path: Path) -> None:
    devkit = tmp_path / "VOCdevkit"
    make_voc(devkit / "VOC2007", {"000005": (30, 20, [obj()]), "000007": (30, 20, [obj("cat")])})
    make_voc(devkit / "VOC2012", {"2008_000002": (25, 25, [obj("bus"), obj("car")])})
    ds = read_voc_many([(devkit / "VOC2007", "trainval"), (devkit / "VOC2012", "trainval")])
    assert ds["info"]["splits"] == ["VOC2007/trainval", "VOC2012/trainval"]
    assert ds["info"]["image_dir"] == str(devkit.resolve())
    names = [i["file_name"] for i in ds["images"]]
    assert names == [
        "VOC2007/JPEGImages/000005.jpg",
        "VOC2007/JPEGImages/000007.jpg",
        "VOC2012/JPEGImages/2008_000002.jpg",
    ]
    assert [i["id"] for i in ds["images"]] == [1, 2, 3]
    assert [a["id"] for a in ds["annotations"]] == [1, 2, 3, 4]
    assert [a["image_id"] for a in ds["annotations"]] == [1, 2, 3, 3]
    for name in names:
        assert (devkit / name).is_file()
    save_annotations(ds, tmp_path / "out" / "voc0712_trainval.json")  # valid as a whole


def test_read_voc_files_flat_layout(tmp_path: Path) -> None:
    make_voc(tmp_path, {"x1": (40, 30, [obj("emu")]), "x2": (40, 30, [obj("wombat"), obj("emu")])})
    # <filename> that does not exist: falls back to the XML's stem
    xml = tmp_path / "Annotations/x2.xml"
    xml.write_text(xml.read_text().replace("x2.jpg", "renamed.jpg"))
    ds = read_voc_files(sorted((tmp_path / "Annotations").glob("*.xml")), tmp_path / "JPEGImages")
    assert [c["name"] for c in ds["categories"]] == ["emu", "wombat"]
    assert [i["file_name"] for i in ds["images"]] == ["x1.jpg", "x2.jpg"]
    assert [a["category_id"] for a in ds["annotations"]] == [1, 2, 1]

    (tmp_path / "JPEGImages/x1.jpg").unlink()
    with pytest.raises(DataError, match="no image for this XML") as info:
        read_voc_files([tmp_path / "Annotations/x1.xml"], tmp_path / "JPEGImages")
    assert info.value.path.endswith("x1.xml")


def test_kangaroo_photographs() -> None:
    """Real photographs with labelImg XML: read them, decode every image, sizes agree."""
    if not KANGAROO.is_dir():
        pytest.skip(f"{KANGAROO} not present (development data, not part of the product)")
    xmls = sorted((KANGAROO / "annots").glob("*.xml"))
    ds = read_voc_files(xmls, KANGAROO / "images")
    assert len(ds["images"]) == len(xmls) > 100
    assert [c["name"] for c in ds["categories"]] == ["kangaroo"]
    assert len(ds["annotations"]) >= len(xmls)
    root = Path(ds["info"]["image_dir"])
    decoded = truncated = 0
    for img in ds["images"]:
        path = root / img["file_name"]
        try:
            with Image.open(path) as im:
                im.load()  # independent oracle: Pillow's strict decoder
            pil_ok = True
        except OSError:
            pil_ok = False
        try:
            tensor = read_image(path)
        except DataError as exc:
            assert not pil_ok, f"{path}: we failed ({exc}) where Pillow decoded it"
            assert exc.path == str(path) and "truncated" in exc.problem
            truncated += 1
            continue
        assert pil_ok
        assert tensor.dtype.is_floating_point is False and tensor.shape[0] == 3
        assert tuple(tensor.shape[1:]) == (img["height"], img["width"])
        decoded += 1
    assert decoded + truncated == len(xmls) and decoded > 0.9 * len(xmls)
    boxes = np.array([a["bbox"] for a in ds["annotations"]])
    assert (boxes[:, 2:] > 0).all()


def test_the_command_reads_a_flat_folder_drops_broken_images_and_splits(
    tmp_path: Path, capsys
) -> None:
    """`data voc --annotations/--images` (a photo folder with XMLs, no split lists), a truncated
    image refused or, with --drop-broken, left out by name; then `data split` by seed."""
    from scratchdet.cli import main
    from scratchdet.data.annotations import load_annotations

    make_voc(tmp_path, {f"x{i}": (40, 30, [obj("emu")]) for i in range(6)})
    broken = tmp_path / "JPEGImages/x3.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    args = [
        "data",
        "voc",
        "--annotations",
        str(tmp_path / "Annotations"),
        "--images",
        str(tmp_path / "JPEGImages"),
        "--out",
        str(tmp_path / "all.json"),
    ]
    assert main(args) == 2
    assert f"{broken}:" in capsys.readouterr().err
    assert main([*args, "--drop-broken"]) == 0
    assert f"dropped {broken}:" in capsys.readouterr().err
    ds = load_annotations(tmp_path / "all.json")
    assert sorted(i["file_name"] for i in ds["images"]) == [f"x{i}.jpg" for i in (0, 1, 2, 4, 5)]
    assert len(ds["annotations"]) == 5

    parts = [str(tmp_path / p) for p in ("train.json", "test.json")]
    split = [
        "data",
        "split",
        "--data",
        str(tmp_path / "all.json"),
        "--test",
        "2",
        "--seed",
        "4",
        "--train-out",
        parts[0],
        "--test-out",
        parts[1],
    ]
    assert main(split) == 0
    train, test = (load_annotations(p) for p in parts)
    assert len(train["images"]) == 3 and len(test["images"]) == 2
    assert {i["id"] for i in train["images"]}.isdisjoint(i["id"] for i in test["images"])
    first = Path(parts[1]).read_bytes()
    assert main(split) == 0 and Path(parts[1]).read_bytes() == first  # same seed, same split
    assert (
        main(
            [
                "data",
                "voc",
                "--annotations",
                str(tmp_path / "Annotations"),
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    assert "--images" in capsys.readouterr().err


def test_the_command_numbers_classes_like_the_training_set(tmp_path: Path) -> None:
    """Train and test folders converted separately: a test folder without one of the training
    classes would be numbered differently (alphabetically per folder); the command refuses it at
    conversion, naming the fix, and `--like` / `--classes` number the classes as training does."""
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scratchdet", "data", "voc", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    make_voc(tmp_path / "train", {"a": (40, 30, [obj("emu")]), "b": (40, 30, [obj("wombat")])})
    make_voc(tmp_path / "test", {"c": (40, 30, [obj("wombat")])})
    make_voc(tmp_path / "odd", {"d": (40, 30, [obj("koala")])})
    data = tmp_path / "data"
    data.mkdir()

    def folder(name: str) -> list[str]:
        return [
            "--annotations",
            str(tmp_path / name / "Annotations"),
            "--images",
            str(tmp_path / name / "JPEGImages"),
        ]

    def categories(path: Path) -> list[tuple[int, str]]:
        return [(c["id"], c["name"]) for c in json.loads(path.read_text())["categories"]]

    assert cli(*folder("train"), "--out", str(data / "train.json")).returncode == 0
    assert categories(data / "train.json") == [(1, "emu"), (2, "wombat")]
    refused = cli(*folder("test"), "--out", str(data / "test.json"))
    assert refused.returncode == 2 and not (data / "test.json").exists()
    assert "(wombat) differ from those of" in refused.stderr
    assert f"--like {data / 'train.json'}" in refused.stderr and "Traceback" not in refused.stderr

    assert (
        cli(
            *folder("test"), "--like", str(data / "train.json"), "--out", str(data / "test.json")
        ).returncode
        == 0
    )
    test = json.loads((data / "test.json").read_text())
    assert categories(data / "test.json") == [(1, "emu"), (2, "wombat")]
    assert [a["category_id"] for a in test["annotations"]] == [2]
    (tmp_path / "classes.txt").write_text("emu\nwombat\n")
    for spec in ("emu,wombat", str(tmp_path / "classes.txt"), str(data / "train.json")):
        assert (
            cli(*folder("test"), "--classes", spec, "--out", str(tmp_path / "t2.json")).returncode
            == 0
        ), spec
        assert categories(tmp_path / "t2.json") == [(1, "emu"), (2, "wombat")]
    unknown = cli(*folder("odd"), "--like", str(data / "train.json"), "--out", str(data / "o.json"))
    assert unknown.returncode == 2 and "unknown class 'koala'" in unknown.stderr
    both = cli(
        *folder("test"),
        "--like",
        str(data / "train.json"),
        "--classes",
        "emu",
        "--out",
        str(data / "x.json"),
    )
    assert both.returncode == 2 and "not both" in both.stderr
