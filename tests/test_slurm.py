"""The slurm profile, for real: a single-node Slurm cluster runs a subset of the default scale,
with CPU and GPU jobs on their own partitions, and a training job that is requeued twice (the
warning signal before the time limit, then a preemption) ends with the weights of a run that was
never interrupted.

In CI (CI=true) a missing Slurm installation is a failure, not a skip: .ci/run installs it.
Whatever happens, every job is cancelled and its processes killed before the cluster stops
(`LocalSlurm.stop`), and processes a test starts itself are killed with their process group.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from scratchdet.engine.checkpoint import list_snapshots, load_checkpoint
from scratchdet.engine.training_log import TrainingLog
from scratchdet.io import read_json
from tests.slurm_cluster import LocalSlurm, missing_requirements
from tests.test_interruption import TINY_DSOD

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "profiles", "workflow", "config", "params")
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
# One small table keeps the cluster run to a few jobs; any table goes through the same rules.
TABLES = "[dsod_table6]"
# One cluster at a time: under pytest-xdist, every test of this file runs in the same worker.
pytestmark = pytest.mark.xdist_group("slurm")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = missing_requirements()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Slurm test: {why}")
        pytest.skip(why)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), memory_mb=16000)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        assert not any(
            Path(f"/proc/{pid}").exists() and _running(pid) for pid in cluster.pids().values()
        ), "a Slurm daemon outlived stop()"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_default_scale_subset_runs_through_the_slurm_profile(slurm, tmp_path, cancel_jobs):
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    env = _job_env(slurm) | {
        "SCRATCHDET_GPU_PARTITION": slurm.gpu_partition,
        "SCRATCHDET_CPU_PARTITION": slurm.cpu_partition,
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--workflow-profile",
            "profiles/slurm",
            "--config",
            f"tables={TABLES}",
            "--jobs",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    report = tmp_path / "reports" / "default" / "dsod_table6.md"
    assert report.exists(), log[-4000:]
    assert "dsod300_coco" in report.read_text()
    # The jobs really went through Slurm: the controller saw them finish.
    ctl_log = (slurm.root / "slurmctld.log").read_text()
    assert ctl_log.count("done") >= 3, ctl_log[-2000:]
    # Training and detection ran on the GPU partition, everything else on the CPU one.
    jobs = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%P %k"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split("\n")
    rules = {}
    for line in filter(None, jobs):
        partition, comment = line.split(" ", 1)
        rules.setdefault(comment.removeprefix("rule_").split("_wildcards")[0], set()).add(partition)
    assert rules["train"] == rules["detect"] == {slurm.gpu_partition}, rules
    assert rules["evaluate"] == {slurm.cpu_partition}, rules


@pytest.fixture
def cancel_jobs(slurm):
    """Cancel this test's jobs and kill their leftovers when it ends, passed or failed."""
    yield
    slurm.cancel_all()


@contextlib.contextmanager
def _group(proc: subprocess.Popen):
    """Kill `proc`'s process group on the way out, whatever happened."""
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _job_env(slurm: LocalSlurm) -> dict[str, str]:
    return (
        os.environ
        | slurm.env
        | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    )


def _profile_sbatch_options() -> list[str]:
    """What the slurm profile has the executor add to a training job's sbatch command."""
    profile = yaml.safe_load(PROFILE.read_text())
    options = ["--requeue"] if profile.get("slurm-requeue") else []
    extra = profile["set-resources"]["train"].get("slurm_extra")
    return options + (shlex.split(ast.literal_eval(extra)) if extra else [])


