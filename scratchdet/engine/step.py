"""One training step as the papers train: SGD with momentum and weight decay on the MultiBox loss.

``TrainStep`` is the whole step on device tensors: per micro-batch a forward pass (bf16 autocast
on CUDA, optionally ``torch.compile``-d; shapes are static, so it compiles once) and a backward
pass, gradients accumulated over micro-batches (and averaged across processes by DDP on the last
one), then the gradient norm (clipped if asked) and one fused SGD update that is skipped on the
device when the gradients are not finite, as ``GradScaler`` skips a step. Nothing reads a value
back to the host: the step returns its metrics as a device tensor, which the training loop reads
every ``train.log_every`` steps. ``engine/train.py`` and the training benchmark both step with it.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from ..config import RunConfig
from ..errors import ConfigError
from ..input import TrainBatch
from ..ssd.loss import MultiBoxLoss
from .param_groups import optimizer_param_groups, set_lr
from .precision import autocast_for

__all__ = ["METRICS", "TrainStep", "make_optimizer", "optimizer_step"]

METRICS = ("loss", "loc_loss", "conf_loss", "num_pos", "grad_norm")
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


def optimizer_step(optimizer: torch.optim.SGD, skip: Tensor) -> None:
    """One SGD step, skipped on the device where ``skip`` (a 0-dim bool) is true.

    The fused kernel reads ``found_inf`` as ``GradScaler`` hands it over (torch's protocol for
    optimizers with ``_step_supports_amp_scaling``): no host sync. Elsewhere the decision is read
    on the host (one sync; only devices without fused SGD get here).
    """
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = skip.float().reshape(1)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(skip):
        optimizer.step()


def _forward(net: nn.Module, images: Tensor, micro_batch: int) -> tuple[Tensor, Tensor]:
    try:
        return net(images)
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise ConfigError(None, "train.micro_batch", f"{micro_batch} image(s) per forward pass is "
                          "too few for BatchNorm on this model's 1x1 maps; use 2 or more") from None


class TrainStep:
    """Forward/backward per micro-batch, then one optimizer step; see the module docstring.

    ``model`` is the module whose parameters the optimizer updates, ``net`` what runs the forward
    pass (``model`` itself, or its DistributedDataParallel wrapper).
    """

    def __init__(self, model: nn.Module, cfg: RunConfig, device: torch.device,
                 accumulation: int, net: nn.Module | None = None,
                 optimizer: torch.optim.SGD | None = None):
        self.model, self.net = model, net if net is not None else model
        self.optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)
        self.accumulation = accumulation
        self.micro_batch = cfg.micro_batch
        self.clip = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else math.inf
        self.distributed = self.net is not model
        self.autocast: Any = autocast_for(cfg.train, device)
        self.criterion = MultiBoxLoss(neg_pos_ratio=cfg.loss.neg_pos_ratio,
                                      loc_weight=cfg.loss.loc_weight)
        self.forward_loss = torch.compile(self._forward_loss, dynamic=False) \
            if cfg.train.compile else self._forward_loss
        self.sums = torch.zeros(4, device=device)  # loss, loc, conf, num_pos of the micro-batches
        self.micro = 0

    def _forward_loss(self, images: Tensor, loc_t: Tensor, labels_t: Tensor) -> Tensor:
        """(loss, loc, conf, num_pos) of one micro-batch, as one device tensor."""
        with self.autocast:
            loc_p, conf_p = _forward(self.net, images, self.micro_batch)
        losses = self.criterion(loc_p.float(), conf_p.float(), loc_t, labels_t)
        return torch.stack([losses["loss"], losses["loc"], losses["conf"],
                            losses["num_pos"].float()])

    def begin(self, lr: float) -> None:
        """Start an optimizer step at learning rate ``lr``."""
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.sums.zero_()
        self.micro = 0

    def micro_step(self, batch: TrainBatch) -> bool:
        """Forward and backward one micro-batch; True when the step's last one is done."""
        self.micro += 1
        last = self.micro == self.accumulation
        # Gradients are averaged across processes once per step, on the last micro-batch.
        sync = self.net.no_sync() if self.distributed and not last else nullcontext()
        with sync:
            values = self.forward_loss(*batch)
            (values[0] / self.accumulation).backward()
        self.sums += values.detach()
        return last

    def finish(self) -> Tensor:
        """Gradient norm, clipping and the (possibly skipped) update; the step's ``METRICS``."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip,
                                                   foreach=True)
        optimizer_step(self.optimizer, ~torch.isfinite(grad_norm))
        return torch.cat([self.sums[:3] / self.accumulation, self.sums[3:],
                          grad_norm.reshape(1).float()])

    def __call__(self, lr: float, batches: list[TrainBatch]) -> Tensor:
        """A whole step over its micro-batches (the benchmark's and the tests' entry point)."""
        self.begin(lr)
        for batch in batches:
            self.micro_step(batch)
        return self.finish()
