"""One process per run folder and per detection output: a second one refuses at once, naming the
folder (or file) and the holder's PID; the kernel frees the lock when its holder dies."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scratchdet.cli import main
from scratchdet.engine.run_lock import HELD_ENV, RUN_LOCK_NAME, lock_output_file, lock_run_folder
from scratchdet.errors import DataError
from tests.test_interruption import TINY_DSOD


def _holder(kind: str, path: Path) -> subprocess.Popen:
    """Another process holding the lock of `path` (as `scratchdet train|detect` does)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                f"import time; from scratchdet.engine.run_lock import {kind}; "
                f"lock = {kind}({str(path)!r}); print('held', flush=True); time.sleep(600)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def _cli(capsys, *args: str) -> tuple[int, str]:
    """`scratchdet ARGS` in this process: (exit status, stderr)."""
    code = main(list(args))
    return code, capsys.readouterr().err


def test_second_train_on_a_run_folder_refuses_naming_folder_and_holder(
    tmp_path, synth_splits, capsys
):
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": TINY_DSOD,
                "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
                "train": {"batch_size": 2},
            }
        )
    )
    holder = _holder("lock_run_folder", run)
    try:
        code, err = _cli(capsys, "train", "--config", str(config), "--out", str(run))
    finally:
        _stop(holder)  # SIGKILL: no cleanup code runs, the kernel drops the lock
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(run) in err and f"PID {holder.pid}" in err, err
    assert os.listdir(run) == [RUN_LOCK_NAME], "the refused run wrote nothing"
    with lock_run_folder(run) as lock:  # free again once its holder is dead
        assert lock.held


def test_second_detect_on_one_output_file_refuses(tmp_path, capsys):
    out = tmp_path / "dets" / "detections.json"
    holder = _holder("lock_output_file", out)
    try:
        code, err = _cli(
            capsys,
            "detect",
            "--checkpoint",
            str(tmp_path / "model_final.pt"),
            "--data",
            str(tmp_path / "test.json"),
            "--out",
            str(out),
        )
    finally:
        _stop(holder)
    assert code == 2 and str(out) in err and f"PID {holder.pid}" in err, err
    assert "model_final.pt" not in err  # refused before anything else
    assert not out.exists()


def test_ranks_and_a_launcher_holding_the_lock(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with lock_run_folder(run) as lock:
        with pytest.raises(DataError, match="in use"):
            lock_run_folder(run)  # a second lock in the same process is refused too
        monkeypatch.setenv(HELD_ENV, str(lock.path.resolve()))  # what `train --nproc` passes
        assert not lock_run_folder(run).held  # rank 0 of its workers: the launcher holds it
        monkeypatch.delenv(HELD_ENV)
        monkeypatch.setenv("RANK", "1")
        assert not lock_run_folder(run).held  # ranks > 0 never lock: rank 0 does for them
    monkeypatch.setenv("RANK", "0")
    assert lock_run_folder(run).held


def test_a_refused_run_leaves_no_empty_folder(tmp_path):
    run = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError), lock_run_folder(run):
        raise RuntimeError("refused before writing anything")
    assert not run.exists()
    run.mkdir(parents=True)
    with pytest.raises(RuntimeError), lock_run_folder(run):
        raise RuntimeError("an existing folder is kept")
    assert run.is_dir()


def test_dvc_versions_no_lock_or_temporary_file(tmp_path, monkeypatch):
    """`scratchdet artifacts push` runs `dvc add` on run folders: locks and leftovers stay out."""
    from scratchdet.artifacts import push
    from scratchdet.io import read_json, write_json

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if shutil.which("dvc") is None:
        pytest.skip("dvc is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / ".dvcignore", repo / ".dvcignore")
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    row = repo / "results" / "t" / "r" / "0123456789"
    write_json(row / "train" / "status.json", {"status": "finished", "step": 2})
    (row / "train" / "checkpoints").mkdir()
    (row / "train" / "checkpoints" / "step_00000001.pt").write_bytes(b"weights")
    (row / "train" / "checkpoints" / ".step_00000002.pt.x1y2.tmp").write_bytes(b"half")
    with lock_run_folder(row / "train"), lock_output_file(row / "detections.json"):
        push(repo / "results", None, repo=repo, remote="local")
    manifest = read_json(next(p for p in repo.rglob("*.dir") if ".dvc" in p.parts))
    names = sorted(entry["relpath"] for entry in manifest)
    assert names == ["train/checkpoints/step_00000001.pt", "train/status.json"], names


def _config_with_workers(tmp_path: Path, train_json: Path, max_steps: int) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": TINY_DSOD,
                "data": {"train": str(train_json), "num_workers": 2},
                "train": {
                    "batch_size": 2,
                    "max_steps": max_steps,
                    "checkpoint_every": 1,
                    "device": "cpu",
                },
            }
        )
    )
    return config


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_a_rerun_right_after_sigkill_starts_although_dataloader_workers_linger(
    tmp_path, synth_splits
):
    """SIGKILL a training that reads with DataLoader workers: the workers outlive it by seconds
    (they notice their parent's death on a timer), yet the lock died with the process that took
    it, so the command run again at once (as a Slurm requeue does) starts and finishes."""
    config = _config_with_workers(tmp_path, synth_splits["trainval"], max_steps=3)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "scratchdet.cli",
        "train",
        "--config",
        str(config),
        "--out",
        str(run),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints").is_dir() or len(_children(first.pid)) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no snapshot with live workers appeared"
            time.sleep(0.02)
        workers = _children(first.pid)
        first.kill()  # the parent only: its workers are orphaned, as after an OOM kill
        first.wait()
        with lock_run_folder(run) as lock:  # at once: the workers are still there
            assert lock.held
            assert any(_running(w) for w in workers), "the workers lived on (the case tested)"
        rerun = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        with contextlib.suppress(ProcessLookupError):  # the orphaned workers, whatever happened
            os.killpg(first.pid, signal.SIGKILL)
    assert "in use" not in rerun.stderr, rerun.stderr
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_the_lock_is_not_inherited_by_a_forked_child(tmp_path):
    """A child forked while the lock is held (a DataLoader worker) does not keep it alive."""
    run = tmp_path / "run"
    code = (
        f"import os, sys, time; from scratchdet.engine.run_lock import lock_run_folder\n"
        f"lock = lock_run_folder({str(run)!r})\n"
        f"if os.fork() == 0:\n    time.sleep(600)\n"  # the child lingers, the parent dies
        f"print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=f"PID {holder.pid}"):
            lock_run_folder(run)
        holder.kill()
        holder.wait()
        with lock_run_folder(run) as lock:  # the forked child still runs; the lock is free
            assert lock.held
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
