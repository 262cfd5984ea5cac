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
from .evaluation.baselines import BASELINES


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(None, text, "an override must look like section.key=value")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


# --- data -------------------------------------------------------------------------------------

def cmd_data_synth(args: argparse.Namespace) -> None:
    from .data.synth import SYNTH_CLASSES, make_synthetic_voc

    extra: dict[str, Any] = {}
    if args.objects:
        extra["objects"] = tuple(args.objects)
    if args.object_size:
        extra["object_size"] = tuple(args.object_size)
    root = make_synthetic_voc(args.out, n_trainval=args.trainval, n_test=args.test, seed=args.seed,
                              classes=args.classes or SYNTH_CLASSES, **extra)
    print(root)


def cmd_data_split(args: argparse.Namespace) -> None:
    from .data.annotations import load_annotations, save_annotations
    from .data.split import split_dataset

    ds = load_annotations(args.data, resolve_image_dir=False)
    train, test = split_dataset(ds, args.test, seed=args.seed, source=args.data)
    save_annotations(train, args.train_out)
    save_annotations(test, args.test_out)
    print(f"{args.train_out}: {len(train['images'])} images; "
          f"{args.test_out}: {len(test['images'])} images")


def cmd_data_voc(args: argparse.Namespace) -> None:
    from .data.annotations import save_annotations
    from .data.voc import read_voc_many

    if args.annotations:  # flat layout: a folder of XMLs next to a folder of images
        from .data.voc import read_voc_files

        if args.voc_dir or args.split or not args.images:
            raise ConfigError(None, "--annotations", "give --annotations with --images, and "
                                                     "without --voc-dir/--split")
        xmls = sorted(Path(args.annotations).glob("*.xml"))
        if not xmls:
            raise ConfigError(None, "--annotations", f"no *.xml file in {args.annotations}")
        ds = read_voc_files(xmls, args.images)
    else:
        if not args.voc_dir or len(args.voc_dir) != len(args.split or []):
            raise ConfigError(None, "--split", "give --voc-dir with one --split each (or "
                                               "--annotations with --images)")
        ds = read_voc_many([(Path(d), s) for d, s in zip(args.voc_dir, args.split)])
    from .data.check import verify_images
    for dropped in verify_images(ds, drop=args.drop_broken):  # no training batch meets one
        print(f"dropped {dropped}", file=sys.stderr)
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


def _detect_config(args: argparse.Namespace):
    """The `detect` section of --config (or the defaults), with --precise-bn laid over it."""
    import dataclasses

    from .config import DetectConfig, load_config

    cfg = load_config(args.config).detect if args.config else DetectConfig()
    if args.precise_bn is not None:
        cfg = dataclasses.replace(cfg, precise_bn=args.precise_bn)
    return cfg


def cmd_detect(args: argparse.Namespace) -> None:
    from .engine.detect import detect
    from .engine.gpus import assign_gpus

    cfg = _detect_config(args)
    claim = assign_gpus(args.gpus)  # held (flock) until this process exits
    n = detect(args.checkpoint, args.data, args.out, cfg, device=args.device,
               num_workers=args.workers)
    print(f"{args.out}: {n} detections")
    del claim


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluation import evaluate
    from .io import read_json, write_json
    from .provenance import provenance

    if (args.baseline is None) == (args.dets is None):
        raise ConfigError(None, "--dets", "give either --dets or --baseline (with --train)")
    if args.baseline is not None:
        _eval_baseline(args)
        return
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
    if "stats" in result and args.metric == "coco":  # pycocotools' 12 lines, as it prints them
        from .evaluation.coco import summary_lines

        print("\n".join(summary_lines(result["stats"])))
    print(f"{args.out}: {args.metric} mAP = {result['map']:.4f}")


def _eval_baseline(args: argparse.Namespace) -> None:
    """Score an image-blind baseline (evaluation/baselines.py); its detections go to --dets-out."""
    import tempfile

    from .data.annotations import load_annotations
    from .evaluation import evaluate
    from .evaluation.baselines import baseline_detections
    from .io import write_json
    from .provenance import provenance

    if not args.train:
        raise ConfigError(None, "--train", "an image-blind baseline needs the training split "
                                           "whose boxes it averages")
    train = load_annotations(args.train, resolve_image_dir=False)
    test = load_annotations(args.gt, resolve_image_dir=False)
    dets = baseline_detections(args.baseline, train, test, str(args.train))
    with tempfile.TemporaryDirectory(prefix="scratchdet-baseline-") as tmp:
        path = Path(args.dets_out) if args.dets_out else Path(tmp) / "dets.json"
        write_json(path, dets, indent=None)
        result = evaluate(args.gt, path, args.metric)
    result.update(baseline=args.baseline, diverged=False,
                  inputs={"gt": str(args.gt), "train": str(args.train)}, provenance=provenance())
    write_json(args.out, result)
    print(f"{args.out}: {args.baseline} baseline {args.metric} mAP = {result['map']:.4f}")


def cmd_curve(args: argparse.Namespace) -> None:
    from .engine.learning_curve import learning_curve

    rows = learning_curve(args.run, args.data, args.out, metric=args.metric,
                          detect_cfg=_detect_config(args),
                          device=args.device, num_workers=args.workers)
    if args.figure:
        from .reports.learning_curve import learning_curve_figure

        learning_curve_figure({args.title or Path(args.run).name: args.out}, args.figure)
    for row in rows:
        print(f"step {row['step']:>7}: {args.metric} mAP {row['map']:.4f}  loss {row['loss']:.3f}")


