"""Canonical model names and ``build_model``: a small dict config -> an SSD detector.

A model config is ``{"name": <canonical>, <key>: <override>, ...}`` or
``{"family": "dsod" | "vgg" | "resnet", <key>: <value>, ...}`` (missing keys take the family's
defaults). Every row of DSOD Tables 2-4 and ScratchDet Tables 1-3 is such a dict: the ``model``
column of ``params/*.tsv``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from scratchdet.errors import ConfigError

from .dsod import DSODOptions, build_dsod
from .options import ModelOptions, from_mapping
from .resnet import ResNetOptions, build_resnet
from .ssd import SSD
from .vgg import VGGOptions, build_vgg

__all__ = ["CANONICAL_MODELS", "DESCRIPTIONS", "FAMILIES", "build_model", "count_parameters",
           "list_models", "resolve_config"]

Builder = Callable[..., SSD]
FAMILIES: dict[str, tuple[type[ModelOptions], Builder]] = {
    "dsod": (DSODOptions, build_dsod),
    "vgg": (VGGOptions, build_vgg),
    "resnet": (ResNetOptions, build_resnet),
}

_RESNET_ROOT = {"root_kernel": 7, "root_stride": 2, "root_convs": 1, "maxpool": True,
                "maxpool_kernel": 3}

# Every key spelled out, so a params/ table row can be read against its canonical base.
CANONICAL_MODELS: dict[str, dict[str, Any]] = {
    "dsod300": {"family": "dsod", "stem_channels": 64, "bottleneck": 192, "growth": 48,
                "theta": 1.0, "stem": True, "transition_wo_pool": True, "prediction": "dense",
                "bn_head": True, "l2norm": "all", "priors": None},
    "dsod300_plain": {"family": "dsod", "stem_channels": 64, "bottleneck": 192, "growth": 48,
                      "theta": 1.0, "stem": True, "transition_wo_pool": True,
                      "prediction": "plain", "bn_head": True, "l2norm": "all", "priors": None},
    "dsod300_smallest": {"family": "dsod", "stem_channels": 64, "bottleneck": 64, "growth": 16,
                         "theta": 1.0, "stem": True, "transition_wo_pool": True,
                         "prediction": "dense", "bn_head": True, "l2norm": "all", "priors": None},
    "ssd300_vgg16": {"family": "vgg", "bn_backbone": False, "bn_head": False,
                     "pretrained": False, "prediction": "plain", "l2norm": "first",
                     "priors": None},
    "ssd300_vgg16_bn": {"family": "vgg", "bn_backbone": True, "bn_head": True,
                        "pretrained": False, "prediction": "plain", "l2norm": "none",
                        "priors": None},
    "ssd300_resnet101": {"family": "resnet", "depth": 101, **_RESNET_ROOT, "extras": "ssd",
                         "bn_head": False, "l2norm": "first", "pretrained": False,
                         "priors": None},
    "root_resnet18_ssd300": {"family": "resnet", "depth": 18, "root_kernel": 3, "root_stride": 1,
                             "root_convs": 3, "maxpool": True, "maxpool_kernel": 2,
                             "extras": "ssd", "bn_head": True, "l2norm": "none",
                             "pretrained": False, "priors": None},
    "scratchdet300": {"family": "resnet", "depth": 34, "root_kernel": 3, "root_stride": 1,
                      "root_convs": 3, "maxpool": True, "maxpool_kernel": 2,
                      "extras": "residual", "bn_head": True, "l2norm": "none",
                      "pretrained": False, "priors": None},
}

DESCRIPTIONS: dict[str, str] = {
    "dsod300": "DSOD300, DS/64-192-48-1, dense prediction (DSOD Tables 3-4)",
    "dsod300_plain": "DSOD300, DS/64-192-48-1, plain SSD-style prediction (DSOD Table 3 row 9)",
    "dsod300_smallest": "DSOD300, DS/64-64-16-1, dense prediction (DSOD Table 3, 5.9M)",
    "ssd300_vgg16": "SSD300, truncated VGG-16, no BN, L2Norm on conv4_3 (SSD300S, DSOD Table 4)",
    "ssd300_vgg16_bn": "SSD300, VGG-16 with BN in backbone and head, no L2Norm "
                       "(ScratchDet Table 1)",
    "ssd300_resnet101": "SSD300, ResNet-101 with dilated conv5 (SSD300S ResNet-101, "
                        "DSOD Table 4)",
    "root_resnet18_ssd300": "Root-ResNet-18 + SSD extras, BN head (ScratchDet Table 2)",
    "scratchdet300": "ScratchDet300: Root-ResNet-34 + residual extras, BN head "
                     "(ScratchDet Table 3)",
}


def resolve_config(cfg: Mapping[str, Any] | str) -> tuple[str, ModelOptions]:
    """(name, validated options) for a model config; the name is "" for a bare family config."""
    if not isinstance(cfg, (str, Mapping)):
        raise ConfigError(None, "model", f"expected a model name or a mapping; got {cfg!r}")
    raw = {"name": cfg} if isinstance(cfg, str) else dict(cfg)
    name = raw.pop("name", None)
    family = raw.pop("family", None)
    base: dict[str, Any] = {}
    if name is not None:
        if name not in CANONICAL_MODELS:
            raise ConfigError(None, "model.name", f"unknown model {name!r}; canonical models: "
                                                  f"{', '.join(CANONICAL_MODELS)}")
        base = dict(CANONICAL_MODELS[name])
        if family is not None and family != base["family"]:
            raise ConfigError(None, "model.family", f"{name!r} is a {base['family']!r} model, "
                                                    f"not {family!r}")
        family = base.pop("family")
    elif family is None:
        raise ConfigError(None, "model", "needs a 'name' (one of "
                                         f"{', '.join(CANONICAL_MODELS)}) or a 'family' "
                                         f"({', '.join(FAMILIES)})")
    if family not in FAMILIES:
        raise ConfigError(None, "model.family", f"unknown family {family!r}; expected one of "
                                                f"{', '.join(FAMILIES)}")
    options_cls, _ = FAMILIES[family]
    return name or "", from_mapping(options_cls, {**base, **raw})


def build_model(cfg: Mapping[str, Any] | str, num_classes: int, *,
                load_pretrained: bool = True) -> SSD:
    """Build the detector described by ``cfg`` for ``num_classes`` object classes (VOC: 20).

    The model predicts ``num_classes + 1`` scores per prior (class 0 = background).
    ``load_pretrained=False`` skips fetching ImageNet weights for ``pretrained: true`` configs,
    for when a trained checkpoint is loaded next.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(None, "num_classes", f"must be a positive integer; got {num_classes!r}")
    name, opts = resolve_config(cfg)
    _, build = FAMILIES[opts.family]
    return build(opts, num_classes, name=name, load_pretrained=load_pretrained)


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (BN running statistics excluded; the papers' counts include them)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def list_models(num_classes: int = 20) -> list[dict[str, Any]]:
    """One row per canonical model: name, params, priors, sources, family, description.

    ``num_classes`` excludes background, so the default 20 gives the VOC counts (21 outputs).
    Models are built on the meta device: no memory or time is spent on weights.
    """
    rows = []
    for name in CANONICAL_MODELS:
        with torch.device("meta"):
            model = build_model(name, num_classes)
        rows.append({
            "name": name,
            "params": count_parameters(model),
            "priors": int(model.priors.shape[0]),
            "sources": list(model.source_sizes),
            "channels": list(model.source_channels),
            "family": CANONICAL_MODELS[name]["family"],
            "description": DESCRIPTIONS[name],
        })
    return rows
