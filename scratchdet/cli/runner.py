"""Running a parsed command: logging, bad input as one line with exit status 2, Ctrl-C as one
line with exit status 130.

Every command group (a module of this package) adds its subcommands with
``register(subparsers)``; each subcommand sets ``func``, which ``run_parsed`` calls. Options that
count something (workers, processes, batches) are added with ``add_count`` and checked here,
before the command runs, so a negative count is refused naming its option.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from scratchdet.errors import ConfigError, ScratchdetError

if TYPE_CHECKING:
    from scratchdet.config import RunConfig

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "add_count",
    "interrupted_message",
    "load_run_config",
    "parse_override",
    "parse_pairs",
    "run_parsed",
]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a job Ctrl-C stopped
_COUNTS = "_count_options"  # the parsed namespace's list of (dest, option) added by add_count


def add_count(parser: argparse.ArgumentParser, option: str, **kwargs: Any) -> None:
    """An integer option that must be >= 0 (checked by run_parsed, naming the option)."""
    action = parser.add_argument(option, type=int, **kwargs)
    counts = list(parser.get_default(_COUNTS) or [])
    parser.set_defaults(**{_COUNTS: [*counts, (action.dest, option)]})


def _check_counts(args: argparse.Namespace) -> None:
    for dest, option in getattr(args, _COUNTS, None) or []:
        value = getattr(args, dest, None)
        if value is not None and value < 0:
            raise ConfigError(None, option, f"must be 0 or more, got {value}")


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """`config.load_config` for a file a user named (a folder, an unreadable file or one that is
    not UTF-8 text is a ConfigError naming it: `yaml_io.load_yaml`)."""
    from scratchdet.config import load_config

    return load_config(path, overrides)


def interrupted_message(args: argparse.Namespace) -> str:
    """The line Ctrl-C leaves: what was not made, and that running the command again makes it."""
    out = getattr(args, "out", None)
    if not out:
        return "scratchdet: interrupted (Ctrl-C)"
    if getattr(args, "func", None) is not None and args.func.__name__ == "cmd_train":
        return (
            f"scratchdet: interrupted (Ctrl-C); nothing half-written is left in {out}: run "
            "the same command again to continue"
        )
    return f"scratchdet: interrupted (Ctrl-C); {out} was not written: run the same command again"


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
    """Run a parsed subcommand: one line and exit status 2 for bad input, one line and 130 for
    Ctrl-C (outputs are written atomically, so none is left half-written), a traceback for bugs."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        _check_counts(args)
        func(args)
    except ScratchdetError as exc:
        print(f"scratchdet: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
