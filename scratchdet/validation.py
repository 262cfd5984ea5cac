"""Configuration data -> typed msgspec structs, with every problem as one ConfigError line.

Minimal version written by helper "scales" so that the scale structs validate through the one
mechanism; helper "valid" owns this module (the lead keeps valid's when both exist). The
signature is the agreed one: ``convert(data, type_, *, path, key="")``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from .errors import ConfigError

__all__ = ["convert"]

T = TypeVar("T")

_AT = re.compile(r"^(?P<problem>.*) - at `(?P<where>[^`]*)`(?: in `(?P<inside>[^`]*)`)?$")
_FIELD = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<name>[^`]+)`$")


def convert(data: Any, type_: type[T], *, path: str | Path | None, key: str = "") -> T:
    """`data` (parsed YAML or JSON) as an instance of `type_` (a msgspec struct, or a container of
    them). The first problem is a ConfigError naming `path`, the key path under `key` and what
    is wrong, so that a typo is one line, not a traceback."""
    try:
        return msgspec.convert(data, type_, strict=True)
    except msgspec.ValidationError as err:
        where, problem = _split(str(err))
        raise ConfigError(path, _join(key, where) or "<top>", problem) from None


def _split(message: str) -> tuple[str, str]:
    """msgspec's "problem - at `$.a.b[0]`" -> ("a.b[0]", "problem"); an unknown or missing
    field is named in the key path."""
    found = _AT.match(message)
    if found is None:  # at the top
        where, problem = "", message
    else:
        where = (found["inside"] or found["where"]).removeprefix("$").removeprefix(".")
        where, problem = where.replace("[...]", ".<key>"), found["problem"]
        if found["inside"]:  # a dict key of the wrong type: "... - at `key` in `$.a`"
            return where, f"a key: {problem}"
    field = _FIELD.match(problem)
    if field is not None:
        problem = "unknown key" if field["what"] == "contains unknown" else "missing"
        return _join(where, field["name"]), problem
    return where, problem


def _join(prefix: str, rest: str) -> str:
    if not prefix or not rest:
        return prefix or rest
    return prefix + rest if rest.startswith("[") else f"{prefix}.{rest}"
