"""The model zoo: every network of DSOD Tables 2-4 and ScratchDet Tables 1-3, from a small config.

    >>> model = build_model("dsod300", num_classes=20)            # VOC: 21 outputs per prior
    >>> model = build_model({"name": "ssd300_vgg16", "bn_backbone": True}, num_classes=20)
    >>> loc, conf = model(images)                                  # [B, P, 4], [B, P, 21]
    >>> resolve_config({"name": "dsod300", "growth": 32})          # validation only: no torch

Families (one builder each): ``dsod`` (DS/A-B-k-theta, plain or dense prediction), ``vgg``
(SSD300 truncated VGG-16, BN switches, optional dense prediction, ImageNet weights) and
``resnet`` (ResNet-18/34/50/101 with ScratchDet's root variants and SSD or residual extras).

Importing this package does not import torch: the options, the named models and
``resolve_config`` are torch-free, and the network classes and builders below are imported when
first used (``from scratchdet.models import SSD`` works as usual).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scratchdet.models.dsod_options import DSODOptions
from scratchdet.models.family import Family, Variant
from scratchdet.models.input import CAFFE_MEAN_RGB
from scratchdet.models.options import ModelOptions
from scratchdet.models.registry import (
    CANONICAL_MODELS,
    FAMILIES,
    build_model,
    count_parameters,
    list_models,
    resolve_config,
)
from scratchdet.models.resnet_options import ResNetOptions
from scratchdet.models.vgg_options import VGGOptions

if TYPE_CHECKING:  # for type checkers and editors; at run time see __getattr__
    from scratchdet.models.detector import SSD
    from scratchdet.models.dsod import build_dsod
    from scratchdet.models.heads import MultiBoxHead
    from scratchdet.models.layers import L2Norm
    from scratchdet.models.resnet import build_resnet
    from scratchdet.models.vgg import build_vgg

# Public names that need torch: the module of each, imported on first access.
_NETWORK_NAMES = {
    "SSD": "detector",
    "L2Norm": "layers",
    "MultiBoxHead": "heads",
    "build_dsod": "dsod",
    "build_resnet": "resnet",
    "build_vgg": "vgg",
}

__all__ = [
    "CAFFE_MEAN_RGB",
    "CANONICAL_MODELS",
    "FAMILIES",
    "SSD",
    "DSODOptions",
    "Family",
    "L2Norm",
    "ModelOptions",
    "MultiBoxHead",
    "ResNetOptions",
    "VGGOptions",
    "Variant",
    "build_dsod",
    "build_model",
    "build_resnet",
    "build_vgg",
    "count_parameters",
    "list_models",
    "resolve_config",
]


def __getattr__(name: str) -> Any:
    if name in _NETWORK_NAMES:
        module = importlib.import_module(f"{__name__}.{_NETWORK_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NETWORK_NAMES})
