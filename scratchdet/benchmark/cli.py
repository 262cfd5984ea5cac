"""``scratchdet benchmark train|infer|eval|table``; ``register`` plugs it into the main CLI.

Also runnable alone: ``python -m scratchdet.benchmark.cli train --models dsod300 ...``.
Heavy imports happen inside the commands, so ``scratchdet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["cmd_eval", "cmd_infer", "cmd_table", "cmd_train", "main", "register"]


def _print_summary(data: dict) -> None:
    print(f"{data['benchmark']} benchmark on {data['device']}: {len(data['results'])} rows")


def cmd_train(args: argparse.Namespace) -> None:
    from .train import run_train

    _print_summary(run_train(args))


def cmd_infer(args: argparse.Namespace) -> None:
    from .infer import run_infer

    _print_summary(run_infer(args))


def cmd_eval(args: argparse.Namespace) -> None:
    from .eval import run_eval

    _print_summary(run_eval(args))


def cmd_table(args: argparse.Namespace) -> None:
    from .table import render, write_into

    if args.write:
        write_into(args.write, args.results)
        print(f"{args.write}: tables updated from {args.results}")
    else:
        print(render(args.results), end="")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``benchmark`` with its subcommands to a CLI's subparsers; each sets ``func``."""
    from . import arguments

    bench = subparsers.add_parser("benchmark", help="measure training, inference and evaluation "
                                                    "speed; write JSON under benchmarks/results")
    sub = bench.add_subparsers(dest="benchmark_command", required=True)
    for name, helptext, add, func in (
            ("train", "training images/s: synthetic vs real pipelines vs torchvision's SSD",
             arguments.train, cmd_train),
            ("infer", "batch-1/batch-32 latency and FPS per model, NMS included",
             arguments.infer, cmd_infer),
            ("eval", "VOC mAP speed vs the naive reference; COCO backends",
             arguments.eval, cmd_eval)):
        p = sub.add_parser(name, help=helptext)
        add(p)
        p.set_defaults(func=func)
    p = sub.add_parser("table", help="Markdown tables of the result files")
    p.add_argument("--results", default="benchmarks/results", help="folder of result JSONs")
    p.add_argument("--write", help="README whose results block to replace (else print)")
    p.set_defaults(func=cmd_table)
    return bench


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    parser = argparse.ArgumentParser(prog="scratchdet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["benchmark", *argv])
    args.argv = argv
    from ..cli import run_parsed

    return run_parsed(args, verbose=verbose)


if __name__ == "__main__":
    sys.exit(main())
