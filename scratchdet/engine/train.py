"""The training loop: SGD + warmup/multistep, gradient accumulation, resumable, divergence-aware.

Outputs in the run directory (their names: `scratchdet.run_folder.TrainFolder`):
- `config.yaml`, `provenance.json`: what produced the run.
- `metrics.csv`: one row per optimizer step.
- `checkpoints/step_<step>.pt`: the last `train.keep_checkpoints` snapshots, each with everything
  needed to resume (model, optimizer, step) or to detect (see `checkpoint.py`).
- `model_final.pt`: the trained weights with the model config and class names.
- `status.json`: `finished` or `diverged` (with the step and the reason); written last.
- `.run.lock`: held by the process training in the folder (`run_lock.py`): one run per folder.

Progress (step/total, rate, ETA, the loss of the last read) goes to stderr: a bar on a terminal,
a line every `train.log_every` steps in a log (`scratchdet.progress`).

Killing the process at any moment and running the same command again resumes from the newest
readable snapshot and reaches the same weights: the data stream is a function of (seed, step), see
`sampling.py`, and every file is replaced atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from typing_extensions import Self

from scratchdet.config import RunConfig, dump_config, same_config
from scratchdet.data.annotations import (
    check_trainable,
    class_names,
    data_record,
    load_annotations,
    same_data,
)
from scratchdet.data.dataset import DetectionDataset
from scratchdet.engine.checkpoint import (
    CheckpointStore,
    list_snapshots,
    load_checkpoint,
    read_init_source,
    save_checkpoint,
    trained_model_record,
)
from scratchdet.engine.device import memory_format_for, resolve_device
from scratchdet.engine.distributed import DistContext, init_distributed, shutdown_distributed
from scratchdet.engine.monitor import TrainMonitor, check_monitor_config
from scratchdet.engine.precision import set_matmul_precision
from scratchdet.engine.preemption import PREEMPT_SIGNAL, requeue_if_preempted
from scratchdet.engine.run_lock import FileLock, lock_run_folder
from scratchdet.engine.schedule import lr_at
from scratchdet.engine.step import STEP_STATS, TrainStep, make_optimizer
from scratchdet.engine.training_log import TrainingLog
from scratchdet.errors import ConfigError, DataError
from scratchdet.input import build_train_input
from scratchdet.io import write_json, write_text
from scratchdet.models import build_model
from scratchdet.models.batchnorm import convert_batchnorm
from scratchdet.progress import Progress
from scratchdet.provenance import provenance, seed_everything
from scratchdet.run_folder import RunStatus, TrainFolder

__all__ = ["StepLog", "initialise_from", "train"]

log = logging.getLogger(__name__)


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked between steps, so a checkpoint is saved first."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        for sig in (signal.SIGTERM, signal.SIGINT, PREEMPT_SIGNAL):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum  # the first decides (USR1 then TERM: a preemption)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _divergence(loss: float, grad_norm: float, bound: float) -> str | None:
    if not math.isfinite(loss):
        return f"loss is {loss}"
    if not math.isfinite(grad_norm):
        return f"gradient norm is {grad_norm}"
    if loss > bound:
        return f"loss {loss:.4g} exceeded train.max_loss {bound:.4g}"
    return None


class StepLog:
    """Per-step stats kept on the device and read by the host every ``log_every`` steps.

    Row ``i`` of the buffer holds (loss, loc, conf, num_pos, grad_norm) of one optimizer step;
    ``flush`` copies the rows once, averages them over the processes once, and returns them as
    host rows. The step itself never waits for the host.
    """

    FIELDS = STEP_STATS

    def __init__(
        self, capacity: int, device: torch.device, ctx: DistContext, time_offset: float = 0.0
    ):
        self.buffer = torch.zeros(capacity, len(self.FIELDS), device=device)
        self.steps: list[tuple[int, float, float]] = []  # (step, lr, host time) of the rows
        self.ctx = ctx
        self.t0 = self.start = time.perf_counter()
        self.offset = time_offset  # training seconds before this process (a resumed run's)

    def record(self, step: int, lr: float, values: torch.Tensor) -> None:
        self.buffer[len(self.steps)].copy_(values)
        self.steps.append((step, lr, time.perf_counter()))

    def __len__(self) -> int:
        return len(self.steps)

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` spent outside training (a held-out evaluation) out of the times."""
        self.t0 += seconds
        self.offset -= seconds

    def flush(self, batch_size: int) -> list[dict[str, Any]]:
        if not self.steps:
            return []
        rows = self.ctx.all_reduce_mean(self.buffer[: len(self.steps)].clone()).tolist()
        now = time.perf_counter()  # the read waited for the device: the window's end
        window = batch_size * len(self.steps) / max(now - self.t0, 1e-9)
        ends = [t for _, _, t in self.steps[:-1]] + [now]
        out, before = [], self.t0
        for (step, lr, _), end, row in zip(self.steps, ends, rows):
            step_s = max(end - before, 1e-9)
            out.append(
                {
                    "step": step,
                    "lr": lr,
                    **dict(zip(self.FIELDS, row)),
                    "time_s": self.offset + end - self.start,
                    "step_s": step_s,
                    "images_per_s": batch_size / step_s,
                    "window_images_per_s": window,
                }
            )
            before = end
        for row in out:
            row["num_pos"] = round(row["num_pos"] * self.ctx.world_size)
        self.steps.clear()
        self.t0 = time.perf_counter()
        return out


