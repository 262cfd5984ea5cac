"""`scratchdet eval` as a workflow job runs it: a fresh interpreter each time, start-up included.

Each timing is one ``subprocess.run`` of a new Python process, ours and the reference interleaved
(A, B, A, B, ...), on the same files (``benchmark.eval.make_case``, deterministic):

* start-up: one image, 15 detections, COCO metric: nearly all of the time is imports and
  start-up; the reference is a plain script around pycocotools (``COCO``, ``loadRes``,
  ``COCOeval``: what a user would otherwise run);
* end to end, COCO metric: ``--images`` images, 200 detections each, against the same script;
* end to end, VOC07 metric: against plain Python (``json.load`` of both files and the devkit's
  per-detection loop, ``evaluation/reference.py``).

Our side runs the CLI's ``main`` through a wrapper that then reports whether torch (or
torchvision) was imported: ``scratchdet eval`` must not import it (issue 21; it was 98% of the
start-up). The results of both sides must agree (COCO mAP to 1e-9, VOC07 mAP to 1e-9) or the
benchmark fails.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from scratchdet.benchmark.common import Record, check_positive, summary
from scratchdet.benchmark.eval import make_case
from scratchdet.benchmark.fps import RESULTS_DIR
from scratchdet.errors import ConfigError

__all__ = ["OURS", "PYCOCOTOOLS", "VOC_PLAIN", "component_case", "run_eval_startup"]

OURS = (
    "import json, sys\n"
    "from scratchdet.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print('MODULES ' + json.dumps({'rc': rc, 'torch': 'torch' in sys.modules,\n"
    "    'torchvision': 'torchvision' in sys.modules}))\n"
)
"""`scratchdet ARGS` in this interpreter, then whether torch / torchvision were imported."""

PYCOCOTOOLS = (
    "import contextlib, io, json, sys\n"
    "from pycocotools.coco import COCO\n"
    "from pycocotools.cocoeval import COCOeval\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    gt = COCO(sys.argv[1])\n"
    "    ev = COCOeval(gt, gt.loadRes(sys.argv[2]), 'bbox')\n"
    "    ev.evaluate(); ev.accumulate(); ev.summarize()\n"
    "s = float(ev.stats[0])\n"
    "json.dump({'map': None if s == -1 else s}, open(sys.argv[3], 'w'))\n"
)
"""The plain pycocotools evaluation; its AP (IoU 0.5:0.95) is `scratchdet eval --metric coco`'s
``map`` (-1, "no ground truth", is NaN there and None here)."""

VOC_PLAIN = (
    "import json, sys\n"
    "from scratchdet.evaluation.reference import reference_voc_ap\n"
    "gt, dets = (json.load(open(p)) for p in sys.argv[1:3])\n"
    "json.dump({'map': reference_voc_ap(gt, dets, 'voc07')['map']}, "
    "open(sys.argv[3], 'w'))\n"
)
"""Plain Python: json.load and the devkit's per-detection loop (imports only math)."""

TOLERANCE = 1e-9


