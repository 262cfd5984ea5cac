"""Killing a run at any moment loses nothing: the resumed run ends where the uninterrupted one does,
even when the kill damaged its newest snapshot; and no second process trains in the same folder."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from scratchdet.engine.checkpoint import list_snapshots, load_checkpoint, snapshot_path
from scratchdet.engine.training_log import TrainingLog

# A narrow DSOD (the real family, a fraction of the width) keeps each step near a second on CPU.
TINY_DSOD = {"name": "dsod300_smallest", "stem_channels": 16, "bottleneck": 16, "growth": 8}
MAX_STEPS = 5


def _write_config(tmp_path: Path, train_json: Path) -> Path:
    cfg = {
        "seed": 7,
        "model": TINY_DSOD,
        "data": {"train": str(train_json), "num_workers": 0},
        "train": {
            "batch_size": 2,
            "lr": 0.01,
            "max_steps": MAX_STEPS,
            "checkpoint_every": 1,
            "warmup_steps": 2,
            "milestones": [3],
            "deterministic": True,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_cmd(config: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scratchdet.cli",
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
    ]


def _wait_for_checkpoint(
    proc: subprocess.Popen, run: Path, count: int = 1, timeout: float = 300
) -> None:
    """Until `run` holds `count` snapshots (the training still running)."""
    deadline = time.monotonic() + timeout
    while len(list_snapshots(run)) < count:
        assert proc.poll() is None, f"training exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _losses(run: Path) -> list[tuple[str, ...]]:
    cols = ("step", "lr", "loss", "loc_loss", "conf_loss", "grad_norm", "num_pos")
    return [tuple(r[c] for c in cols) for r in TrainingLog(run / "metrics.csv").read()]


@pytest.fixture
def start():
    """Start a command in its own process group; the group is killed when the test ends, passed
    or failed (a stopped or orphaned training must not outlive its test)."""
    started: list[subprocess.Popen] = []

    def start(cmd: list[str]) -> subprocess.Popen:
        started.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
        )
        return started[-1]

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


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
def test_sigkill_then_rerun_reaches_identical_weights(tmp_path, synth_splits, reference_run, start):
    config = _write_config(tmp_path, synth_splits["trainval"])
    run = tmp_path / "run"
    proc = start(_train_cmd(config, run))
    _wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGSTOP)  # paused, still holding the folder, so it cannot finish first
    try:
        second = subprocess.run(
            _train_cmd(config, run), capture_output=True, text=True, check=False
        )
    finally:
        proc.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr  # one run per folder, refused at once
    assert (
        f"{run}: this run folder is in use" in second.stderr and f"PID {proc.pid}" in second.stderr
    )
    time.sleep(0.7)  # somewhere inside a later step, or inside a checkpoint write
    proc.kill()
    proc.communicate()
    assert not (run / "status.json").exists()
    subprocess.run(_train_cmd(config, run), check=True, capture_output=True)
    _assert_same_result(run, reference_run)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, synth_splits, reference_run, start):
    config = _write_config(tmp_path, synth_splits["trainval"])
    run = tmp_path / "run"
    proc = start(_train_cmd(config, run))
    _wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    step, newest = list_snapshots(run)[-1]
    assert load_checkpoint(newest)["step"] == step, "the signal's snapshot is the newest"
    assert len(_losses(run)) == step, "the log holds exactly the checkpointed steps"
    subprocess.run(_train_cmd(config, run), check=True, capture_output=True)
    _assert_same_result(run, reference_run)


@pytest.mark.slow
def test_a_damaged_newest_snapshot_costs_one_interval_not_the_run(
    tmp_path, synth_splits, reference_run, start
):
    config = _write_config(tmp_path, synth_splits["trainval"])
    run = tmp_path / "run"
    proc = start(_train_cmd(config, run))
    _wait_for_checkpoint(proc, run, count=2)
    proc.kill()
    proc.communicate()
    snapshots = list_snapshots(run)
    (older_step, _), (_, newest) = snapshots[-2:]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])  # cut short
    leftover = run / "checkpoints" / f".{newest.name}.k1ll3d.tmp"  # a write a kill interrupted
    leftover.write_bytes(b"half a checkpoint")
    verbose = [*_train_cmd(config, run)[:3], "-v", *_train_cmd(config, run)[3:]]
    rerun = subprocess.run(verbose, capture_output=True, text=True, check=True)
    assert f"{newest}: unreadable or truncated checkpoint" in rerun.stderr, rerun.stderr
    assert f"resuming {run} from step {older_step}" in rerun.stderr, rerun.stderr
    assert not leftover.exists()
    _assert_same_result(run, reference_run)
    assert [s for s, _ in list_snapshots(run)] == [2, 3, 4], "keep_checkpoints: the last 3"
    # A snapshot carries what detection needs, like model_final.pt.
    dets = tmp_path / "dets.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet.cli",
            "detect",
            "--checkpoint",
            str(snapshot_path(run, 3)),
            "--data",
            str(synth_splits["test"]),
            "--out",
            str(dets),
            "--workers",
            "0",
        ],
        check=True,
        capture_output=True,
    )
    assert isinstance(json.loads(dets.read_text()), list)


@pytest.mark.slow
def test_a_finished_run_continues_to_more_steps_in_a_new_folder(
    tmp_path, synth_splits, reference_run
):
    """`train --continue-from RUN --max-steps N --out NEW`: RUN trained 4 of the reference's 5
    steps; NEW starts at RUN's newest snapshot and ends with the reference's weights, records
    where it came from, and a config that changes more than the schedule is refused."""
    config = _write_config(tmp_path, synth_splits["trainval"])
    short = tmp_path / "short"
    done = subprocess.run(
        [*_train_cmd(config, short), "--set", "train.max_steps=4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    new = tmp_path / "longer"
    cont = [
        sys.executable,
        "-m",
        "scratchdet.cli",
        "train",
        "--continue-from",
        str(short),
        "--max-steps",
        str(MAX_STEPS),
        "--out",
        str(new),
    ]
    done = subprocess.run(cont, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{new}: finished at step {MAX_STEPS}" in done.stdout
    record = json.loads((new / "continued_from.json").read_text())
    assert record["run"] == str(short) and record["step"] == 3  # RUN's newest snapshot
    assert record["run_status"]["status"] == "finished" and record["run_status"]["step"] == 4
    assert yaml.safe_load((new / "config.yaml").read_text())["train"]["max_steps"] == MAX_STEPS
    final, expected = (load_checkpoint(r / "model_final.pt") for r in (new, reference_run))
    assert final["step"] == expected["step"] == MAX_STEPS
    for key, tensor in expected["model"].items():
        assert torch.equal(final["model"][key], tensor), f"{key} differs after continuing"
    assert _losses(new) == _losses(reference_run)[3:]  # steps 3 and 4, as the reference's
    again = subprocess.run(cont, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "finished at step 5" in again.stdout  # nothing redone

    other = subprocess.run(
        [*cont[:-1], str(tmp_path / "other"), "--set", "train.lr=0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode == 2 and "train.init_from instead" in other.stderr
    assert not (tmp_path / "other" / "checkpoints").exists()
    few = subprocess.run(
        [*cont[:7], "3", "--out", str(tmp_path / "few")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        few.returncode == 2 and "--max-steps: 3 is not beyond the snapshot's step 3" in few.stderr
    )
