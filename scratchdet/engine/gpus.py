"""Give each concurrently running job (training, detection) its own GPUs on a multi-GPU machine.

Snakemake counts `resources: gpu=N` against `--resources gpu=K` but does not say *which* GPUs a
job may use, and does not set CUDA_VISIBLE_DEVICES. So each job claims N GPUs itself by taking
an exclusive `flock` on one lock file per GPU. The kernel drops a lock when its holder dies, so a
killed job never leaks a GPU, and no stale-lock cleanup is needed.

When CUDA_VISIBLE_DEVICES is already set (SLURM with --gres, a user's choice) the scheduler has
isolated the job already: the job uses those GPUs and takes no locks, because a SLURM job's GPUs
are renumbered from 0 and locks by index would collide between jobs on the same node.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from scratchdet.errors import ConfigError

__all__ = [
    "GPU_COUNT_ENV",
    "LOCK_DIR_ENV",
    "GpuClaim",
    "assign_gpus",
    "claim_gpus",
    "count_gpus",
    "default_lock_dir",
]

LOCK_DIR_ENV = "SCRATCHDET_GPU_LOCK_DIR"
GPU_COUNT_ENV = "SCRATCHDET_NUM_GPUS"

log = logging.getLogger(__name__)


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV, "/tmp/scratchdet-gpu-locks"))


def count_gpus() -> int:
    """GPUs on this machine, without creating a CUDA context in this process."""
    if GPU_COUNT_ENV in os.environ:
        return int(os.environ[GPU_COUNT_ENV])
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))
    return 0


@dataclass
class GpuClaim:
    """GPUs held by this process; `release()` (or process exit) gives them back."""

    ids: list[int]
    _handles: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def visible_devices(self) -> str:
        return ",".join(str(i) for i in self.ids)

    def release(self) -> None:
        for fh in self._handles:
            fh.close()  # closing the descriptor drops the flock
        self._handles.clear()


def claim_gpus(
    n: int,
    *,
    total: int | None = None,
    lock_dir: Path | None = None,
    timeout: float = 24 * 3600,
    poll: float = 2.0,
) -> GpuClaim:
    """Lock `n` free GPUs out of `total`, waiting up to `timeout` seconds for them."""
    total = count_gpus() if total is None else total
    if n > total:
        raise ConfigError(
            None, "resources.gpu", f"the job asks for {n} GPUs but this machine has {total}"
        )
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        claim = GpuClaim([])
        for gpu in range(total):
            fh = open(lock_dir / f"gpu{gpu}.lock", "ab")  # noqa: SIM115 - held while training
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            claim.ids.append(gpu)
            claim._handles.append(fh)
            if len(claim.ids) == n:
                return claim
        claim.release()  # not enough free now: give back the partial set so nobody deadlocks
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no {n} free GPUs among {total} after {timeout:.0f} s (locks in {lock_dir})"
            )
        time.sleep(poll)


def assign_gpus(n: int, **kwargs) -> GpuClaim | None:
    """Set CUDA_VISIBLE_DEVICES for this process and its children; None when nothing to do."""
    if n <= 0:
        return None
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        visible = [v for v in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if v]
        if n > len(visible):
            raise ConfigError(
                None,
                "resources.gpu",
                f"the job asks for {n} GPUs but CUDA_VISIBLE_DEVICES lists {len(visible)}",
            )
        return None
    claim = claim_gpus(n, **kwargs)
    os.environ["CUDA_VISIBLE_DEVICES"] = claim.visible_devices
    log.info(
        "claimed GPU %s (CUDA_VISIBLE_DEVICES=%s)", claim.visible_devices, claim.visible_devices
    )
    return claim