def _run(code: str, args: list[str]) -> tuple[float, dict[str, Any] | None]:
    """Wall seconds of a fresh interpreter running ``code``; ours reports its modules."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark subprocess failed ({proc.returncode}): "
            f"{proc.stderr.strip().splitlines()[-1:]}"
        )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("MODULES ")]
    return seconds, json.loads(lines[0][len("MODULES ") :]) if lines else None


def _ms(values: list[float]) -> dict[str, Any]:
    s = summary([1000 * v for v in values], digits=3)
    return {"min_ms": s["min"], "median_ms": s["median"], "raw_ms": s["raw"]}


def component_case(
    case: str,
    *,
    ours_name: str,
    ours_s: list[float],
    ref_name: str,
    ref_s: list[float],
    **extra: Any,
) -> dict[str, Any]:
    """One case of a component benchmark file (the schema of benchmarks/README.md)."""
    ours, ref = _ms(ours_s), _ms(ref_s)
    return {
        "case": case,
        "ours": {"name": ours_name, **ours},
        "reference": {"name": ref_name, **ref},
        "ratio_min": round(ours["min_ms"] / ref["min_ms"], 4),
        "ratio_median": round(ours["median_ms"] / ref["median_ms"], 4),
        **extra,
    }


def _pair(
    label: str,
    ours_args: list[str],
    ours_out: Path,
    ref_code: str,
    ref_args: list[str],
    ref_out: Path,
    ref_name: str,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    ours_s, ref_s, torch_seen = [], [], set()
    for i in range(warmup + repeats):
        t_ours, modules = _run(OURS, ours_args)
        t_ref, _ = _run(ref_code, ref_args)
        torch_seen.add(bool(modules and (modules["torch"] or modules["torchvision"])))
        if i >= warmup:
            ours_s.append(t_ours)
            ref_s.append(t_ref)
    ours_map = json.loads(ours_out.read_text())["map"]
    ref_map = json.loads(ref_out.read_text())["map"]
    ours_map = None if ours_map is None or math.isnan(ours_map) else ours_map
    if (ours_map is None) != (ref_map is None) or (
        ours_map is not None and abs(ours_map - ref_map) > TOLERANCE
    ):
        raise RuntimeError(f"{label}: scratchdet eval says mAP {ours_map}, {ref_name} {ref_map}")
    return component_case(
        label,
        ours_name=f"scratchdet eval {' '.join(ours_args[5:7])}",
        ours_s=ours_s,
        ref_name=ref_name,
        ref_s=ref_s,
        torch_imported=any(torch_seen),
        map=ours_map,
    )


def run_eval_startup(
    *,
    images: int = 500,
    repeats: int = 7,
    warmup: int = 1,
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark eval-startup``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    check_positive("--repeats", args.repeats)
    check_positive("--warmup", args.warmup, 0)
    check_positive("--images", args.images)
    try:
        import pycocotools  # noqa: F401  (the reference)
    except ImportError:
        raise ConfigError(
            None, "eval-startup", "the reference needs pycocotools: pip install pycocotools"
        ) from None
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    record = Record(
        "eval-startup", torch.device("cpu"), config=config, argv=args.argv, seed=args.seed
    )
    cases = record.data["cases"] = []
    with tempfile.TemporaryDirectory(prefix="scratchdet-eval-startup-") as tmp:
        folder = Path(tmp)
        for label, n_images, dets_per_image, metric in (
            ("start-up: 1 image, 15 detections, COCO metric", 1, 15, "coco"),
            (
                f"end to end: {args.images} images, 200 detections each, COCO metric",
                args.images,
                200,
                "coco",
            ),
            (
                f"end to end: {args.images} images, 200 detections each, VOC07 metric",
                args.images,
                200,
                "voc07",
            ),
        ):
            gt, dets = make_case(
                folder / f"{n_images}_{dets_per_image}", n_images, args.seed, dets_per_image
            )
            ours_out, ref_out = folder / "ours.json", folder / "ref.json"
            ours_args = [
                "eval",
                "--gt",
                str(gt),
                "--dets",
                str(dets),
                "--metric",
                metric,
                "--out",
                str(ours_out),
            ]
            ref_code, ref_name = (
                (PYCOCOTOOLS, "pycocotools script (COCO, loadRes, COCOeval)")
                if metric == "coco"
                else (VOC_PLAIN, "plain Python: json.load + devkit loop")
            )
            cases.append(
                _pair(
                    label,
                    ours_args,
                    ours_out,
                    ref_code,
                    [str(gt), str(dets), str(ref_out)],
                    ref_out,
                    ref_name,
                    args.repeats,
                    args.warmup,
                )
            )
    return record.write(args.out or RESULTS_DIR / "eval-startup_cpu.json")
