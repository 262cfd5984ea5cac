"""``scratchdet benchmark train|infer|eval|table``: speed, written as JSON under benchmarks/results.

The options of each benchmark are in ``scratchdet/benchmark/arguments.py``; the benchmarks
themselves in ``scratchdet/benchmark/``.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

from scratchdet.benchmark.fps import RESULTS_DIR
from scratchdet.cli.options import add_result_out

__all__ = ["register"]


def _call(run: Callable[..., dict], args: argparse.Namespace) -> dict:
    """``run`` (a benchmark of ``scratchdet.benchmark``, which takes keywords) with the parsed
    options it names, the command line included; the CLI's own keys (``func``, ``verbose``...)
    stay out of the benchmark and of its recorded config."""
    names = inspect.signature(run).parameters
    return run(**{k: v for k, v in vars(args).items() if k in names})


def _print_summary(data: dict) -> None:
    print(f"{data['benchmark']} benchmark on {data['device']}: {len(data['results'])} rows")


def cmd_train(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.train import run_train

    _print_summary(_call(run_train, args))


def cmd_infer(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.infer import run_infer

    _print_summary(_call(run_infer, args))


def cmd_eval(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.eval import run_eval

    _print_summary(_call(run_eval, args))


def cmd_pipeline(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.pipeline import run_pipeline

    _call(run_pipeline, args)


def _pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--batches", type=int, default=2, help="batches per image set (default 2)")
    p.add_argument("--size", type=int, default=300, help="output side (default 300)")
    p.add_argument(
        "--photos",
        help="also a flat VOC folder of photos (annots/, images/), e.g. "
        "../shared/datasets/kangaroo",
    )
    p.add_argument("--repeats", type=int, default=7, help="timed rounds, interleaved (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images and the draws")
    add_result_out(p, "pipeline_cpu.json")


def cmd_matching(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.matching import run_matching

    _call(run_matching, args)


def cmd_postprocess(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.postprocess import run_postprocess

    _call(run_postprocess, args)


def _component(p: argparse.ArgumentParser, kind: str) -> None:
    """Options of the component benchmarks against torchvision (matching, postprocess)."""
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument(
        "--repeats", type=int, default=15, help="timed runs of each side, interleaved (default 15)"
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    add_result_out(p, f"{kind}_<device>.json")


def _print_cases(data: dict) -> None:
    for c in data["cases"]:
        print(
            f"{data['benchmark']}: {c['case']}: {c['ours']['median_ms']:.1f} ms vs "
            f"{c['reference']['median_ms']:.1f} ms, ratio {c['ratio_median']:.2f} (median)"
        )


def cmd_eval_startup(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.eval_startup import run_eval_startup

    _print_cases(_call(run_eval_startup, args))


def _eval_startup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images",
        type=int,
        default=500,
        help="images of the end-to-end cases, 200 detections each (default 500)",
    )
    p.add_argument(
        "--repeats", type=int, default=7, help="timed runs of each side, interleaved (default 7)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated case (default 0)")
    add_result_out(p, "eval-startup_cpu.json")


def cmd_train_step(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.train_step import run_train_step

    _print_cases(_call(run_train_step, args))


def _train_step_options(p: argparse.ArgumentParser) -> None:
    from scratchdet.benchmark.arguments import MODEL_HELP

    p.add_argument(
        "--models", nargs="+", default=["dsod300_smallest", "scratchdet300"], help=MODEL_HELP
    )
    p.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per repeat (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, interleaved (default 5)")
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed steps of each first; the compiled step compiles in the first",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also the compiled step (train.compile: CUDA graphs on CUDA); off by "
        "default: inductor compiles the step for many minutes on a small CPU",
    )
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA too")
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="default: channels_last on CUDA",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch (default 0)")
    add_result_out(p, "train-step_<device>.json")


def cmd_table(args: argparse.Namespace) -> None:
    from scratchdet.benchmark.table import render, write_into

    if args.write:
        write_into(args.write, args.results)
        print(f"{args.write}: tables updated from {args.results}")
    else:
        print(render(args.results), end="")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``benchmark`` and its subcommands (their options come without importing torch)."""
    from scratchdet.benchmark import arguments

    bench = subparsers.add_parser(
        "benchmark",
        help=f"measure training, inference and evaluation speed; write JSON under {RESULTS_DIR}",
    )
    sub = bench.add_subparsers(dest="benchmark_command", required=True)
    for name, helptext, add, func in (
        (
            "train",
            "training images/s: synthetic vs real pipelines vs torchvision's SSD",
            arguments.train,
            cmd_train,
        ),
        (
            "infer",
            "batch-1/batch-32 latency and FPS per model, NMS included",
            arguments.infer,
            cmd_infer,
        ),
        ("eval", "VOC mAP speed vs the naive reference; COCO backends", arguments.eval, cmd_eval),
    ):
        p = sub.add_parser(name, help=helptext)
        add(p)
        add_result_out(p, "eval_cpu.json" if name == "eval" else f"{name}_<device>.json")
        p.set_defaults(func=func)
    p = sub.add_parser(
        "pipeline",
        help="per-image cost of the device and cpu input pipelines "
        "vs torchvision's SSD augmentation, on the CPU",
    )
    _pipeline_options(p)
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser(
        "matching", help="batched prior matching vs torchvision SSD's per-image matcher"
    )
    _component(p, "matching")
    p.add_argument(
        "--boxes",
        nargs="+",
        type=int,
        default=[3, 20, 50],
        help="ground-truth boxes per image, each a case (default 3 20 50)",
    )
    p.set_defaults(func=cmd_matching)
    p = sub.add_parser(
        "postprocess", help="detection output vs torchvision SSD's postprocess_detections"
    )
    _component(p, "postprocess")
    p.add_argument(
        "--scores",
        nargs="+",
        choices=("untrained", "peaked"),
        default=["untrained", "peaked"],
        help="kinds of head outputs (default both)",
    )
    p.set_defaults(func=cmd_postprocess)
    p = sub.add_parser(
        "eval-startup",
        help="scratchdet eval in a fresh interpreter (start-up, "
        "end to end, torch imported?) vs pycocotools/plain",
    )
    _eval_startup_options(p)
    p.set_defaults(func=cmd_eval_startup)
    p = sub.add_parser(
        "train-step",
        help="the whole training step, eager and compiled, vs "
        "torchvision's SSD on the same backbone and batch",
    )
    _train_step_options(p)
    p.set_defaults(func=cmd_train_step)
    p = sub.add_parser("table", help="Markdown tables of the result files")
    p.add_argument("--results", default=str(RESULTS_DIR), help="folder of result JSONs")
    p.add_argument("--write", help="README whose results block to replace (else print)")
    p.set_defaults(func=cmd_table)
