"""From raw head outputs to detections: decode, per-class top-k, per-class NMS, keep top-k overall.

Follows Caffe's ``DetectionOutputLayer`` (which produced the papers' numbers):

1. softmax over classes; decode every prior's box (no clipping unless asked);
2. per foreground class: keep scores ``> conf_threshold`` (strict, as Caffe's ``GetMaxScoreIndex``
   and ssd.pytorch's ``gt``), and at most the ``top_k`` best **before** NMS;
3. greedy NMS per class (a box is suppressed when IoU ``> nms_threshold``);
4. keep the ``keep_top_k`` highest-scoring detections over all classes.

Classes are vectorised (one ``topk`` over ``[C, P]`` and one ``batched_nms`` call per image); the
loop over images only slices results.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from scratchdet.ssd.box_coder import decode

__all__ = ["postprocess"]


def _detect_one(
    boxes: Tensor,
    scores: Tensor,
    conf_threshold: float,
    nms_threshold: float,
    top_k: int,
    keep_top_k: int,
) -> dict[str, Tensor]:
    """One image: ``boxes [P,4]`` xyxy, ``scores [P,C]`` foreground probabilities."""
    k = min(top_k, scores.shape[0])
    cand_scores, cand_idx = scores.t().topk(k, dim=1)  # [C, k], sorted per class
    cls = (
        torch.arange(1, scores.shape[1] + 1, device=scores.device).unsqueeze(1).expand_as(cand_idx)
    )
    keep = cand_scores > conf_threshold
    cand_scores, cand_idx, cls = cand_scores[keep], cand_idx[keep], cls[keep]
    cand_boxes = boxes[cand_idx]
    if cand_boxes.numel() == 0:
        kept = cand_idx
    else:
        # batched_nms separates classes by offsetting boxes by class * (max coordinate + 1); that
        # only separates them if no coordinate is below -1. Unclipped decoded boxes can be, so
        # translate to non-negative coordinates first (IoU is translation-invariant).
        shifted = cand_boxes - cand_boxes.min().clamp(max=0)
        kept = batched_nms(shifted, cand_scores, cls, nms_threshold)[:keep_top_k]
    return {"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": cls[kept]}


@torch.no_grad()
def postprocess(
    loc: Tensor,
    conf: Tensor,
    priors: Tensor,
    variances: Sequence[float] | Tensor = (0.1, 0.1, 0.2, 0.2),
    conf_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    top_k: int = 400,
    keep_top_k: int = 200,
    clip: bool = False,
) -> list[dict[str, Tensor]]:
    """Detections per image: dicts of ``boxes [N,4]`` xyxy normalised, ``scores [N]``,
    ``labels [N]`` (contiguous 1..C), sorted by decreasing score.

    ``loc [B,P,4]`` and ``conf [B,P,C+1]`` are the raw model outputs, ``priors [P,4]`` cxcywh.
    ``clip`` clamps decoded boxes to [0, 1] before NMS (off in the released configs).
    """
    if loc.ndim != 3 or loc.shape[-1] != 4 or conf.shape[:2] != loc.shape[:2]:
        raise ValueError(f"loc {tuple(loc.shape)} and conf {tuple(conf.shape)} do not match")
    if priors.shape != (loc.shape[1], 4):
        raise ValueError(f"priors {tuple(priors.shape)} do not match loc {tuple(loc.shape)}")
    if top_k <= 0 or keep_top_k <= 0:
        raise ValueError(f"top_k ({top_k}) and keep_top_k ({keep_top_k}) must be positive")
    boxes = decode(loc.float(), priors.float(), variances)
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    scores = conf.float().softmax(dim=-1)[..., 1:]
    return [
        _detect_one(boxes[i], scores[i], conf_threshold, nms_threshold, top_k, keep_top_k)
        for i in range(loc.shape[0])
    ]
