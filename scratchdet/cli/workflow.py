"""``scratchdet workflow ...``: what the Snakemake rules need from the package besides the
stages."""

from __future__ import annotations

import argparse

from scratchdet.cli.options import add_out

__all__ = ["register"]


def cmd_run_config(args: argparse.Namespace) -> None:
    from scratchdet.config import write_run_config

    write_run_config(args.json, args.out)
    print(args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``workflow`` and its subcommands."""
    p = subparsers.add_parser("workflow", help="helpers of the Snakemake workflow")
    sub = p.add_subparsers(dest="workflow_command", required=True)
    s = sub.add_parser("run-config", help="validate a run config given as JSON, write it as YAML")
    s.add_argument("--json", required=True, help="the whole run config as a JSON object")
    add_out(s, "run.yaml to write")
    s.set_defaults(func=cmd_run_config)
