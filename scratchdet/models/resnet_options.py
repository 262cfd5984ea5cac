"""The ``resnet`` family's keys (depth, ScratchDet's root variants, extras) and its named models.

No torch here: the network is ``resnet.py``, imported only when a model is built.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from scratchdet.errors import ConfigError
from scratchdet.models.family import Family
from scratchdet.models.options import ModelOptions, doc
from scratchdet.validation import bounds

__all__ = ["RESNET", "ResNetOptions"]


class ResNetOptions(ModelOptions, frozen=True):
    """Keys of the ``resnet`` family; defaults are ScratchDet300 (Root-ResNet-34) as released in
    Caffe (``Resnet34rootV2_res`` + ``ssd_pascal.py`` / ``ssd_coco.py``): the paper says it is
    implemented in Caffe, and the released code wins (docs/SPECS.md)."""

    family: ClassVar[str] = "resnet"

    depth: Annotated[Literal[18, 34, 50, 101], doc("torchvision ResNet depth")] = 34
    root_kernel: Annotated[Literal[3, 7], doc("kernel of the root convs (ResNet: 7)")] = 3
    root_stride: Annotated[Literal[1, 2], doc("stride of the first root conv (ResNet: 2)")] = 1
    root_convs: Annotated[
        int, bounds("[1, 5]"), doc("number of stacked root convs (ScratchDet Table 2: 1-5)")
    ] = 3
    maxpool: Annotated[bool, doc("max-pool after the root (ResNet-18-A removes it)")] = True
    maxpool_kernel: Annotated[
        Literal[2, 3], doc("2 = 2x2/2 (ScratchDet's root), 3 = 3x3/2 pad 1 (ResNet)")
    ] = 2
    style: Annotated[
        Literal["caffe", "torchvision"],
        doc(
            "caffe: ScratchDet's Caffe release (pre-activation blocks, 1x1 shortcuts without BN, "
            "sources = the last conv of a residual branch before the addition, Caffe-xavier init); "
            "torchvision: post-activation blocks as torchvision and ScratchDet's mmdetection "
            "release "
            "(Kaiming init, head BN eps 1e-5)"
        ),
    ] = "caffe"
    pool1_bn: Annotated[
        bool,
        doc(
            "BN-ReLU on pool1 before the first block (Resnet18rootV2 has "
            "it, Resnet34rootV2_res not; style caffe only)"
        ),
    ] = False
    extras: Annotated[
        Literal["caffe", "mmdet", "paper", "ssd"],
        doc(
            "extra blocks after layer4, residual of 128 channels: caffe (Resnet34rootV2_res, maps "
            "10/5/5/5), mmdet (SSDRES300, 10/5/3/3), paper (10/5/3/1, the last block unpadded); or "
            "ssd: SSD's conv layers (10/5/3/1)"
        ),
    ] = "caffe"
    bn_head: Annotated[
        bool | None,
        doc(
            "BatchNorm after the loc/conf convs; null = as the Caffe release's scripts: with for "
            "COCO "
            "(ssd_coco.py), without for VOC (ssd_pascal.py)"
        ),
    ] = None
    l2norm: Annotated[
        Literal["none", "first", "all"],
        doc("L2Norm (scale 20) before the head; ScratchDet removes it"),
    ] = "none"
    pretrained: Annotated[bool, doc("torchvision ImageNet weights (standard ResNet root only)")] = (
        False
    )
    priors: Annotated[
        Literal["voc", "coco"] | None, doc("prior sizes; null = coco for 80 classes, else voc")
    ] = None

    @property
    def root_downsampling(self) -> int:
        return self.root_stride * (2 if self.maxpool else 1)

    @property
    def standard_root(self) -> bool:
        """torchvision's ResNet root: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool."""
        return (
            self.root_kernel,
            self.root_stride,
            self.root_convs,
            self.maxpool,
            self.maxpool_kernel,
        ) == (7, 2, 1, True, 3)

    def validate(self) -> None:
        if self.root_downsampling not in (2, 4):
            raise ConfigError(
                None,
                "model.root_stride",
                "the root must downsample 2x or 4x (root_stride 2 and/or maxpool) "
                "for the first two sources to be 38 and 19; got "
                f"root_stride {self.root_stride} with maxpool {self.maxpool}",
            )
        if self.style == "caffe" and self.depth not in (18, 34):
            raise ConfigError(
                None,
                "model.style",
                "the Caffe (pre-activation) blocks exist for "
                f"depth 18 and 34 only; got depth {self.depth} (use style "
                "torchvision)",
            )
        if self.pool1_bn and self.style != "caffe":
            raise ConfigError(
                None,
                "model.pool1_bn",
                "is a Caffe-style (pre-activation) switch; set style: caffe or pool1_bn: false",
            )
        if self.pretrained and self.style != "torchvision":
            raise ConfigError(
                None,
                "model.pretrained",
                "ImageNet weights are torchvision's "
                "post-activation ResNets: set style: torchvision",
            )
        if self.pretrained and not self.standard_root:
            raise ConfigError(
                None,
                "model.pretrained",
                "ImageNet weights exist only for torchvision's ResNet root "
                "(root_kernel 7, root_stride 2, root_convs 1, maxpool true, "
                "maxpool_kernel 3)",
            )


RESNET = Family(ResNetOptions, builder="scratchdet.models.resnet:build_resnet")

RESNET.register_variant(
    "ssd300_resnet101",
    "SSD300, ResNet-101 with dilated conv5 (SSD300S ResNet-101, DSOD Table 4)",
    depth=101,
    root_kernel=7,
    root_stride=2,
    root_convs=1,
    maxpool_kernel=3,  # torchvision's root
    style="torchvision",
    extras="ssd",
    bn_head=False,
    l2norm="first",
)
RESNET.register_variant(
    "root_resnet18_ssd300",
    "Root-ResNet-18 (Caffe Resnet18rootV2: pre-activation, BN-ReLU after "
    "pool1) + SSD extras, BN head (ScratchDet Table 2)",
    depth=18,
    pool1_bn=True,
    extras="ssd",
    bn_head=True,
)
RESNET.register_variant(
    "scratchdet300",
    "ScratchDet300 (Table 3), the Caffe release: "
    "Root-ResNet-34 pre-activation, maps 38/19/10/5/5/5, BN head for COCO "
    "only (= scratchdet300_caffe)",
)
RESNET.register_variant(
    "scratchdet300_caffe",
    "ScratchDet300 as released in Caffe "
    "(Resnet34rootV2_res, ssd_pascal.py / ssd_coco.py); the family default",
)
RESNET.register_variant(
    "scratchdet300_mmdet",
    "ScratchDet300 as released for mmdetection "
    "(SSDRES300 + SSDBNHead): post-activation, maps 38/19/10/5/3/3, BN head",
    style="torchvision",
    extras="mmdet",
    bn_head=True,
)
