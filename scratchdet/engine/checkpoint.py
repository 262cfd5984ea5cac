"""Checkpoints: written atomically, read without unpickling arbitrary objects, kept N deep.

A checkpoint holds only tensors and plain containers (dicts, lists, strings, numbers), so it loads
with `torch.load(weights_only=True)`: a file from an untrusted source cannot run code on load.

A run folder holds:
- `checkpoints/step_<8-digit step>.pt`: the last `train.keep_checkpoints` periodic snapshots
  (model, optimizer, step, config). The newest one that loads is what a resume continues from, so
  a snapshot damaged by a crash or a full disk costs `checkpoint_every` steps, not the run.
- `model_final.pt`: the trained weights, with the config and the step (every file name of a
  run folder is `scratchdet.run_folder`'s).

Every one of them also carries what detection needs (`trained_model_record`: model config, class
names, input size), so `scratchdet detect --checkpoint checkpoints/step_00000100.pt` works as it
does on `model_final.pt`, and `list_snapshots` gives a run's snapshots for learning curves.

A write killed half-way leaves a `.<name>.*.tmp` file (see `scratchdet.io.atomic_path`) and
never a half-written checkpoint; `CheckpointStore.sweep` removes those leftovers when the next
run starts (it runs under the run folder's lock, so no live write is touched).
"""

from __future__ import annotations

import logging
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scratchdet.config import RunConfig, same_config
from scratchdet.data.annotations import same_data
from scratchdet.errors import DataError
from scratchdet.io import atomic_path
from scratchdet.run_folder import RUN_FILES, TrainFolder

__all__ = [
    "SNAPSHOT_DIR",
    "CheckpointStore",
    "Snapshot",
    "list_snapshots",
    "load_checkpoint",
    "read_init_source",
    "save_checkpoint",
    "snapshot_path",
    "trained_model_record",
]

log = logging.getLogger(__name__)

