"""The whole training step, ours eager and compiled, against torchvision's SSD on the same backbone.

Per model: the step of ``scratchdet train`` (``engine.step.TrainStep``: forward, MultiBox loss,
backward, gradient norm, fused SGD with its device-side skip) on a fixed synthetic batch already
on the device, uncompiled and, with ``--compile``, with ``train.compile`` (CUDA graphs on CUDA),
and the same backbone inside ``torchvision.models.detection.SSD`` with torchvision's anchors,
head, transform and loss, stepped by the same SGD (``benchmark.tvref``, as ``benchmark train``'s
reference). All three start from the same weights; each repeat times ``--steps`` steps of each,
interleaved. Compiling happens in the untimed warm-up (its seconds are recorded), and the
compiled step's graph breaks are counted (``torch._dynamo`` counters: only PyTorch's own, at
``Tensor.backward`` and the fused SGD kernel).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from scratchdet.benchmark import data as bdata
from scratchdet.benchmark.common import (
    NUM_CLASSES,
    Record,
    check_positive,
    default_out,
    parse_model,
    sync,
)
from scratchdet.benchmark.eval_startup import component_case
from scratchdet.benchmark.tvref import backbone_reference, targets_for
from scratchdet.config import config_from_dict
from scratchdet.engine.device import memory_format_for, resolve_device
from scratchdet.engine.step import TrainStep, make_optimizer
from scratchdet.models import build_model, resolve_config

__all__ = ["LR", "run_train_step"]

LR = 1e-4  # small: random inputs must not blow the weights up while timing


def _graph_breaks() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {reason.splitlines()[0][:120]: n for reason, n in counters["graph_break"].items()}


def _tv_step(
    model: torch.nn.Module, cfg: Any, device: torch.device, images: list, targets: list
) -> Callable[[], torch.Tensor]:
    optimizer = make_optimizer(model, cfg)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.train.amp and device.type == "cuda"
        else nullcontext()
    )

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            losses = model(images, targets)
        loss = sum(losses.values())
        loss.backward()
        optimizer.step()
        return loss

    return step


def _bench(
    label: str,
    model_cfg: Any,
    args: SimpleNamespace,
    device: torch.device,
    memory_format: torch.memory_format,
) -> list[dict[str, Any]]:
    batch = args.batch_size
    cfg = config_from_dict({"train": {"lr": LR, "amp": args.amp, "batch_size": batch}})
    torch.manual_seed(args.seed)
    model = build_model(model_cfg, NUM_CLASSES, load_pretrained=False)
    tv_model = backbone_reference(copy.deepcopy(model))
    model = model.to(device).to(memory_format=memory_format).train()
    fixed = bdata.synthetic_batch(
        batch=batch,
        num_classes=NUM_CLASSES,
        priors=model.priors,
        variances=model.prior_config.variances,
        size=300,
        memory_format=memory_format,
        seed=args.seed,
    )
    eager = TrainStep(model, cfg, device=device, accumulation=1)
    steps: dict[str, Callable[[], Any]] = {"eager": lambda: eager(LR, [fixed])}
    if args.compile:
        # Dynamo keeps at most 8 compilations per code object, and each TrainStep is one more
        # of TrainStep._whole: start each model from none, so no model falls back to eager.
        torch._dynamo.reset()
        compiled_model = copy.deepcopy(model)
        compiled_cfg = config_from_dict(
            {"train": {"lr": LR, "amp": args.amp, "batch_size": batch, "compile": True}}
        )
        compiled = TrainStep(compiled_model, compiled_cfg, device=device, accumulation=1)
        steps["compiled"] = lambda: compiled(LR, [fixed])
    tv_model = tv_model.to(device).to(memory_format=memory_format).train()
    g = torch.Generator().manual_seed(args.seed)
    images = list(bdata.synthetic_images(batch, 300, g).to(device))
    boxes, labels, mask = (t.to(device) for t in bdata.random_targets(batch, NUM_CLASSES, g))
    steps["torchvision"] = _tv_step(
        tv_model, cfg, device, images, targets_for(boxes, labels, mask, 300)
    )
    from torch._dynamo.utils import counters

    counters.clear()
    first_s: dict[str, float] = {}
    for name, fn in steps.items():  # warm-up; the compiled step compiles here
        for i in range(max(1, args.warmup)):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i == 0:
                first_s[name] = round(time.perf_counter() - t0, 3)
    breaks = _graph_breaks()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, fn in steps.items():  # interleaved: eager, compiled, torchvision, eager, ...
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            sync(device)
            seconds[name].append((time.perf_counter() - t0) / args.steps)
    tv_name = "torchvision SSD, same backbone (tvref.backbone_reference)"
    what = f"{label}, batch {batch}"
    cases = [
        component_case(
            f"{what}: eager step",
            ours_name="TrainStep (eager)",
            ours_s=seconds["eager"],
            ref_name=tv_name,
            ref_s=seconds["torchvision"],
            first_step_s=first_s["eager"],
        )
    ]
    if args.compile:
        cases.append(
            component_case(
                f"{what}: compiled step",
                ours_name="TrainStep (train.compile)",
                ours_s=seconds["compiled"],
                ref_name=tv_name,
                ref_s=seconds["torchvision"],
                first_step_s=first_s["compiled"],
                graph_breaks=breaks,
                compile_options="mode=reduce-overhead" if device.type == "cuda" else "inductor",
            )
        )
        cases.append(
            component_case(
                f"{what}: compiled vs eager",
                ours_name="TrainStep (train.compile)",
                ours_s=seconds["compiled"],
                ref_name="TrainStep (eager)",
                ref_s=seconds["eager"],
            )
        )
    return cases


def run_train_step(
    *,
    models: Sequence[str] = ("dsod300_smallest", "scratchdet300"),
    batch_size: int = 4,
    steps: int = 2,
    repeats: int = 5,
    warmup: int = 2,
    compile: bool = False,
    amp: bool = True,
    channels_last: bool = True,
    threads: int = 0,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark train-step``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    for name in ("steps", "repeats", "batch_size"):
        check_positive(f"--{name.replace('_', '-')}", getattr(args, name))
    check_positive("--warmup", args.warmup, 0)
    models = [parse_model(m) for m in args.models]
    for _, cfg in models:
        resolve_config(cfg)
    device = resolve_device(args.device, "--device")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    memory_format = memory_format_for(device, args.channels_last)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    config.update(
        memory_format=str(memory_format),
        lr=LR,
        num_classes=NUM_CLASSES,
        amp_active=args.amp and device.type == "cuda",
    )
    record = Record("train-step", device, config=config, argv=args.argv, seed=args.seed)
    cases = record.data["cases"] = []
    for label, cfg in models:
        cases += _bench(label, cfg, args, device, memory_format)
    return record.write(args.out or default_out("train-step", device))
