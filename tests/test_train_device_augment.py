"""`data.augment: device` trains through the whole-batch pipeline, reproducibly."""

from __future__ import annotations

import math

import pytest
import torch

from scratchdet.config import config_from_dict
from scratchdet.engine.checkpoint import load_checkpoint
from scratchdet.engine.metrics_log import MetricsLog
from scratchdet.engine.train import train
from scratchdet.errors import ConfigError

from .test_interruption import TINY_DSOD


def _cfg(train_json, **data):
    return config_from_dict({"seed": 3, "model": TINY_DSOD,
                             "data": {"train": str(train_json), "num_workers": 0} | data,
                             "train": {"batch_size": 2, "max_steps": 2, "checkpoint_every": 1,
                                       "deterministic": True}})


@pytest.mark.slow
def test_device_augmentation_trains_and_repeats(tmp_path, synth_splits):
    runs = []
    for name in ("a", "b"):
        status = train(_cfg(synth_splits["trainval"], augment="device"), tmp_path / name)
        assert status["status"] == "finished"
        runs.append(tmp_path / name)
    rows = [MetricsLog(r / "metrics.csv").read() for r in runs]
    assert [row["loss"] for row in rows[0]] == [row["loss"] for row in rows[1]]
    assert all(math.isfinite(float(row["loss"])) and float(row["num_pos"]) > 0 for row in rows[0])
    a, b = (load_checkpoint(r / "model_final.pt")["model"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_augment_mode_is_a_config_error(synth_splits):
    with pytest.raises(ConfigError, match="data.augment"):
        _cfg(synth_splits["trainval"], augment="gpu")
