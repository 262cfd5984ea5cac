"""A real single-node Slurm cluster (Debian's slurmctld, slurmd, munge) for the cluster tests.

Everything lives in one temporary folder (config, state, logs, PID files); the daemons are
stopped by their own PIDs, so nothing else on the machine is touched. `stop()` first cancels every
job of this private cluster and kills what is left of them (a job's processes carry its
SLURM_JOB_ID and this cluster's name), so no job outlives the test that submitted it. Needs root
(slurmd runs jobs as their submitting user and munged needs its key owned by the munge user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
# The Snakemake slurm executor drops every SLURM_* variable (SLURM_CONF too) before it calls
# srun inside a job, so srun only finds the cluster through the default config path.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
CLUSTER = "scratchdet-ci"


def missing_requirements() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if absent:
        packages = "slurmctld slurmd slurm-client munge"
        return f"not installed: {', '.join(absent)} (apt-get install {packages})"
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class LocalSlurm:
    def __init__(self, root: Path, cpus: int | None = None, memory_mb: int = 8000):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.env = {"SLURM_CONF": str(self.conf)}
        # Two partitions on the one node, as a cluster's CPU and GPU partitions.
        self.cpu_partition, self.gpu_partition = "cpu", "gpu"
        self._linked_system_conf = False

    def _write_config(self) -> None:
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName={self.cpu_partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName={self.gpu_partition} Nodes={self.host} MaxTime=INFINITE State=UP
""")

    def start(self, timeout: float = 60) -> None:
        self._write_config()
        if not SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
            self._linked_system_conf = True
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        subprocess.run(
            [
                _exe("munged"),
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.root / 'munge' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
            check=True,
        )
        env = os.environ | self.env
        subprocess.run([_exe("slurmctld"), "-c"], check=True, env=env)  # -c: no old state
        subprocess.run([_exe("slurmd")], check=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env, check=False
            ).stdout.strip()
            if out in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Slurm did not come up; see {self.root}/slurmctld.log and slurmd.log")

    def state(self, job: str) -> str:
        """A job's state as squeue reports it (finished jobs stay listed for MinJobAge)."""
        return subprocess.run(
            ["squeue", "-h", "--states=all", "-j", job, "-o", "%T"],
            capture_output=True,
            text=True,
            env=os.environ | self.env,
            check=False,
        ).stdout.strip()

    def start_now(self, job: str) -> None:
        """Make a requeued job eligible at once: Slurm holds one back for ~2 minutes."""
        subprocess.run(
            ["scontrol", "update", f"jobid={job}", "StartTime=now"],
            check=True,
            env=os.environ | self.env,
        )

    def jobs(self) -> list[str]:
        """Every job of this cluster that has not ended."""
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i"],
            capture_output=True,
            text=True,
            env=os.environ | self.env,
            check=False,
        ).stdout
        return out.split()

    def job_processes(self, job: str) -> list[int]:
        """PIDs of processes a job of this cluster started (its steps, torchrun agents, ...)."""
        job_id = f"SLURM_JOB_ID={job}".encode()
        ours = {f"SLURM_CLUSTER_NAME={CLUSTER}".encode(), f"SLURM_CONF={self.conf}".encode()}
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                env = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if job_id in env and ours & set(env):
                found.append(int(proc.name))
        return found

    def cancel_all(self, timeout: float = 30) -> None:
        """scancel every job, wait for the cluster to end them, then SIGKILL their leftovers."""
        jobs = self.jobs()
        env = os.environ | self.env
        if jobs:
            subprocess.run(["scancel", "--full", *jobs], env=env, capture_output=True, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.jobs():
            time.sleep(0.5)
        for job in jobs + self.jobs():
            for pid in self.job_processes(job):
                _signal(pid, signal.SIGKILL)

    def pids(self) -> dict[str, int]:
        files = {
            "slurmd": self.root / "slurmd.pid",
            "slurmctld": self.root / "slurmctld.pid",
            "munged": self.root / "munge" / "munged.pid",
        }
        return {name: int(p.read_text().split()[0]) for name, p in files.items() if p.exists()}

    def stop(self, timeout: float = 20) -> None:
        """Cancel every job, SIGTERM each daemon by the PID it wrote, then SIGKILL what is still
        alive."""
        try:
            self.cancel_all()
        finally:
            self._stop_daemons(timeout)

    def _stop_daemons(self, timeout: float) -> None:
        pids = self.pids()
        for pid in pids.values():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
            time.sleep(0.2)
        for pid in pids.values():
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        if self._linked_system_conf:
            SYSTEM_CONF.unlink(missing_ok=True)
            self._linked_system_conf = False


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return ""
