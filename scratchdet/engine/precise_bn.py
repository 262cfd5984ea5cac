"""PreciseBN: re-estimate BatchNorm running statistics from training batches before detection.

During training, BatchNorm's running mean and variance are exponential averages over the last
batches, taken while the weights kept moving; early in a run (or with a high learning rate) they
lag the weights enough to ruin detection. Detectron's PreciseBN recomputes them with the final
weights as a plain average over N batches. Here that is ``torch.optim.swa_utils.update_bn``
(cumulative average, ``momentum=None``) run without gradients.

The papers do not do this (their numbers come from the running statistics), so it is off by
default (``detect.precise_bn: 0``); the reports say when a row used it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from scratchdet.progress import Progress

log = logging.getLogger(__name__)

__all__ = ["has_batchnorm", "precise_bn"]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def precise_bn(model: nn.Module, batches: Iterable[torch.Tensor], num_batches: int) -> int:
    """Replace every BatchNorm layer's running statistics by their average over the first
    ``num_batches`` image batches of ``batches`` (already on the model's device and in its
    memory format). Returns how many batches were used; the model's train/eval mode is kept."""
    if num_batches <= 0 or not has_batchnorm(model):
        return 0
    stream = itertools.islice(iter(batches), num_batches)
    first = next(stream, None)
    if first is None:  # update_bn would reset the statistics and average nothing
        return 0
    used = 0

    def counted() -> Iterable[torch.Tensor]:
        nonlocal used
        with Progress("precise-bn", num_batches, unit="batch") as progress:
            for images in itertools.chain([first], stream):
                used += 1
                yield images
                progress.update()  # after update_bn's forward pass of the batch

    update_bn(counted(), model)
    log.info("PreciseBN: BatchNorm statistics re-estimated from %d batches", used)
    return used
