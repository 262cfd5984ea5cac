"""GPU assignment for concurrent jobs, and multi-process (torch.distributed) training on CPU."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import yaml

from scratchdet.engine.gpus import assign_gpus, claim_gpus
from scratchdet.errors import ConfigError
from scratchdet.io import read_json
from tests.test_interruption import TINY_DSOD


def test_concurrent_claims_get_disjoint_gpus(tmp_path):
    first = claim_gpus(2, total=4, lock_dir=tmp_path)
    second = claim_gpus(2, total=4, lock_dir=tmp_path)
    assert set(first.ids).isdisjoint(second.ids) and len(first.ids + second.ids) == 4
    with pytest.raises(TimeoutError):
        claim_gpus(1, total=4, lock_dir=tmp_path, timeout=0.2, poll=0.05)
    first.release()
    third = claim_gpus(2, total=4, lock_dir=tmp_path, timeout=1)
    assert sorted(third.ids) == sorted(first.ids)


def test_a_killed_job_gives_its_gpu_back(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from pathlib import Path; from scratchdet.engine.gpus import "
                "claim_gpus; "
                f"c = claim_gpus(1, total=1, lock_dir=Path({str(tmp_path)!r})); print('held', "
                f"flush=True); "
                "time.sleep(600)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(TimeoutError):
        claim_gpus(1, total=1, lock_dir=tmp_path, timeout=0.2, poll=0.05)
    holder.kill()
    holder.wait()
    assert claim_gpus(1, total=1, lock_dir=tmp_path, timeout=5, poll=0.05).ids == [0]


def test_assign_sets_visible_devices_or_respects_the_scheduler(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    claim = assign_gpus(2, total=3, lock_dir=tmp_path)
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == claim.visible_devices == "0,1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # e.g. SLURM --gres=gpu:1
    assert assign_gpus(1, total=3, lock_dir=tmp_path) is None
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES lists 1"):
        assign_gpus(2, total=3, lock_dir=tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ConfigError, match="has 3"):
        assign_gpus(4, total=3, lock_dir=tmp_path)
    assert assign_gpus(0) is None


def test_detection_claims_a_gpu_no_other_job_holds(tmp_path):
    """Concurrent detection jobs of a multi-GPU machine get their own GPU too (paper scale)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(SCRATCHDET_NUM_GPUS="2", SCRATCHDET_GPU_LOCK_DIR=str(tmp_path))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from scratchdet.engine.gpus import claim_gpus; "
                "c = claim_gpus(1); print('held', c.ids, flush=True); time.sleep(600)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "held [0]"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "scratchdet",
                "-v",
                "detect",
                "--gpus",
                "1",
                "--checkpoint",
                str(tmp_path / "none.pt"),
                "--data",
                str(tmp_path / "none.json"),
                "--out",
                str(tmp_path / "d.json"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        holder.kill()
        holder.wait()
    assert "claimed GPU 1 (CUDA_VISIBLE_DEVICES=1)" in proc.stderr, proc.stderr
    assert proc.returncode == 2 and "none.pt" in proc.stderr  # then the missing checkpoint


@pytest.mark.slow
def test_two_process_training_on_cpu(tmp_path, synth_splits):
    cfg = {
        "seed": 0,
        "model": TINY_DSOD,
        "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
        "train": {
            "batch_size": 4,
            "micro_batch": 1,
            "lr": 0.01,
            "max_steps": 2,
            "checkpoint_every": 1,
            "device": "cpu",
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet.cli",
            "train",
            "--config",
            str(path),
            "--out",
            str(run),
            "--nproc",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_json(run / "status.json")["status"] == "finished"
    assert read_json(run / "provenance.json")["world_size"] == 2
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1"], "only process 0 writes the log"
    assert all(math.isfinite(float(r.split(",")[2])) for r in rows)
