"""From raw head outputs to detections: decode, per-class top-k, per-class NMS, keep top-k overall.

Follows Caffe's ``DetectionOutputLayer`` (which produced the papers' numbers):

1. softmax over classes; decode every prior's box (no clipping unless asked);
2. per foreground class: keep scores ``> conf_threshold`` (strict, as Caffe's ``GetMaxScoreIndex``
   and ssd.pytorch's ``gt``), and at most the ``top_k`` best **before** NMS;
3. greedy NMS per class (a box is suppressed when IoU ``> nms_threshold``);
4. keep the ``keep_top_k`` highest-scoring detections over all classes.

The whole batch at once: one confidence filter over ``[B, P, C]`` (before any top-k, so a
trained head's few candidates are all that is ranked), then one ``scratchdet::topk_nms`` call. On
the CPU it takes each (image, class) group's top-k and runs torchvision ``nms`` on that group
alone, or on a whole image when it has few candidates (torchvision's ``batched_nms`` scans every
candidate once per group above 4,000 boxes); elsewhere it ranks all groups' candidates with one
sort and runs one offset ``nms`` (``nms_by_group``). Everything whose size depends on the data is
inside that one operator, so ``batch_detections`` compiles as one graph
(``torch.compile(fullgraph=True)``). Results leave the device in one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from scratchdet.ssd.box_coder import decode

__all__ = [
    "DETECTION_DEFAULTS",
    "DetectionDefaults",
    "Detections",
    "batch_detections",
    "nms_by_group",
    "topk_nms",
    "topk_nms_vectorised",
]

MAX_ONE_CALL_BOXES = 100_000
"""Above this many candidates the one-call NMS would need a > 1.2 GB suppression mask
(N^2 / 8 bytes); torchvision's per-group loop takes over."""
_ONE_CALL_CPU = 1000
"""Most candidates of one image that the CPU path suppresses in one offset NMS call (its cost
grows with candidates x kept, across classes)."""


class DetectionDefaults(NamedTuple):
    """The released SSD/DSOD test nets' ``DetectionOutputLayer`` settings (ScratchDet's
    ``caffe/ssd_pascal.py`` lines 341-355, ``det_out_param``: confidence 0.01, NMS 0.45, top 400
    per class, 200 per image). Owned here; ``scratchdet.config.DetectConfig`` states the same
    defaults (a test holds them equal) because the run config stays importable without torch."""

    conf_threshold: float = 0.01
    nms_threshold: float = 0.45
    top_k: int = 400
    keep_top_k: int = 200


DETECTION_DEFAULTS = DetectionDefaults()


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


def topk_nms_vectorised(
    boxes: Tensor, scores: Tensor, above: Tensor, *, top_k: int, iou_threshold: float
) -> Tensor:
    """``topk_nms`` without a loop over images and classes (its path off the CPU; public for the
    test that compares the two): the candidates from one ``nonzero``, their rank in their
    (image, class) group from one sort, then one offset NMS over the survivors."""
    b, p, c = scores.shape
    flat = above.transpose(1, 2).flatten().nonzero().squeeze(1)  # (image, class, prior) order
    if flat.shape[0] == 0:
        return flat
    groups, prior = flat // p, flat % p
    image, label = groups // c, groups % c
    cand = scores[image, prior, label]
    # One key: the group (ascending), then the score (descending); both exact in float64.
    order = (groups.double() * 2.0 + (1.0 - cand.double())).argsort()
    starts = torch.searchsorted(groups, torch.arange(b * c, device=groups.device))
    rank = torch.arange(flat.shape[0], device=groups.device) - starts[groups[order]]
    order = order[rank < top_k]
    image, prior, label = image[order], prior[order], label[order]
    cand_boxes = boxes[image, prior]
    cand_boxes = cand_boxes - cand_boxes.min().clamp(max=0)  # non-negative: offsets separate
    kept = nms_by_group(cand_boxes, cand[order], groups[order], iou_threshold)
    return (image[kept] * p + prior[kept]) * c + label[kept]


