"""From raw head outputs to detections: decode, per-class top-k, per-class NMS, keep top-k overall.

Follows Caffe's ``DetectionOutputLayer`` (which produced the papers' numbers):

1. softmax over classes; decode every prior's box (no clipping unless asked);
2. per foreground class: keep scores ``> conf_threshold`` (strict, as Caffe's ``GetMaxScoreIndex``
   and ssd.pytorch's ``gt``), and at most the ``top_k`` best **before** NMS;
3. greedy NMS per class (a box is suppressed when IoU ``> nms_threshold``);
4. keep the ``keep_top_k`` highest-scoring detections over all classes.

The whole batch is vectorised: one ``topk`` over ``[B, C, P]``, one confidence filter and one
``batched_nms`` call keyed by (image, class); results leave the device in one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from scratchdet.config import DetectConfig
from scratchdet.ssd.box_coder import decode

__all__ = ["Detections", "batch_detections", "nms_by_group", "postprocess"]

MAX_ONE_CALL_BOXES = 100_000
"""Above this many candidates the one-call NMS would need a > 1.2 GB suppression mask
(N^2 / 8 bytes); torchvision's per-group loop takes over."""
_DEFAULTS = DetectConfig()  # the released test-time settings: one home, the run config's defaults


def nms_by_group(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """``torchvision.ops.batched_nms`` in one ``nms`` call at any size on an accelerator.

    batched_nms offsets each group's boxes so that groups never overlap, then runs one NMS; but
    above 20,000 coordinates (5,000 boxes) off the CPU it switches to a loop over the groups, with
    a host sync per group: for a batch keyed by (image, class) that is hundreds of syncs. Here the
    offset stays up to ``MAX_ONE_CALL_BOXES``, so a detection batch costs one NMS call; on the CPU
    (where a sync costs nothing) and above that size batched_nms decides. The result is the
    same: ``tests/test_ssd_postprocess.py`` compares the two.
    """
    if boxes.device.type == "cpu" or len(boxes) > MAX_ONE_CALL_BOXES or len(boxes) == 0:
        return batched_nms(boxes, scores, groups, iou_threshold)
    offsets = groups.to(boxes.dtype) * (boxes.max() + 1.0)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


class Detections(NamedTuple):
    """The detections of a batch after NMS, sorted by image, then by decreasing score."""

    image: Tensor  # [N] long: index of the image in the batch
    boxes: Tensor  # [N, 4] xyxy normalised to the network input
    scores: Tensor  # [N]
    labels: Tensor  # [N] long, contiguous 1..C
    rank: Tensor  # [N] long: 0 for the best detection of its image, 1 for the next, ...


def _check(loc: Tensor, conf: Tensor, priors: Tensor, top_k: int, keep_top_k: int) -> None:
    if loc.ndim != 3 or loc.shape[-1] != 4 or conf.shape[:2] != loc.shape[:2]:
        raise ValueError(f"loc {tuple(loc.shape)} and conf {tuple(conf.shape)} do not match")
    if priors.shape != (loc.shape[1], 4):
        raise ValueError(f"priors {tuple(priors.shape)} do not match loc {tuple(loc.shape)}")
    if top_k <= 0 or keep_top_k <= 0:
        raise ValueError(f"top_k ({top_k}) and keep_top_k ({keep_top_k}) must be positive")


@torch.no_grad()
def batch_detections(
    loc: Tensor,
    conf: Tensor,
    priors: Tensor,
    variances: Sequence[float] | Tensor,
    conf_threshold: float = _DEFAULTS.conf_threshold,
    nms_threshold: float = _DEFAULTS.nms_threshold,
    top_k: int = _DEFAULTS.top_k,
    clip: bool = False,
) -> Detections:
    """Steps 1-3 for a whole batch with one NMS keyed by (image, class) (``nms_by_group``).

    ``keep_top_k`` (step 4) is left to the caller as ``rank < keep_top_k``, so that the result can
    go to the host in one copy before anything is filtered. Two ops depend on the data: the
    confidence threshold and the NMS itself (each one host sync per batch, not per image).
    """
    _check(loc, conf, priors, top_k, 1)
    b, p, _ = loc.shape
    boxes = decode(loc.float(), priors.float(), variances)
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    scores = conf.float().softmax(dim=-1)[..., 1:]  # [B, P, C]
    c = scores.shape[-1]
    k = min(top_k, p)
    cand_scores, cand_idx = scores.transpose(1, 2).topk(k, dim=2)  # [B, C, k], sorted per class
    image = torch.arange(b, device=loc.device)[:, None, None].expand(b, c, k)
    label = torch.arange(1, c + 1, device=loc.device)[None, :, None].expand(b, c, k)
    keep = (cand_scores > conf_threshold).flatten().nonzero().squeeze(1)
    image, label = image.flatten()[keep], label.flatten()[keep]
    cand_scores, cand_idx = cand_scores.flatten()[keep], cand_idx.flatten()[keep]
    cand_boxes = boxes[image, cand_idx]
    # batched_nms separates groups by offsetting boxes by group * (max coordinate + 1); that only
    # separates them if no coordinate is below -1. Unclipped decoded boxes can be, so translate to
    # non-negative coordinates first (IoU is translation-invariant).
    shifted = cand_boxes - cand_boxes.min().clamp(max=0) if len(keep) else cand_boxes
    kept = nms_by_group(shifted, cand_scores, image * c + label, nms_threshold)  # score order
    order = image[kept].sort(stable=True).indices  # by image; score order within each image
    kept = kept[order]
    image = image[kept]
    rank = torch.arange(len(kept), device=loc.device) - torch.searchsorted(image, image)
    return Detections(image, cand_boxes[kept], cand_scores[kept], label[kept], rank)


@torch.no_grad()
def postprocess(
    loc: Tensor,
    conf: Tensor,
    priors: Tensor,
    variances: Sequence[float] | Tensor,
    conf_threshold: float = _DEFAULTS.conf_threshold,
    nms_threshold: float = _DEFAULTS.nms_threshold,
    top_k: int = _DEFAULTS.top_k,
    keep_top_k: int = _DEFAULTS.keep_top_k,
    clip: bool = False,
) -> list[dict[str, Tensor]]:
    """Detections per image: dicts of ``boxes [N,4]`` xyxy normalised, ``scores [N]``,
    ``labels [N]`` (contiguous 1..C), sorted by decreasing score.

    ``loc [B,P,4]`` and ``conf [B,P,C+1]`` are the raw model outputs, ``priors [P,4]`` cxcywh.
    ``clip`` clamps decoded boxes to [0, 1] before NMS (off in the released configs). A
    convenience over ``batch_detections`` (which ``scratchdet detect`` uses directly).
    """
    _check(loc, conf, priors, top_k, keep_top_k)
    d = batch_detections(loc, conf, priors, variances, conf_threshold, nms_threshold, top_k,
                         clip)
    top = d.rank < keep_top_k
    counts = torch.bincount(d.image[top], minlength=loc.shape[0]).tolist()
    split = [t[top].split(counts) for t in (d.boxes, d.scores, d.labels)]
    return [{"boxes": bx, "scores": sc, "labels": lb} for bx, sc, lb in zip(*split)]
