"""The ``resnet`` family's keys (depth, ScratchDet's root variants, extras) and its named models.

No torch here: the network is ``resnet.py``, imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from scratchdet.errors import ConfigError

from .family import Family
from .options import ModelOptions, option

__all__ = ["RESNET", "ResNetOptions"]

_BOOL = (False, True)


@dataclasses.dataclass(frozen=True)
class ResNetOptions(ModelOptions):
    """Keys of the ``resnet`` family; defaults are ScratchDet300 (Root-ResNet-34)."""

    family: ClassVar[str] = "resnet"

    depth: int = option(34, "torchvision ResNet depth", choices=(18, 34, 50, 101))
    root_kernel: int = option(3, "kernel of the root convs (ResNet: 7)", choices=(3, 7))
    root_stride: int = option(1, "stride of the first root conv (ResNet: 2)", choices=(1, 2))
    root_convs: int = option(3, "number of stacked root convs (ScratchDet Table 2: 1-5)",
                             kind=int, lo=1, hi=5)
    maxpool: bool = option(True, "max-pool after the root (ResNet-18-A removes it)",
                           choices=_BOOL)
    maxpool_kernel: int = option(2, "2 = 2x2/2 (ScratchDet's root), 3 = 3x3/2 pad 1 (ResNet)",
                                 choices=(2, 3))
    extras: str = option("residual", "extra blocks after layer4: ScratchDet's residual ones or "
                         "SSD's conv layers", choices=("residual", "ssd"))
    bn_head: bool = option(True, "BatchNorm after the loc/conf convs", choices=_BOOL)
    l2norm: str = option("none", "L2Norm (scale 20) before the head; ScratchDet removes it",
                         choices=("none", "first", "all"))
    pretrained: bool = option(False, "torchvision ImageNet weights (standard ResNet root only)",
                              choices=_BOOL)
    priors: str | None = option(None, "prior sizes; null = coco for 80 classes, else voc",
                                choices=(None, "voc", "coco"))

    @property
    def root_downsampling(self) -> int:
        return self.root_stride * (2 if self.maxpool else 1)

    @property
    def standard_root(self) -> bool:
        """torchvision's ResNet root: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool."""
        return (self.root_kernel, self.root_stride, self.root_convs, self.maxpool,
                self.maxpool_kernel) == (7, 2, 1, True, 3)

    def validate(self) -> None:
        if self.root_downsampling not in (2, 4):
            raise ConfigError(None, "model.root_stride",
                              "the root must downsample 2x or 4x (root_stride 2 and/or maxpool) "
                              "for the sources to be 38, 19, 10, 5, 3, 1; got "
                              f"root_stride {self.root_stride} with maxpool {self.maxpool}")
        if self.pretrained and not self.standard_root:
            raise ConfigError(None, "model.pretrained",
                              "ImageNet weights exist only for torchvision's ResNet root "
                              "(root_kernel 7, root_stride 2, root_convs 1, maxpool true, "
                              "maxpool_kernel 3)")


RESNET = Family(ResNetOptions, builder="scratchdet.models.resnet:build_resnet")

RESNET.register_variant(
    "ssd300_resnet101", "SSD300, ResNet-101 with dilated conv5 (SSD300S ResNet-101, DSOD Table 4)",
    depth=101, root_kernel=7, root_stride=2, root_convs=1, maxpool_kernel=3,  # torchvision's root
    extras="ssd", bn_head=False, l2norm="first")
RESNET.register_variant("root_resnet18_ssd300",
                        "Root-ResNet-18 + SSD extras, BN head (ScratchDet Table 2)",
                        depth=18, extras="ssd")
RESNET.register_variant("scratchdet300", "ScratchDet300: Root-ResNet-34 + residual extras, "
                        "BN head (ScratchDet Table 3)")
