"""``scratchdet benchmark matching``: the batched prior matcher against torchvision's SSD loop.

Ours: ``ssd.matching.match`` on one padded batch, its box slots sized as the training input sizes
them (``matching.box_slots``: a small static bucket above the batch's most crowded image).
Reference: what ``torchvision.models.detection.SSD`` does per image before its loss: ``box_iou``
of the image's boxes with the anchors, ``det_utils.SSDMatcher(0.5)``, then the class target of
every anchor and the encoded box of every foreground anchor (``BoxCoder`` with weights
10, 10, 5, 5, i.e. the variances 0.1 and 0.2). Both get the same boxes and the SSD300 VOC priors.

The two run interleaved (ours, reference, ours, ...) in one process, so that a shared machine's
load hits both alike: the ratios of the two are what the result file is for. Every case records
min and median over the repeats (``cases``, the schema of the component benchmarks), and the raw
values (``results``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from scratchdet.benchmark.common import (
    NUM_CLASSES,
    Record,
    check_positive,
    default_out,
    summary,
    sync,
)
from scratchdet.engine.device import resolve_device
from scratchdet.input.pipeline import HostLayout
from scratchdet.ssd.matching import box_slots, match
from scratchdet.ssd.priors import make_priors, ssd300_voc

__all__ = [
    "VARIANCES",
    "case_line",
    "case_record",
    "compare",
    "matching_case",
    "run_matching",
    "torchvision_matching",
]

VARIANCES = (0.1, 0.1, 0.2, 0.2)


def compare(
    ours: Callable[[], Any],
    reference: Callable[[], Any],
    *,
    repeats: int,
    warmup: int,
    device: torch.device,
) -> tuple[list[float], list[float]]:
    """Milliseconds of ``ours`` and ``reference``, run alternately ``repeats`` times each after
    ``warmup`` untimed rounds (the order flips every round, so neither always runs second)."""
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    fns = {"ours": ours, "reference": reference}
    for r in range(warmup + repeats):
        for name in ("ours", "reference") if r % 2 == 0 else ("reference", "ours"):
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            if r >= warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    return times["ours"], times["reference"]


def case_record(
    case: str,
    *,
    ours_name: str,
    ours: Sequence[float],
    ref_name: str,
    ref: Sequence[float],
    **extra: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ``cases`` entry, the ``results`` row with the raw values) of one case."""
    so, sr = summary(ours, 4), summary(ref, 4)
    entry = {
        "case": case,
        "ours": {"name": ours_name, "min_ms": so["min"], "median_ms": so["median"]},
        "reference": {"name": ref_name, "min_ms": sr["min"], "median_ms": sr["median"]},
        "ratio_min": round(so["min"] / sr["min"], 4),
        "ratio_median": round(so["median"] / sr["median"], 4),
        **extra,
    }
    return entry, {"case": case, "ours_ms": so, "reference_ms": sr, **extra}


def case_line(entry: dict[str, Any]) -> str:
    """One line of a ``cases`` entry, as the component benchmarks print them."""
    return (
        f"{entry['case']}: ours {entry['ours']['min_ms']:.1f}/"
        f"{entry['ours']['median_ms']:.1f} ms, torchvision "
        f"{entry['reference']['min_ms']:.1f}/{entry['reference']['median_ms']:.1f} ms "
        f"(min/median); ratio {entry['ratio_min']:.2f}/{entry['ratio_median']:.2f}"
    )


def matching_case(batch: int, boxes_per_image: int, seed: int) -> tuple[list[Tensor], list[Tensor]]:
    """Per-image normalised xyxy boxes (``boxes_per_image`` each, sizes as in VOC: 3% to 80%
    of the side) and labels 1..20."""
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for _ in range(batch):
        centre = torch.rand(boxes_per_image, 2, generator=g)
        half = 0.015 + 0.385 * torch.rand(boxes_per_image, 2, generator=g) ** 2
        boxes.append(torch.cat([centre - half, centre + half], 1).clamp(0, 1))
        labels.append(torch.randint(1, NUM_CLASSES + 1, (boxes_per_image,), generator=g))
    return boxes, labels


def torchvision_matching(
    boxes: Sequence[Tensor], labels: Sequence[Tensor], anchors_xyxy: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """torchvision SSD's per-image matching and targets (its ``forward`` + ``compute_loss``)."""
    from torchvision.models.detection._utils import BoxCoder, SSDMatcher
    from torchvision.ops import boxes as box_ops

    matcher = SSDMatcher(0.5)
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    out = []
    for b, lab in zip(boxes, labels):
        matched = matcher(box_ops.box_iou(b, anchors_xyxy))
        fg = torch.where(matched >= 0)[0]
        fg_matched = matched[fg]
        target = coder.encode_single(b[fg_matched], anchors_xyxy[fg])
        classes = torch.zeros(anchors_xyxy.shape[0], dtype=torch.int64)
        classes[fg] = lab[fg_matched]
        out.append((target, classes))
    return out


def run_matching(
    *,
    batch_size: int = 32,
    boxes: Sequence[int] = (3, 20, 50),
    repeats: int = 15,
    warmup: int = 2,
    threads: int = 0,
    device: str = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark matching``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    check_positive("--repeats", args.repeats)
    check_positive("--warmup", args.warmup, 0)
    check_positive("--batch-size", args.batch_size)
    for n in args.boxes:
        check_positive("--boxes", n)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "--device")
    from torchvision.ops import box_convert

    priors = make_priors(ssd300_voc()).to(device)
    anchors = box_convert(priors, "cxcywh", "xyxy")
    variances = torch.tensor(VARIANCES, device=device)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    config.update(threads=torch.get_num_threads(), priors=int(priors.shape[0]))
    record = Record("matching", device, config=config, argv=args.argv, seed=args.seed)
    cases = []
    for n in args.boxes:
        boxes, labels = matching_case(args.batch_size, n, args.seed)
        slots = box_slots(n)
        layout = HostLayout(batch=len(boxes), height=1, width=1, max_boxes=slots, decisions=False)
        table = torch.zeros(len(boxes), layout.columns)
        layout.fill_targets(table, boxes, labels)  # as the training input packs them
        gt = tuple(t.to(device) for t in layout.targets(table))
        boxes = [b.to(device) for b in boxes]
        labels = [lab.to(device) for lab in labels]
        ours, ref = compare(
            lambda gt=gt: match(*gt, priors=priors, variances=variances),
            lambda boxes=boxes, labels=labels: torchvision_matching(boxes, labels, anchors),
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
        )
        entry, row = case_record(
            f"batch {args.batch_size}, {n} boxes",
            ours_name="scratchdet match",
            ours=ours,
            ref_name="torchvision SSDMatcher + box_iou per image",
            ref=ref,
            box_slots=slots,
        )
        cases.append(entry)
        record.add(row)
        print(case_line(entry))
    record.data["cases"] = cases
    return record.write(args.out or default_out("matching", device))
