"""The one way configuration is validated: msgspec decodes plain data into typed structs.

Run configs (``config.py``), model options (``models/*_options.py``), the augmentation
(``input/augment.py``) and the workflow config declare their keys as ``msgspec.Struct`` fields with
per-field constraints (``bounds("[0, 1)")``, ``Literal`` choices); ``convert`` turns msgspec's
error (a problem and a ``$.a.b[0]`` path) into the project's one-line
``ConfigError(file, dotted key, problem)`` that the command line prints with exit code 2.
Unknown keys are errors (``forbid_unknown_fields``: a typo must never fall back to a default),
and NaN or infinity is never a setting.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from scratchdet.errors import ConfigError
from scratchdet.yaml_io import EXPONENT_FLOAT

__all__ = ["Config", "bounds", "check", "convert", "interval_of", "struct_keys"]

T = TypeVar("T")


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every config struct: an unknown key is an error, not a silent default."""


_INTERVAL = re.compile(r"([\[(])\s*(-?[\d.]+|-inf)\s*,\s*(-?[\d.]+|inf)\s*([\])])")


def bounds(spec: str) -> msgspec.Meta:
    """The constraint of a numeric field as an interval, e.g. ``bounds("[0, 1)")`` (``inf`` for no
    upper bound): ``Annotated[float, bounds("[0, 1)")]``. The spec is kept (``interval_of``) so that
    errors and ``scratchdet config show`` name the range as written."""
    m = _INTERVAL.fullmatch(spec)
    if not m:
        raise ValueError(f"malformed range {spec!r}")  # at import, not at the first bad value
    low, high = (float(v) if "." in v or "inf" in v else int(v) for v in m.group(2, 3))
    kw: dict[str, Any] = {}
    if not math.isinf(low):
        kw["ge" if m.group(1) == "[" else "gt"] = low
    if not math.isinf(high):
        kw["le" if m.group(4) == "]" else "lt"] = high
    return msgspec.Meta(**kw, extra={"range": spec})


def interval_of(tp: Any) -> str | None:
    """The ``bounds`` spec of an annotated field type, or None."""
    for meta in getattr(tp, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.extra and "range" in meta.extra:
            return meta.extra["range"]
    return None


def struct_keys(tp: Any) -> tuple[str, ...]:
    """The field names of a struct type, in declaration order."""
    return tuple(f.name for f in msgspec.structs.fields(tp))


def convert(data: Any, type_: type[T], *, path: str | Path | None, key: str = "") -> T:
    """``data`` (plain dicts, lists, scalars) as an instance of ``type_``, or a ConfigError naming
    ``path`` (the file), the dotted key below ``key`` and the first problem, in one line."""
    _check_finite(data, path, key)
    fixed = False
    while True:
        try:
            return msgspec.convert(data, type_, strict=True)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).rpartition(" - at `")
            parts = _path_parts(where.rstrip("`"), data, type_) if message else []
            message = message or str(exc)
            value, tp = _walk(data, type_, parts)
            if (
                isinstance(value, str)
                and "`float" in message.partition(",")[0]
                and EXPONENT_FLOAT.match(value.strip())
            ):
                # `1e-3` read by a YAML 1.1 reader (Snakemake's, a --set value): a number
                if not fixed:
                    data, fixed = copy.deepcopy(data), True
                _set(data, parts, float(value))
                continue
            raise _error(message, parts, value, tp, path, key) from None


_CHECKING = contextvars.ContextVar("checking", default=False)


def check(obj: Any, *, path: str | Path | None, key: str = "") -> None:
    """Check a struct or dataclass made in code against its declared constraints, which msgspec
    applies only when decoding: called from ``__post_init__``, it makes a bad value an error
    however the object is made. The re-decoding it does skips the nested call."""
    if _CHECKING.get():
        return
    token = _CHECKING.set(True)
    try:
        convert(msgspec.to_builtins(obj), type(obj), path=path, key=key)
    finally:
        _CHECKING.reset(token)


def _error(
    message: str, parts: list[str | int], value: Any, tp: Any, path: str | Path | None, key: str
) -> ConfigError:
    """The ConfigError of msgspec's ``message`` about ``value`` (declared ``tp``) at ``parts``."""
    dotted = _dotted(key, parts)
    if message.startswith("Object contains unknown field `"):
        name = message.split("`")[1]
        allowed = struct_keys(_strip(tp)[0])
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(
            path,
            _dotted(dotted, [name]),
            f"unknown key{hint}; allowed keys here: {', '.join(allowed)}",
        )
    if message.startswith("Object missing required field `"):
        return ConfigError(path, _dotted(dotted, [message.split("`")[1]]), "missing key")
    if message.startswith("Number out of range"):
        return ConfigError(path, dotted or "<top>", f"must be a finite number, got {value!r:.40}")
    return ConfigError(path, dotted or "<top>", _problem(message, value, tp))


