"""One process per run folder and per detection output: a second one refuses at once, naming the
folder (or file) and the holder's PID; the kernel frees the lock when its holder dies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scratchdet.cli import main
from scratchdet.engine.run_lock import HELD_ENV, RUN_LOCK_NAME, lock_output_file, lock_run_folder
from scratchdet.errors import DataError

from .test_interruption import TINY_DSOD


def _holder(kind: str, path: Path) -> subprocess.Popen:
    """Another process holding the lock of `path` (as `scratchdet train|detect` does)."""
    proc = subprocess.Popen([sys.executable, "-c", (
        f"import time; from scratchdet.engine.run_lock import {kind}; "
        f"lock = {kind}({str(path)!r}); print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def _cli(capsys, *args: str) -> tuple[int, str]:
    """`scratchdet ARGS` in this process: (exit status, stderr)."""
    code = main(list(args))
    return code, capsys.readouterr().err


def test_second_train_on_a_run_folder_refuses_naming_folder_and_holder(tmp_path, synth_splits,
                                                                        capsys):
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_DSOD, "data": {
        "train": str(synth_splits["trainval"]), "num_workers": 0}, "train": {"batch_size": 2}}))
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
        code, err = _cli(capsys, "detect", "--checkpoint", str(tmp_path / "model_final.pt"),
                         "--data", str(tmp_path / "test.json"), "--out", str(out))
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
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                ["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    row = repo / "results" / "t" / "r" / "0123456789"
    write_json(row / "train" / "status.json", {"status": "finished", "step": 2})
    (row / "train" / "checkpoints").mkdir()
    (row / "train" / "checkpoints" / "step_00000001.pt").write_bytes(b"weights")
    (row / "train" / "checkpoints" / ".step_00000002.pt.x1y2.tmp").write_bytes(b"half")
    with lock_run_folder(row / "train"), lock_output_file(row / "detections.json"):
        push(repo / "results", None, repo=repo, remote="local")
    manifest = read_json(next((repo / ".dvc" / "cache").rglob("*.dir")))
    names = sorted(entry["relpath"] for entry in manifest)
    assert names == ["train/checkpoints/step_00000001.pt", "train/status.json"], names