@torch.library.custom_op("scratchdet::topk_nms", mutates_args=())
def topk_nms(
    boxes: Tensor, scores: Tensor, above: Tensor, top_k: int, iou_threshold: float
) -> Tensor:
    """Per image and class: the candidates (``above``: the score passed the confidence
    threshold), their ``top_k`` best, then greedy NMS (torchvision ``nms``).

    ``boxes [B, P, 4]``, ``scores`` and ``above [B, P, C]`` (foreground classes). Returns the
    kept candidates as flat indices into ``scores`` ((image * P + prior) * C + class), image by
    image (in no set order within an image). On the CPU an image whose classes need no top-k and
    that has at most ``_ONE_CALL_CPU`` candidates takes one NMS with the classes offset apart (as
    torchvision's ``batched_nms`` does at that size); otherwise each class is handled on its own
    (the top-k of its full column when more than ``top_k`` pass), so nothing scans other
    groups' candidates. Off the CPU, ``topk_nms_vectorised``. One operator, so that
    ``torch.compile`` sees one node of data-dependent size.
    """
    if scores.device.type != "cpu":
        return topk_nms_vectorised(boxes, scores, above, top_k=top_k, iou_threshold=iou_threshold)
    _, p, c = scores.shape
    counts = torch.count_nonzero(above, dim=1)  # [B, C]
    out = []
    for image, (most, total) in enumerate(zip(counts.amax(1).tolist(), counts.sum(1).tolist())):
        if total == 0:
            continue
        base = image * p * c
        if most <= top_k and total <= _ONE_CALL_CPU:  # no top-k to take: one NMS per image
            flat = above[image].flatten().nonzero().squeeze(1)  # prior * C + class
            cand = boxes[image][flat // c]
            cand = cand - cand.min().clamp(max=0)  # non-negative: the offsets separate classes
            cand = cand + (flat % c).to(cand.dtype)[:, None] * (cand.max() + 1.0)
            kept = nms(cand, scores[image].flatten()[flat], iou_threshold)
            out.append(flat[kept] + base)
            continue
        for label, count in enumerate(counts[image].tolist()):  # a class at a time
            if count == 0:
                continue
            column = scores[image, :, label]
            if count > top_k:  # the column's top_k are all above the threshold
                seg, order = column.topk(top_k)
            else:
                order = above[image, :, label].nonzero().squeeze(1)
                seg = column[order]
            kept = nms(boxes[image, order], seg, iou_threshold)
            out.append(order[kept] * c + (base + label))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@topk_nms.register_fake
def _topk_nms_fake(boxes, scores, above, top_k, iou_threshold):
    n = torch.library.get_ctx().new_dynamic_size()
    return scores.new_empty(n, dtype=torch.long)


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
    *,
    priors: Tensor,
    variances: Sequence[float] | Tensor,
    conf_threshold: float = DETECTION_DEFAULTS.conf_threshold,
    nms_threshold: float = DETECTION_DEFAULTS.nms_threshold,
    top_k: int = DETECTION_DEFAULTS.top_k,
    clip: bool = False,
) -> Detections:
    """Steps 1-3 for a whole batch: the confidence filter, then one ``topk_nms`` over the
    (image, class) groups.

    ``keep_top_k`` (step 4) is left to the caller as ``rank < keep_top_k``, so that the result can
    go to the host in one copy before anything is filtered. One op depends on the data,
    ``topk_nms`` (one host sync per batch, not per image).
    """
    _check(loc, conf, priors, top_k, 1)
    _, p, _ = loc.shape
    boxes = decode(loc.float(), priors.float(), variances)
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    scores = conf.float().softmax(dim=-1)[..., 1:]  # [B, P, C] view, no copy
    c = scores.shape[-1]
    above = scores > conf_threshold  # before any top-k: a trained head has few candidates
    kept = topk_nms(boxes, scores, above, top_k, float(nms_threshold))
    image, prior, label = kept // (p * c), (kept // c) % p, kept % c
    cand_scores = scores[image, prior, label]
    # By image, then by decreasing score: one exact key (image ascending, 1 - score ascending).
    order = (image.double() * 2.0 + (1.0 - cand_scores.double())).argsort()
    image, prior, label, cand_scores = image[order], prior[order], label[order], cand_scores[order]
    rank = torch.arange(image.shape[0], device=loc.device) - torch.searchsorted(image, image)
    return Detections(image, boxes[image, prior], cand_scores, label + 1, rank)
