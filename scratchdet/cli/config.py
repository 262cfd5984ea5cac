"""``scratchdet config show``: every key of a run config, its default and what it means."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def cmd_show(args: argparse.Namespace) -> None:
    from scratchdet.config_help import config_keys, render_keys

    print(render_keys(config_keys(args.model)), end="")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``config show``."""
    s = subparsers.add_parser("config", help="show the run config's keys and defaults")
    sub = s.add_subparsers(dest="config_command", required=True)
    show = sub.add_parser(
        "show",
        help="print a run config with every key, its default and a "
        "one-line help (YAML that `scratchdet train --config` reads)",
    )
    show.add_argument(
        "--model",
        help="the model keys of this named model, with its values "
        "(default: the run config's default model; `scratchdet models` lists them)",
    )
    show.set_defaults(func=cmd_show)
