"""Running a parsed command: logging, and bad input as one line with exit status 2.

Every command group (a module of this package) adds its subcommands with
``register(subparsers)``; each subcommand sets ``func``, which ``run_parsed`` calls.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

import yaml

from ..errors import ConfigError, ScratchdetError

__all__ = ["parse_override", "parse_pairs", "run_parsed"]


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` (the value read as YAML) -> (key, value)."""
    if "=" not in text:
        raise ConfigError(None, text, "an override must look like section.key=value")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """Repeated ``NAME=VALUE`` options -> {NAME: VALUE}."""
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise ConfigError(None, option, f"expected NAME=VALUE, got {v!r}")
        out[key] = value
    return out


def run_parsed(args: argparse.Namespace, verbose: bool = False) -> int:
    """Run a parsed subcommand: one line and exit status 2 for bad input, a traceback for bugs."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except ScratchdetError as exc:
        print(f"scratchdet: error: {exc}", file=sys.stderr)
        return 2
    return 0
