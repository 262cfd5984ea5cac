"""Snapshots kept N deep, leftovers swept, a damaged newest snapshot skipped, --restart-stale that
always works, and an init_from that is refused before the run folder exists."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from scratchdet.config import config_from_dict
from scratchdet.engine.checkpoint import (
    CheckpointStore,
    list_snapshots,
    load_checkpoint,
    save_checkpoint,
    snapshot_path,
)
from scratchdet.engine.train import train
from scratchdet.errors import DataError
from tests.test_interruption import TINY_DSOD

CFG = config_from_dict({"model": {"name": "dsod300"}, "train": {"keep_checkpoints": 2}})


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


class _Evil:
    """Pickles as a call to exec: what weights_only loading refuses."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('executed')",))


def _truncate(path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_last_n_snapshots_are_kept_and_listed_by_step(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    model, opt = _model_and_optimizer()
    for step in (5, 10, 15, 20):
        store.save(step, model, optimizer=opt, cfg=CFG, class_names=["cat", "dog"])
    assert list_snapshots(tmp_path) == [
        (15, snapshot_path(tmp_path, 15)),
        (20, snapshot_path(tmp_path, 20)),
    ]
    assert snapshot_path(tmp_path, 20).name == "step_00000020.pt"
    snap = load_checkpoint(snapshot_path(tmp_path, 20))
    # what `scratchdet detect` needs, in every snapshot
    assert snap["class_names"] == ["cat", "dog"] and snap["model_config"] == {"name": "dsod300"}
    assert snap["image_size"] == 300 and snap["step"] == 20 and "optimizer" in snap
    assert CheckpointStore(tmp_path).resume_point().step == 20


def test_stale_temporary_files_are_swept_and_nothing_else(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [
        tmp_path / "checkpoints" / ".step_00000010.pt.ab12cd.tmp",
        tmp_path / "checkpoints" / ".last.pt.x9.tmp",
        tmp_path / ".model_final.pt.q1.tmp",
        tmp_path / ".metrics.csv.r2.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    os.chmod(stale[0], 0o600)
    kept = [tmp_path / ".dets.json.s3.tmp", tmp_path / "notes.tmp"]  # not training's files
    for path in kept:
        path.write_bytes(b"x")
    assert sorted(CheckpointStore(tmp_path).sweep()) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_a_damaged_newest_snapshot_is_reported_and_an_older_one_resumed(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep=3)
    model, opt = _model_and_optimizer()
    for step in (1, 2, 3):
        store.save(step, model, optimizer=opt, cfg=CFG, class_names=["cat"])
    _truncate(snapshot_path(tmp_path, 3))
    snapshot_path(tmp_path, 2).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="scratchdet.engine.checkpoint"):
        snap = CheckpointStore(tmp_path, keep=3).resume_point()
    assert snap.step == 1 and snap.path == snapshot_path(tmp_path, 1)
    warned = caplog.text
    assert "step_00000003.pt" in warned and "step_00000002.pt" in warned
    # the next save replaces the unreadable future the resume skipped
    store = CheckpointStore(tmp_path, keep=3)
    store.save(2, model, optimizer=opt, cfg=CFG, class_names=["cat"])
    assert [s for s, _ in list_snapshots(tmp_path)] == [1, 2]
    load_checkpoint(snapshot_path(tmp_path, 2))


def test_every_snapshot_unreadable_is_an_error_that_restart_stale_clears(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    model, opt = _model_and_optimizer()
    for step in (1, 2):
        store.save(step, model, optimizer=opt, cfg=CFG, class_names=["cat"])
    (tmp_path / "metrics.csv").write_text("step\n0\n1\n")
    for _, path in list_snapshots(tmp_path):
        _truncate(path)
    with pytest.raises(DataError, match="--restart-stale"):
        CheckpointStore(tmp_path).resume_point()
    fresh = CheckpointStore(tmp_path)
    assert fresh.discard_if_stale(CFG)
    assert list_snapshots(tmp_path) == [] and not (tmp_path / "metrics.csv").exists()
    assert fresh.resume_point() is None


def test_restart_stale_keeps_this_configs_run_and_discards_another(tmp_path):
    cfg = config_from_dict({"model": {"name": "dsod300"}})
    store = CheckpointStore(tmp_path)
    model, opt = _model_and_optimizer()
    store.save(1, model, optimizer=opt, cfg=cfg, class_names=["cat"])
    assert not CheckpointStore(tmp_path).discard_if_stale(cfg)
    # A config recorded before a key existed is still this config (its default fills the gap).
    old = load_checkpoint(snapshot_path(tmp_path, 1))
    del old["config"]["train"]["keep_checkpoints"]
    save_checkpoint(old, snapshot_path(tmp_path, 1))
    assert not CheckpointStore(tmp_path).discard_if_stale(cfg)
    other = config_from_dict({"model": {"name": "dsod300"}, "train": {"lr": 0.5}})
    assert CheckpointStore(tmp_path).discard_if_stale(other)
    assert list_snapshots(tmp_path) == []


def test_a_finished_run_with_an_unreadable_final_model_restarts_stale(tmp_path):
    save_checkpoint({"model": {}, "config": CFG.to_dict()}, tmp_path / "model_final.pt")
    (tmp_path / "status.json").write_text('{"status": "finished"}\n')
    assert not CheckpointStore(tmp_path).discard_if_stale(CFG)
    _truncate(tmp_path / "model_final.pt")
    assert CheckpointStore(tmp_path).discard_if_stale(CFG)
    assert not (tmp_path / "model_final.pt").exists() and not (tmp_path / "status.json").exists()


@pytest.mark.parametrize("source", ["pickle", "no_model", "other_architecture"])
def test_a_refused_init_from_leaves_no_run_folder(tmp_path, synth_splits, source):
    init = tmp_path / f"{source}.pt"
    if source == "pickle":
        torch.save({"model": {"w": _Evil()}}, init)
    elif source == "no_model":
        torch.save({"weights": {}}, init)
    else:
        torch.save({"model": {"some.other.layer": torch.zeros(3)}}, init)
    cfg = config_from_dict(
        {
            "model": TINY_DSOD,
            "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
            "train": {"batch_size": 2, "device": "cpu", "init_from": str(init)},
        }
    )
    run = tmp_path / "runs" / "finetune"
    with pytest.raises(DataError) as err:
        train(cfg, run)
    assert err.value.path == str(init)
    assert not run.exists()
