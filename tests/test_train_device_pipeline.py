"""`data.pipeline: device` trains through the whole-batch input pipeline, reproducibly."""

from __future__ import annotations

import math

import pytest
import torch

from scratchdet.config import config_from_dict
from scratchdet.engine.checkpoint import load_checkpoint
from scratchdet.engine.train import train
from scratchdet.engine.training_log import TrainingLog
from scratchdet.errors import ConfigError
from tests.test_interruption import TINY_DSOD


def _cfg(train_json, **data):
    return config_from_dict(
        {
            "seed": 3,
            "model": TINY_DSOD,
            "data": {"train": str(train_json), "num_workers": 0} | data,
            "train": {
                "batch_size": 2,
                "max_steps": 2,
                "checkpoint_every": 1,
                "deterministic": True,
            },
        }
    )


@pytest.mark.slow
def test_device_augmentation_trains_and_repeats(tmp_path, synth_splits):
    runs = []
    for name in ("a", "b"):
        status = train(_cfg(synth_splits["trainval"], pipeline="device"), tmp_path / name)
        assert status["status"] == "finished"
        runs.append(tmp_path / name)
    rows = [TrainingLog(r / "metrics.csv").read() for r in runs]
    assert [row["loss"] for row in rows[0]] == [row["loss"] for row in rows[1]]
    assert all(math.isfinite(float(row["loss"])) and float(row["num_pos"]) > 0 for row in rows[0])
    a, b = (load_checkpoint(r / "model_final.pt")["model"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_augment_mode_is_a_config_error(synth_splits):
    with pytest.raises(ConfigError, match=r"data.pipeline"):
        _cfg(synth_splits["trainval"], pipeline="gpu")


def test_init_from_copies_matching_tensors_and_keeps_new_class_scores(tmp_path, synth_splits):
    from scratchdet.engine.train import initialise_from
    from scratchdet.io import read_json
    from scratchdet.models import build_model

    source = tmp_path / "source"
    train(_cfg(synth_splits["trainval"]), source)
    target = build_model(TINY_DSOD, num_classes=7)  # other class count: conf heads differ
    report = initialise_from(target, source / "model_final.pt")
    trained = load_checkpoint(source / "model_final.pt")["model"]
    own = target.state_dict()
    assert report["loaded"] > 0 and report["skipped"]
    assert all("conf" in name for name in report["skipped"])
    for name, tensor in trained.items():
        if name not in report["skipped"]:
            assert torch.equal(own[name], tensor), name

    cfg = config_from_dict(
        _cfg(synth_splits["trainval"]).to_dict()
        | {
            "train": _cfg(synth_splits["trainval"]).to_dict()["train"]
            | {"init_from": str(source / "model_final.pt")}
        }
    )
    train(cfg, tmp_path / "finetune")
    assert read_json(tmp_path / "finetune" / "provenance.json")["init_from"]["loaded"] > 0
