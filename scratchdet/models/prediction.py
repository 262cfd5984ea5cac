"""The two "prediction layer" structures of DSOD Figure 1, shared by the VGG and DSOD families.

* plain (SSD): each scale is computed from the previous one by a 1x1 reduction and a 3x3 conv
  (stride 2, or unpadded to go from 3x3 to 1x1).
* dense (DSOD, "learn half / reuse half"): each scale concatenates a reused half (2x2 max-pool of
  the previous scale, then 1x1 conv) and a learned half (1x1 conv, then 3x3 stride-2 conv).

The conv unit (``conv -> [BN] -> ReLU`` for VGG, ``BN -> ReLU -> conv`` for DSOD) is supplied by
the family, so the structure is shared while each family keeps its own layer style.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from scratchdet.models.layers import chain_outputs, conv_out_size

__all__ = [
    "DENSE_WIDTHS",
    "DSOD_PLAIN_EXTRAS",
    "SSD300_EXTRAS",
    "ConvUnit",
    "DenseExtras",
    "ExtraSpec",
    "LearnHalfReuseHalf",
    "PlainExtras",
]

ConvUnit = Callable[[int, int, int, int, int], nn.Module]
"""(in_channels, out_channels, kernel, stride, padding) -> module."""

ExtraSpec = tuple[int, int, int, int]
"""(1x1 reduction channels, 3x3 output channels, 3x3 stride, 3x3 padding)."""

# SSD300 (ssd_pascal.py): conv6_2 .. conv9_2 -> 10, 5, 3, 1 from a 19x19 map.
SSD300_EXTRAS: tuple[ExtraSpec, ...] = (
    (256, 512, 2, 1),
    (128, 256, 2, 1),
    (128, 256, 1, 0),
    (128, 256, 1, 0),
)
# DSOD Figure 1 "plain": the same channels, every 3x3 strided and padded -> 10, 5, 3, 2.
DSOD_PLAIN_EXTRAS: tuple[ExtraSpec, ...] = (
    (256, 512, 2, 1),
    (128, 256, 2, 1),
    (128, 256, 2, 1),
    (128, 256, 2, 1),
)
# DSOD300 scales 3..6 (DSOD300_V3_Body): half width n of each scale; the scale has 2n channels.
DENSE_WIDTHS: tuple[int, ...] = (256, 128, 128, 128)


class PlainExtras(nn.Module):
    """SSD's extra layers; every block's output is a source map."""

    def __init__(self, in_channels: int, specs: Sequence[ExtraSpec], unit: ConvUnit) -> None:
        super().__init__()
        self.specs = tuple(specs)
        blocks, cin = [], in_channels
        for mid, out, stride, pad in self.specs:
            blocks.append(nn.Sequential(unit(cin, mid, 1, 1, 0), unit(mid, out, 3, stride, pad)))
            cin = out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = tuple(out for _, out, _, _ in self.specs)

    def out_sizes(self, size: int) -> tuple[int, ...]:
        sizes = []
        for _, _, stride, pad in self.specs:
            size = conv_out_size(size, 3, stride=stride, padding=pad)
            sizes.append(size)
        return tuple(sizes)

    def forward(self, x: Tensor) -> list[Tensor]:
        return chain_outputs(self.blocks, x)


class LearnHalfReuseHalf(nn.Module):
    """One dense scale (DSOD ``add_bl_layer2``): concat[reuse(x), learn(x)], 2 x ``width`` channels.

    Both branches halve the size with ceil rounding (19 -> 10 -> 5 -> 3 -> 2), as Caffe's pooling
    does; the concatenation order (reused half first) is the released one.
    """

    def __init__(self, in_channels: int, width: int, unit: ConvUnit) -> None:
        super().__init__()
        self.reuse = nn.Sequential(
            nn.MaxPool2d(2, 2, ceil_mode=True), unit(in_channels, width, 1, 1, 0)
        )
        self.learn = nn.Sequential(unit(in_channels, width, 1, 1, 0), unit(width, width, 3, 2, 1))
        self.out_channels = 2 * width

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.reuse(x), self.learn(x)], dim=1)


class DenseExtras(nn.Module):
    """DSOD's dense prediction structure after scale 2; every scale is a source map."""

    def __init__(self, in_channels: int, widths: Sequence[int], unit: ConvUnit) -> None:
        super().__init__()
        scales, cin = [], in_channels
        for w in widths:
            scales.append(LearnHalfReuseHalf(cin, w, unit))
            cin = 2 * w
        self.scales = nn.ModuleList(scales)
        self.out_channels = tuple(2 * w for w in widths)

    def out_sizes(self, size: int) -> tuple[int, ...]:
        sizes = []
        for _ in self.scales:
            size = conv_out_size(size, 2, stride=2, ceil=True)
            sizes.append(size)
        return tuple(sizes)

    def forward(self, x: Tensor) -> list[Tensor]:
        return chain_outputs(self.scales, x)
