"""Small pieces every family needs: Caffe's initialisers, L2Norm, output-size arithmetic.

Nothing here is a family's block; the families' own blocks live in their modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

__all__ = [
    "CenterCrop",
    "L2Norm",
    "caffe_xavier_",
    "chain_outputs",
    "conv_out_size",
    "init_caffe",
    "init_kaiming",
    "init_weights",
]


def caffe_xavier_(weight: Tensor) -> Tensor:
    """Caffe's ``xavier`` filler: U(-sqrt(3/fan_in), +sqrt(3/fan_in)).

    It is not PyTorch's ``xavier_uniform_`` (which averages fan-in and fan-out); the DSOD and SSD
    releases use Caffe's, and it equals ``kaiming_uniform_`` with ``a=1`` (gain 1).
    """
    return nn.init.kaiming_uniform_(weight, a=1.0, mode="fan_in", nonlinearity="leaky_relu")


def init_weights(module: nn.Module, conv_weight: Callable[[nn.Conv2d], object]) -> None:
    """Every conv's weight by `conv_weight`, its bias 0; every BatchNorm weight 1 / bias 0. The
    families differ only in the conv rule."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            conv_weight(m)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_caffe(module: nn.Module) -> None:
    """Caffe-xavier convs with zero bias, BatchNorm weight 1 / bias 0 (DSOD and SSD releases)."""
    init_weights(module, lambda conv: caffe_xavier_(conv.weight))


def init_kaiming(module: nn.Module) -> None:
    """He-normal (fan_out) convolutions, BatchNorm 1/0: torchvision's ResNet init and mmcv's
    ``kaiming_init`` default, which ScratchDet's mmdetection release applies to its backbone."""
    init_weights(
        module,
        lambda conv: nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu"),
    )


def chain_outputs(blocks: Iterable[nn.Module], x: Tensor) -> list[Tensor]:
    """Apply `blocks` one after another; every block's output (the extra layers' sources)."""
    outs = []
    for block in blocks:
        x = block(x)
        outs.append(x)
    return outs


def conv_out_size(
    size: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil: bool = False,
) -> int:
    """Spatial output size of a conv/pool; ``ceil`` is Caffe's (and ``ceil_mode``'s) rounding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return (math.ceil(span / stride) if ceil else span // stride) + 1


class L2Norm(nn.Module):
    """Caffe's ``Normalize`` (across channels, not shared): x / ||x||_2 * scale_c.

    SSD applies it to conv4_3, whose activations are much larger than the later maps'; DSOD to
    every source because each concatenates maps of different depths. ``scale`` is learnable and
    starts at 20. The norm is taken in float32 so bf16 activations do not lose it.
    """

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps
        self.init_scale = scale
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.init_scale)

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).sum(dim=1, keepdim=True) + self.eps)
        return (y * self.weight.float().view(1, -1, 1, 1)).to(x.dtype)


class CenterCrop(nn.Module):
    """Crop ``margin`` pixels from every side: the identity shortcut of an unpadded 3x3 conv.

    An unpadded conv's output pixel (i, j) is centred on input pixel (i+1, j+1); cropping the input
    by one pixel aligns the two branches of a residual block without adding parameters.
    """

    def __init__(self, margin: int = 1) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, x: Tensor) -> Tensor:
        m = self.margin
        return x[..., m:-m, m:-m]
