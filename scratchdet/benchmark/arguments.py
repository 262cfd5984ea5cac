"""Options of the benchmark commands; no torch import, so building the CLI parser stays instant.

``--out`` is added by the CLI (``scratchdet.cli.options.add_result_out``), as for every command.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["DEFAULT_WORKERS", "MODEL_HELP", "TRAIN_MODES", "eval", "infer", "train"]

TRAIN_MODES = ("synthetic", "device_augment", "cpu_augment", "torchvision")
# DataLoader workers of the training benchmark's real-data modes: the cores but one, at most 8.
DEFAULT_WORKERS = min(8, max(1, (os.cpu_count() or 2) - 1))
MODEL_HELP = (
    "canonical names or inline YAML mappings for build_model, e.g. "
    "'{family: dsod, stem_channels: 8, bottleneck: 8, growth: 4}' (tiny CI model)"
)


def _common(p: argparse.ArgumentParser, compile_help: str = "torch.compile the model"):
    p.add_argument("--compile", action="store_true", help=compile_help)
    p.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        help="fp32 on CUDA too (default: bf16 autocast on CUDA; CPU is always fp32)",
    )
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="default: channels_last on CUDA",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")


def train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", nargs="+", default=["scratchdet300", "dsod300", "ssd300_vgg16"], help=MODEL_HELP
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=[32, 128],
        help="images per step, each measured (default 32 128)",
    )
    p.add_argument(
        "--modes",
        nargs="+",
        choices=TRAIN_MODES,
        default=list(TRAIN_MODES),
        help="input pipelines to time (default all)",
    )
    p.add_argument(
        "--reference",
        choices=("backbone", "vgg16", "both"),
        default="both",
        help="torchvision reference: each model's backbone in torchvision's SSD, "
        "torchvision's own ssd300_vgg16 (once per batch size), or both",
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed steps first (cuDNN autotuning, compilation, worker start-up)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="DataLoader workers for the real-data modes",
    )
    p.add_argument(
        "--data",
        help="training split (internal annotation JSON); default: a fresh "
        "synthetic VOC split of --synth-images images",
    )
    p.add_argument(
        "--synth-images",
        type=int,
        default=256,
        help="images of the synthetic split made when --data is not given (default 256)",
    )
    _common(p)


def infer(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", nargs="+", default=None, help=MODEL_HELP + "; default: every canonical model"
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=[1, 32],
        help="images per forward pass, each measured (default 1 32)",
    )
    p.add_argument("--iters", type=int, default=20, help="timed iterations per batch size")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    _common(p)


def eval(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the 4,952 VOC07 test images (CI: 0.005)",
    )
    p.add_argument(
        "--metric",
        choices=("voc07", "voc12"),
        default="voc07",
        help="VOC metric to time (default voc07)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument(
        "--naive-repeats",
        type=int,
        default=1,
        help="repeats of the slow reference (several seconds each at full size)",
    )
    p.add_argument(
        "--coco-images",
        type=int,
        default=500,
        help="images in the COCO backend comparison (0 skips it)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated case (default 0)")
    p.add_argument("--workdir", help="keep the generated files here (default: a temp folder)")
