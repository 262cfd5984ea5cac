"""The model zoo: every network of DSOD Tables 2-4 and ScratchDet Tables 1-3, from a small config.

    >>> model = build_model("dsod300", num_classes=20)            # VOC: 21 outputs per prior
    >>> model = build_model({"name": "ssd300_vgg16", "bn_backbone": True}, num_classes=20)
    >>> loc, conf = model(images)                                  # [B, P, 4], [B, P, 21]

Families (one builder each): ``dsod`` (DS/A-B-k-theta, plain or dense prediction), ``vgg``
(SSD300 truncated VGG-16, BN switches, optional dense prediction, ImageNet weights) and
``resnet`` (ResNet-18/34/50/101 with ScratchDet's root variants and SSD or residual extras).
"""

from .dsod import DSODOptions, build_dsod
from .heads import MultiBoxHead
from .input import CAFFE_MEAN_RGB
from .layers import L2Norm
from .registry import (
    CANONICAL_MODELS,
    DESCRIPTIONS,
    FAMILIES,
    build_model,
    count_parameters,
    list_models,
    resolve_config,
)
from .resnet import ResNetOptions, build_resnet
from .ssd import SSD
from .vgg import VGGOptions, build_vgg

__all__ = [
    "CAFFE_MEAN_RGB",
    "CANONICAL_MODELS",
    "DESCRIPTIONS",
    "FAMILIES",
    "SSD",
    "DSODOptions",
    "L2Norm",
    "MultiBoxHead",
    "ResNetOptions",
    "VGGOptions",
    "build_dsod",
    "build_model",
    "build_resnet",
    "build_vgg",
    "count_parameters",
    "list_models",
    "resolve_config",
]