def cmd_artifacts_push(args: argparse.Namespace) -> None:
    from .artifacts import push, scale_dataset

    results = Path(args.results)
    data = None if args.no_data else Path(args.data) if args.data else scale_dataset(results)
    files = push(results, data, remote=args.remote)
    print("\n".join(str(f) for f in files))
    ignores = sorted({str(f.parent / ".gitignore") for f in files
                      if (f.parent / ".gitignore").exists()})
    print("now commit them (DVC's .gitignore files too): git add "
          + " ".join(map(str, [*files, *ignores])) + " && git commit")


def cmd_artifacts_pull(args: argparse.Namespace) -> None:
    from .artifacts import pull

    files = pull(Path(args.results), remote=args.remote)
    print(f"restored {len(files)} DVC-tracked folders of {args.results}")


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
    from . import __version__

    p.add_argument("--version", action="version", version=f"scratchdet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make, convert and check datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="write a deterministic synthetic VOCdevkit tree")
    s.add_argument("--out", required=True, help="folder to create the VOCdevkit tree in")
    s.add_argument("--trainval", type=int, default=160)
    s.add_argument("--test", type=int, default=80)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--objects", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="objects per image (default 1 5)")
    s.add_argument("--object-size", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="object sides as fractions of the image's short side (default 12 px to 0.7)")
    s.add_argument("--classes", nargs="+", metavar="CLASS",
                   help="classes to draw, of box disc triangle cross ring (default all)")
    s.set_defaults(func=cmd_data_synth)
    s = dsub.add_parser("split", help="split one annotation file into train and test, by seed")
    s.add_argument("--data", required=True, help="annotation file to split")
    s.add_argument("--test", type=int, required=True, help="images that go to the test part")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train-out", required=True)
    s.add_argument("--test-out", required=True)
    s.set_defaults(func=cmd_data_split)
    s = dsub.add_parser("voc", help="convert VOC splits to the internal annotation format")
    s.add_argument("--voc-dir", action="append",
                   help="VOCdevkit/VOC2007-style folder; repeat to merge years")
    s.add_argument("--split", action="append", help="split list name, per --voc-dir")
    s.add_argument("--annotations", help="flat layout: a folder of VOC XMLs (with --images)")
    s.add_argument("--images", help="flat layout: the folder of the images the XMLs name")
    s.add_argument("--drop-broken", action="store_true",
                   help="leave out images that do not decode (named on stderr) instead of failing")
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
    s.add_argument("--precise-bn", type=int, metavar="N",
                   help="re-estimate BatchNorm statistics from N training batches first "
                        "(PreciseBN; default: the config's detect.precise_bn, else off)")
    s.set_defaults(func=cmd_detect)

    s = sub.add_parser("eval", help="score detections against ground truth")
    s.add_argument("--gt", required=True)
    s.add_argument("--dets", help="detections (COCO results format) to score")
    s.add_argument("--metric", choices=("voc07", "voc12", "coco"), default="voc07")
    s.add_argument("--out", required=True)
    s.add_argument("--status", help="status.json of the training run: a diverged run scores NaN")
    s.add_argument("--baseline", choices=BASELINES,
                   help="score an image-blind baseline instead of --dets: the mean training box "
                        "and/or the whole image, score 1, in every image")
    s.add_argument("--train", help="training split whose boxes the baseline averages")
    s.add_argument("--dets-out", help="also write the baseline's detections here")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("curve", help="learning curve: score every kept snapshot of a run")
    s.add_argument("--run", required=True, help="run folder (train.keep_checkpoints snapshots)")
    s.add_argument("--data", required=True, help="split to score on")
    s.add_argument("--out", required=True, help="CSV to write (provenance in <out>.meta.json)")
    s.add_argument("--figure", help="also draw the curve as a PNG")
    s.add_argument("--title", help="panel title (default: the run folder's name)")
    s.add_argument("--metric", choices=("voc07", "voc12", "coco"), default="voc07")
    s.add_argument("--config", help="run config whose 'detect' section sets NMS and thresholds")
    s.add_argument("--precise-bn", type=int, metavar="N",
                   help="re-estimate BatchNorm statistics from N training batches per snapshot")
    s.add_argument("--device", default="auto")
    s.add_argument("--workers", type=int, default=0)
    s.set_defaults(func=cmd_curve)

    s = sub.add_parser("artifacts", help="version datasets and trained rows with DVC")
    asub = s.add_subparsers(dest="artifacts_command", required=True)
    s = asub.add_parser("push", help="dvc add + push the data folder and every finished row")
    s.add_argument("--results", default="results/default", help="results folder of one scale")
    s.add_argument("--data", help="data folder to track as <results>/data.dvc (default: the "
                   "scale's synthetic dataset; none for the official datasets)")
    s.add_argument("--no-data", action="store_true", help="push the trained rows only")
    s.add_argument("--remote", help="DVC remote (default: the scale's: the repository's default "
                   "remote for the default scale, 'lab' for the others)")
    s.set_defaults(func=cmd_artifacts_push)
    s = asub.add_parser("pull", help="check the remotes answer, then dvc pull a results folder")
    s.add_argument("--results", default="results/default",
                   help="results folder of one scale (or of one table or row in it)")
    s.add_argument("--remote", help="DVC remote (default: the one each .dvc file names)")
    s.set_defaults(func=cmd_artifacts_pull)

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
