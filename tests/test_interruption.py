"""Killing a run at any moment loses nothing: the resumed run ends where the uninterrupted one does."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from scratchdet.engine.checkpoint import load_checkpoint
from scratchdet.engine.metrics_log import MetricsLog

# A narrow DSOD (the real family, a fraction of the width) keeps each step near a second on CPU.
TINY_DSOD = {"name": "dsod300_smallest", "stem_channels": 16, "bottleneck": 16, "growth": 8}
MAX_STEPS = 5


def _write_config(tmp_path: Path, train_json: Path) -> Path:
    cfg = {"seed": 7, "model": TINY_DSOD,
           "data": {"train": str(train_json), "num_workers": 0},
           "train": {"batch_size": 2, "lr": 0.01, "max_steps": MAX_STEPS, "checkpoint_every": 1,
                     "warmup_steps": 2, "milestones": [3], "deterministic": True}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "scratchdet.cli", "train", "--config", str(config), "--out", str(out)]


def _wait_for_checkpoint(proc: subprocess.Popen, path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _losses(run: Path) -> list[tuple[str, ...]]:
    cols = ("step", "lr", "loss", "loc_loss", "conf_loss", "grad_norm", "num_pos")
    return [tuple(r[c] for c in cols) for r in MetricsLog(run / "metrics.csv").read()]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, synth_splits) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    config = _write_config(tmp, synth_splits["trainval"])
    subprocess.run(_train_cmd(config, tmp / "run"), check=True, capture_output=True)
    return tmp / "run"


def _assert_same_result(run: Path, reference: Path) -> None:
    final = load_checkpoint(run / "model_final.pt")
    expected = load_checkpoint(reference / "model_final.pt")
    assert final["step"] == expected["step"] == MAX_STEPS
    for key, tensor in expected["model"].items():
        assert torch.equal(final["model"][key], tensor), f"{key} differs after resuming"
    assert _losses(run) == _losses(reference)  # every step once, none lost, none duplicated


@pytest.mark.slow
def test_sigkill_then_rerun_reaches_identical_weights(tmp_path, synth_splits, reference_run):
    config = _write_config(tmp_path, synth_splits["trainval"])
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(config, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_checkpoint(proc, run / "checkpoints" / "last.pt")
    time.sleep(0.7)  # somewhere inside a later step, or inside a checkpoint write
    proc.kill()
    proc.communicate()
    assert not (run / "status.json").exists()
    subprocess.run(_train_cmd(config, run), check=True, capture_output=True)
    _assert_same_result(run, reference_run)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, synth_splits, reference_run):
    config = _write_config(tmp_path, synth_splits["trainval"])
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(config, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_checkpoint(proc, run / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert len(_losses(run)) == saved["step"], "the log holds exactly the checkpointed steps"
    subprocess.run(_train_cmd(config, run), check=True, capture_output=True)
    _assert_same_result(run, reference_run)
