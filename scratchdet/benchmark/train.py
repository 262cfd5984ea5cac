"""Training throughput: images/s of a full step (forward, MultiBox loss, backward, SGD update).

Per model and batch size, in one process and on one device:

* ``synthetic``: a fixed batch already on the device with its targets matched: the step alone;
* ``device_augment``: real data through the device input pipeline (``data.pipeline: device``:
  light CPU decode, then augment + match on the device);
* ``cpu_augment``: real data through the CPU input pipeline (per-image augmentation in workers);
* ``torchvision``: the model's backbone inside ``torchvision.models.detection.SSD`` with its own
  anchors, head and loss, on the same synthetic batch (the reference); ``--reference vgg16`` adds
  torchvision's own ``ssd300_vgg16``.

``pipeline_cost[mode] = 1 - images/s(mode) / images/s(synthetic)``: the share of a step lost to
the input pipeline. A mode that fails (e.g. CUDA out of memory) records its error and the run
goes on.
"""

from __future__ import annotations

import gc
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from scratchdet.benchmark import data as bdata
from scratchdet.benchmark.arguments import DEFAULT_WORKERS, TRAIN_MODES
from scratchdet.benchmark.common import (
    NUM_CLASSES,
    Record,
    check_positive,
    default_out,
    parse_model,
    summary,
    sync,
)
from scratchdet.benchmark.host_traffic import HostTrafficCounter
from scratchdet.benchmark.tvref import backbone_reference, targets_for, torchvision_vgg16
from scratchdet.config import config_from_dict
from scratchdet.engine.device import memory_format_for, resolve_device
from scratchdet.engine.step import TrainStep, make_optimizer
from scratchdet.models import build_model, count_parameters, resolve_config

__all__ = ["LR", "REAL_MODES", "run_train"]

log = logging.getLogger(__name__)

REAL_MODES = ("device_augment", "cpu_augment")
LR = 1e-4  # small: random inputs must not blow the weights up while timing


def _timed_steps(
    step: Callable[[], torch.Tensor], warmup: int, steps: int, repeats: int, device: torch.device
) -> tuple[list[float], float]:
    """Seconds per repeat of ``steps`` calls after ``warmup`` calls; and the last loss."""
    loss = None
    for _ in range(warmup):
        loss = step()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times, float(loss.detach()) if loss is not None else math.nan


class _Trainer:
    """The optimizer step of ``scratchdet train`` (``engine.step.TrainStep``) on our models, and
    the same SGD around torchvision's detector for the reference."""

    def __init__(
        self, model: torch.nn.Module, device: torch.device, amp: bool, compile: bool = False
    ):
        self.cfg = config_from_dict({"train": {"lr": LR, "amp": amp, "compile": compile}})
        self.model = model
        self.device = device
        self.step = None

    def ours(self, batch: bdata.TrainBatch) -> torch.Tensor:
        if self.step is None:
            self.step = TrainStep(self.model, self.cfg, device=self.device, accumulation=1)
        return self.step(LR, [batch])[0]

    def torchvision(self, images: list, targets: list) -> torch.Tensor:
        if self.step is None:
            self.step = make_optimizer(self.model, self.cfg)
            self.autocast = (
                torch.autocast("cuda", dtype=torch.bfloat16)
                if self.cfg.train.amp and self.device.type == "cuda"
                else nullcontext()
            )
        self.step.zero_grad(set_to_none=True)
        with self.autocast:
            losses = self.model(images, targets)
        loss = sum(losses.values())
        loss.backward()
        self.step.step()
        return loss


def _sync_check(step: Callable[[], torch.Tensor], device: torch.device) -> dict[str, Any]:
    """Two more steps: one with its host traffic counted (``host_traffic.py``; the real-data
    modes include fetching the batch, one copy in), one on CUDA under
    ``torch.cuda.set_sync_debug_mode("error")``, which raises at the first synchronising call."""
    with HostTrafficCounter(device) as traffic:
        step()
    out: dict[str, Any] = {"host_traffic": traffic.counts()}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            out["sync_free"] = True
        except RuntimeError as exc:
            out["sync_free"] = False
            out["sync_error"] = str(exc).splitlines()[0][:300]
        finally:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize(device)
    return out


