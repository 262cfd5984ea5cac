"""The slurm profile, for real: a single-node Slurm cluster runs a subset of the default scale.

In CI (CI=true) a missing Slurm installation is a failure, not a skip: .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .slurm_cluster import LocalSlurm, missing_requirements

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("workflow", "config", "params")
# One small table keeps the cluster run to a few jobs; any table goes through the same rules.
TABLES = "[dsod_table6]"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = missing_requirements()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Slurm test: {why}")
        pytest.skip(why)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), memory_mb=16000)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert not any(Path(f"/proc/{pid}").exists() and _running(pid)
                       for pid in cluster.pids().values()), "a Slurm daemon outlived stop()"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_default_scale_subset_runs_through_the_slurm_profile(slurm, tmp_path):
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    env = os.environ | slurm.env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm",
         "--config", f"tables={TABLES}", "--jobs", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    report = tmp_path / "reports" / "default" / "dsod_table6.md"
    assert report.exists(), log[-4000:]
    assert "dsod300_coco" in report.read_text()
    # The jobs really went through Slurm: the controller saw them finish.
    ctl_log = (slurm.root / "slurmctld.log").read_text()
    assert ctl_log.count("done") >= 3, ctl_log[-2000:]
