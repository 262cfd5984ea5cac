"""DetectionDataset: decoded tensors and targets agree with the annotation file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scratchdet.data.annotations import label_maps, load_annotations, save_annotations
from scratchdet.data.dataset import DetectionDataset, read_image
from scratchdet.data.synth import make_synthetic_voc
from scratchdet.data.voc import read_voc
from scratchdet.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


@pytest.fixture(scope="module")
def split_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    voc = make_synthetic_voc(root, n_trainval=10, n_test=4, seed=1)
    out = root / "processed" / "synth_trainval.json"
    save_annotations(read_voc(voc, "trainval"), out)
    return out


def test_items_match_the_json(split_json: Path) -> None:
    ds = load_annotations(split_json)
    cat_to_label, _ = label_maps(ds)
    data = DetectionDataset(split_json)
    assert len(data) == len(ds["images"]) == 10
    for i, img in enumerate(ds["images"]):
        image, target = data[i]
        assert image.dtype == torch.uint8 and image.shape == (3, img["height"], img["width"])
        assert target["image_id"] == img["id"]
        assert target["orig_size"] == (img["height"], img["width"])
        anns = [a for a in ds["annotations"] if a["image_id"] == img["id"]]
        expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(anns), 4)
        torch.testing.assert_close(target["boxes"], expected.float())
        assert target["labels"].dtype == torch.int64
        assert target["labels"].tolist() == [cat_to_label[a["category_id"]] for a in anns]
        assert target["difficult"].dtype == torch.bool
        assert target["difficult"].tolist() == [bool(a["difficult"]) for a in anns]
    # the same pixels PIL sees
    pil = np.asarray(Image.open(Path(ds["info"]["image_dir"]) / ds["images"][0]["file_name"]))
    assert np.array_equal(data[0][0].permute(1, 2, 0).numpy(), pil)


def test_dict_and_path_give_the_same_items(split_json: Path) -> None:
    a, b = DetectionDataset(split_json), DetectionDataset(load_annotations(split_json))
    for i in (0, 5):
        assert torch.equal(a[i][0], b[i][0])
        assert torch.equal(a[i][1]["boxes"], b[i][1]["boxes"])


def test_dataset_pickles_for_workers(split_json: Path) -> None:
    data = DetectionDataset(split_json)
    clone = pickle.loads(pickle.dumps(data))
    assert torch.equal(clone[3][1]["labels"], data[3][1]["labels"])


def test_transform_keeps_per_box_fields_aligned(split_json: Path) -> None:
    """A transform that drops the first box and reverses the rest: labels/difficult follow."""
    seen = {}

    def drop_first_reverse(image, boxes, labels):
        seen["labels"] = labels.clone()
        return image[:, :8, :8], boxes[1:].flip(0) / 10, labels[1:].flip(0)

    plain = DetectionDataset(split_json)
    data = DetectionDataset(split_json, transform=drop_first_reverse)
    i = next(k for k in range(len(plain)) if len(plain[k][1]["labels"]) >= 2)
    _, ref = plain[i]
    image, target = data[i]
    assert image.shape == (3, 8, 8)
    assert seen["labels"].dtype == torch.int64 and len(seen["labels"]) == len(ref["labels"])
    torch.testing.assert_close(target["boxes"], ref["boxes"][1:].flip(0) / 10)
    assert torch.equal(target["labels"], ref["labels"][1:].flip(0))
    assert torch.equal(target["difficult"], ref["difficult"][1:].flip(0))


def _tiny_split(tmp_path: Path, files: dict[str, tuple[int, int]], boxes=None) -> dict:
    images = [
        {"id": i + 1, "file_name": n, "width": w, "height": h}
        for i, (n, (w, h)) in enumerate(files.items())
    ]
    anns = [
        {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0}
        for i in range(len(images))
    ]
    return {
        "info": {"image_dir": str(tmp_path)},
        "images": images,
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": anns,
    }


def test_grayscale_cmyk_palette_and_png_become_rgb(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    base.convert("L").save(tmp_path / "gray.jpg")
    base.convert("CMYK").save(tmp_path / "cmyk.jpg")
    base.convert("P").save(tmp_path / "pal.png")
    base.save(tmp_path / "rgb.png")
    base.save(tmp_path / "rgb.bmp")  # not a torchvision format: Pillow decodes it
    names = ["gray.jpg", "cmyk.jpg", "pal.png", "rgb.png", "rgb.bmp"]
    data = DetectionDataset(_tiny_split(tmp_path, {n: (30, 20) for n in names}))
    for i, name in enumerate(names):
        image, _ = data[i]
        assert image.shape == (3, 20, 30) and image.dtype == torch.uint8, name
    assert torch.equal(data[3][0].permute(1, 2, 0), torch.from_numpy(rgb))  # lossless PNG
    assert torch.equal(data[4][0], data[3][0])
    gray = data[0][0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_truncated_missing_and_wrong_size_images_raise(tmp_path: Path) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    img.save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    ds = DetectionDataset(
        _tiny_split(
            tmp_path,
            {
                "ok.jpg": (40, 40),
                "cut.jpg": (40, 40),
                "text.jpg": (40, 40),
                "gone.jpg": (40, 40),
                "ok2.jpg": (41, 40),
            },
        )
    )
    (tmp_path / "ok2.jpg").write_bytes(data)
    assert ds[0][0].shape == (3, 40, 40)
    cases = [
        (1, "cut.jpg", "truncated"),
        (2, "text.jpg", "cannot decode"),
        (3, "gone.jpg", "not found"),
        (4, "ok2.jpg", "image is 40x40 but the annotations"),
    ]
    for i, name, needle in cases:
        with pytest.raises(DataError) as info:
            ds[i]
        assert info.value.path == str(tmp_path / name) and needle in info.value.problem


def test_crowd_boxes_left_out_unless_asked(tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.jpg")
    split = _tiny_split(tmp_path, {"a.jpg": (20, 20)})
    split["annotations"].append(
        {"id": 9, "image_id": 1, "category_id": 1, "bbox": [2, 2, 9, 9], "iscrowd": 1}
    )
    assert len(DetectionDataset(split)[0][1]["boxes"]) == 1
    assert len(DetectionDataset(split, keep_crowd=True)[0][1]["boxes"]) == 2


def test_read_image_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        read_image(tmp_path / "nope.jpg")
    assert info.value.path == str(tmp_path / "nope.jpg")
