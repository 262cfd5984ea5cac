"""``scratchdet benchmark postprocess``: detection output against torchvision SSD's.

Ours: what ``scratchdet detect`` runs after the forward pass (``detections``: one
``ssd.postprocess.batch_detections`` for the batch, i.e. softmax, decode, confidence threshold,
per-class top-k, per-class NMS, then the best ``keep_top_k`` per image) on one batch of raw head
outputs. Reference:
torchvision's own ``SSD.postprocess_detections`` (a loop over images and classes, then
``batched_nms`` per image), called with the same thresholds and limits (confidence 0.01, top 400
per class, NMS 0.45, 200 per image), its box coder with weights 10, 10, 5, 5 (the variances 0.1
and 0.2) and the SSD300 VOC priors as anchors, in pixels of a 300 x 300 input.

Two kinds of scores: ``untrained`` (near-uniform softmax, so every one of the 20 foreground
scores of every prior passes the 0.01 threshold: the worst case, as at the start of training)
and ``peaked`` (a trained-looking head: most priors confidently background, a few confidently
one class). Interleaved repetitions as in ``benchmark matching``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from scratchdet.benchmark.common import NUM_CLASSES, Record, check_positive, default_out
from scratchdet.benchmark.matching import VARIANCES, case_line, case_record, compare
from scratchdet.config import DetectConfig
from scratchdet.engine.detect import detection_rows
from scratchdet.engine.device import resolve_device
from scratchdet.ssd.priors import make_priors, ssd300_voc

__all__ = ["SCORES", "detections", "head_outputs", "run_postprocess", "torchvision_postprocess"]

SCORES = ("untrained", "peaked")
_SIZE = 300


def head_outputs(kind: str, batch: int, num_priors: int, seed: int) -> tuple[Tensor, Tensor]:
    """Raw ``loc [B,P,4]`` and ``conf [B,P,C+1]`` of the ``kind`` of head (``SCORES``)."""
    g = torch.Generator().manual_seed(seed)
    loc = 0.5 * torch.randn(batch, num_priors, 4, generator=g)
    conf = 0.1 * torch.randn(batch, num_priors, NUM_CLASSES + 1, generator=g)
    if kind == "peaked":
        # 3% of the priors are confidently one object class, the rest confidently background.
        obj = torch.rand(batch, num_priors, generator=g) < 0.03
        cls = torch.randint(1, NUM_CLASSES + 1, (batch, num_priors), generator=g)
        cls = torch.where(obj, cls, torch.zeros_like(cls))
        conf = conf + 8.0 * torch.nn.functional.one_hot(cls, NUM_CLASSES + 1)
    elif kind != "untrained":
        raise ValueError(f"scores {kind!r}: one of {SCORES}")
    return loc, conf


def torchvision_postprocess(
    loc: Tensor, conf: Tensor, anchors_px: Tensor, settings: DetectConfig
) -> list[dict[str, Tensor]]:
    """torchvision's ``SSD.postprocess_detections`` itself, on a stand-in for the model that
    holds only what the method reads."""
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.models.detection.ssd import SSD

    model = SimpleNamespace(
        box_coder=BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)),
        score_thresh=settings.conf_threshold,
        topk_candidates=settings.top_k,
        nms_thresh=settings.nms_threshold,
        detections_per_img=settings.keep_top_k,
    )
    head = {"bbox_regression": loc, "cls_logits": conf}
    return SSD.postprocess_detections(
        model, head, [anchors_px] * loc.shape[0], [(_SIZE, _SIZE)] * loc.shape[0]
    )


def detections(
    loc: Tensor, conf: Tensor, *, priors: Tensor, variances: Tensor, settings: DetectConfig
) -> Tensor:
    """A batch's detection rows as ``engine.detect`` computes them (``detection_rows``), then
    each image's ``keep_top_k`` best (``rank < keep_top_k``), here on the device."""
    rows = detection_rows(loc, conf, priors=priors, variances=variances, cfg=settings)
    return rows[rows[:, 7] < settings.keep_top_k]


def run_postprocess(
    *,
    batch_size: int = 32,
    scores: Sequence[str] = ("untrained", "peaked"),
    repeats: int = 15,
    warmup: int = 2,
    threads: int = 0,
    device: str = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark postprocess``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    check_positive("--repeats", args.repeats)
    check_positive("--warmup", args.warmup, 0)
    check_positive("--batch-size", args.batch_size)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "--device")
    from torchvision.ops import box_convert

    settings = DetectConfig()
    priors = make_priors(ssd300_voc()).to(device)
    anchors_px = box_convert(priors, "cxcywh", "xyxy") * _SIZE
    variances = torch.tensor(VARIANCES, device=device)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    config.update(
        threads=torch.get_num_threads(),
        priors=int(priors.shape[0]),
        num_classes=NUM_CLASSES,
        conf_threshold=settings.conf_threshold,
        nms_threshold=settings.nms_threshold,
        top_k=settings.top_k,
        keep_top_k=settings.keep_top_k,
    )
    record = Record("postprocess", device, config=config, argv=args.argv, seed=args.seed)
    cases = []
    for kind in args.scores:
        loc, conf = (
            t.to(device) for t in head_outputs(kind, args.batch_size, priors.shape[0], args.seed)
        )
        per_image = (
            len(detections(loc, conf, priors=priors, variances=variances, settings=settings))
            / loc.shape[0]
        )
        ours, ref = compare(
            lambda loc=loc, conf=conf: detections(
                loc, conf, priors=priors, variances=variances, settings=settings
            ),
            lambda loc=loc, conf=conf: torchvision_postprocess(loc, conf, anchors_px, settings),
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
        )
        entry, row = case_record(
            f"batch {args.batch_size}, {kind} scores",
            ours_name="scratchdet postprocess",
            ours=ours,
            ref_name="torchvision SSD.postprocess_detections",
            ref=ref,
            detections_per_image=round(per_image, 2),
        )
        cases.append(entry)
        record.add(row)
        print(case_line(entry))
    record.data["cases"] = cases
    return record.write(args.out or default_out("postprocess", device))