def _problem(message: str, value: Any, tp: Any) -> str:
    """What a value of the wrong type or range needs, in the words of the config's reader."""
    base, metas = _strip(tp)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and typing.get_origin(rest[0]) is typing.Literal:
            return _choices((None, *typing.get_args(rest[0])), value)
        if rest == [bool]:
            return _choices((None, False, True), value)
        if len(rest) == 1 and value is not None:
            return _problem(message, value, rest[0])
    if origin is typing.Literal:
        return _choices(args, value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and not value:
        return "needs at least one entry, got none"
    if _is_record(base) and isinstance(value, dict):
        return message  # a check of the struct itself (__post_init__)
    if base is str and isinstance(value, str):
        meta = next((m for m in metas if getattr(m, "pattern", None)), None)
        if meta is None:
            return "must not be empty"
        what = f" ({meta.description})" if meta.description else ""
        return f"must match {meta.pattern}{what}, got {value!r}"
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return message
    if base in (int, float) and _is_number(value, base):
        spec = interval_of(tp)
        if spec is None:
            return message
        low = _INTERVAL.fullmatch(spec)
        if low and low.group(3) == "inf":
            op = ">=" if low.group(1) == "[" else ">"
            return f"must be {op} {low.group(2)}, got {value}"
        return f"must be in {spec}, got {value}"
    expected = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(
        base
    )
    if expected is None:
        if origin in (list, tuple):
            expected = "a list"
        elif origin is dict or _is_record(base):
            expected = "a mapping"
        else:
            return message
    return f"expected {expected}, got {value!r}"


def _is_record(tp: Any) -> bool:
    """A struct or dataclass type: a mapping of declared keys."""
    return isinstance(tp, type) and (issubclass(tp, msgspec.Struct) or dataclasses.is_dataclass(tp))


def _choices(choices: tuple[Any, ...], value: Any) -> str:
    listed = ", ".join(
        "null" if c is None else str(c).lower() if isinstance(c, bool) else str(c) for c in choices
    )
    return f"must be one of {listed}, got {value!r}"


def _is_number(value: Any, base: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (base is float and isinstance(value, float))


def _strip(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """(the type without ``Annotated``, its metadata)."""
    if typing.get_origin(tp) is typing.Annotated:
        return tp.__origin__, tp.__metadata__
    return tp, ()


def _path_parts(where: str, data: Any, tp: Any) -> list[str | int]:
    """``$.train.milestones[0]`` -> ['train', 'milestones', 0]. msgspec writes a mapping's key as
    ``[...]``: the key is the first whose value does not decode as the mapping's value type."""
    parts: list[str | int] = []
    for name, index, hidden in re.findall(
        r"\.([^.\[]+)|\[(\d+)\]|\[(\.\.\.)\]", where.removeprefix("$")
    ):
        part: str | int = int(index) if index else name
        if hidden:
            value_tp = _member(_strip(tp)[0], "", None)
            part = next((k for k, v in data.items() if not _decodes(v, value_tp)), "...")
        parts.append(part)
        data, tp = _walk(data, tp, [part])
    return parts


def _decodes(value: Any, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError:
        return False
    return True


def _dotted(key: str, parts: list[str | int]) -> str:
    out = key
    for p in parts:
        out = f"{out}[{p}]" if isinstance(p, int) else f"{out}.{p}" if out else p
    return out


def _walk(data: Any, tp: Any, parts: list[str | int]) -> tuple[Any, Any]:
    """(the value and its declared type) at ``parts`` of ``data`` decoded as ``tp``."""
    for part in parts:
        base = _strip(tp)[0]
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None, Any
        tp = _member(base, part, data)
    return data, tp


def _member(base: Any, part: str | int, value: Any) -> Any:
    origin, args = typing.get_origin(base), typing.get_args(base)
    if _is_record(base):
        hints = typing.get_type_hints(base, include_extras=True)
        return hints.get(str(part), Any)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                return _member(_strip(arg)[0], part, value)
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return Any


def _set(data: Any, parts: list[str | int], value: Any) -> None:
    for part in parts[:-1]:
        data = data[part]
    data[parts[-1]] = value


def _check_finite(value: Any, path: str | Path | None, key: str) -> None:
    """NaN and infinity are never a setting: `lr: .nan` would train to NaN weights and exit 0."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, key or "<top>", f"must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, path, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, path, f"{key}[{i}]")
