"""The training loop: SGD + warmup/multistep, gradient accumulation, resumable, divergence-aware.

Outputs in the run directory:
- `config.yaml`, `provenance.json`: what produced the run.
- `metrics.csv`: one row per optimizer step.
- `checkpoints/step_<step>.pt`: the last `train.keep_checkpoints` snapshots, each with everything
  needed to resume (model, optimizer, step) or to detect (see `checkpoint.py`).
- `model_final.pt`: the trained weights with the model config and class names.
- `.run.lock`: held by the process training in the folder (`run_lock.py`): one run per folder.
- `status.json`: `finished` or `diverged` (with the step and the reason); written last.

Killing the process at any moment and running the same command again resumes from the newest
readable snapshot and reaches the same weights: the data stream is a function of (seed, step), see
`sampling.py`, and every file is replaced atomically.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from typing_extensions import Self

from ..config import RunConfig, dump_config, same_config
from ..data.annotations import class_names, load_annotations
from ..data.dataset import DetectionDataset
from ..errors import ConfigError, DataError
from ..io import read_json, write_json, write_text
from ..models import build_model
from ..provenance import provenance, seed_everything
from ..ssd.loss import MultiBoxLoss
from ..ssd.matching import match, pad_targets
from .checkpoint import (
    CheckpointStore,
    list_snapshots,
    load_checkpoint,
    read_init_source,
    save_checkpoint,
    trained_model_record,
)
from .data import TrainSamples, collate_train
from .device import memory_format_for, resolve_device
from .distributed import DistContext, init_distributed, shutdown_distributed
from .gpu_pipeline import DevicePipeline, RawSamples, collate_raw
from .metrics_log import MetricsLog
from .preemption import PREEMPT_SIGNAL, requeue_if_preempted
from .run_lock import lock_run_folder
from .sampling import StreamBatchSampler
from .schedule import lr_at

log = logging.getLogger(__name__)


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked between steps, so a checkpoint is saved first."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        for sig in (signal.SIGTERM, signal.SIGINT, PREEMPT_SIGNAL):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
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


def _input_pipeline(cfg: RunConfig, ann: dict, sampler_args: tuple, device: torch.device,
                    priors: torch.Tensor, variances, memory_format: torch.memory_format):
    """The DataLoader, and the on-device augmentation when `data.augment` is 'device'."""
    dataset = DetectionDataset(ann)
    sampler = StreamBatchSampler(len(dataset), *sampler_args)
    common = {"batch_sampler": sampler, "num_workers": cfg.data.num_workers,
              "pin_memory": device.type == "cuda"}
    if cfg.data.augment == "device":
        pipeline = DevicePipeline(priors, variances, seed=cfg.seed, size=cfg.data.image_size,
                                  iou_threshold=cfg.loss.iou_threshold, memory_format=memory_format)
        return DataLoader(RawSamples(dataset), collate_fn=collate_raw, **common), pipeline
    samples = TrainSamples(dataset, cfg.data.image_size, cfg.seed)
    return DataLoader(samples, collate_fn=collate_train, **common), None


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
        raise DataError(checkpoint, "no tensor matches this model's layers: a different architecture?")
    model.load_state_dict(loaded, strict=False)
    return {"checkpoint": str(checkpoint), "loaded": len(loaded), "skipped": skipped,
            "fresh": sorted(set(own) - set(loaded))}


def _forward(net: torch.nn.Module, images: torch.Tensor, micro_batch: int):
    try:
        return net(images)
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise ConfigError(None, "train.micro_batch", f"{micro_batch} image(s) per forward pass is "
                          "too few for BatchNorm on this model's 1x1 maps; use 2 or more") from None


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
    with lock_run_folder(out):  # one process per run folder (rank 0 of several)
        return _train_in(cfg, out, restart_stale)


def _train_in(cfg: RunConfig, out: Path, restart_stale: bool) -> dict[str, Any]:
    store = CheckpointStore(out, cfg.train.keep_checkpoints,
                            writer=int(os.environ.get("RANK", "0")) == 0)
    store.sweep()
    if restart_stale and store.writer:
        store.discard_if_stale(cfg)
    status_path = out / "status.json"
    requested = resolve_device(cfg.train.device, "train.device")
    ctx = init_distributed(requested)
    device = ctx.device(requested)
    try:
        if status_path.exists() and (out / "model_final.pt").exists():
            done = load_checkpoint(out / "model_final.pt")
            if same_config(done.get("config"), cfg):
                log.info("%s already finished; nothing to do", out)
                return read_json(status_path)
            raise ConfigError(out / "config.yaml", "<run>", "this run directory holds a finished "
                              "run with a different config; use a new --out or delete the directory")
        if cfg.train.batch_size % (cfg.micro_batch * ctx.world_size):
            raise ConfigError(None, "train.batch_size", f"{cfg.train.batch_size} is not a multiple "
                              f"of micro_batch {cfg.micro_batch} x {ctx.world_size} processes")
        return _train(cfg, out, ctx, device, store)
    finally:
        shutdown_distributed(ctx)


def _train(cfg: RunConfig, out: Path, ctx: DistContext, device: torch.device,
           store: CheckpointStore) -> dict[str, Any]:
    status_path, resume = out / "status.json", store.resume_point()
    seed_everything(cfg.seed)  # same initial weights on every process
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    accumulation = cfg.train.batch_size // (cfg.micro_batch * ctx.world_size)

    ann = load_annotations(cfg.data.train)
    names = class_names(ann)
    # A resumed run takes its weights from the checkpoint: no ImageNet download needed.
    model = build_model(cfg.model, num_classes=len(names),
                        load_pretrained=resume is None).to(device)
    memory_format = memory_format_for(device, cfg.train.channels_last)
    model = model.to(memory_format=memory_format)
    priors = model.priors.to(device)
    variances = model.prior_config.variances
    criterion = MultiBoxLoss(neg_pos_ratio=cfg.loss.neg_pos_ratio, loc_weight=cfg.loss.loc_weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
                                weight_decay=cfg.train.weight_decay)

    init_report = None
    if cfg.train.init_from and resume is None:
        init_report = initialise_from(model, cfg.train.init_from)
    start_step = 0
    metrics = MetricsLog(out / "metrics.csv")
    if resume is not None:
        if not same_config(resume.config, cfg):
            raise ConfigError(resume.path, "<run>", "the checkpoint to resume was made with a "
                              "different config; use a new --out or delete the directory")
        state = load_checkpoint(resume.path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        log.info("resuming %s from step %d", out, start_step)
    if ctx.is_main:
        metrics.truncate(start_step)
        write_text(out / "config.yaml", dump_config(cfg))
        write_json(out / "provenance.json",
                   provenance(cfg.to_dict(), cfg.seed, device)
                   | {"world_size": ctx.world_size, "init_from": init_report})
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ctx.enabled else model

    loader, device_pipeline = _input_pipeline(cfg, ann, sampler_args=(
        cfg.train.batch_size, cfg.micro_batch, cfg.seed, start_step, cfg.train.max_steps,
        ctx.rank, ctx.world_size), device=device, priors=priors, variances=variances,
        memory_format=memory_format)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) \
        if (cfg.train.amp and device.type == "cuda") else nullcontext()

    def checkpoint(step: int) -> None:
        store.save(step, model, optimizer, cfg, names)  # rank 0 writes, the others wait
        ctx.barrier()

    status: dict[str, Any] = {"status": "finished", "step": cfg.train.max_steps, "reason": None}
    net.train()
    step, micro, t0 = start_step, 0, time.perf_counter()
    sums = torch.zeros(4, device=device)  # loss, loc, conf, num_pos over the micro-batches of a step
    with _StopRequest() as stop:
        for batch in loader:
            if micro == 0:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, cfg.train)
                optimizer.zero_grad(set_to_none=True)
                sums.zero_()
            micro += 1
            if device_pipeline is not None:
                images, loc_t, labels_t = device_pipeline(batch)
            else:
                images, boxes, labels = batch
                images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                gt_boxes, gt_labels, gt_mask = (t.to(device, non_blocking=True)
                                                for t in pad_targets(boxes, labels))
                loc_t, labels_t = match(gt_boxes, gt_labels, gt_mask, priors, variances,
                                        iou_threshold=cfg.loss.iou_threshold)
            # Gradients are averaged across processes once per step, on the last micro-batch.
            sync = nullcontext() if (micro == accumulation or not ctx.enabled) else net.no_sync()
            with sync:
                with autocast:
                    loc_p, conf_p = _forward(net, images, cfg.micro_batch)
                losses = criterion(loc_p.float(), conf_p.float(), loc_t, labels_t)
                (losses["loss"] / accumulation).backward()
            sums += torch.stack([losses["loss"].detach(), losses["loc"].detach(),
                                 losses["conf"].detach(), losses["num_pos"].detach().float()])
            if micro < accumulation:
                continue
            micro = 0
            clip = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            sums /= torch.tensor([accumulation] * 3 + [1 / ctx.world_size], device=device)
            loss, loc, conf, num_pos = ctx.all_reduce_mean(sums).tolist()
            reason = _divergence(loss, grad_norm, cfg.train.max_loss)
            if reason is None:
                optimizer.step()
            elapsed = time.perf_counter() - t0
            if ctx.is_main:
                metrics.append({"step": step, "lr": optimizer.param_groups[0]["lr"], "loss": loss,
                                "loc_loss": loc, "conf_loss": conf, "grad_norm": grad_norm,
                                "num_pos": round(num_pos),
                                "images_per_s": cfg.train.batch_size / elapsed, "elapsed_s": elapsed})
            t0 = time.perf_counter()
            if reason is not None:
                status = {"status": "diverged", "step": step, "reason": reason}
                log.warning("run %s diverged at step %d: %s", out, step, reason)
                break
            step += 1
            if ctx.any(stop.signum is not None, device):
                checkpoint(step)
                signum = stop.signum or signal.SIGTERM
                log.warning("signal %d: saved checkpoint at step %d, exiting", signum, step)
                requeue_if_preempted(signum, ctx.is_main)
                raise SystemExit(128 + signum)
            if step % cfg.train.checkpoint_every == 0 and step < cfg.train.max_steps:
                checkpoint(step)

    if ctx.is_main:
        final = trained_model_record(model.state_dict(), cfg, names, status["step"])
        save_checkpoint(final | {"status": status["status"]}, out / "model_final.pt")
        write_json(status_path, status)
    ctx.barrier()
    return status
