"""Every key of a run config with its default and a one-line help, for `scratchdet config show`.

The help is not written twice: a run-config key's help is the docstring under its struct field
in `config.py` (read from the source with `ast`, as documentation tools do), a model key's the
`doc` of its field in the family's `*_options.py`. `tests/test_config_show.py` holds that
every key has one.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
from typing import Any

import msgspec
import yaml

from scratchdet import config as config_module

__all__ = ["ConfigKey", "config_keys", "field_docs", "one_line", "render_keys"]


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    key: str
    """dotted key, e.g. train.lr"""
    default: Any
    help: str


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings under the fields of the class `cls` (a string literal right after an
    annotated assignment), by field name; a field without one is absent."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def one_line(doc: str) -> str:
    """The first sentence of a docstring, on one line."""
    text = " ".join(doc.split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _struct_keys(cls: type, prefix: str) -> list[ConfigKey]:
    docs = field_docs(cls)
    out = []
    for f in msgspec.structs.fields(cls):
        if f.name == "model":
            continue
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            out += _struct_keys(f.type, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        out.append(ConfigKey(prefix + f.name, default, one_line(docs.get(f.name, ""))))
    return out


def config_keys(model: str | None = None) -> list[ConfigKey]:
    """Every key of a run config in file order (seed, model.*, data.*, train.*, loss.*,
    detect.*), with its default; the model keys are those of `model` (default: the run config's
    default model) with that named model's values."""
    from scratchdet.models.options import option_docs
    from scratchdet.models.registry import resolve_config

    run = config_module.RunConfig()
    name = model or run.model["name"]
    resolved, opts = resolve_config(name)
    model_keys = [
        ConfigKey(
            "model.name",
            resolved,
            "the named model (`scratchdet models` lists them); the keys below override its values",
        )
    ]
    docs = option_docs(type(opts))
    model_keys += [
        ConfigKey(f"model.{f.name}", getattr(opts, f.name), one_line(docs[f.name]))
        for f in msgspec.structs.fields(opts)
    ]
    keys = _struct_keys(config_module.RunConfig, "")
    return [keys[0], *model_keys, *keys[1:]]


def render_keys(keys: list[ConfigKey]) -> str:
    """A run config in YAML with every key and its default, each commented with its help: a file
    `scratchdet train --config` reads as it is."""
    lines: list[str] = []
    section = ""
    width = max(len(k.key.split(".")[-1]) + len(_value(k.default)) for k in keys) + 6
    for k in keys:
        parts = k.key.split(".")
        if len(parts) == 2 and parts[0] != section:
            section = parts[0]
            lines.append(f"{section}:")
        indent = "  " if len(parts) == 2 else ""
        text = f"{indent}{parts[-1]}: {_value(k.default)}"
        lines.append(f"{text:<{width}} # {k.help}" if k.help else text)
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000)
        .strip()
        .removesuffix("\n...")
        .removesuffix("...")
        .strip()
    )
