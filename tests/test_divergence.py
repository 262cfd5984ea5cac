"""Divergence is a result: the run stops, says when and why, and its evaluation reads NaN."""

from __future__ import annotations

import math

import pytest
import yaml

from scratchdet.cli import main
from scratchdet.io import read_json
from tests.test_interruption import TINY_DSOD


def _run(tmp_path, synth_splits, **train):
    cfg = {
        "seed": 0,
        "model": TINY_DSOD | {"bn_head": False},
        "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
        "train": {"batch_size": 2, "max_steps": 6, "checkpoint_every": 3} | train,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_huge_learning_rate_diverges_and_scores_nan(tmp_path, synth_splits):
    run = _run(tmp_path, synth_splits, lr=1.0e6)
    status = read_json(run / "status.json")
    assert status["status"] == "diverged"
    assert status["step"] < 6 and status["reason"]
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert int(rows[-1].split(",")[0]) == status["step"]

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
    assert read_json(dets) == []
    metrics = tmp_path / "metrics.json"
    assert (
        main(
            [
                "eval",
                "--gt",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--out",
                str(metrics),
                "--status",
                str(run / "status.json"),
            ]
        )
        == 0
    )
    result = read_json(metrics)
    assert math.isnan(result["map"]) and result["diverged"] is True
    assert result["reason"] == status["reason"]


def test_loss_bound_is_a_divergence(tmp_path, synth_splits):
    run = _run(tmp_path, synth_splits, lr=0.01, max_loss=1e-3, max_steps=2)
    status = read_json(run / "status.json")
    assert (
        status == {"status": "diverged", "step": 0, "reason": status["reason"]}
        and "exceeded train.max_loss" in status["reason"]
    )


def test_single_image_micro_batch_with_batchnorm_on_1x1_map_is_a_config_error(
    tmp_path, synth_splits
):
    from scratchdet.config import config_from_dict
    from scratchdet.engine.train import train
    from scratchdet.errors import ConfigError

    cfg = config_from_dict(
        {
            "model": {"name": "root_resnet18_ssd300"},
            "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
            "train": {"batch_size": 1, "max_steps": 1},
        }
    )
    with pytest.raises(ConfigError, match=r"train.micro_batch: 1 image"):
        train(cfg, tmp_path / "run")