def initialise_from(model: torch.nn.Module, checkpoint: str | Path) -> dict[str, Any]:
    """Copy every tensor of a trained model whose name and shape match; report what was not."""
    source = read_init_source(checkpoint)
    own = model.state_dict()
    loaded, skipped = {}, []
    for name, tensor in source["model"].items():
        if name in own and own[name].shape == tensor.shape:
            loaded[name] = tensor
        else:
            skipped.append(name)
    if not loaded:
        raise DataError(
            checkpoint, "no tensor matches this model's layers: a different architecture?"
        )
    model.load_state_dict(loaded, strict=False)
    return {
        "checkpoint": str(checkpoint),
        "loaded": len(loaded),
        "skipped": skipped,
        "fresh": sorted(set(own) - set(loaded)),
    }


def train(cfg: RunConfig, out_dir: str | Path, restart_stale: bool = False) -> dict[str, Any]:
    """Train (or resume) the run in `out_dir`; returns the final status dict.

    A run folder holding a run made with another config is an error, unless `restart_stale`
    (the workflow's choice: the row's config changed, so its old run is obsolete).
    Started by torchrun, each process trains on its slice of every batch and process 0 alone
    writes files.
    """
    out = Path(out_dir)
    if cfg.train.init_from and not list_snapshots(out):
        read_init_source(cfg.train.init_from)  # refused before the run folder is created
    with lock_run_folder(out) as lock:  # one process per run folder (rank 0 of several)
        return _train_in(cfg, out, restart_stale, lock)


def _train_in(cfg: RunConfig, out: Path, restart_stale: bool, lock: FileLock) -> dict[str, Any]:
    store = CheckpointStore(
        out, cfg.train.keep_checkpoints, writer=int(os.environ.get("RANK", "0")) == 0
    )
    store.sweep()
    data = data_record(cfg.data.train) if Path(cfg.data.train).is_file() else None
    if restart_stale and store.writer:
        store.discard_if_stale(cfg, data)
    files = TrainFolder(out)
    requested = resolve_device(cfg.train.device, "train.device")
    ctx = init_distributed(requested)
    device = ctx.device(requested)
    try:
        if files.status.exists() and files.model.exists():
            done = load_checkpoint(files.model)
            if same_config(done.get("config"), cfg):
                _check_same_data(done.get("data"), data, out)
                log.info("%s already finished; nothing to do", out)
                return RunStatus.read(files.status).to_dict()
            raise ConfigError(
                files.config,
                "<run>",
                "this run directory holds a finished "
                "run with a different config; use a new --out or delete the directory",
            )
        if cfg.train.batch_size % (cfg.micro_batch * ctx.world_size):
            raise ConfigError(
                None,
                "train.batch_size",
                f"{cfg.train.batch_size} is not a multiple "
                f"of micro_batch {cfg.micro_batch} x {ctx.world_size} processes",
            )
        return _train(cfg, out, ctx, device, store, lock, data)
    finally:
        shutdown_distributed(ctx)


