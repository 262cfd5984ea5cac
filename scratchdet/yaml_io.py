"""The one YAML reader of the project: PyYAML's safe loader, made strict where YAML is lax.

- A key given twice in one mapping is an error naming the key and both lines. PyYAML keeps the
  last one silently, so a run config with two `train:` sections trained with the second one's
  lr while the file also said another.
- Numbers in exponent form without a dot (`1e-3`, `5E-4`, `1e+4`) are floats, as YAML 1.2 and
  every reader of a config expect; YAML 1.1 (PyYAML) reads them as strings, which a config then
  refused as "expected a number, got '1e-3'".

Every module that reads YAML (run configs, the workflow config, scales, downloads.yaml, params
cells, DVC files, --set values) goes through `load_yaml` / `parse_yaml`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from scratchdet.errors import ConfigError

__all__ = ["EXPONENT_FLOAT", "StrictDumper", "StrictLoader", "dump_yaml", "load_yaml", "parse_yaml"]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads `1e-3` as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # merge keys (<<) first: they may be overridden on purpose
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error comes next
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise _DuplicateKey(key, first, line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, line: int):
        super().__init__(f"duplicate key {key!r} (line {first}, again on line {line})")
        self.key, self.first, self.line = key, first, line


class StrictDumper(yaml.SafeDumper):
    """SafeDumper that quotes every string StrictLoader would read as a number (e.g. a digest
    like 7120035e42), so that what it writes reads back as written."""


EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
"""YAML 1.2's float forms that YAML 1.1 lacks: an exponent without a dot in the mantissa."""
for _cls in (StrictLoader, StrictDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str, where: str | Path | None = None, key: str = "<file>") -> Any:
    """Parse YAML text; ConfigError naming `where` (a file, or file:line) and the key on error.

    A duplicate key is reported with its dotted path when it is nested (`synth.seed`)."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except _DuplicateKey as exc:
        dotted = _dotted_path(text, exc.line)
        if dotted is None:
            dotted = str(exc.key)
        elif dotted.rsplit(".", 1)[-1] != str(exc.key):  # in a flow mapping: `train: {lr: ..}`
            dotted = f"{dotted}.{exc.key}"
        raise ConfigError(
            where,
            dotted,
            f"duplicate key: given on line {exc.first} and again on line {exc.line}; keep one",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(where, key, f"malformed YAML: {' '.join(str(exc).split())}") from None


def _dotted_path(text: str, line: int) -> str | None:
    """`a.b.c` of the block-style key on `line` (1-based), from the indentation above it."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return None
    match = re.match(r"^(\s*)([^\s:#{[-][^:#]*?)\s*:", lines[line - 1])
    if not match:
        return None
    indent, parts = len(match.group(1)), [match.group(2).strip().strip("'\"")]
    for above in reversed(lines[: line - 1]):
        m = re.match(r"^(\s*)([^\s:#{[-][^:#]*?)\s*:", above)
        if m and len(m.group(1)) < indent:
            parts.insert(0, m.group(2).strip().strip("'\""))
            indent = len(m.group(1))
            if indent == 0:
                break
    return ".".join(parts)


def load_yaml(path: str | Path, missing_ok: bool = False) -> Any:
    """Read and parse a YAML file; ConfigError naming the file when it is missing (unless
    `missing_ok`: None), unreadable or malformed, or holds a duplicate key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(path, "<file>", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, "<file>", "is a folder; give a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path,
            "<file>",
            f"is not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start]:#04x}); save it as UTF-8",
        ) from None
    except OSError as exc:
        raise ConfigError(path, "<file>", f"cannot read: {exc.strerror or exc}") from None
    return parse_yaml(text, path)


def dump_yaml(obj: Any) -> str:
    """YAML text of `obj` (block style, keys in insertion order) that `parse_yaml` reads back
    equal."""
    return yaml.dump(obj, Dumper=StrictDumper, sort_keys=False)
