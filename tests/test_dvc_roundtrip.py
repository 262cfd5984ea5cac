"""Artifacts versioned with DVC come back usable: a fresh clone that runs `dvc pull` regenerates
the reports without training or evaluating anything, although DVC gives every restored file a new
time, the clone has no .snakemake/ records and the default scale's weights are not versioned; a
row whose config changed since, or whose results were deleted, is retrained.

The quick test restores the default scale from the remote shipped in the repository (dvc-remote/)
into a copy of the project. The slow one runs a subset of the default scale (the COCO -> VOC
fine-tuning chain of DSOD Tables 5 and 6, three rows) in one git repository, pushes it to a local
DVC remote in a temporary folder and restores it in a clone (tests/test_dvc_ssh.py does the same
through an SSH server)."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_workflow import ROOT, plan, train_jobs

TABLES = ["dsod_table5", "dsod_table6"]
GIT = [
    "git",
    "-c",
    "user.name=scratchdet-test",
    "-c",
    "user.email=test@example.org",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgsign=false",
]


def run(*cmd: str, cwd: Path, timeout: int = 900) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def snakemake(*args: str, cwd: Path) -> str:
    return run(
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--config",
        f"tables=[{','.join(TABLES)}]",
        *args,
        cwd=cwd,
    )


SHIPPED = "dvc-remote"
"""The DVC remote shipped in the repository (the default remote `shipped` of .dvc/config)."""


def project_copy(dest: Path, artifacts: bool = False) -> Path:
    """The project's files as a new git repository (what a clone of this commit holds); unless
    `artifacts`, without the shipped default-scale artifacts (the .dvc files and their remote)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        shipped = name.endswith(".dvc") or name.startswith(f"{SHIPPED}/")
        if (shipped and not artifacts) or not os.path.lexists(src):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dest / name)
        else:
            shutil.copy2(src, dest / name)
    run(*GIT, "init", "-q", cwd=dest)
    run(*GIT, "add", "-A", cwd=dest)
    run(*GIT, "commit", "-qm", "the project", cwd=dest)
    return dest


def use_remote(repo: Path, remote: Path | str) -> None:
    """Point the committed default remote at `remote`, for this clone only (.dvc/config.local)."""
    run("dvc", "remote", "modify", "--local", "shipped", "url", str(remote), cwd=repo)


