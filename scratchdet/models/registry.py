"""The one registry of model families and named models, and ``build_model``: a dict -> a detector.

A model config is ``{"name": <canonical>, <key>: <override>, ...}`` or
``{"family": "dsod" | "vgg" | "resnet", <key>: <value>, ...}`` (missing keys take the family's
defaults, or the named model's). Each family and its named models are declared, as differences
from the family defaults, in ``dsod_options.py``, ``vgg_options.py`` and ``resnet_options.py``;
the rows of the papers' tables are such configs in ``params/*.tsv`` (``model`` column).

Importing this module does not import torch: ``resolve_config`` validates a config without it (so
planning a workflow can validate every params row quickly), and ``build_model`` imports the
family's network module when it builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scratchdet.errors import ConfigError
from scratchdet.models.dsod_options import DSOD
from scratchdet.models.family import Family, Variant
from scratchdet.models.options import ModelOptions, from_mapping
from scratchdet.models.resnet_options import RESNET
from scratchdet.models.vgg_options import VGG

if TYPE_CHECKING:
    from torch import nn

    from scratchdet.models.detector import SSD

__all__ = [
    "CANONICAL_MODELS",
    "FAMILIES",
    "build_model",
    "count_parameters",
    "list_models",
    "resolve_config",
]

FAMILIES: dict[str, Family] = {f.name: f for f in (DSOD, VGG, RESNET)}


def _canonical_models(families: Mapping[str, Family]) -> dict[str, Variant]:
    models: dict[str, Variant] = {}
    for family in families.values():
        for name, variant in family.variants.items():
            if name in models:
                raise ValueError(
                    f"model {name!r} is declared by the {models[name].family!r} "
                    f"and the {family.name!r} families"
                )
            models[name] = variant
    return models


CANONICAL_MODELS: dict[str, Variant] = _canonical_models(FAMILIES)
"""Every named model, family by family in declaration order."""


def resolve_config(cfg: Mapping[str, Any] | str) -> tuple[str, ModelOptions]:
    """(name, validated options) for a model config; the name is "" for a bare family config.

    A bad config raises ``ConfigError`` naming ``model.<key>``. Needs no torch.
    """
    if not isinstance(cfg, (str, Mapping)):
        raise ConfigError(None, "model", f"expected a model name or a mapping; got {cfg!r}")
    raw = {"name": cfg} if isinstance(cfg, str) else dict(cfg)
    name = raw.pop("name", None)
    family = raw.pop("family", None)
    base: Mapping[str, Any] = {}
    if name is not None:
        if name not in CANONICAL_MODELS:
            raise ConfigError(
                None,
                "model.name",
                f"unknown model {name!r}; canonical models: {', '.join(CANONICAL_MODELS)}",
            )
        variant = CANONICAL_MODELS[name]
        if family is not None and family != variant.family:
            raise ConfigError(
                None, "model.family", f"{name!r} is a {variant.family!r} model, not {family!r}"
            )
        family, base = variant.family, variant.changes
    elif family is None:
        raise ConfigError(
            None,
            "model",
            "needs a 'name' (one of "
            f"{', '.join(CANONICAL_MODELS)}) or a 'family' "
            f"({', '.join(FAMILIES)})",
        )
    if family not in FAMILIES:
        raise ConfigError(
            None,
            "model.family",
            f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}",
        )
    return name or "", from_mapping(FAMILIES[family].options, {**base, **raw})


def build_model(
    cfg: Mapping[str, Any] | str, num_classes: int, *, load_pretrained: bool = True
) -> SSD:
    """Build the detector described by ``cfg`` for ``num_classes`` object classes (VOC: 20).

    The model predicts ``num_classes + 1`` scores per prior (class 0 = background).
    ``load_pretrained=False`` skips fetching ImageNet weights for ``pretrained: true`` configs,
    for when a trained checkpoint is loaded next.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(None, "num_classes", f"must be a positive integer; got {num_classes!r}")
    name, opts = resolve_config(cfg)
    build = FAMILIES[opts.family].build_function()
    return build(opts, num_classes, name=name, load_pretrained=load_pretrained)


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (BN running statistics excluded; the papers' counts include them)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def list_models(num_classes: int = 20) -> list[dict[str, Any]]:
    """One row per canonical model: name, params, priors, sources, family, description.

    ``num_classes`` excludes background, so the default 20 gives the VOC counts (21 outputs).
    Models are built on the meta device: no memory or time is spent on weights.
    """
    import torch

    rows = []
    for name, variant in CANONICAL_MODELS.items():
        with torch.device("meta"):
            model = build_model(name, num_classes)
        rows.append(
            {
                "name": name,
                "params": count_parameters(model),
                "priors": int(model.priors.shape[0]),
                "sources": list(model.source_sizes),
                "channels": list(model.source_channels),
                "family": variant.family,
                "description": variant.description,
            }
        )
    return rows
