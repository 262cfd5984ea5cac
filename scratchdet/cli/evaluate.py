"""``scratchdet eval``: score detections, or an image-blind baseline, against ground truth."""

from __future__ import annotations

import argparse
from typing import Any

from scratchdet.cli.options import add_out
from scratchdet.errors import ConfigError

__all__ = ["register"]


def _print_result(result: dict[str, Any], metric: str, what: str, out: str) -> None:
    if metric == "coco" and "stats" in result:  # pycocotools' 12 lines, as it prints them
        from scratchdet.evaluation.coco import summary_lines

        print("\n".join(summary_lines(result["stats"])))
    elif metric in ("voc07", "voc12"):  # per class as the devkit's VOCevaldet prints it
        for name, ap in (result.get("per_class") or {}).items():
            print(f"AP for {name} = {ap:.4f}")
    print(f"{out}: {what}{metric} mAP = {result['map']:.4f}")


def cmd_eval(args: argparse.Namespace) -> None:
    from scratchdet.evaluation import evaluate
    from scratchdet.io import write_json
    from scratchdet.provenance import provenance
    from scratchdet.run_folder import RunStatus

    if (args.baseline is None) == (args.dets is None):
        raise ConfigError(None, "--dets", "give either --dets or --baseline (with --train)")
    if args.baseline is not None:
        _eval_baseline(args)
        return
    status = RunStatus.read(args.status) if args.status else None
    if status is not None and status.diverged:
        result: dict[str, Any] = {
            "metric": args.metric,
            "map": float("nan"),
            "per_class": {},
            "diverged": True,
            "reason": status.reason,
            "step": status.step,
        }
    else:
        result = evaluate(args.gt, args.dets, args.metric)
        result["diverged"] = False
    result["inputs"] = {"gt": str(args.gt), "dets": str(args.dets)}
    result["provenance"] = provenance()
    write_json(args.out, result)
    _print_result(result, args.metric, "", args.out)


def _eval_baseline(args: argparse.Namespace) -> None:
    """Score an image-blind baseline (evaluation/baselines.py); its detections go to --dets-out."""
    from scratchdet.evaluation.baselines import score_baselines
    from scratchdet.io import write_json
    from scratchdet.provenance import provenance

    if not args.train:
        raise ConfigError(
            None,
            "--train",
            "an image-blind baseline needs the training split whose boxes it averages",
        )
    [(result, dets)] = score_baselines(args.train, args.gt, args.metric, (args.baseline,)).values()
    if args.dets_out:
        write_json(args.dets_out, dets, indent=None)
    result.update(
        baseline=args.baseline,
        diverged=False,
        inputs={"gt": str(args.gt), "train": str(args.train)},
        provenance=provenance(),
    )
    write_json(args.out, result)
    _print_result(result, args.metric, f"{args.baseline} baseline ", args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval``. (The evaluation package imports numpy: only when the parser is built, so a
    Ctrl-C while `scratchdet` starts is the one line `main` prints.)"""
    from scratchdet.evaluation import EVAL_METRICS
    from scratchdet.evaluation.baselines import BASELINES

    s = subparsers.add_parser("eval", help="score detections against ground truth")
    s.add_argument(
        "--gt",
        required=True,
        help="ground truth: the internal format or any COCO-format annotation file",
    )
    s.add_argument("--dets", help="detections (COCO results format) to score")
    s.add_argument(
        "--metric",
        choices=EVAL_METRICS,
        default="voc07",
        help="VOC07 11-point, VOC12 area under the curve, or COCO's 12 numbers (default voc07)",
    )
    add_out(s, "metrics JSON to write")
    s.add_argument("--status", help="status.json of the training run: a diverged run scores NaN")
    s.add_argument(
        "--baseline",
        choices=BASELINES,
        help="score an image-blind baseline instead of --dets: the mean training box "
        "and/or the whole image, score 1, in every image",
    )
    s.add_argument("--train", help="training split whose boxes the baseline averages")
    s.add_argument("--dets-out", help="also write the baseline's detections here")
    s.set_defaults(func=cmd_eval)
