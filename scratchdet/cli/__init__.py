"""The `scratchdet` command line: what the Snakemake rules (and people) call.

One module per command group, each adding its subcommands with `register(subparsers)`: data,
train, detect, evaluate (`eval`), curve, report, workflow, artifacts, benchmark, models,
config;
`runner.run_parsed` runs the parsed command. Heavy modules are imported inside the commands, so
`scratchdet --help` stays instant. Bad input (ScratchdetError) prints one line naming the file
and the problem and exits with status 2; Ctrl-C prints one line and exits with 130; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from scratchdet.cli import (
    artifacts,
    benchmark,
    config,
    curve,
    data,
    detect,
    evaluate,
    models,
    report,
    train,
    workflow,
)
from scratchdet.cli.runner import EXIT_INTERRUPTED, run_parsed

__all__ = ["GROUPS", "build_parser", "main"]

GROUPS = (
    data,
    train,
    detect,
    evaluate,
    curve,
    report,
    workflow,
    artifacts,
    benchmark,
    models,
    config,
)
"""The command groups, in the order `scratchdet --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    from scratchdet import __version__

    p = argparse.ArgumentParser(prog="scratchdet", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    p.add_argument("--version", action="version", version=f"scratchdet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # building the parser imports the evaluation package (numpy): a second on a busy node
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command started
        print("scratchdet: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    args.argv = argv  # the command line, as the benchmarks record it
    return run_parsed(args, verbose=args.verbose)
