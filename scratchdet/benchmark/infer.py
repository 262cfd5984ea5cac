"""Inference latency and FPS per model and batch size, NMS included (the papers' FPS column).

One iteration = forward + what ``scratchdet detect`` does next
(``ssd.postprocess.batch_detections``:
decode, per-class top-k, one confidence filter and one NMS for the batch, then the one copy of
the detections to the host, keep 200 per image) on a fixed batch already on the device, with the
device synchronised after each part so both are timed. ``host_traffic`` counts one iteration's
copies and data-dependent ops (``host_traffic.py``). Weights are the models' from-scratch
initialisation: nearly every class score of an
untrained head is above the 0.01 threshold, so NMS sees the most candidates it can (400 per
class), which makes the NMS share an upper bound of what a trained model costs. ``process_cpu_ms``
is
the CPU time of this process (all its threads) per iteration: on a shared CPU it varies less
than wall time; on a GPU it is the host's share only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from scratchdet.benchmark.common import (
    NUM_CLASSES,
    Record,
    check_positive,
    default_out,
    parse_model,
    summary,
    timed,
)
from scratchdet.benchmark.fps import PAPER_FPS
from scratchdet.benchmark.host_traffic import HostTrafficCounter
from scratchdet.config import DetectConfig
from scratchdet.engine.detect import detection_rows
from scratchdet.engine.device import memory_format_for, resolve_device
from scratchdet.models import CANONICAL_MODELS, build_model, count_parameters
from scratchdet.models.input import CAFFE_MEAN_RGB

__all__ = ["run_infer"]

log = logging.getLogger(__name__)


def _bench(
    model: torch.nn.Module,
    forward: Any,
    batch: int,
    args: SimpleNamespace,
    device: torch.device,
    memory_format: torch.memory_format,
) -> dict[str, Any]:
    g = torch.Generator().manual_seed(args.seed)
    mean = torch.tensor(CAFFE_MEAN_RGB)[None, :, None, None]
    images = (torch.rand(batch, 3, 300, 300, generator=g) * 255 - mean).to(device)
    images = images.contiguous(memory_format=memory_format)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if args.amp and device.type == "cuda"
        else nullcontext()
    )
    priors = model.priors
    variances = torch.tensor(model.prior_config.variances, device=device)

    def forward_only():
        with autocast:
            return forward(images)

    settings = DetectConfig()

    def detections(loc: torch.Tensor, conf: torch.Tensor) -> int:
        rows = detection_rows(loc, conf, priors=priors, variances=variances, cfg=settings).cpu()
        return int((rows[:, 7] < settings.keep_top_k).sum())

    fwd, post, total, cpu, dets = [], [], [], [], 0
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            c0 = time.process_time()
            t_f, (loc, conf) = timed(forward_only, device)
            t_p, kept = timed(partial(detections, loc, conf), device)
            if i >= args.warmup:
                fwd.append(t_f)
                post.append(t_p)
                total.append(t_f + t_p)
                cpu.append(time.process_time() - c0)
                dets = kept / batch
        with HostTrafficCounter(device) as traffic:
            detections(*forward_only())

    def ms(xs: list[float]) -> list[float]:
        return [1000 * x for x in xs]

    return {
        "latency_ms": summary(ms(total)),
        "forward_ms": summary(ms(fwd)),
        "postprocess_ms": summary(ms(post)),
        "process_cpu_ms": summary(ms(cpu)),
        "fps": summary([batch / t for t in total]),
        "detections_per_image": dets,
        "host_traffic": traffic.counts(),
    }


def run_infer(
    *,
    models: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    iters: int = 20,
    warmup: int = 3,
    compile: bool = False,
    amp: bool = True,
    channels_last: bool = True,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark infer``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    check_positive("--iters", args.iters)
    check_positive("--warmup", args.warmup, 0)
    for b in args.batch_sizes:
        check_positive("--batch-sizes", b)
    device = resolve_device(args.device, "--device")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = memory_format_for(device, args.channels_last)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    config.update(
        memory_format=str(memory_format),
        num_classes=NUM_CLASSES,
        amp_active=args.amp and device.type == "cuda",
        postprocess="batch_detections: conf 0.01, NMS 0.45, top_k 400, keep_top_k 200 "
        "(defaults), one copy back per batch",
    )
    record = Record("infer", device, config=config, argv=args.argv, seed=args.seed)
    for label, cfg in (parse_model(m) for m in args.models or CANONICAL_MODELS):
        torch.manual_seed(args.seed)
        model = build_model(cfg, NUM_CLASSES, load_pretrained=False).to(device).eval()
        model = model.to(memory_format=memory_format)
        forward = torch.compile(model) if args.compile else model
        for batch in args.batch_sizes:
            log.info("infer benchmark: %s at batch %d", label, batch)
            row: dict[str, Any] = {
                "model": label,
                "model_config": cfg,
                "batch_size": batch,
                "params": count_parameters(model),
            }
            try:
                row.update(_bench(model, forward, batch, args, device, memory_format))
            except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            if label in PAPER_FPS:
                row["paper_fps"], row["paper_fps_source"] = PAPER_FPS[label]
            record.add(row)
        del model, forward
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record.write(args.out or default_out("infer", device))
