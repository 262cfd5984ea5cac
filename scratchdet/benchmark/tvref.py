"""The torchvision reference: the same network trained through ``torchvision.models.detection.SSD``.

Two flavours, both with torchvision's own anchors (``DefaultBoxGenerator``), input transform
(``GeneralizedRCNNTransform``: per-image normalise + resize), head (``SSDHead``, plain convs) and
loss (per-image matching, hard-negative mining, smooth L1):

* ``backbone_reference(model)``: our model's backbone, its prior layout translated to
  torchvision's scales/steps/aspect ratios (the same boxes per cell);
* ``torchvision_vgg16()``: torchvision's own ``ssd300_vgg16`` (no weights downloaded).

Inputs are images in [0, 1]; mean/std are set so the backbone sees ``255 * x - CaffeMean``, the
same tensor our pipeline feeds it.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD as TorchvisionSSD
from torchvision.models.detection.ssd import SSDHead, ssd300_vgg16

from scratchdet.models import SSD
from scratchdet.models.input import CAFFE_MEAN_RGB

__all__ = ["MEAN_01", "STD_01", "backbone_reference", "targets_for", "torchvision_vgg16"]

MEAN_01 = [m / 255.0 for m in CAFFE_MEAN_RGB]
STD_01 = [1.0 / 255.0] * 3


class _DictBackbone(nn.Module):
    """torchvision's SSD wants an OrderedDict of feature maps; ours returns a list."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.body = backbone
        self.out_channels = list(backbone.out_channels)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))


def backbone_reference(model: SSD) -> TorchvisionSSD:
    """torchvision's SSD around ``model.backbone`` (shared module: build a fresh model for it)."""
    pc = model.prior_config
    size = pc.image_size
    anchors = DefaultBoxGenerator(
        aspect_ratios=[list(ar) for ar in pc.aspect_ratios],
        scales=[s / size for s in pc.min_sizes] + [pc.max_sizes[-1] / size],
        steps=[round(s) for s in pc.steps],
        clip=pc.clip,
    )
    head = SSDHead(
        list(model.backbone.out_channels), anchors.num_anchors_per_location(), model.num_outputs
    )
    return TorchvisionSSD(
        _DictBackbone(model.backbone),
        anchors,
        (size, size),
        model.num_outputs,
        image_mean=MEAN_01,
        image_std=STD_01,
        head=head,
    )


def torchvision_vgg16(num_classes: int) -> TorchvisionSSD:
    """torchvision's ``ssd300_vgg16`` from scratch; ``num_classes`` includes background."""
    return ssd300_vgg16(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        image_mean=MEAN_01,
        image_std=STD_01,
    )


def targets_for(boxes: Tensor, labels: Tensor, mask: Tensor, size: int) -> list[dict[str, Tensor]]:
    """Padded normalised targets -> torchvision's per-image dicts in pixels."""
    return [{"boxes": b[m] * size, "labels": lab[m]} for b, lab, m in zip(boxes, labels, mask)]
