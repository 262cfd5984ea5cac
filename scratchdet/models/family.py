"""A model family: its options (keys and defaults), its builder, and its named variants.

Each family declares itself in its own torch-free module (``dsod_options.py``, ``vgg_options.py``,
``resnet_options.py``), and each named variant there says only what differs from the family's
defaults, the way timm registers ``resnet18d`` next to ``resnet18``::

    DSOD = Family(DSODOptions, builder="scratchdet.models.dsod:build_dsod")
    DSOD.register_variant("dsod300_plain", "DSOD300 with plain prediction", prediction="plain")

The builder is named, not imported, so declaring and validating models never imports torch; it is
imported when a model is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Callable, Mapping
from typing import Any

from scratchdet.models.options import ModelOptions, from_mapping

__all__ = ["Family", "Variant"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named model: the keys that differ from its family's defaults, and what it is."""

    name: str
    family: str
    changes: Mapping[str, Any]
    """As declared: only the keys whose value is not the family default."""
    description: str
    options: ModelOptions
    """The validated full options (the family defaults with ``changes`` applied)."""


@dataclasses.dataclass
class Family:
    """One builder and its option dataclass; ``variants`` are filled by ``register_variant``."""

    options: type[ModelOptions]
    builder: str
    """``"<module>:<function>"``, called as ``function(options, num_classes, name=...,
    load_pretrained=...)``; imported only when a model is built."""
    variants: dict[str, Variant] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.options.family

    def register_variant(self, name: str, description: str, **changes: Any) -> Variant:
        """Declare the named model ``name`` = the family defaults with ``changes``.

        A change that restates a default is refused, so a declaration is exactly the difference
        (and a default changed later reaches every variant that does not override it).
        """
        if name in self.variants:
            raise ValueError(f"model {name!r} is declared twice in the {self.name!r} family")
        options = from_mapping(self.options, changes)  # a bad key or value: ConfigError
        defaults = self.options()
        restated = [k for k in changes if getattr(options, k) == getattr(defaults, k)]
        if restated:
            raise ValueError(
                f"model {name!r} restates the {self.name!r} defaults of "
                f"{', '.join(restated)}; declare only what differs"
            )
        variant = Variant(
            name=name,
            family=self.name,
            changes=types.MappingProxyType(changes),
            description=description,
            options=options,
        )
        self.variants[name] = variant
        return variant

    def build_function(self) -> Callable[..., Any]:
        """The builder (imports the family's network module, hence torch)."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)
