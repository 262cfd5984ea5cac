"""Typed, validated model options: one frozen dataclass per family, built from a plain dict.

The ``params/`` tables and run configs hold model configs as small dicts. Each family declares its
keys (in ``<family>_options.py``) as dataclass fields whose metadata says what values are allowed,
so a typo or a bad value is caught before any tensor is allocated and reported as
``ConfigError(None, "model.<key>", ...)`` with the allowed keys or values spelled out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from scratchdet.errors import ConfigError

__all__ = ["ModelOptions", "from_mapping", "option"]

T = TypeVar("T", bound="ModelOptions")


def option(
    default: Any,
    doc: str,
    *,
    choices: tuple[Any, ...] | None = None,
    kind: type | None = None,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> Any:
    """A dataclass field with its allowed values: either ``choices`` or ``kind`` within [lo, hi]."""
    if (choices is None) == (kind is None):
        raise TypeError("give exactly one of choices= or kind=")
    meta = {"doc": doc, "choices": choices, "kind": kind, "lo": lo, "hi": hi, "lo_open": lo_open}
    return dataclasses.field(default=default, metadata=meta)


def _same_type(value: Any, choice: Any) -> bool:
    # True == 1 in Python; a YAML `1` must not silently select a boolean option (or vice versa).
    return isinstance(value, bool) == isinstance(choice, bool)


def _check(key: str, value: Any, meta: Mapping[str, Any]) -> Any:
    """The validated (and, for floats, converted) value, or a ConfigError naming the key."""
    where = f"model.{key}"
    choices = meta["choices"]
    if choices is not None:
        for c in choices:
            if _same_type(value, c) and value == c:
                return c
        listed = ", ".join("null" if c is None else str(c).lower() if isinstance(c, bool)
                           else str(c) for c in choices)
        raise ConfigError(None, where, f"expected one of {listed}; got {value!r}")
    kind = meta["kind"]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(None, where, f"expected {'a number' if kind is float else 'an integer'}; "
                                       f"got {value!r}")
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and (value <= lo if meta["lo_open"] else value < lo):
        op = ">" if meta["lo_open"] else ">="
        raise ConfigError(None, where, f"must be {op} {lo}; got {value}")
    if hi is not None and value > hi:
        raise ConfigError(None, where, f"must be <= {hi}; got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Base of the per-family option dataclasses; ``family`` names the builder."""

    family: ClassVar[str] = ""

    def validate(self) -> None:
        """Cross-key checks a family needs beyond per-key ranges (override when needed)."""

    def as_dict(self, name: str = "") -> dict[str, Any]:
        """The full config: ``build_model(opts.as_dict(name), n)`` rebuilds the same network."""
        head = {"name": name} if name else {}
        return {**head, "family": self.family, **dataclasses.asdict(self)}


def from_mapping(cls: type[T], raw: Mapping[str, Any]) -> T:
    """Build ``cls`` from ``raw`` (missing keys take their defaults), validating every key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(None, f"model.{key}",
                              f"unknown key for the {cls.family!r} family; allowed keys: "
                              f"name, family, {', '.join(fields)}")
    values = {key: _check(key, value, fields[key].metadata) for key, value in raw.items()}
    opts = cls(**values)
    opts.validate()
    return opts
