"""A lab's scales do not break a fresh clone's bare `dvc pull`, and `dvc pull data.dvc` restores
the data alone.

A lab commits the .dvc files of a scale of its own (here a fake paper-scale row, pushed with
`scratchdet artifacts push` to the lab's remote, a folder that a fresh clone cannot see). That
scale is a DVC repository of its own (results/<scale>, scratchdet/artifacts.py), so a fresh clone
offline still restores the default scale from the remote shipped in the repository with a bare
`dvc pull`; with the lab remote configured at the root, `scratchdet artifacts pull` restores the
lab's scale. Before that layout, the bare pull failed on the lab's files (`remote: lab`, not
configured in the clone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from tests.test_dvc_roundtrip import GIT, project_copy, restored_files, run

ROW = "results/paper/dsod_table4/dsod300/0123456789"


def fake_paper_row(repo: Path) -> None:
    """A finished paper-scale run folder (weights included, as the lab scales version them)."""
    row = repo / ROW
    (row / "train").mkdir(parents=True)
    (row / "train" / "status.json").write_text(json.dumps({"state": "finished"}) + "\n")
    (row / "train" / "model_final.pt").write_bytes(b"\x00weights" * 100)
    (row / "metrics.json").write_text(json.dumps({"map": 0.775}) + "\n")


def scratchdet(*args: str, cwd: Path) -> str:
    return run(sys.executable, "-m", "scratchdet", "artifacts", *args, cwd=cwd)


def test_a_lab_scale_leaves_the_bare_pull_and_the_data_pull_offline(tmp_path):
    lab_storage = tmp_path / "lab-storage"
    lab = project_copy(tmp_path / "lab", artifacts=True)
    run("dvc", "remote", "add", "--local", "lab", str(lab_storage), cwd=lab)
    fake_paper_row(lab)
    pushed = scratchdet("push", "--results", "results/paper", cwd=lab)
    assert f"{ROW}.dvc" in pushed.split() and "results/paper/.dvc/config" in pushed.split(), pushed
    assert yaml.safe_load((lab / f"{ROW}.dvc").read_text())["outs"][0]["remote"] == "lab"
    assert any(lab_storage.rglob("*.dir"))
    run(*GIT, "add", "-A", cwd=lab)
    run(*GIT, "commit", "-qm", "the lab's paper scale", cwd=lab)
    committed = run("git", "ls-files", "results/paper", cwd=lab).split()
    assert {f"{ROW}.dvc", "results/paper/.dvc/config", "results/paper/.dvcignore"} <= set(
        committed
    ), committed
    assert not [f for f in committed if f.endswith((".pt", ".json", "config.local"))], committed

    # A fresh clone elsewhere: no lab remote configured (it is in the lab's .dvc/config.local).
    clone = tmp_path / "clone"
    run(*GIT, "clone", "-q", str(lab), str(clone), cwd=tmp_path)
    remotes = run("dvc", "remote", "list", cwd=clone)
    assert remotes.startswith("shipped") and "\nlab" not in remotes, remotes
    run("dvc", "pull", cwd=clone)  # exit 0, or run() fails the test with DVC's message
    assert any((clone / "data/synth").rglob("trainval.json"))
    assert len(list((clone / "results/default").rglob("metrics.json"))) == 50
    assert not (clone / ROW).exists()  # the lab's scale stays with the lab

    # The data alone.
    data_only = tmp_path / "data-only"
    run(*GIT, "clone", "-q", str(lab), str(data_only), cwd=tmp_path)
    run("dvc", "pull", "data.dvc", cwd=data_only)
    assert restored_files(data_only, "data") == restored_files(clone, "data")
    in_git = set(run("git", "ls-files", "results", cwd=data_only).split())
    on_disk = {
        str(p.relative_to(data_only))
        for p in (data_only / "results").rglob("*")
        if p.is_file() and "cache" not in p.relative_to(data_only).parts
    }
    assert on_disk - in_git <= {"results/paper/.dvc/config.local"}, on_disk - in_git  # no result

    # With the lab remote configured once, at the root: the lab's scale comes back.
    run("dvc", "remote", "add", "--local", "lab", str(lab_storage), cwd=clone)
    pulled = scratchdet("pull", "--results", "results/paper", cwd=clone)
    assert "each file verified" in pulled, pulled
    assert restored_files(clone, ROW) == restored_files(lab, ROW)
    assert (clone / ROW / "train" / "model_final.pt").is_file()
