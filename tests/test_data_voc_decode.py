"""`scratchdet data voc` decodes every image of the split: a truncated or empty JPEG stops the
conversion with one line naming the file, instead of the first training batch that reads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scratchdet.data.check import verify_images
from scratchdet.data.synth import make_synthetic_voc
from scratchdet.data.voc import read_voc, read_voc_files
from scratchdet.errors import DataError
from tests.paths import KANGAROO

# Tests reach shared data as ../shared relative to the repository root; absent, they skip.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


@pytest.fixture
def voc_dir(tmp_path) -> Path:
    return make_synthetic_voc(tmp_path / "synth", n_trainval=6, n_test=2, seed=3)


def _data_voc(voc_dir: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet",
            "data",
            "voc",
            "--voc-dir",
            str(voc_dir),
            "--split",
            "trainval",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _first_image(voc_dir: Path) -> Path:
    stem = (voc_dir / "ImageSets" / "Main" / "trainval.txt").read_text().split()[2]
    return voc_dir / "JPEGImages" / f"{stem}.jpg"


def test_a_truncated_jpeg_stops_the_conversion_naming_it(voc_dir, tmp_path):
    image = _first_image(voc_dir)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    out = tmp_path / "trainval.json"
    proc = _data_voc(voc_dir, out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and str(image) in proc.stderr, proc.stderr
    assert "truncated" in proc.stderr and not out.exists()


@pytest.mark.parametrize(
    "damage, words", [("empty", "image file is empty"), ("not_an_image", "cannot decode image")]
)
def test_empty_and_foreign_files_are_named(voc_dir, damage, words):
    image = _first_image(voc_dir)
    ds = read_voc(voc_dir, "trainval")  # the XML says 'a JPEG of this size'
    image.write_bytes({"empty": b"", "not_an_image": b"<html>404</html>"}[damage])
    with pytest.raises(DataError) as err:
        verify_images(ds)
    assert err.value.path == str(image) and words in err.value.problem


def test_an_intact_split_converts_and_every_fault_is_counted(voc_dir, tmp_path):
    out = tmp_path / "trainval.json"
    proc = _data_voc(voc_dir, out)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    ds = read_voc(voc_dir, "trainval")
    for stem in (voc_dir / "ImageSets" / "Main" / "trainval.txt").read_text().split()[:2]:
        (voc_dir / "JPEGImages" / f"{stem}.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"image file is empty \(1 more image"):
        verify_images(ds)


def test_kangaroo_photographs_decode_and_the_truncated_one_is_named():
    if not KANGAROO.is_dir():
        pytest.skip("../shared/datasets/kangaroo not present")
    ds = read_voc_files(sorted((KANGAROO / "annots").glob("*.xml")), KANGAROO / "images")
    # The set ships one JPEG cut short (Pillow's strict decoder refuses it too).
    with pytest.raises(DataError) as err:
        verify_images(ds)
    assert err.value.path.endswith("00090.jpg") and "truncated" in err.value.problem
    ds["images"] = [img for img in ds["images"] if img["file_name"] != "00090.jpg"]
    verify_images(ds)