def restored_files(repo: Path, *folders: str) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `folders` of `repo`, DVC's .gitignore aside."""
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for folder in folders
        for p in sorted((repo / folder).rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def only_reports(planned: list[str]) -> bool:
    """Every planned file is a report or a table's record (reports/, results/<scale>/tables/)."""
    return bool(planned) and all(
        f.startswith(("reports/", "results/default/tables/")) for f in planned
    )


def test_a_fresh_copy_restores_the_default_scale_from_the_shipped_remote(tmp_path):
    """What a clone anywhere does: `dvc pull` from dvc-remote/, then Snakemake plans reports
    only. If this fails after a change of the default scale's configs, regenerate the shipped
    artifacts (README, "Versioned data and trained rows")."""
    clone = project_copy(tmp_path / "clone", artifacts=True)
    pulled = run("dvc", "pull", cwd=clone)
    assert "missing" not in pulled.lower(), pulled
    outs = [
        f.parent / yaml.safe_load(f.read_text())["outs"][0]["path"]
        for f in clone.glob("results/**/*.dvc")
    ]
    assert len(outs) > 50 and all(o.is_dir() for o in outs), [o for o in outs if not o.is_dir()]
    assert any((clone / "data/synth").rglob("trainval.json"))
    assert not any((clone / "results").rglob("*.pt"))  # the smoke scale's weights are not versioned

    planned = plan(clone)
    assert train_jobs(planned) == [] and only_reports(planned), planned

    # A row whose results are deleted is retrained (with the one fine-tuned from it, whose run
    # config names its weights); one whose detections are deleted is detected again, retrained
    # first because its weights were not shipped.
    run_dir = next((clone / "results/default/dsod_table6/dsod300_coco").glob("*/"))
    shutil.rmtree(run_dir)
    assert "dsod_table6/dsod300_coco" in train_jobs(plan(clone))
    dets = next((clone / "results/default/dsod_table4/dsod300").glob("*/dets_test.json"))
    dets.unlink()
    planned = plan(clone, tables=["dsod_table4"])
    assert train_jobs(planned) == ["dsod_table4/dsod300"]
    assert str(dets.relative_to(clone)) in planned


def newer_than_their_outputs(repo: Path) -> None:
    """Whatever times DVC gave the restored files, make them the worst case: every file newer
    than the files made from it (images > splits > run config > checkpoint > detections)."""

    def stage(path: Path) -> int:
        parts = path.relative_to(repo).parts
        if parts[0] == "data":
            return 4 if "VOCdevkit" in parts else 3
        return 2 if path.name == "run.yaml" else 1 if "train" in parts else 0

    now = time.time()
    for path in [*(repo / "data").rglob("*"), *(repo / "results").rglob("*")]:
        if path.is_file():
            os.utime(path, (now + 10 * stage(path), now + 10 * stage(path)))


@pytest.mark.slow
def test_a_fresh_clone_pulls_results_instead_of_retraining(tmp_path):
    remote = tmp_path / "remote"
    first = project_copy(tmp_path / "first")
    use_remote(first, remote)

    # Run, push the artifacts, commit the .dvc files: what a researcher does after a run.
    snakemake(cwd=first)
    pushed = run(
        sys.executable,
        "-m",
        "scratchdet",
        "artifacts",
        "push",
        "--results",
        "results/default",
        cwd=first,
    )
    dvc_files = sorted(line for line in pushed.splitlines() if line.endswith(".dvc"))
    # the scale's dataset, three rows and the scale's image-blind baselines
    assert len(dvc_files) == 5, pushed
    assert {"data.dvc", "results/default/baselines.dvc"} <= set(dvc_files), pushed
    run(*GIT, "add", "-A", cwd=first)
    run(*GIT, "commit", "-qm", "artifacts", cwd=first)
    assert run("git", "status", "--porcelain", cwd=first) == ""
    tracked = run("git", "ls-files", "results", "data", cwd=first).split()
    assert tracked and all(f.endswith((".dvc", ".gitignore")) for f in tracked), tracked

    second = tmp_path / "second"
    run(*GIT, "clone", "-q", str(first), str(second), cwd=tmp_path)
    assert not (second / "results").exists() or not any((second / "results").rglob("*.pt"))
    use_remote(second, remote)
    # One row alone first: its run folder comes back, nothing else does.
    run("dvc", "pull", "-R", "results/default/dsod_table6/dsod300_coco", cwd=second)
    assert [p.parts[-4:-2] for p in (second / "results").rglob("metrics.json")] == [
        ("dsod_table6", "dsod300_coco")
    ]
    assert not (second / "data").exists()
    run("dvc", "pull", cwd=second)
    # Byte for byte what the first clone versioned: all but weights, locks and temporary files
    # (.dvcignore), logs, job times and table records.
    unversioned = ("*.pt", ".*.lock", ".*.tmp")
    assert restored_files(second, "data", "results") == {
        k: v
        for k, v in restored_files(first, "data", "results").items()
        if not any(fnmatch.fnmatch(Path(k).name, pattern) for pattern in unversioned)
        and Path(k).parts[2] not in ("logs", "job_times", "tables")
    }
    assert not any((second / "results").rglob("*.pt"))  # the smoke scale's weights stay behind
    assert not (second / ".snakemake").exists()
    newer_than_their_outputs(second)

    # Right after the pull, Snakemake plans no data, training or evaluation job: only reports
    # (and their JSON records, kept with the results but not versioned).
    planned = plan(second, tables=TABLES)
    reports = [
        f"reports/default/{t}.{ext}" for t in TABLES for ext in ("md", "csv", "csv.meta.json")
    ]
    records = [f"results/default/tables/{t}.json" for t in TABLES]
    page = ["reports/default/index.html"]  # the report page of the tables asked for
    assert sorted(planned) == sorted(reports + records + page)
    snakemake(cwd=second)
    for table in TABLES:
        ours = pd.read_csv(second / f"reports/default/{table}.csv", dtype=str)
        theirs = pd.read_csv(first / f"reports/default/{table}.csv", dtype=str)
        pd.testing.assert_frame_equal(ours, theirs)
    assert [p.name for p in (second / "results/default/logs").iterdir()] == ["report"]

    # A row whose config changed since the push is retrained, with the row fine-tuned from it;
    # the other row of Table 5 keeps its pulled results.
    params = second / "params/dsod_table6.tsv"
    df = pd.read_csv(params, sep="\t", dtype=str, keep_default_na=False)
    df.loc[df["row"] == "dsod300_coco", "train"] = "{lr: 0.02}"
    df.to_csv(params, sep="\t", index=False)
    assert train_jobs(plan(second, tables=TABLES)) == [
        "dsod_table5/dsod300_07pp12_coco",
        "dsod_table6/dsod300_coco",
    ]
