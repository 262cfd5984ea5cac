"""``scratchdet curve``: a learning curve, every kept snapshot of a run scored on a split."""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchdet.cli.detect import add_detect_options, detect_config
from scratchdet.cli.options import add_out

__all__ = ["register"]


def cmd_curve(args: argparse.Namespace) -> None:
    from scratchdet.engine.learning_curve import learning_curve

    rows = learning_curve(
        args.run,
        args.data,
        args.out,
        metric=args.metric,
        detect_cfg=detect_config(args),
        device=args.device,
        num_workers=args.workers,
    )
    if args.figure:
        from scratchdet.reports.learning_curve import learning_curve_figure

        learning_curve_figure(
            {args.title or Path(args.run).name: args.out}, args.figure, note=args.note
        )
    for row in rows:
        print(f"step {row['step']:>7}: {args.metric} mAP {row['map']:.4f}  loss {row['loss']:.3f}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``curve``."""
    from scratchdet.evaluation import EVAL_METRICS

    s = subparsers.add_parser("curve", help="learning curve: score every kept snapshot of a run")
    s.add_argument("--run", required=True, help="run folder (train.keep_checkpoints snapshots)")
    s.add_argument("--data", required=True, help="split to score on")
    add_out(s, "CSV to write (provenance in <out>.meta.json)")
    s.add_argument("--metric", choices=EVAL_METRICS, default="voc07", help="default voc07")
    s.add_argument("--figure", help="also draw the curve as a PNG")
    s.add_argument("--title", help="panel title (default: the run folder's name)")
    s.add_argument("--note", default="", help="a line under the figure's title (e.g. the scale)")
    add_detect_options(s, workers=0)
    s.set_defaults(func=cmd_curve)
