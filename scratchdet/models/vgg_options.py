"""The ``vgg`` family's keys (SSD300 on a truncated VGG-16) and its named models.

No torch here: the network is ``vgg.py``, imported only when a model is built.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from scratchdet.errors import ConfigError
from scratchdet.models.family import Family
from scratchdet.models.options import ModelOptions, doc
from scratchdet.validation import bounds

__all__ = ["VGG", "VGGOptions"]


class VGGOptions(ModelOptions, frozen=True):
    """Keys of the ``vgg`` family; defaults are SSD300 trained from scratch (SSD300S)."""

    family: ClassVar[str] = "vgg"

    bn_backbone: Annotated[bool, doc("BatchNorm after every backbone and extra-layer conv")] = False
    bn_layout: Annotated[
        Literal["caffe", "torchvision"],
        doc(
            "with bn_backbone: caffe = ScratchDet's VGGNetBNBody (convs without bias, BN-ReLU also "
            "after pool1..pool5); torchvision = vgg16_bn (conv biases, no BN after the "
            "pools)"
        ),
    ] = "caffe"
    bn_head: Annotated[bool, doc("BatchNorm after the loc/conf convs")] = False
    pretrained: Annotated[bool, doc("torchvision ImageNet weights (VGG16 or VGG16_BN)")] = False
    prediction: Annotated[
        Literal["plain", "dense"], doc("SSD extra layers or DSOD's dense structure")
    ] = "plain"
    l2norm: Annotated[
        Literal["none", "first", "all"],
        doc("L2Norm (scale 20) before the head: SSD puts it on conv4_3"),
    ] = "first"
    priors: Annotated[
        Literal["voc", "coco"] | None, doc("prior sizes; null = coco for 80 classes, else voc")
    ] = None
    width: Annotated[
        float,
        bounds("(0, 1]"),
        doc(
            "channel multiplier of every backbone and extra-layer conv: 1 is the papers' network; "
            "smaller ones are for quick checks on a CPU (no paper table uses them)"
        ),
    ] = 1.0

    def validate(self) -> None:
        if self.bn_layout != "caffe" and not self.bn_backbone:
            raise ConfigError(None, "model.bn_layout", "applies to bn_backbone: true only")
        if self.pretrained and self.width != 1.0:
            raise ConfigError(None, "model.width", "ImageNet weights exist for width 1 only")


VGG = Family(VGGOptions, builder="scratchdet.models.vgg:build_vgg")

VGG.register_variant(
    "ssd300_vgg16", "SSD300, truncated VGG-16, no BN, L2Norm on conv4_3 (SSD300S, DSOD Table 4)"
)
VGG.register_variant(
    "ssd300_vgg16_bn",
    "SSD300, VGG-16 with BN in backbone and head, no L2Norm "
    "(ScratchDet Table 1; VGGNetBNBody: no conv biases, BN after the pools)",
    bn_backbone=True,
    bn_head=True,
    l2norm="none",
)
