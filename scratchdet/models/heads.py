"""SSD's multibox head: one 3x3 loc conv and one 3x3 conf conv per source map.

Options cover both papers: an optional L2Norm in front of the first or of every source (SSD /
DSOD), and BatchNorm after each prediction conv (DSOD's release; ScratchDet's "BN in head").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from scratchdet.models.layers import L2Norm, caffe_xavier_, init_weights

__all__ = ["HeadInit", "L2NormMode", "MultiBoxHead"]

L2NormMode = Literal["none", "first", "all"]
HeadInit = Literal["caffe", "xavier"]


class MultiBoxHead(nn.Module):
    """Per-source loc / conf predictors, flattened in the Caffe order that the priors use.

    Args:
        in_channels: channels of each source map.
        anchors: priors per cell of each source map (``num_priors_per_cell``).
        num_outputs: classes including background (VOC: 21).
        bn: conv without bias followed by BatchNorm (affine), as Caffe's ``ConvBNLayer``.
        l2norm: where an L2Norm (scale 20) precedes the predictors.
        init: ``"caffe"`` = the Caffe releases' ``ConvBNLayer`` (Gaussian std 0.01 when followed by
            BN, Caffe-xavier with zero bias otherwise); ``"xavier"`` = mmdetection's head
            (``xavier_uniform``, zero bias) as in ScratchDet's release.
        bn_eps: Caffe's ``ConvBNLayer`` uses 1e-3; PyTorch / mmdetection 1e-5.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        anchors: Sequence[int],
        num_outputs: int,
        *,
        bn: bool = False,
        l2norm: L2NormMode = "none",
        init: HeadInit = "caffe",
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(anchors):
            raise ValueError(f"{len(in_channels)} sources but {len(anchors)} anchor counts")
        self.num_outputs = num_outputs
        self.anchors = tuple(anchors)
        self.norms = nn.ModuleList(
            L2Norm(c) if l2norm == "all" or (l2norm == "first" and i == 0) else nn.Identity()
            for i, c in enumerate(in_channels)
        )
        self.loc = nn.ModuleList(
            self._predictor(c, a * 4, bn, bn_eps) for c, a in zip(in_channels, anchors)
        )
        self.conf = nn.ModuleList(
            self._predictor(c, a * num_outputs, bn, bn_eps) for c, a in zip(in_channels, anchors)
        )
        self._init(init)

    @staticmethod
    def _predictor(cin: int, cout: int, bn: bool, eps: float) -> nn.Module:
        conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=not bn)
        return nn.Sequential(conv, nn.BatchNorm2d(cout, eps=eps)) if bn else conv

    def _init(self, init: HeadInit) -> None:
        def conv_weight(conv: nn.Conv2d) -> None:
            if init == "xavier":
                nn.init.xavier_uniform_(conv.weight)
            elif conv.bias is None:  # Caffe ConvBNLayer with BN
                nn.init.normal_(conv.weight, std=0.01)
            else:
                caffe_xavier_(conv.weight)

        init_weights(self, conv_weight)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``features`` in source order -> (loc [B, P, 4], conf [B, P, num_outputs]).

        Each map is permuted to NHWC and flattened, so a prior's index is (map, y, x, anchor),
        matching ``make_priors``; maps are concatenated in source order.
        """
        batch = features[0].shape[0]
        locs, confs = [], []
        for x, norm, loc, conf in zip(features, self.norms, self.loc, self.conf):
            x = norm(x)
            locs.append(loc(x).permute(0, 2, 3, 1).reshape(batch, -1, 4))
            confs.append(conf(x).permute(0, 2, 3, 1).reshape(batch, -1, self.num_outputs))
        return torch.cat(locs, dim=1), torch.cat(confs, dim=1)
