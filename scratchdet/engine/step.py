"""One training step as the papers train: SGD with momentum and weight decay on the MultiBox loss.

``TrainStep`` is the whole step on device tensors: per micro-batch a forward pass (bf16 autocast
on CUDA) and a backward pass, gradients accumulated over micro-batches (and averaged across
processes by DDP on the last one), then the gradient norm (clipped if asked) and one fused SGD
update that is skipped on the device when the gradients are not finite, as ``GradScaler`` skips
a step. Nothing reads a value back to the host: the step returns its metrics as a device tensor,
which the training loop reads every ``train.log_every`` steps. ``engine/train.py`` and the
training benchmark both step with it.

``train.compile`` compiles the whole step with ``torch.compile`` (static shapes: it compiles
once): forward, loss, backward, the gradient norm and the update with its device-side skip, as
one function when a step is one micro-batch, else the micro-batch and the update. The only graph
breaks are the ones PyTorch itself makes: at ``Tensor.backward`` (Dynamo does not trace it by
default) and around the fused SGD kernel (``torch.compile`` does not trace into fused
optimizers; it runs as the one kernel it is, between graphs). The step calls torch's functional
SGD, ``torch.optim.sgd.sgd``, with the skip as its ``found_inf`` argument: no attribute set and
deleted on the optimizer (``GradScaler``'s protocol, which Dynamo cannot trace) and none of the
breaks ``torch.optim`` puts around ``Optimizer.step``. Each group's rate is a 0-dim device
tensor filled at ``begin`` (``lr * lr_mult`` of the group): a rate that changes every step
(warm-up) is data of the graphs, never a constant that could be specialised and recompiled.
``tests/test_compile.py`` counts the breaks and the recompiles on the CPU. On CUDA it compiles
with ``mode="reduce-overhead"``: CUDA graphs replay each captured part (not yet run on a GPU:
benchmarks/gpu.sh measures it first).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.sgd import sgd

from scratchdet.config import RunConfig
from scratchdet.engine.param_groups import optimizer_param_groups, set_lr
from scratchdet.engine.precision import autocast_for
from scratchdet.errors import ConfigError
from scratchdet.input import TrainBatch
from scratchdet.ssd.loss import MultiBoxLoss

__all__ = ["STEP_STATS", "TrainStep", "compile_options", "make_optimizer", "optimizer_step"]

STEP_STATS = ("loss", "loc_loss", "conf_loss", "num_pos", "grad_norm")
"""What ``TrainStep.step`` returns, in order (losses averaged over the step's micro-batches,
positives summed over them)."""


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.SGD:
    """SGD as the papers train (momentum, weight decay), fused (one kernel per parameter group,
    and a device-side skip of non-finite steps) where torch has the kernel for the device.

    The parameter groups and their multipliers follow ``train.param_groups`` and the momentum
    form ``train.sgd`` (``engine/param_groups.py``). Momentum buffers start at zero, which is the
    same update as torch's first step (buffer = gradient, with no dampening) and keeps a skipped
    first step from leaving them unset.
    """
    t = cfg.train
    groups = optimizer_param_groups(model, cfg)
    kwargs = {"lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay}
    try:
        optimizer = torch.optim.SGD(groups, **kwargs, fused=True)
    except RuntimeError:  # no fused kernel for this device
        optimizer = torch.optim.SGD(groups, **kwargs)
    if t.momentum:
        for p in model.parameters():
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer


def optimizer_step(
    optimizer: torch.optim.SGD, skip: Tensor, lrs: Sequence[Tensor] | None = None
) -> None:
    """One SGD step of every parameter group, skipped on the device where ``skip`` (a 0-dim bool)
    is true; ``lrs``: each group's rate as a device tensor (the compiled step's), else the
    groups' ``lr``.

    It is ``torch.optim.SGD.step`` through torch's functional ``sgd`` (the same update, per
    group, tested equal): called directly it takes the skip as ``found_inf`` with no attribute
    set on the optimizer and no ``torch.optim`` graph break, so ``torch.compile`` traces it. The
    fused kernel reads ``found_inf`` on the device (GradScaler's protocol): no host sync. Without
    fused SGD the decision is read on the host (one sync; only devices without the kernel).
    """
    fused = bool(optimizer.defaults.get("fused"))
    if not fused and bool(skip):
        return
    found_inf = skip.float().reshape(1) if fused else None
    with torch.no_grad():
        for i, group in enumerate(optimizer.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            buffers = [optimizer.state[p].get("momentum_buffer") for p in params]
            sgd(
                params,
                [p.grad for p in params],
                buffers,
                foreach=group.get("foreach"),
                fused=group.get("fused"),
                found_inf=found_inf,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=group["lr"] if lrs is None else lrs[i],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
            )
            if group["momentum"]:
                for p, buffer in zip(params, buffers):
                    optimizer.state[p]["momentum_buffer"] = buffer


def compile_options(device: torch.device) -> dict[str, Any]:
    """``torch.compile`` options of ``train.compile``: CUDA graphs on CUDA (a step is dozens of
    small kernels whose launches a replay saves), inductor's default elsewhere."""
    return {"mode": "reduce-overhead"} if device.type == "cuda" else {}


def _forward(net: nn.Module, images: Tensor, micro_batch: int) -> tuple[Tensor, Tensor]:
    try:
        return net(images)
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise ConfigError(
            None,
            "train.micro_batch",
            f"{micro_batch} image(s) per forward pass is "
            "too few for BatchNorm on this model's 1x1 maps; use 2 or more",
        ) from None


class TrainStep:
    """Forward/backward per micro-batch, then one optimizer step; see the module docstring.

    ``model`` is the module whose parameters the optimizer updates, ``net`` what runs the forward
    pass (``model`` itself, or its DistributedDataParallel wrapper). ``compile``: options for
    ``torch.compile`` when ``train.compile`` is set (default ``compile_options(device)``; the
    tests pass a cheap backend).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: RunConfig,
        *,
        device: torch.device,
        accumulation: int,
        net: nn.Module | None = None,
        optimizer: torch.optim.SGD | None = None,
        compile: dict[str, Any] | None = None,
    ):
        self.model, self.net = model, net if net is not None else model
        self.optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)
        self.accumulation = accumulation
        self.micro_batch = cfg.micro_batch
        self.clip = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else math.inf
        self.distributed = self.net is not model
        self.autocast: Any = autocast_for(cfg.train, device)
        self.criterion = MultiBoxLoss(
            neg_pos_ratio=cfg.loss.neg_pos_ratio, loc_weight=cfg.loss.loc_weight
        )
        self.sums = torch.zeros(4, device=device)  # loss, loc, conf, num_pos of the micro-batches
        self.micro = 0
        self.result: Tensor | None = None
        # Compiled: every group's rate is a device tensor (data, not a constant of the graph).
        self.compiled = cfg.train.compile
        self.lrs = (
            [torch.zeros((), device=device) for _ in self.optimizer.param_groups]
            if self.compiled
            else None
        )
        self.whole: Callable[[Tensor, Tensor, Tensor], Tensor] = self._whole
        self.micro_fn: Callable[[Tensor, Tensor, Tensor], Tensor] = self._micro
        self.update: Callable[[Tensor], Tensor] = self._update
        if self.compiled:
            options = compile_options(device) if compile is None else compile
            self.whole, self.micro_fn, self.update = (
                torch.compile(fn, dynamic=False, **options)
                for fn in (self._whole, self._micro, self._update)
            )

    def _micro(self, images: Tensor, loc_t: Tensor, labels_t: Tensor) -> Tensor:
        """Forward, loss and backward of one micro-batch; its (loss, loc, conf, num_pos)."""
        with self.autocast:
            loc_p, conf_p = _forward(self.net, images, self.micro_batch)
        losses = self.criterion(loc_p.float(), conf_p.float(), loc_t, labels_t)
        values = torch.stack(
            [losses["loss"], losses["loc"], losses["conf"], losses["num_pos"].float()]
        )
        (values[0] / self.accumulation).backward()
        return values.detach()

    def _update(self, sums: Tensor) -> Tensor:
        """Gradient norm, clipping and the (possibly skipped) update; the step's ``STEP_STATS``."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip, foreach=True)
        optimizer_step(self.optimizer, ~torch.isfinite(grad_norm), self.lrs)
        return torch.cat([sums[:3] / self.accumulation, sums[3:], grad_norm.reshape(1).float()])

    def _whole(self, images: Tensor, loc_t: Tensor, labels_t: Tensor) -> Tensor:
        """A step of one micro-batch as one function (one compiled unit)."""
        return self._update(self._micro(images, loc_t, labels_t))

    def begin(self, lr: float) -> None:
        """Start an optimizer step at learning rate ``lr`` (times a group's ``lr_mult``; Caffe's
        momentum form rescales the momentum where a rate changes: ``param_groups.set_lr``)."""
        set_lr(self.optimizer, lr)
        if self.lrs is not None:  # a fill per group: no host-device copy, no sync
            for rate, group in zip(self.lrs, self.optimizer.param_groups):
                rate.fill_(group["lr"])
        self.optimizer.zero_grad(set_to_none=True)
        self.sums.zero_()
        self.micro = 0
        self.result = None

    def micro_step(self, batch: TrainBatch) -> bool:
        """Forward and backward one micro-batch; True when the step's last one is done (compiled,
        a step of one micro-batch also makes its update here, as one compiled function)."""
        self.micro += 1
        last = self.micro == self.accumulation
        if self.compiled and self.accumulation == 1:
            self.result = self.whole(*batch)
            return True
        # Gradients are averaged across processes once per step, on the last micro-batch.
        sync = self.net.no_sync() if self.distributed and not last else nullcontext()
        with sync:
            values = self.micro_fn(*batch)
        self.sums += values
        return last

    def finish(self) -> Tensor:
        """The update (unless ``micro_step`` made it); the step's ``STEP_STATS``."""
        if self.result is None:
            self.result = self.update(self.sums)
        # A copy: under CUDA graphs the next replay reuses the output's memory.
        return self.result.clone()

    def __call__(self, lr: float, batches: list[TrainBatch]) -> Tensor:
        """A whole step over its micro-batches (the benchmark's and the tests' entry point)."""
        self.begin(lr)
        for batch in batches:
            self.micro_step(batch)
        return self.finish()
