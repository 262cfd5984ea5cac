"""scratchdet.run_folder: a run folder's file names (which the shipped DVC remote holds) and the
typed run status every reader of status.json goes through."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scratchdet.errors import DataError
from scratchdet.io import write_json
from scratchdet.run_folder import RUN_FILES, RunPaths, RunStatus, TrainFolder

ROOT = Path(__file__).resolve().parent.parent


def test_the_file_names_are_those_the_shipped_remote_holds():
    # Renaming one would make every run restored by `dvc pull` look untrained.
    assert RUN_FILES == (
        "model_final.pt",
        "status.json",
        "metrics.csv",
        "config.yaml",
        "provenance.json",
    )
    run = RunPaths.of("results/default", "t", "r", "0123456789")
    assert run.train == TrainFolder(run.train_dir)
    assert run.status == run.train_dir / "status.json"


def test_a_status_round_trips_and_says_how_the_run_ended(tmp_path):
    diverged = RunStatus(RunStatus.DIVERGED, 7, "loss inf")
    diverged.write(tmp_path / "status.json")
    assert json.loads((tmp_path / "status.json").read_text()) == {
        "status": "diverged",
        "step": 7,
        "reason": "loss inf",
    }
    read = RunStatus.read(tmp_path / "status.json")
    assert read == diverged and read.diverged and read.steps_done == 8
    assert read.summary == "diverged at step 7 (loss inf)"
    finished = RunStatus(RunStatus.FINISHED, 300)
    assert not finished.diverged and finished.steps_done == 300
    assert finished.detail == "300 steps" and finished.summary == "finished"
    assert RunStatus.read_if_present(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    "content, problem",
    [
        ([1, 2], "not a run status"),
        ({"status": "crashed", "step": 3}, "neither 'finished' nor 'diverged'"),
        ({"status": "finished", "step": "3"}, "not a whole number"),
        ({"status": "finished", "step": math.inf}, "not a whole number"),
    ],
)
def test_a_malformed_status_names_the_file(tmp_path, content, problem):
    write_json(tmp_path / "status.json", content)
    with pytest.raises(DataError, match=problem) as err:
        RunStatus.read(tmp_path / "status.json")
    assert str(tmp_path / "status.json") in str(err.value)


def test_the_run_folder_module_imports_no_torch():
    code = (
        "import sys, scratchdet.run_folder, scratchdet.paper_tables; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
