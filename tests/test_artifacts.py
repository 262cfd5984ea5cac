"""Which folders `scratchdet artifacts push` versions, which remote each scale uses, one-line
errors for a remote that is not there, and the remote shipped with the repository (the DVC round
trip itself is in test_dvc_roundtrip.py and, through SSH, test_dvc_ssh.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scratchdet.artifacts import (
    dvc_remote_of,
    finished_rows,
    pull,
    push,
    remote_url,
    scale_dataset,
    scale_remote,
)
from scratchdet.cli import main
from scratchdet.errors import ScratchdetError
from scratchdet.io import write_json

ROOT = Path(__file__).resolve().parent.parent


def test_only_run_folders_whose_training_ended_are_pushed(tmp_path):
    done = tmp_path / "dsod_table6/dsod300_coco/0123456789"
    write_json(done / "train/status.json", {"status": "finished", "step": 2})
    (tmp_path / "dsod_table5/dsod300_07pp12/abcdef0123/train").mkdir(parents=True)  # still running
    write_json(tmp_path / "tables/dsod_table6.json", {})
    assert finished_rows(tmp_path) == [done]


def test_nothing_to_push_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(ScratchdetError, match=f"{tmp_path}: no finished training row"):
        push(tmp_path, None)


# --- remotes ------------------------------------------------------------------------------------


@pytest.fixture()
def dvc_repo(tmp_path, monkeypatch):
    """A git + DVC repository with the project's .dvc/config, as the working directory."""
    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Repo.init(str(tmp_path)).close()
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def paper_row(repo: Path, remote: str | None) -> Path:
    """A committed-looking .dvc file of a paper-scale row that names `remote`."""
    out = {"md5": "0" * 32 + ".dir", "size": 1, "nfiles": 1, "hash": "md5", "path": "0123456789"}
    dvc_file = repo / "results/paper/dsod_table4/dsod300/0123456789.dvc"
    dvc_file.parent.mkdir(parents=True)
    dvc_file.write_text(yaml.safe_dump({"outs": [out | ({"remote": remote} if remote else {})]}))
    return dvc_file


def test_the_default_remote_is_the_folder_shipped_with_the_repository(dvc_repo):
    name, url = remote_url(dvc_repo, None)
    assert (name, Path(url)) == ("shipped", dvc_repo / "dvc-remote")  # relative to .dvc/
    assert scale_remote(Path("results/default")) is None
    assert scale_remote(Path("results/paper")) == scale_remote(Path("results/proof")) == "lab"


def test_an_unconfigured_lab_remote_is_one_line_saying_how_to_add_it(dvc_repo, capsys):
    paper_row(dvc_repo, "lab")
    assert main(["artifacts", "pull", "--results", "results/paper"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "scratchdet: error: DVC remote 'lab' is not configured in this clone: add it "
        "with `dvc remote add --local lab <URL>`\n"
    )


def test_an_unreachable_lab_remote_is_one_line_naming_it_and_how_to_set_it(dvc_repo, capsys):
    paper_row(dvc_repo, "lab")
    gone = dvc_repo / "unmounted" / "share"
    subprocess.run(["dvc", "remote", "add", "--local", "lab", str(gone)], cwd=dvc_repo, check=True)
    for command in (
        ["pull", "--results", "results/paper"],
        ["push", "--results", "results/paper", "--no-data"],
    ):
        if command[0] == "push":  # a finished row to push
            write_json(
                dvc_repo / "results/paper/dsod_table4/dsod300/0123456789/train/status.json",
                {"status": "finished"},
            )
        assert main(["artifacts", *command]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            f"scratchdet: error: DVC remote 'lab' ({gone}) cannot be reached: no folder"
        ), err
        assert err.endswith("set its url with `dvc remote modify --local lab url <URL>`\n"), err
    # nothing was tracked: the remote is checked before DVC runs
    assert not (dvc_repo / "results/paper/dsod_table4/dsod300/.gitignore").exists()


def test_a_pull_checks_the_remote_each_dvc_file_names(dvc_repo, capsys):
    """The default scale's files name no remote: the shipped folder, missing here."""
    dvc_file = paper_row(dvc_repo, None)
    assert dvc_remote_of(dvc_file) is None
    assert main(["artifacts", "pull", "--results", "results/paper"]) == 2
    assert (
        f"DVC remote 'shipped' ({dvc_repo / 'dvc-remote'}) cannot be reached"
        in capsys.readouterr().err
    )


def test_nothing_to_pull_is_an_error_naming_the_folder(dvc_repo):
    with pytest.raises(ScratchdetError, match=r"results/paper: no .dvc file to pull"):
        pull(Path("results/paper"))


def test_the_dataset_pushed_with_a_scale_is_its_own(tmp_path):
    from scratchdet.workflow.datasets import dataset_dir

    scale = yaml.safe_load((ROOT / "config/scales/default.yaml").read_text())
    assert scale_dataset(Path("results/default"), ROOT) == dataset_dir(scale, "data")
    assert scale_dataset(Path("results/paper"), ROOT) is None  # downloads, checksums verified
    with pytest.raises(ScratchdetError, match=r"config/scales/huge.yaml: no such scale file"):
        scale_dataset(Path("results/huge"), ROOT)


# --- the remote shipped with the repository -----------------------------------------------------


def shipped_objects() -> set[str]:
    return {f"{p.parent.name}{p.name}" for p in (ROOT / "dvc-remote/files/md5").glob("*/*")}


def test_every_committed_dvc_file_is_in_the_shipped_remote_without_weights():
    """So that `dvc pull` in a clone finds every file (no "missing cache files"), and the remote
    stays small."""
    dvc_files = sorted([ROOT / "data.dvc", *ROOT.glob("results/**/*.dvc")])
    assert len(dvc_files) > 50
    objects = shipped_objects()
    for dvc_file in dvc_files:
        (out,) = yaml.safe_load(dvc_file.read_text())["outs"]
        assert "remote" not in out, dvc_file  # the default remote: the shipped folder
        assert out["md5"] in objects, f"{dvc_file}: {out['md5']} is not in dvc-remote/"
        entries = json.loads(
            (ROOT / "dvc-remote/files/md5" / out["md5"][:2] / out["md5"][2:]).read_text()
        )
        assert entries and all(e["md5"] in objects for e in entries), dvc_file
        assert not [e["relpath"] for e in entries if e["relpath"].endswith(".pt")], dvc_file
    # the dataset at the root: `dvc pull data.dvc` restores it alone
    assert (
        yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["path"]
        == "data/synth/16trainval_4test_seed0"
    )
    assert not list(ROOT.glob("results/*/data.dvc"))
    size = sum(p.stat().st_size for p in (ROOT / "dvc-remote").rglob("*") if p.is_file())
    assert size < 20e6, f"dvc-remote/ holds {size / 1e6:.1f} MB"
