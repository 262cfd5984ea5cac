"""Typed, validated model options: one frozen struct per family, decoded from a plain dict.

The ``params/`` tables and run configs hold model configs as small dicts. Each family declares its
keys (in ``<family>_options.py``) as struct fields whose types say what values are allowed
(``Literal`` choices, ``bounds`` ranges, ``doc`` for ``scratchdet config show``), so a typo or a
bad value is caught before any tensor is allocated and reported by ``scratchdet.validation`` as
``ConfigError(None, "model.<key>", ...)`` with the allowed keys or values spelled out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from scratchdet.errors import ConfigError
from scratchdet.validation import Config, convert, struct_keys

__all__ = ["ModelOptions", "doc", "from_mapping", "option_docs"]

T = TypeVar("T", bound="ModelOptions")


def doc(text: str) -> msgspec.Meta:
    """A model key's help, as ``Annotated[int, bounds(...), doc("...")]``."""
    return msgspec.Meta(description=text)


def option_docs(cls: type[ModelOptions]) -> dict[str, str]:
    """Key -> the ``doc`` of each field of an options struct."""
    out = {}
    for f in msgspec.structs.fields(cls):
        for meta in getattr(f.type, "__metadata__", ()):
            if isinstance(meta, msgspec.Meta) and meta.description:
                out[f.name] = meta.description
    return out


class ModelOptions(Config, frozen=True):
    """Base of the per-family option structs; ``family`` names the builder."""

    family: ClassVar[str] = ""

    def validate(self) -> None:
        """Cross-key checks a family needs beyond per-key types (override when needed)."""

    def as_dict(self, name: str = "") -> dict[str, Any]:
        """The full config: ``build_model(opts.as_dict(name), n)`` rebuilds the same network."""
        head = {"name": name} if name else {}
        return {**head, "family": self.family, **msgspec.structs.asdict(self)}


def from_mapping(cls: type[T], raw: Mapping[str, Any]) -> T:
    """Build ``cls`` from ``raw`` (missing keys take their defaults), validating every key."""
    try:
        opts = convert(dict(raw), cls, path=None, key="model")
    except ConfigError as err:
        if not err.problem.startswith("unknown key"):
            raise
        head = err.problem.partition(";")[0].replace(
            "unknown key", f"unknown key for the {cls.family!r} family"
        )
        raise ConfigError(
            None, err.key, f"{head}; allowed keys: name, family, {', '.join(struct_keys(cls))}"
        ) from None
    opts.validate()
    return opts