SNAPSHOT_DIR = "checkpoints"
_SNAPSHOT_NAME = re.compile(r"step_(\d{8,})\.pt")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch's message bolds a phrase for terminals


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write atomically. torch writes through a Python file, so a full disk is the OSError that
    `atomic_path` names (given a path, torch's writer says only "unexpected pos")."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:  # its zip writer, closing after our write failed, hides why
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise DataError(
            path,
            "is a folder; give a checkpoint file (a run's model_final.pt or checkpoints/step_*.pt)",
        )
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        why = _ANSI.sub("", str(exc).splitlines()[0])
        raise DataError(
            path,
            f"refused to load: the checkpoint holds objects other than tensors "
            f"and plain containers ({why})",
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(path, f"unreadable or truncated checkpoint ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a checkpoint dictionary, got {type(obj).__name__}")
    return obj


def read_init_source(path: str | Path) -> dict[str, Any]:
    """The trained model a run starts from (`train.init_from`), or DataError naming the file."""
    source = load_checkpoint(path)
    if "model" not in source:
        raise DataError(path, "not a trained-model file (missing 'model')")
    return source


def trained_model_record(
    model_state: dict[str, Any], cfg: RunConfig, class_names: list[str], step: int
) -> dict[str, Any]:
    """What any trained-model file holds: the weights and what detection needs to use them."""
    return {
        "model": model_state,
        "model_config": dict(cfg.model),
        "class_names": list(class_names),
        "image_size": cfg.data.image_size,
        "step": step,
        "config": cfg.to_dict(),
    }


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{step:08d}.pt"


def list_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The periodic snapshots of a run folder as (step, path), oldest first; no file is read."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _SNAPSHOT_NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot that loaded: its step, its file and the run config it records."""

    step: int
    path: Path
    config: Any
    data: Any = None
    """The `data_record` of what the run trained on (None: a snapshot of an older version)."""


class CheckpointStore:
    """The snapshots of one run folder: sweep leftovers, find the newest readable one, save, prune.

    `writer` is False on every process but rank 0 of a multi-process run: those only read.
    """

    def __init__(self, run_dir: str | Path, keep: int = 3, writer: bool = True):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / SNAPSHOT_DIR
        self.keep = keep
        self.writer = writer
        self._resume: Snapshot | None = None
        self._resume_read = False

    def sweep(self) -> list[Path]:
        """Delete the temporary files of writes that a kill interrupted; returns them."""
        if not self.writer:
            return []
        stale = sorted(self.folder.glob(".*.tmp")) if self.folder.is_dir() else []
        for name in RUN_FILES:
            stale += sorted(self.run_dir.glob(f".{name}.*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.warning(
                "%s: removed %d temporary file(s) of interrupted writes", self.run_dir, len(stale)
            )
        return stale

    def resume_point(self) -> Snapshot | None:
        """The newest snapshot that loads (None when there is none at all).

        Each newer one that does not load is reported as a warning naming it. When every snapshot
        is unreadable this is a DataError: `--restart-stale` (`discard_if_stale`) starts over.
        """
        if self._resume_read:  # read once: each unreadable file is reported once
            return self._resume
        found = list_snapshots(self.run_dir)
        for step, path in reversed(found):
            try:
                state = load_checkpoint(path)
                if int(state.get("step", -1)) != step or not {"model", "optimizer"} <= set(state):
                    raise DataError(path, "not a training snapshot of this step")
            except DataError as exc:
                log.warning("%s; trying an older snapshot", exc)
                continue
            self._resume = Snapshot(step, path, state.get("config"), state.get("data"))
            self._resume_read = True
            return self._resume
        if found:
            raise DataError(
                self.folder,
                f"none of the {len(found)} snapshot(s) can be read (see "
                "the warnings above); run again with --restart-stale to "
                "start this run over",
            )
        self._resume_read = True
        return None

    def discard_if_stale(self, cfg: RunConfig, data: dict[str, str] | None = None) -> bool:
        """Delete a run of another config, or one nothing readable is left of; True if deleted.

        What the workflow's `--restart-stale` does: the row's config changed (or its files were
        damaged), so the folder's old run cannot be continued and is started over.
        """
        final = TrainFolder(self.run_dir).model
        reason = None
        if final.exists():
            try:
                done = load_checkpoint(final)
                if not same_config(done.get("config"), cfg):
                    reason = "a finished run of another config"
                elif not same_data(done.get("data"), data):
                    reason = "a finished run on other data"
                elif TrainFolder(self.run_dir).status.exists():
                    return False  # this config's finished run: its snapshots no longer matter
            except DataError as exc:
                reason = f"an unreadable final model ({exc.problem})"
        if reason is None and list_snapshots(self.run_dir):
            try:
                snap = self.resume_point()
            except DataError:
                snap = None
                reason = "no readable snapshot"
            if snap is not None and not same_config(snap.config, cfg):
                reason = "a run of another config"
            elif snap is not None and not same_data(snap.data, data):
                reason = "a run on other data"
        if reason is None:
            return False
        for path in TrainFolder(self.run_dir).files:
            path.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self._resume, self._resume_read = None, False
        log.warning("%s held %s: discarded, training anew", self.run_dir, reason)
        return True

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        *,
        optimizer: torch.optim.Optimizer,
        cfg: RunConfig,
        class_names: list[str],
        data: dict[str, str] | None = None,
    ) -> Path | None:
        """Write the snapshot of `step` (rank 0 only), then drop all but the newest `keep`."""
        if not self.writer:
            return None
        path = snapshot_path(self.run_dir, step)
        record = trained_model_record(model.state_dict(), cfg, class_names, step)
        save_checkpoint(record | {"optimizer": optimizer.state_dict(), "data": data}, path)
        found = list_snapshots(self.run_dir)
        for other_step, other in found:
            if other_step > step:  # unreadable ones a resume skipped: that future is redone
                log.warning("%s: removed, superseded by the snapshot of step %d", other, step)
                other.unlink(missing_ok=True)
        older = [p for s, p in found if s <= step]
        for other in older[: -self.keep]:
            other.unlink(missing_ok=True)
        return path