def _rate(times: Sequence[float], batch: int, steps: int) -> dict[str, Any]:
    return {
        "images_per_s": summary([batch * steps / t for t in times]),
        "step_ms": summary([1000 * t / steps for t in times]),
    }


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _guard(fn: Callable[[], dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """Run one mode; a CUDA OOM (or any runtime failure) becomes an error entry."""
    try:
        return fn()
    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
        log.warning("benchmark mode failed: %s", exc)
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    finally:
        _release(device)


def _bench_ours(
    label: str,
    cfg: Any,
    batch: int,
    args: SimpleNamespace,
    device: torch.device,
    memory_format: torch.memory_format,
    split_path: Callable[[], Any],
) -> dict[str, Any]:
    """Our model in the synthetic and real-data modes; returns the row."""
    torch.manual_seed(args.seed)
    model = build_model(cfg, NUM_CLASSES, load_pretrained=False).to(device)
    model = model.to(memory_format=memory_format).train()
    priors, variances = model.priors, model.prior_config.variances
    trainer = _Trainer(model, device, args.amp, args.compile)
    total = args.warmup + args.steps * args.repeats + 2  # + the two of _sync_check
    row: dict[str, Any] = {
        "model": label,
        "model_config": cfg,
        "batch_size": batch,
        "params": count_parameters(model),
        "priors": int(priors.shape[0]),
        "compiled": bool(args.compile),
        "modes": {},
    }

    def run(batches: Iterator[bdata.TrainBatch]) -> dict[str, Any]:
        times, loss = _timed_steps(
            lambda: trainer.ours(next(batches)), args.warmup, args.steps, args.repeats, device
        )
        return {
            **_rate(times, batch, args.steps),
            "last_loss": loss,
            **_sync_check(lambda: trainer.ours(next(batches)), device),
        }

    def synthetic() -> dict[str, Any]:
        fixed = bdata.synthetic_batch(
            batch=batch,
            num_classes=NUM_CLASSES,
            priors=priors,
            variances=variances,
            size=300,
            memory_format=memory_format,
            seed=args.seed,
        )
        return run(iter(lambda: fixed, None))

    def real(pipeline: str) -> Callable[[], dict[str, Any]]:
        return lambda: run(
            bdata.pipeline_batches(
                split_path(),
                pipeline=pipeline,
                batch=batch,
                steps=total,
                priors=priors,
                variances=variances,
                memory_format=memory_format,
                workers=args.workers,
                seed=args.seed,
            )
        )

    for mode, fn in (
        ("synthetic", synthetic),
        ("device_augment", real("device")),
        ("cpu_augment", real("cpu")),
    ):
        if mode in args.modes:
            row["modes"][mode] = _guard(fn, device)
    return row


def _bench_model(
    label: str,
    cfg: Any,
    batch: int,
    args: SimpleNamespace,
    device: torch.device,
    memory_format: torch.memory_format,
    split_path: Callable[[], Any],
) -> dict[str, Any]:
    row = _bench_ours(label, cfg, batch, args, device, memory_format, split_path)
    _release(device)
    if "torchvision" in args.modes and args.reference in ("backbone", "both"):
        torch.manual_seed(args.seed)
        fresh = build_model(cfg, NUM_CLASSES, load_pretrained=False)
        row["modes"]["torchvision"] = _guard(
            lambda: _bench_torchvision(
                backbone_reference(fresh), batch, args, device, memory_format
            ),
            device,
        )
        row["torchvision_model"] = "torchvision.models.detection.SSD(our backbone, SSDHead)"
    _derive(row)
    return row


def _bench_torchvision(
    tv_model: torch.nn.Module,
    batch: int,
    args: SimpleNamespace,
    device: torch.device,
    memory_format: torch.memory_format,
) -> dict[str, Any]:
    tv_model = tv_model.to(device).to(memory_format=memory_format).train()
    trainer = _Trainer(tv_model, device, args.amp)
    g = torch.Generator().manual_seed(args.seed)
    images = list(bdata.synthetic_images(batch, 300, g).to(device))
    boxes, labels, mask = (t.to(device) for t in bdata.random_targets(batch, NUM_CLASSES, g))
    targets = targets_for(boxes, labels, mask, 300)
    times, loss = _timed_steps(
        lambda: trainer.torchvision(images, targets), args.warmup, args.steps, args.repeats, device
    )
    return {
        **_rate(times, batch, args.steps),
        "last_loss": loss,
        "params": count_parameters(tv_model),
    }


def _bench_tv_vgg16(
    batch: int, args: SimpleNamespace, device: torch.device, memory_format: torch.memory_format
) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model = torchvision_vgg16(NUM_CLASSES + 1)
    row = {
        "model": "torchvision.ssd300_vgg16",
        "model_config": None,
        "batch_size": batch,
        "modes": {
            "torchvision": _guard(
                lambda: _bench_torchvision(model, batch, args, device, memory_format), device
            )
        },
        "torchvision_model": "torchvision.models.detection.ssd300_vgg16(weights=None)",
    }
    _derive(row)
    return row


def _median_rate(entry: dict[str, Any] | None) -> float | None:
    if not entry or "images_per_s" not in entry:
        return None
    return entry["images_per_s"]["median"]


def _derive(row: dict[str, Any]) -> None:
    """pipeline_cost per real mode, and our synthetic speed over torchvision's."""
    synth = _median_rate(row["modes"].get("synthetic"))
    row["pipeline_cost"] = {}
    for mode in REAL_MODES:
        real = _median_rate(row["modes"].get(mode))
        if synth and real:
            row["pipeline_cost"][mode] = round(1.0 - real / synth, 4)
    tv = _median_rate(row["modes"].get("torchvision"))
    row["speedup_vs_torchvision"] = round(synth / tv, 3) if synth and tv else None


def run_train(
    *,
    models: Sequence[str] = ("scratchdet300", "dsod300", "ssd300_vgg16"),
    batch_sizes: Sequence[int] = (32, 128),
    modes: Sequence[str] = TRAIN_MODES,
    reference: str = "both",
    steps: int = 20,
    warmup: int = 5,
    repeats: int = 5,
    workers: int = DEFAULT_WORKERS,
    data: str | None = None,
    synth_images: int = 256,
    compile: bool = False,
    amp: bool = True,
    channels_last: bool = True,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark train``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    for name in ("steps", "repeats", "synth_images"):
        check_positive(f"--{name.replace('_', '-')}", getattr(args, name))
    check_positive("--warmup", args.warmup, 0)
    check_positive("--workers", args.workers, 0)
    for b in args.batch_sizes:
        check_positive("--batch-sizes", b)
    models = [parse_model(m) for m in args.models]
    for _, cfg in models:
        resolve_config(cfg)  # a bad name fails now, not after the first model's timings
    device = resolve_device(args.device, "--device")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = memory_format_for(device, args.channels_last)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    config.update(
        memory_format=str(memory_format),
        amp_active=args.amp and device.type == "cuda",
        cudnn_benchmark=device.type == "cuda",
        num_classes=NUM_CLASSES,
        lr=LR,
    )
    record = Record("train", device, config=config, argv=args.argv, seed=args.seed)

    with tempfile.TemporaryDirectory(prefix="scratchdet-bench-") as tmp:
        split_cache: dict[str, Any] = {}

        def split_path():
            if "path" not in split_cache:  # made on first use: synthetic-only runs skip it
                split_cache["path"] = bdata.training_split(args.data, args.synth_images, tmp)
            return split_cache["path"]

        for batch in args.batch_sizes:
            for label, cfg in models:
                log.info("train benchmark: %s at batch %d", label, batch)
                record.add(_bench_model(label, cfg, batch, args, device, memory_format, split_path))
            if "torchvision" in args.modes and args.reference in ("vgg16", "both"):
                record.add(_bench_tv_vgg16(batch, args, device, memory_format))
    return record.write(args.out or default_out("train", device))
