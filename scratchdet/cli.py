"""The `scratchdet` command line: what the Snakemake rules (and people) call.

Imports of heavy modules happen inside the subcommands so `scratchdet --help` stays instant.
Errors caused by bad input (ScratchdetError) print one line naming the file and the problem and
exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ScratchdetError


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(None, text, "an override must look like section.key=value")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


# --- data -------------------------------------------------------------------------------------

def cmd_data_synth(args: argparse.Namespace) -> None:
    from .data.synth import make_synthetic_voc

    root = make_synthetic_voc(args.out, n_trainval=args.trainval, n_test=args.test, seed=args.seed)
    print(root)


def cmd_data_voc(args: argparse.Namespace) -> None:
    from .data.annotations import save_annotations
    from .data.voc import read_voc_many

    pairs = [(Path(d), s) for d, s in zip(args.voc_dir, args.split)]
    if len(args.voc_dir) != len(args.split):
        raise ConfigError(None, "--split", "give one --split per --voc-dir")
    ds = read_voc_many(pairs)
    from .data.check import verify_images
    verify_images(ds)  # every image decodes, so no training batch meets a broken one
    save_annotations(ds, args.out)
    print(f"{args.out}: {len(ds['images'])} images, {len(ds['annotations'])} boxes")


def cmd_data_coco(args: argparse.Namespace) -> None:
    from .data.annotations import save_annotations
    from .data.coco import read_coco

    ds = read_coco(args.ann, args.images)
    save_annotations(ds, args.out)
    print(f"{args.out}: {len(ds['images'])} images, {len(ds['annotations'])} boxes")


def cmd_data_check(args: argparse.Namespace) -> None:
    from .data.check import check_dataset, format_report

    report = check_dataset(args.path, split=args.split, decode=not args.no_decode)
    print(format_report(report))
    if args.out:
        from .io import write_json

        write_json(args.out, report)
    if not report["ok"]:
        raise SystemExit(2)


# --- train / detect / eval --------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> None:
    import os

    from .config import load_config
    from .engine.gpus import assign_gpus

    cfg = load_config(args.config, dict(_parse_override(o) for o in args.set))  # before workers
    nproc = args.nproc or max(1, args.gpus)
    if "WORLD_SIZE" in os.environ:  # a torchrun worker: the launcher already chose the GPUs
        claim = None
    else:
        claim = assign_gpus(args.gpus)  # held (flock) until this process exits
        if nproc > 1:
            raise SystemExit(_launch_workers(args, nproc))
    from .engine.train import train

    status = train(cfg, args.out, restart_stale=args.restart_stale)
    print(f"{args.out}: {status['status']} at step {status['step']}"
          + (f" ({status['reason']})" if status.get("reason") else ""))
    del claim


def _launch_workers(args: argparse.Namespace, nproc: int) -> int:
    """Run this same training as `nproc` torchrun workers, forwarding SIGTERM/SIGINT/USR1."""
    import os
    import signal
    import subprocess

    from .engine.distributed import torchrun_command

    argv = ["train", "--config", str(args.config), "--out", str(args.out)]
    if args.restart_stale:
        argv.append("--restart-stale")
    for override in args.set:
        argv += ["--set", override]
    from .engine.preemption import PREEMPT_SIGNAL, torchrun_signal_env
    from .engine.run_lock import HELD_ENV, lock_run_folder

    lock = lock_run_folder(args.out)  # held for the workers, whose rank 0 would take it
    proc = subprocess.Popen(torchrun_command(nproc, argv), env=os.environ | torchrun_signal_env()
                            | {HELD_ENV: str(lock.path.resolve())})

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, PREEMPT_SIGNAL):
        signal.signal(sig, forward)
    with lock:
        code = proc.wait()
        if code:  # a refused run leaves no empty folder (as train() without workers)
            lock.remove_if_unused()
        return code


def cmd_detect(args: argparse.Namespace) -> None:
    from .config import DetectConfig, load_config
    from .engine.detect import detect
    from .engine.gpus import assign_gpus

    cfg = load_config(args.config).detect if args.config else DetectConfig()
    claim = assign_gpus(args.gpus)  # held (flock) until this process exits
    n = detect(args.checkpoint, args.data, args.out, cfg, device=args.device,
               num_workers=args.workers)
    print(f"{args.out}: {n} detections")
    del claim


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluation import evaluate
    from .io import read_json, write_json
    from .provenance import provenance

    status = read_json(args.status) if args.status else {"status": "finished"}
    if status.get("status") == "diverged":
        result: dict[str, Any] = {"metric": args.metric, "map": float("nan"), "per_class": {},
                                  "diverged": True, "reason": status.get("reason"),
                                  "step": status.get("step")}
    else:
        result = evaluate(args.gt, args.dets, args.metric)
        result["diverged"] = False
    result["inputs"] = {"gt": str(args.gt), "dets": str(args.dets)}
    result["provenance"] = provenance()
    write_json(args.out, result)
    print(f"{args.out}: {args.metric} mAP = {result['map']:.4f}")


def cmd_artifacts_push(args: argparse.Namespace) -> None:
    from .artifacts import push

    files = push(Path(args.results), None if args.no_data else Path(args.data), remote=args.remote)
    print("\n".join(str(f) for f in files))
    ignores = sorted({str(f.parent / ".gitignore") for f in files
                      if (f.parent / ".gitignore").exists()})
    print("now commit them (DVC's .gitignore files too): git add "
          + " ".join(map(str, [*files, *ignores])) + " && git commit")


def cmd_models(args: argparse.Namespace) -> None:
    import json

    from .models import list_models

    rows = list_models(num_classes=args.num_classes)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'name':<22} {'params':>10} {'priors':>7}  sources")
    for r in rows:
        print(f"{r['name']:<22} {r['params'] / 1e6:>9.2f}M {r['priors']:>7}  "
              f"{'/'.join(str(s) for s in r['sources'])}")


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scratchdet", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make, convert and check datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="write a deterministic synthetic VOCdevkit tree")
    s.add_argument("--out", required=True, help="folder to create the VOCdevkit tree in")
    s.add_argument("--trainval", type=int, default=160)
    s.add_argument("--test", type=int, default=80)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_data_synth)
    s = dsub.add_parser("voc", help="convert VOC splits to the internal annotation format")
    s.add_argument("--voc-dir", action="append", required=True,
                   help="VOCdevkit/VOC2007-style folder; repeat to merge years")
    s.add_argument("--split", action="append", required=True, help="split list name, per --voc-dir")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_data_voc)
    s = dsub.add_parser("coco", help="convert a COCO instances file to the internal format")
    s.add_argument("--ann", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_data_coco)
    from .data.download import register as register_download

    register_download(dsub)
    s = dsub.add_parser("check", help="report every fault in a dataset (JSON or VOC folder); exit 2 on a fatal one")
    s.add_argument("path")
    s.add_argument("--split", default="trainval", help="split list to read when PATH is a VOC folder")
    s.add_argument("--no-decode", action="store_true",
                   help="read image headers only (fast, but misses truncated images)")
    s.add_argument("--out", help="also write the report as JSON")
    s.set_defaults(func=cmd_data_check)

    s = sub.add_parser("train", help="train (or resume) one run")
    s.add_argument("--config", required=True, help="YAML run config")
    s.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.05")
    s.add_argument("--restart-stale", action="store_true",
                   help="discard a run in --out made with another config instead of refusing")
    s.add_argument("--gpus", type=int, default=0,
                   help="GPUs to claim on this machine (sets CUDA_VISIBLE_DEVICES unless already set)")
    s.add_argument("--nproc", type=int, default=0,
                   help="training processes (torch.distributed); default: one per GPU, or 1")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("detect", help="run a trained model over a split, write COCO-format results")
    s.add_argument("--checkpoint", required=True,
                   help="model_final.pt (or a checkpoints/step_*.pt snapshot) of a training run")
    s.add_argument("--data", required=True, help="split in the internal annotation format")
    s.add_argument("--out", required=True)
    s.add_argument("--config", help="run config whose 'detect' section sets NMS and thresholds")
    s.add_argument("--device", default="auto")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--gpus", type=int, default=0, choices=(0, 1),
                   help="claim a free GPU of this machine, as train --gpus does")
    s.set_defaults(func=cmd_detect)

    s = sub.add_parser("eval", help="score detections against ground truth")
    s.add_argument("--gt", required=True)
    s.add_argument("--dets", required=True)
    s.add_argument("--metric", choices=("voc07", "voc12", "coco"), default="voc07")
    s.add_argument("--out", required=True)
    s.add_argument("--status", help="status.json of the training run: a diverged run scores NaN")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("artifacts", help="version datasets and trained rows with DVC")
    asub = s.add_subparsers(dest="artifacts_command", required=True)
    s = asub.add_parser("push", help="dvc add + push the data folder and every finished row")
    s.add_argument("--results", default="results/default", help="results folder of one scale")
    s.add_argument("--data", default="data", help="prepared data folder (tracked as data.dvc)")
    s.add_argument("--no-data", action="store_true", help="push the trained rows only")
    s.add_argument("--remote", help="DVC remote (default: the repository's default remote)")
    s.set_defaults(func=cmd_artifacts_push)

    from .benchmark.cli import register as register_benchmark
    from .reports.cli import register as register_report

    register_report(sub)

    register_benchmark(sub)

    s = sub.add_parser("models", help="list the canonical models")
    s.add_argument("--json", action="store_true")
    s.add_argument("--num-classes", type=int, default=20, help="object classes, background excluded")
    s.set_defaults(func=cmd_models)
    return p


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_parsed(args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