def _check_same_data(recorded: Any, data: dict[str, str] | None, out: Path) -> None:
    """DataError naming both data sets unless the run in `out` recorded `data` (or nothing)."""
    if same_data(recorded, data):
        return
    assert data is not None
    raise DataError(
        data["file"],
        f"the run in {out} trained on different data: "
        f"{recorded.get('file')} (sha256:{recorded.get('sha256', '')[:16]})"
        f", this file is sha256:{data['sha256'][:16]}; restore that split "
        "or train in a new --out",
    )


def _check_image_size(cfg: RunConfig, model: torch.nn.Module) -> None:
    """The model's default boxes are laid out for one input size: another one would meet the
    targets with a different number of boxes (a shape error inside the loss)."""
    size = model.prior_config.image_size
    if cfg.data.image_size != size:
        raise ConfigError(
            None,
            "data.image_size",
            f"{cfg.data.image_size}: this model takes "
            f"{size} x {size} images (its default boxes are laid out for that "
            f"size); set data.image_size: {size}",
        )


def _check_folder(lock: FileLock, out: Path) -> None:
    """Stop before writing into a run folder that was deleted (or replaced) under the run."""
    if not lock.intact():
        raise DataError(
            out,
            "the run folder was deleted while training; nothing more is written "
            "there: run the command again to train anew",
        )


