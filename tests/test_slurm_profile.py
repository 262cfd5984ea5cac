"""One cluster story: the documented Slurm command is the one the docs name everywhere, and with
it Snakemake (parsing the profiles as it does for a real run) does not throttle GPU jobs, sends
GPU and CPU jobs to their own settable partitions, retries training jobs and asks Slurm for the
preemption warning. The cluster itself runs in test_slurm.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
COMMAND = "snakemake --workflow-profile profiles/slurm"


def test_one_documented_command():
    readme = (ROOT / "README.md").read_text()
    header = PROFILE.read_text()
    assert COMMAND in readme and COMMAND in header
    for text in (readme, header):  # `--profile` would also load the default profile
        assert not re.search(r"snakemake --profile\s+\S*slurm", text)


@pytest.fixture
def slurm_args(monkeypatch):
    from snakemake.cli import parse_args

    monkeypatch.chdir(ROOT)  # where Snakemake looks for the default workflow profile
    _, args = parse_args([*COMMAND.split()[1:], "--config", "scale=paper"])
    return args


def test_the_default_profile_does_not_throttle_cluster_runs(slurm_args):
    assert "gpu" not in (slurm_args.resources or {}), "one GPU job at a time on a cluster"
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert default["resources"]["gpu"] == 1  # it still holds on one machine
    assert slurm_args.default_resources["mem_mb"].value == 2000  # the slurm profile's, not it


def test_training_jobs_are_retried_requeued_and_warned(slurm_args):
    assert slurm_args.executor == "slurm" and slurm_args.slurm_requeue is True
    assert slurm_args.preemptible_rules == {"train"} and slurm_args.preemptible_retries >= 1
    extra = yaml.safe_load(PROFILE.read_text())["set-resources"]["train"]["slurm_extra"]
    assert re.fullmatch(r"--signal=USR1@\d+", ast.literal_eval(extra))
    assert "slurm_extra" in slurm_args.set_resources["train"]


@pytest.mark.parametrize(
    "env, gpu, cpu",
    [
        (
            {"SCRATCHDET_GPU_PARTITION": "a100", "SCRATCHDET_CPU_PARTITION": "short"},
            "a100",
            "short",
        ),
        ({"SBATCH_PARTITION": "all"}, "all", "all"),
        ({"SCRATCHDET_GPU_PARTITION": "a100", "SBATCH_PARTITION": "all"}, "a100", "all"),
        ({}, "", ""),  # the cluster's default partition
    ],
)
def test_partitions_are_set_from_the_environment(monkeypatch, env, gpu, cpu):
    for name in ("SCRATCHDET_GPU_PARTITION", "SCRATCHDET_CPU_PARTITION", "SBATCH_PARTITION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    profile = yaml.safe_load(PROFILE.read_text())
    # Snakemake evaluates a resource given as text as a Python expression, as here.
    assert eval(profile["default-resources"]["slurm_partition"]) == cpu
    for rule in ("train", "detect"):
        assert eval(profile["set-resources"][rule]["slurm_partition"]) == gpu
