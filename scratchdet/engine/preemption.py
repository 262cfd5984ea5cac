"""Preemption on Slurm: a warning signal before the time limit, a snapshot, a requeue, a resume.

The slurm profile submits training jobs with `--requeue --signal=USR1@<seconds>`: Slurm sends
SIGUSR1 to the job's processes that many seconds before the time limit. The training loop treats
it like SIGTERM (finish the step, save a snapshot, exit with 128 + signum) and, being inside a
Slurm job, puts the job back in the queue (`scontrol requeue`): when it runs again, the same
command resumes from that snapshot. A job preempted by the scheduler, or requeued by an admin, gets
SIGTERM instead and is requeued by Slurm itself; the snapshot and the resume are the same.

SIGTERM alone never requeues: it is also what `scancel` sends, and a cancelled job must stay
cancelled. Under torchrun (`--nproc N`, multinode.sbatch) torchrun is told to pass SIGUSR1 on to
its workers (`torchrun_signal_env`); the first signal a worker saw decides.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess

__all__ = [
    "PREEMPT_SIGNAL",
    "TORCHRUN_SIGNALS",
    "requeue_if_preempted",
    "slurm_job_id",
    "torchrun_signal_env",
]

log = logging.getLogger(__name__)

PREEMPT_SIGNAL = signal.SIGUSR1
"""The signal the slurm profile asks for before the time limit (`--signal=USR1@<seconds>`)."""

TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
"""Signals torchrun passes on to its workers. Its default list lacks SIGUSR1, which then kills
torchrun itself and orphans the workers."""


def torchrun_signal_env() -> dict[str, str]:
    """The environment that makes torchrun pass TORCHRUN_SIGNALS on: `--signals-to-handle` reads
    PET_SIGNALS_TO_HANDLE (torch >= 2.9); older versions read TORCHELASTIC_SIGNALS_TO_HANDLE."""
    return {
        "PET_SIGNALS_TO_HANDLE": TORCHRUN_SIGNALS,
        "TORCHELASTIC_SIGNALS_TO_HANDLE": TORCHRUN_SIGNALS,
    }


def slurm_job_id() -> str | None:
    """The Slurm job this process runs in (an array task as <job>_<task>), or None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def requeue_if_preempted(signum: int, is_main: bool = True) -> bool:
    """After the snapshot is saved: requeue this Slurm job if `signum` is the warning signal.

    Only the main process asks. Returns True if Slurm accepted; otherwise the job just ends (with
    128 + signum), and the workflow's retries resubmit it, which resumes the same way.
    """
    job = slurm_job_id()
    if signum != PREEMPT_SIGNAL or not is_main or job is None:
        return False
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        log.warning("Slurm job %s: scontrol not found, cannot requeue the job", job)
        return False
    proc = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log.warning(
            "Slurm job %s: scontrol requeue failed: %s", job, (proc.stderr or proc.stdout).strip()
        )
        return False
    log.warning("Slurm job %s requeued: it resumes from the saved snapshot when it runs again", job)
    return True
