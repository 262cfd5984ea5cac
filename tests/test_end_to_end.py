"""synth -> train a few steps -> detect -> eval, through the command line a user types."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scratchdet.cli import main
from scratchdet.io import read_json


def _config(tmp_path, train_json, **train):
    cfg = {
        "seed": 0,
        "model": {"name": "ssd300_vgg16", "bn_backbone": True, "bn_head": True, "width": 0.25},
        "data": {"train": str(train_json), "num_workers": 0},
        "train": {
            "batch_size": 4,
            "micro_batch": 2,
            "lr": 0.01,
            "max_steps": 2,
            "checkpoint_every": 2,
            "deterministic": True,
        }
        | train,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_synth_train_detect_eval(tmp_path, synth_splits):
    cfg = _config(tmp_path, synth_splits["trainval"])
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0

    status = read_json(run / "status.json")
    assert status == {"status": "finished", "step": 2, "reason": None}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss,loc_loss,conf_loss,grad_norm")
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    prov = read_json(run / "provenance.json")
    assert prov["config"]["train"]["max_steps"] == 2 and prov["packages"]["torch"]

    dets = tmp_path / "dets.json"
    assert (
        main(
            [
                "detect",
                "--checkpoint",
                str(run / "model_final.pt"),
                "--data",
                str(synth_splits["test"]),
                "--out",
                str(dets),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    detections = json.loads(dets.read_text())
    assert detections, "an untrained SSD still emits low-confidence boxes above 0.01"
    assert len(detections) <= 200 * 8
    assert {"image_id", "category_id", "bbox", "score"} <= set(detections[0])

    metrics = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                "--gt",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--metric",
                "voc07",
                "--out",
                str(metrics),
                "--status",
                str(run / "status.json"),
            ]
        )
        == 0
    )
    result = read_json(metrics)
    assert 0.0 <= result["map"] <= 1.0
    assert len(result["per_class"]) == 5
    assert result["provenance"]["code"]


def test_console_script_reports_bad_config(tmp_path):
    exe = shutil.which("scratchdet", path=str(Path(sys.executable).parent))
    assert exe, "the scratchdet console script is installed next to the interpreter"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: fast}\n")
    proc = subprocess.run(
        [exe, "train", "--config", str(bad), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{bad}: train.lr: expected a number" in proc.stderr
    assert "Traceback" not in proc.stderr
