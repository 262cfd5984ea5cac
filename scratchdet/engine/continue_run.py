"""Continue a run to more steps in a new run folder (`scratchdet train --continue-from RUN`).

The new folder starts from the newest snapshot of RUN that loads (weights, optimizer state and
step), with RUN's config (or the one given) whose `train.max_steps` is raised. The sample stream
is resumable by step, so the result is the run that `max_steps` N would have trained from the
start: steps between the snapshot and RUN's end are trained again, not skipped. What the new run
came from is in its `continued_from.json` (RUN, the snapshot, its step, RUN's status).

Only the schedule may differ from RUN's config (`SCHEDULE_KEYS`): anything else would not be
RUN continued but another run started from its weights (`train.init_from`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scratchdet.config import RunConfig, config_from_dict, load_config
from scratchdet.errors import ConfigError, DataError
from scratchdet.io import read_json, write_json
from scratchdet.run_folder import RunStatus, TrainFolder

__all__ = ["CONTINUED_FROM", "SCHEDULE_KEYS", "continued", "prepare_continuation"]

SCHEDULE_KEYS = (
    "max_steps",
    "milestones",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "eval_every",
    "tensorboard",
)
"""The train.* keys a continuation may change (a key absent from this version is ignored)."""

CONTINUED_FROM = "continued_from.json"


def continued(out: str | Path, run: str | Path) -> bool:
    """Whether `out` already is the continuation of `run` (the command run again resumes it)."""
    record = Path(out) / CONTINUED_FROM
    return record.is_file() and Path(read_json(record)["run"]).resolve() == Path(run).resolve()


def _without_schedule(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for key in SCHEDULE_KEYS:
        d["train"].pop(key, None)
    return d


def prepare_continuation(
    run: str | Path, out: str | Path, max_steps: int, cfg: RunConfig | None = None
) -> RunConfig:
    """Seed the new run folder `out` with RUN's newest snapshot and return the run config to
    train there (RUN's own, or `cfg`, with `train.max_steps = max_steps`)."""
    from scratchdet.engine.checkpoint import (
        list_snapshots,
        load_checkpoint,
        save_checkpoint,
        snapshot_path,
    )

    run, out = Path(run), Path(out)
    if not TrainFolder(run).config.is_file():
        raise DataError(
            run,
            "not a run folder (no config.yaml): --continue-from takes the folder "
            "`scratchdet train --out` wrote",
        )
    recorded = load_config(TrainFolder(run).config)
    base = cfg if cfg is not None else recorded
    if _without_schedule(base) != _without_schedule(recorded):
        raise ConfigError(
            None,
            "--continue-from",
            f"the config differs from {run}'s in more than "
            f"the schedule (train.{', train.'.join(SCHEDULE_KEYS)}): start a new "
            "run from its weights with train.init_from instead",
        )
    raw = base.to_dict()
    raw["train"]["max_steps"] = max_steps
    new = config_from_dict(raw)
    snapshots = list_snapshots(run)
    if not snapshots:
        raise DataError(
            run / "checkpoints",
            "no snapshot to continue from (train.keep_checkpoints and checkpoint_every keep them)",
        )
    if out.exists() and any(out.iterdir()):
        raise ConfigError(None, "--out", f"{out} is not empty: continue into a new folder")
    step, path = snapshots[-1]
    if max_steps <= step:
        raise ConfigError(
            None, "--max-steps", f"{max_steps} is not beyond the snapshot's step {step} ({path})"
        )
    state = load_checkpoint(path)
    state["config"] = new.to_dict()  # the new run's own: its resume check compares with it
    save_checkpoint(state, snapshot_path(out, step))
    status = RunStatus.read_if_present(TrainFolder(run).status)
    write_json(
        out / CONTINUED_FROM,
        {
            "run": str(run),
            "snapshot": str(path),
            "step": step,
            "run_status": status and status.to_dict(),
            "max_steps": max_steps,
        },
    )
    return new
