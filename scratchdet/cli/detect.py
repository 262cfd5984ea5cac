"""``scratchdet detect``: run a trained model over a split, write COCO-format results."""

from __future__ import annotations

import argparse

from scratchdet.cli.options import add_out
from scratchdet.cli.runner import add_count, load_run_config
from scratchdet.config import DetectConfig

__all__ = ["add_detect_options", "detect_config", "register"]


def add_detect_options(s: argparse.ArgumentParser, workers: int) -> None:
    """The options that detecting and scoring snapshots (``curve``) share."""
    s.add_argument("--config", help="run config whose 'detect' section sets NMS and thresholds")
    add_count(
        s,
        "--precise-bn",
        metavar="N",
        help="re-estimate BatchNorm statistics from N training batches first "
        "(PreciseBN; default: the config's detect.precise_bn, else off)",
    )
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    add_count(
        s, "--workers", default=workers, help=f"image-decoding worker processes (default {workers})"
    )


def detect_config(args: argparse.Namespace) -> DetectConfig:
    """The ``detect`` section of --config (or the defaults), with --precise-bn laid over it."""
    import msgspec

    cfg = load_run_config(args.config).detect if args.config else DetectConfig()
    if args.precise_bn is not None:
        cfg = msgspec.structs.replace(cfg, precise_bn=args.precise_bn)
    return cfg


def cmd_detect(args: argparse.Namespace) -> None:
    from scratchdet.engine.detect import detect
    from scratchdet.engine.gpus import assign_gpus

    cfg = detect_config(args)
    claim = assign_gpus(args.gpus)  # held (flock) until this process exits
    n = detect(
        args.checkpoint, args.data, args.out, cfg, device=args.device, num_workers=args.workers
    )
    print(f"{args.out}: {n} detections")
    del claim


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``detect``."""
    s = subparsers.add_parser(
        "detect", help="run a trained model over a split, write COCO-format results"
    )
    s.add_argument(
        "--checkpoint",
        required=True,
        help="model_final.pt (or a checkpoints/step_*.pt snapshot) of a training run",
    )
    s.add_argument("--data", required=True, help="split in the internal annotation format")
    add_out(s, "detections (COCO results JSON) to write")
    add_detect_options(s, workers=2)
    s.add_argument(
        "--gpus",
        type=int,
        default=0,
        choices=(0, 1),
        help="claim a free GPU of this machine, as train --gpus does",
    )
    s.set_defaults(func=cmd_detect)