def _train(
    cfg: RunConfig,
    out: Path,
    ctx: DistContext,
    device: torch.device,
    store: CheckpointStore,
    lock: FileLock,
    data: dict[str, str] | None = None,
) -> dict[str, Any]:
    files, resume = TrainFolder(out), store.resume_point()
    seed_everything(cfg.seed)  # same initial weights on every process
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t = cfg.train
    accumulation = t.batch_size // (cfg.micro_batch * ctx.world_size)

    ann = load_annotations(cfg.data.train)
    if not ann["images"]:
        raise DataError(
            cfg.data.train,
            "holds no images, so there is nothing to train on; give data.train a split with images",
        )
    names = class_names(ann)
    check_trainable(ann, cfg.data.train)
    # A resumed run takes its weights from the checkpoint: no ImageNet download needed.
    model = build_model(cfg.model, num_classes=len(names), load_pretrained=resume is None).to(
        device
    )
    # The release's BatchNorm statistic group and running average (models/batchnorm.py).
    model = convert_batchnorm(model, t.bn_group, t.bn_stats)
    set_matmul_precision(t, device)
    _check_image_size(cfg, model)
    memory_format = memory_format_for(device, t.channels_last)
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, cfg)

    init_report = None
    if t.init_from and resume is None:
        init_report = initialise_from(model, t.init_from)
    start_step = 0
    training_log = TrainingLog(files.training_log)
    if resume is not None:
        if not same_config(resume.config, cfg):
            raise ConfigError(
                resume.path,
                "<run>",
                "the checkpoint to resume was made with a "
                "different config; use a new --out or delete the directory",
            )
        _check_same_data(resume.data, data, out)
        state = load_checkpoint(resume.path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        log.info("resuming %s from step %d", out, start_step)
    if ctx.is_main:
        training_log.truncate(start_step)
        write_text(files.config, dump_config(cfg))
        write_json(
            files.provenance,
            provenance(cfg.to_dict(), cfg.seed, device)
            | {"world_size": ctx.world_size, "init_from": init_report, "data": data},
        )
    net = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ctx.enabled
        else model
    )

    batches = build_train_input(
        cfg,
        DetectionDataset(ann),
        device=device,
        priors=model.priors,
        variances=model.prior_config.variances,
        start_step=start_step,
        rank=ctx.rank,
        world_size=ctx.world_size,
        memory_format=memory_format,
    )
    trainer = TrainStep(
        model, cfg, device=device, accumulation=accumulation, net=net, optimizer=optimizer
    )

    def checkpoint(step: int) -> None:
        _check_folder(lock, out)
        try:
            store.save(
                step, model, optimizer=optimizer, cfg=cfg, class_names=names, data=data
            )  # rank 0 writes, the others wait
        except (OSError, DataError):
            _check_folder(lock, out)  # the folder went while the snapshot was written: say so
            raise
        ctx.barrier()

    steplog = StepLog(t.log_every, device, ctx, time_offset=training_log.last_time())
    check_monitor_config(cfg, names)
    monitor = TrainMonitor(cfg, out, enabled=ctx.is_main)
    # Counts steps on the host; the loss shown is the mean of the rows of the last read.
    progress = Progress(
        "train",
        t.max_steps,
        unit="step",
        initial=start_step,
        every=t.log_every,
        enabled=ctx.is_main,
    )

    def flush() -> RunStatus | None:
        """Log the buffered steps; the status of the first diverged one, if any."""
        _check_folder(lock, out)
        rows = steplog.flush(t.batch_size)
        if rows:
            progress.set(loss=sum(r["loss"] for r in rows) / len(rows), lr=rows[-1]["lr"])
        monitor.log_rows(rows)
        for row in rows:
            reason = _divergence(row["loss"], row["grad_norm"], t.max_loss)
            if ctx.is_main:
                training_log.append(row)
            if reason is not None:
                return RunStatus(RunStatus.DIVERGED, int(row["step"]), reason)
        return None

    status = RunStatus(RunStatus.FINISHED, t.max_steps)
    net.train()
    step, lr, starting = start_step, t.lr, True
    with _StopRequest() as stop, progress:
        for batch in batches:
            if starting:
                lr = lr_at(step, t)
                trainer.begin(lr)
            starting = trainer.micro_step(batch)
            if not starting:
                continue
            # A non-finite step is skipped on the device; the host learns of it at the next read.
            steplog.record(step, lr, trainer.finish())
            step += 1
            # Reads at multiples of log_every (so progress lines show a fresh loss), at
            # snapshots, at a stop and at the end: never more than log_every rows apart.
            full = step % t.log_every == 0
            # With several processes a stop signal is agreed on at the reads only (a collective).
            stopping = (
                ctx.any(stop.signum is not None, device)
                if ctx.enabled and full
                else stop.signum is not None and not ctx.enabled
            )
            due = step % t.checkpoint_every == 0 and step < t.max_steps
            diverged = (
                flush()
                if full or due or stopping or step == t.max_steps or monitor.due(step)
                else None
            )
            progress.update()
            if diverged is not None:
                status = diverged
                log.warning("run %s diverged at step %d: %s", out, status.step, status.reason)
                break
            if stopping:
                checkpoint(step)
                signum = stop.signum or signal.SIGTERM
                log.warning(
                    "%s: interrupted by %s at step %d: snapshot saved; run the same "
                    "command to resume",
                    out,
                    signal.Signals(signum).name,
                    step,
                )
                requeue_if_preempted(signum, ctx.is_main)
                raise SystemExit(128 + signum)
            if due:
                checkpoint(step)
            if monitor.due(step):  # after the read: its time is left out of the step times
                paused = time.perf_counter()
                monitor.evaluate(
                    step, trained_model_record(model.state_dict(), cfg, names, step), device
                )
                ctx.barrier()
                steplog.exclude(time.perf_counter() - paused)
    monitor.close()

    if ctx.is_main:
        _check_folder(lock, out)
        final = trained_model_record(model.state_dict(), cfg, names, status.step)
        save_checkpoint(final | {"status": status.status, "data": data}, files.model)
        status.write(files.status)
    ctx.barrier()
    return status.to_dict()