def _wait(what: str, until, timeout: float = 600, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (value := until()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return value


@pytest.mark.slow
def test_a_requeued_training_job_resumes_to_the_same_weights(
    slurm, tmp_path, synth_splits, cancel_jobs
):
    options = _profile_sbatch_options()
    assert "--requeue" in options and any(o.startswith("--signal=USR1@") for o in options)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "model": TINY_DSOD,
                "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
                "train": {
                    "batch_size": 2,
                    "lr": 0.01,
                    "max_steps": 6,
                    "checkpoint_every": 1,
                    "milestones": [4],
                    "deterministic": True,
                    "device": "cpu",
                },
            }
        )
    )
    env = _job_env(slurm) | {"OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "scratchdet.cli", "-v", "train", "--config", str(config)]
    # The uninterrupted run, on this machine, while the cluster runs the interrupted one.
    reference = subprocess.Popen(
        [*train, "--out", str(tmp_path / "reference")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with _group(reference):
        _requeue_twice(slurm, tmp_path, train, env, options, reference)


def _requeue_twice(
    slurm: LocalSlurm,
    tmp_path: Path,
    train: list[str],
    env: dict[str, str],
    options: list[str],
    reference: subprocess.Popen,
) -> None:
    run, log = tmp_path / "run", tmp_path / "job.log"
    script = tmp_path / "job.sh"  # as the executor does: the command is a step of the batch job
    script.write_text(f"#!/bin/sh\nsrun -n1 {shlex.join([*train, '--out', str(run)])}\n")
    job = (
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--export=ALL",
                f"--output={log}",
                "--open-mode=append",
                "--time=30",
                "--cpus-per-task=1",
                "--mem=3000",
                *options,
                str(script),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        .stdout.strip()
        .split(";")[0]
    )

    def requeue_after_next_snapshot(how: list[str]) -> int:
        """Once the job saved a snapshot, interrupt it; returns the step it saved on its way out."""
        after = list_snapshots(run)[-1][0] if list_snapshots(run) else 0
        _wait(
            "a new snapshot",
            lambda: (
                list_snapshots(run)
                and list_snapshots(run)[-1][0] > after
                and slurm.state(job) == "RUNNING"
            ),
        )
        subprocess.run([*how, job], check=True, env=env)

        def requeued() -> bool:
            state = slurm.state(job)
            assert state not in ENDED, f"the job ended ({state}) instead: {log.read_text()[-3000:]}"
            return state == "PENDING"

        _wait("the requeue", requeued)
        saved = list_snapshots(run)[-1][0]
        slurm.start_now(job)
        return saved

    # 1. The warning Slurm sends before the time limit (--signal=USR1@...): the job saves a
    #    snapshot and requeues itself.
    first = requeue_after_next_snapshot(["scancel", "--signal=USR1"])
    # 2. A preemption (or an admin): Slurm stops the job (SIGTERM) and requeues it.
    second = requeue_after_next_snapshot(["scontrol", "requeue"])
    _wait("the job to finish", lambda: slurm.state(job) in ENDED)
    assert reference.wait(timeout=600) == 0
    text = log.read_text()
    assert slurm.state(job) == "COMPLETED", text[-3000:]
    assert f"Slurm job {job} requeued" in text, text[-3000:]
    assert f"resuming {run} from step {first}" in text, text[-3000:]
    assert f"resuming {run} from step {second}" in text, text[-3000:]
    restarts = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "Restarts=2" in restarts, restarts
    final, expected = (load_checkpoint(r / "model_final.pt") for r in (run, tmp_path / "reference"))
    assert final["step"] == expected["step"] == 6
    for key, tensor in expected["model"].items():
        assert torch.equal(final["model"][key], tensor), f"{key} differs after the requeues"
    steps = [row["step"] for row in TrainingLog(run / "metrics.csv").read()]
    assert steps == [str(i) for i in range(6)], "every step logged once"
    losses = [(r["step"], r["loss"]) for r in TrainingLog(run / "metrics.csv").read()]
    assert losses == [
        (r["step"], r["loss"]) for r in TrainingLog(tmp_path / "reference" / "metrics.csv").read()
    ]


@pytest.mark.slow
def test_the_multinode_script_trains_one_run_over_several_torchrun_agents(
    slurm, tmp_path, synth_splits, cancel_jobs
):
    """profiles/slurm/multinode.sbatch as the README runs it, with two tasks standing
    in for two nodes (one torchrun agent each, one CPU process per agent, gloo). The script
    picks the rendezvous port itself (from the job id, outside the ephemeral range)."""
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
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
        )
    )
    run, log = tmp_path / "run", tmp_path / "job.log"
    env = {k: v for k, v in _job_env(slurm).items() if k != "SCRATCHDET_RDZV_PORT"} | {
        "OMP_NUM_THREADS": "1",
        "SCRATCHDET_PROCS_PER_NODE": "1",
    }
    job = (
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--export=ALL",
                f"--output={log}",
                "--nodes=1",
                "--ntasks-per-node=2",
                "--cpus-per-task=1",
                "--mem=6000",
                "--time=30",
                str(ROOT / "profiles/slurm/multinode.sbatch"),
                str(config),
                str(run),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        .stdout.strip()
        .split(";")[0]
    )

    def ended() -> bool:
        text = log.read_text() if log.exists() else ""
        assert "Traceback" not in text, text[-3000:]  # a failing agent: no need to wait longer
        return slurm.state(job) in ENDED

    _wait("the job to finish", ended, timeout=600)
    text = log.read_text() if log.exists() else ""
    assert slurm.state(job) == "COMPLETED", text[-3000:]
    port = int(text.split("scratchdet: rendezvous at ")[1].split()[0].rsplit(":", 1)[1])
    low, high = _ephemeral_ports()
    assert not low <= port <= high and port == _script_port(job), (port, low, high)
    assert read_json(run / "status.json")["status"] == "finished", text[-3000:]
    assert read_json(run / "provenance.json")["world_size"] == 2
    assert [r["step"] for r in TrainingLog(run / "metrics.csv").read()] == ["0", "1"]


def _ephemeral_ports() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def _script_port(job: str, host: str = "localhost") -> int:
    """The rendezvous port multinode.sbatch's rdzv_port picks for a job (run on its own)."""
    script = (ROOT / "profiles/slurm/multinode.sbatch").read_text()
    functions = "\n".join(
        script[script.index(f"{name}() {{") :].split("\n}\n")[0] + "\n}"
        for name in ("port_in_use", "rdzv_port")
    )
    done = subprocess.run(
        ["bash", "-c", f"{functions}\nrdzv_port {job} {host}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_the_rendezvous_port_is_the_jobs_own_and_not_ephemeral():
    """Two jobs get two ports; none is in the range srun and outgoing connections draw from,
    and a port something listens on is skipped."""
    import socket

    low, high = _ephemeral_ports()
    ports = [_script_port(str(job)) for job in (1, 2, 3, 1000, 987654)]
    assert len(set(ports)) == len(ports), ports
    assert not any(low <= p <= high for p in ports), (ports, low, high)
    assert _script_port("1") == ports[0], "the same job (a requeue) gets the same port"
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", ports[0]))
        except OSError:
            pytest.skip(f"port {ports[0]} is taken on this machine")
        busy.listen()
        assert _script_port("1") not in (ports[0], *range(low, high + 1))
