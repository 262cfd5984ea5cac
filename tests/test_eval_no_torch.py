"""`scratchdet eval` never imports torch: scoring is numpy (+ pycocotools), and its provenance reads
package versions from metadata. Importing torch was 98% of its start-up (issue 21); each workflow
evaluation job pays the start-up, so a stray import is a regression this test catches.

The command runs in a fresh interpreter (this test process has torch loaded already) through a
wrapper that calls the CLI's ``main`` and then reports what ``sys.modules`` holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scratchdet.evaluation.coco import available_backends

WRAPPER = (
    "import json, sys\n"
    "from scratchdet.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print('MODULES ' + json.dumps({'rc': rc, 'torch': 'torch' in sys.modules,\n"
    "    'torchvision': 'torchvision' in sys.modules}))\n"
)


def run_cli(*args: str) -> dict:
    """Run ``scratchdet ARGS`` in a fresh interpreter; its exit code and whether torch loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("MODULES ")]
    return json.loads(line[len("MODULES ") :])


def write_case(folder: Path) -> tuple[Path, Path, Path]:
    """A ground truth, a training split and detections: two images, two classes."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in (1, 2)]
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [10.0, 10.0, 30.0, 20.0],
            "area": 600.0,
            "iscrowd": 0,
            "difficult": 0,
            "truncated": 0,
        },
        {
            "id": 2,
            "image_id": 2,
            "category_id": 2,
            "bbox": [40.0, 20.0, 50.0, 50.0],
            "area": 2500.0,
            "iscrowd": 0,
            "difficult": 0,
            "truncated": 0,
        },
    ]
    gt = {
        "info": {"image_dir": "JPEGImages", "source": "voc"},
        "images": images,
        "categories": cats,
        "annotations": anns,
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [11.0, 9.0, 30.0, 21.0], "score": 0.9},
        {"image_id": 2, "category_id": 2, "bbox": [0.0, 0.0, 20.0, 20.0], "score": 0.8},
        {"image_id": 2, "category_id": 2, "bbox": [41.0, 21.0, 49.0, 50.0], "score": 0.7},
    ]
    paths = folder / "gt.json", folder / "train.json", folder / "dets.json"
    for path, data in zip(paths, (gt, gt, dets)):
        path.write_text(json.dumps(data))
    return paths


@pytest.mark.parametrize("metric", ["voc07", "coco"])
def test_eval_scores_without_importing_torch(tmp_path, metric):
    if metric == "coco" and not available_backends():
        pytest.skip("no COCO backend installed")
    gt, _, dets = write_case(tmp_path)
    out = tmp_path / "metrics.json"
    seen = run_cli(
        "eval", "--gt", str(gt), "--dets", str(dets), "--metric", metric, "--out", str(out)
    )
    assert seen == {"rc": 0, "torch": False, "torchvision": False}
    result = json.loads(out.read_text())
    assert 0 < result["map"] <= 1
    prov = result["provenance"]
    # versions still recorded, read from package metadata
    assert prov["packages"]["torch"] and prov["packages"]["scratchdet"]
    assert prov["hardware"]["torch_imported"] is False
    assert "cuda_available" not in prov["hardware"]  # nothing ran on a GPU; no guess either


def test_eval_baseline_without_importing_torch(tmp_path):
    gt, train, _ = write_case(tmp_path)
    seen = run_cli(
        "eval",
        "--baseline",
        "mean-box",
        "--train",
        str(train),
        "--gt",
        str(gt),
        "--out",
        str(tmp_path / "baseline.json"),
    )
    assert seen == {"rc": 0, "torch": False, "torchvision": False}


def test_provenance_asks_torch_once_the_process_uses_it():
    import torch  # noqa: F401  (this process uses torch)

    from scratchdet.provenance import hardware

    info = hardware("cpu")
    assert info["torch_imported"] is True and info["device"] == "cpu"
    assert info["torch_threads"] >= 1 and isinstance(info["cuda_available"], bool)
