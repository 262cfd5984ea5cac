"""BatchNorm as the releases trained it: statistics over each GPU's images, Caffe's running average.

Two things about the releases' BatchNorm that a PyTorch ``BatchNorm2d`` on one GPU does not do:

**The statistic group.** The releases train on several GPUs, each normalising its own images
(DSOD: 8 GPUs x 4 images; ScratchDet VOC: 4 x 32, COCO: 4 x 16), and the DSOD authors report
that 12 images per GPU instead of 4 gives 78.9 mAP instead of 77.7. ``train.bn_group`` sets the
images per statistic inside a micro-batch (ghost BatchNorm), so that one GPU computes what the
releases' several did, at full use of the GPU. A micro-batch of ``n * G`` images is viewed as
``[n, G * C, H, W]`` (image ``i * G + k`` in group ``k``: a free view of a contiguous batch),
normalised by one ``batch_norm`` call whose per-channel statistics are then those of each group,
with the affine parameters repeated over the groups.

**The running statistics.** Caffe's ``BatchNormLayer`` (weiliu89/caffe
``src/caffe/layers/batch_norm_layer.cpp``, ``Forward_cpu``) keeps sums and a scale factor::

    factor = f * factor + 1
    mean_blob = f * mean_blob + batch_mean
    var_blob  = f * var_blob + m / (m - 1) * batch_var      (m = values per channel)

and tests with ``mean_blob / factor`` and ``var_blob / factor``, with ``f`` the
``moving_average_fraction`` (0.999 in every release: caffe.proto's default and ``ConvBNLayer``'s).
That is a bias-corrected average: after the first batch it *is* that batch's statistics, where
PyTorch's ``momentum=0.001`` from mean 0 / variance 1 would take thousands of steps to forget its
starting values. The estimate ``e_t = blob_t / factor_t`` obeys
``e_t = e_{t-1} + (x_t - e_{t-1}) / factor_t`` with ``factor_t = (1 - f^t) / (1 - f)``, so this
module keeps PyTorch's ``running_mean`` / ``running_var`` equal to Caffe's test-time estimates
and ``num_batches_tracked`` equal to ``t``: a converted model saves the same state-dict keys as
an unconverted one and detects with plain ``BatchNorm2d`` (``tests/test_engine_units.py``
checks it against a per-step numpy port of the layer's arithmetic). The factor is computed on
the device, so no step waits for the host.

**Which group updates the running statistics.** In Caffe's multi-GPU training
(``src/caffe/parallel.cpp``: ``P2PSync::on_start`` copies the root solver's parameter buffer,
BatchNorm blobs included, to every other GPU before each iteration, and only the root solver
snapshots) the saved statistics are those the root GPU accumulated from its own images, one
update per forward pass (``iter_size`` per iteration). Here the first group of each forward pass
updates them (``bn_stats: caffe`` and ``torch`` alike); with a micro-batch of ``bn_group`` x the
release's GPUs (DSOD: 4 x 8 = 32) that is the root GPU's images and number of updates exactly.

``convert_batchnorm(model, group, stats)`` swaps every ``BatchNorm2d`` of a built model for
``GroupBatchNorm2d`` sharing its parameters and buffers (like
``SyncBatchNorm.convert_sync_batchnorm``); ``group=0, stats='torch'`` leaves the model as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CAFFE_MOVING_AVERAGE_FRACTION", "GroupBatchNorm2d", "convert_batchnorm"]

CAFFE_MOVING_AVERAGE_FRACTION = 0.999
"""caffe.proto ``BatchNormParameter.moving_average_fraction`` default, which every release's
BatchNorm layer keeps (``ConvBNLayer`` passes the same 0.999)."""


class GroupBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics come from groups of ``group`` images (0: the
    whole batch) and whose running statistics follow ``stats``: 'caffe' or 'torch'."""

    def __init__(
        self,
        num_features: int,
        *,
        group: int = 0,
        stats: str = "torch",
        fraction: float = CAFFE_MOVING_AVERAGE_FRACTION,
        **kwargs,
    ):
        super().__init__(num_features, **kwargs)
        if stats not in ("caffe", "torch"):
            raise ValueError(f"stats must be 'caffe' or 'torch', got {stats!r}")
        self.group, self.stats, self.fraction = group, stats, fraction

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group={self.group}, stats={self.stats}"

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        self._check_input_dim(x)
        n, c = x.shape[:2]
        groups = n // self.group if self.group else 1
        if groups * (self.group or n) != n:
            raise ValueError(f"{n} images do not split into BatchNorm groups of {self.group}")
        channels_last = (
            x.dim() == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        )
        xv = x.reshape(n // groups, groups * c, *x.shape[2:])  # image i*G + k -> group k
        weight = self.weight.repeat(groups) if self.weight is not None else None
        bias = self.bias.repeat(groups) if self.bias is not None else None
        # Each group's mean and unbiased variance land in these (momentum 1 copies them).
        mean = torch.zeros(groups * c, device=x.device, dtype=self.running_mean.dtype)
        var = torch.zeros_like(mean)
        y = F.batch_norm(xv, mean, var, weight, bias, True, 1.0, self.eps)
        self._update(mean[:c], var[:c])
        y = y.reshape(x.shape)
        return y.contiguous(memory_format=torch.channels_last) if channels_last else y

    @torch.no_grad()
    def _update(self, mean: Tensor, var: Tensor) -> None:
        """Fold the first group's statistics into the running ones (device ops only)."""
        self.num_batches_tracked.add_(1)
        if self.stats == "caffe":
            # 1 / factor_t in float64 (a scalar): exactly 1 at t = 1, (1 - f) for large t.
            t = self.num_batches_tracked.double()
            weight = ((1 - self.fraction) / (1 - torch.pow(self.fraction, t))).to(mean.dtype)
        elif self.momentum is None:  # PyTorch's cumulative average
            weight = 1.0 / self.num_batches_tracked.to(mean.dtype)
        else:
            weight = torch.full((), self.momentum, device=mean.device, dtype=mean.dtype)
        self.running_mean.lerp_(mean, weight)
        self.running_var.lerp_(var, weight)


def convert_batchnorm(model: nn.Module, group: int = 0, stats: str = "torch") -> nn.Module:
    """``model`` with every ``nn.BatchNorm2d`` (not a subclass) replaced by a
    ``GroupBatchNorm2d`` holding the same parameters and buffers, so the state dict is unchanged;
    returned as is for ``group=0, stats='torch'`` (PyTorch's BatchNorm, as before)."""
    if group == 0 and stats == "torch":
        return model
    if type(model) is nn.BatchNorm2d:
        new = GroupBatchNorm2d(
            model.num_features,
            group=group,
            stats=stats,
            eps=model.eps,
            momentum=model.momentum,
            affine=model.affine,
            track_running_stats=model.track_running_stats,
            device=model.running_mean.device if model.running_mean is not None else None,
        )
        if model.affine:
            new.weight, new.bias = model.weight, model.bias
        if model.track_running_stats:
            new.running_mean, new.running_var = model.running_mean, model.running_var
            new.num_batches_tracked = model.num_batches_tracked
        new.train(model.training)
        return new
    for name, child in model.named_children():
        converted = convert_batchnorm(child, group, stats)
        if converted is not child:
            setattr(model, name, converted)
    return model
