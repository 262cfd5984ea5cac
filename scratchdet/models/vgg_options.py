"""The ``vgg`` family's keys (SSD300 on a truncated VGG-16) and its named models.

No torch here: the network is ``vgg.py``, imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from scratchdet.errors import ConfigError

from .family import Family
from .options import ModelOptions, option

__all__ = ["VGG", "VGGOptions"]

_BOOL = (False, True)


@dataclasses.dataclass(frozen=True)
class VGGOptions(ModelOptions):
    """Keys of the ``vgg`` family; defaults are SSD300 trained from scratch (SSD300S)."""

    family: ClassVar[str] = "vgg"

    bn_backbone: bool = option(False, "BatchNorm after every backbone and extra-layer conv",
                               choices=_BOOL)
    bn_layout: str = option("caffe", "with bn_backbone: caffe = ScratchDet's VGGNetBNBody (convs "
                            "without bias, BN-ReLU also after pool1..pool5); torchvision = "
                            "vgg16_bn (conv biases, no BN after the pools)",
                            choices=("caffe", "torchvision"))
    bn_head: bool = option(False, "BatchNorm after the loc/conf convs", choices=_BOOL)
    pretrained: bool = option(False, "torchvision ImageNet weights (VGG16 or VGG16_BN)",
                              choices=_BOOL)
    prediction: str = option("plain", "SSD extra layers or DSOD's dense structure",
                             choices=("plain", "dense"))
    l2norm: str = option("first", "L2Norm (scale 20) before the head: SSD puts it on conv4_3",
                         choices=("none", "first", "all"))
    priors: str | None = option(None, "prior sizes; null = coco for 80 classes, else voc",
                                choices=(None, "voc", "coco"))
    width: float = option(1.0, "channel multiplier of every backbone and extra-layer conv: 1 is "
                               "the papers' network; smaller ones are for quick checks on a CPU "
                               "(no paper table uses them)", kind=float, lo=0.0, hi=1.0,
                          lo_open=True)

    def validate(self) -> None:
        if self.bn_layout != "caffe" and not self.bn_backbone:
            raise ConfigError(None, "model.bn_layout", "applies to bn_backbone: true only")
        if self.pretrained and self.width != 1.0:
            raise ConfigError(None, "model.width", "ImageNet weights exist for width 1 only")


VGG = Family(VGGOptions, builder="scratchdet.models.vgg:build_vgg")

VGG.register_variant("ssd300_vgg16", "SSD300, truncated VGG-16, no BN, L2Norm on conv4_3 "
                     "(SSD300S, DSOD Table 4)")
VGG.register_variant("ssd300_vgg16_bn", "SSD300, VGG-16 with BN in backbone and head, no L2Norm "
                     "(ScratchDet Table 1; VGGNetBNBody: no conv biases, BN after the pools)", bn_backbone=True, bn_head=True, l2norm="none")
