"""Prior <-> ground-truth matching for a whole padded batch at once, as Caffe's ``MatchBBox``.

The released training nets (DSOD ``DSOD300_pascal.py``, ScratchDet ``caffe/ssd_pascal.py``) match
with ``match_type=PER_PREDICTION`` at ``overlap_threshold=0.5`` on the priors themselves; Caffe
(weiliu89/caffe, branch ssd, ``src/caffe/util/bbox_util.cpp`` ``MatchBBox``) then does:

1. only overlaps (IoU of a prior with a ground truth, GT) above 1e-6 count; a pair with less is
   never matched, not even by step 2;
2. **bipartite**: repeatedly take the globally largest overlap among unmatched priors and GTs not
   yet matched, match that pair and remove both, until every GT is matched or no pair is left.
   Ties go to the lower prior index, then to the lower GT index (Caffe scans priors, then GTs,
   in index order and replaces its best pair only on a strictly larger overlap). So every GT that
   overlaps some prior gets a prior of its own, even when another GT overlaps it more;
3. **per prediction**: every prior still unmatched takes the GT it overlaps most if that overlap
   is at least the threshold (ties: the lower GT index); the rest are background.

Batched without host syncs: a GT is matched in step 2 while at most ``G - 1`` priors are taken
(one per earlier step), so its prior is among its ``G`` best; one ``topk`` over ``[B, G, P]``
(keyed so that equal overlaps order by prior index, as Caffe's scan does) leaves a ``[B, G, G]``
candidate matrix, and ``G`` masked rounds of the greedy step run on it. IoU is computed from the
separate coordinates by broadcasting, without ``[..., P, 2]`` intermediates.
``tests/test_ssd_matching.py`` holds a per-image port of the released loop as the oracle.

Images are padded to a common number of GT slots ``G``; a mask says which slots are real. Padded
slots never match anything, and an image with no valid GT is all background. The training input
sizes ``G`` per batch with ``box_slots`` (a few static buckets), not to the dataset's most crowded
image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_convert

from scratchdet.ssd.box_coder import encode_parts

__all__ = ["MIN_OVERLAP", "MIN_SLOTS", "box_iou_batched", "box_slots", "match", "match_indices"]

MIN_OVERLAP = 1e-6
"""Overlaps at or below this are no overlap at all (Caffe ``bbox_util.cpp``, ``MatchBBox``)."""
MIN_SLOTS = 4
"""The smallest bucket of GT slots (``box_slots``)."""
_CPU_CHUNK_ELEMENTS = 1 << 18  # IoUs per chunk of the [B, G, P] stage on the CPU (_chunk)
_TIE_BITS = 46  # the prior index breaks IoU ties at 2**-46 relative (see _topk_key)


def box_slots(count: int, limit: int | None = None) -> int:
    """GT slots for a batch whose most crowded image has ``count`` boxes: the next bucket of
    4, 6, 8, 12, 16, 24, 32, 48, 64, ... (powers of two and 1.5 times them; at most a third
    wasted), at most ``limit`` (the layout's maximum) when given.

    Matching costs ``O(B * G * P)``: padding every batch to the dataset's most crowded image
    makes each pay the worst case; a few static buckets keep the shapes a small, fixed set.
    """
    slots = MIN_SLOTS
    while slots < count:  # 4, 6, 8, 12, 16, 24, 32, 48, ...
        slots = slots * 3 // 2 if slots & (slots - 1) == 0 else slots * 4 // 3
    return slots if limit is None else max(1, min(slots, limit))


def box_iou_batched(gt_boxes: Tensor, priors_xyxy: Tensor) -> Tensor:
    """IoU ``[B, G, P]`` of ``gt_boxes [B, G, 4]`` with ``priors_xyxy [P, 4]`` (both xyxy).

    The same arithmetic as ``torchvision.ops.box_iou`` (and Caffe's ``JaccardOverlap``:
    intersection over ``area + area - intersection``), bit for bit, but from the four
    coordinates broadcast separately: box_iou stacks ``[N, M, 2]`` corners, whose clamp/min/max
    made three quarters of the matching time.
    """
    gx1, gy1, gx2, gy2 = (c.unsqueeze(-1) for c in gt_boxes.unbind(-1))  # [B, G, 1]
    px1, py1, px2, py2 = priors_xyxy.t().contiguous()  # [P] each
    iw = torch.minimum(gx2, px2)
    iw.sub_(torch.maximum(gx1, px1)).clamp_(min=0)
    ih = torch.minimum(gy2, py2)
    ih.sub_(torch.maximum(gy1, py1)).clamp_(min=0)
    inter = iw.mul_(ih)
    union = ((gx2 - gx1) * (gy2 - gy1)) + ((px2 - px1) * (py2 - py1))  # [B, G, P]
    return inter.div_(union.sub_(inter))


def _tie_factor(p: int, device: torch.device) -> Tensor:
    """``[P]`` float64 ``1 - i * 2**-46``: multiplied into a float32 IoU, an order that keeps
    every strict IoU order (float32 values differ by at least 2**-24 relative, the factor by at
    most P * 2**-46) and puts equal IoUs in prior-index order (distinct in float64 by 2**-46
    relative, far above its 2**-53 rounding). Zero stays zero, but zero never matches."""
    if p >= 1 << 20:
        raise ValueError(f"{p} priors: the tie-breaking key supports fewer than 2**20")
    return 1.0 - torch.arange(p, dtype=torch.float64, device=device) * 2.0**-_TIE_BITS


def _chunk(b: int, g: int, p: int, device: torch.device) -> int:
    """Images per chunk of the ``[B, G, P]`` stage: the whole batch off the CPU (the caching
    allocator recycles memory); on the CPU about 256k IoUs (1 MB), so that the dozen passes over
    them stay in cache, and because a fresh tensor above glibc's mmap threshold page-faults on
    every call (a 36 MB one cost 75 ms on the 2-core benchmark machine, more than the
    arithmetic) while a small one is recycled. The loop's length depends on shapes only: no
    host sync."""
    if device.type != "cpu":
        return b
    return max(1, min(b, _CPU_CHUNK_ELEMENTS // max(1, g * p)))


def match_indices(gt_boxes: Tensor, gt_mask: Tensor, priors: Tensor) -> tuple[Tensor, Tensor]:
    """For each prior, the GT slot it is matched to and the overlap that decides positive.

    Returns ``(gt_idx [B,P] long, overlap [B,P] float)``: ``overlap`` is 2 for the bipartite
    matches (steps 1-2, above any threshold), else the prior's best IoU and ``gt_idx`` that GT
    (step 3: positive where ``overlap`` reaches the threshold); 0 when the image has no GT.
    """
    b, g, _ = gt_boxes.shape
    p = priors.shape[0]
    device = gt_boxes.device
    priors_xyxy = box_convert(priors.float(), "cxcywh", "xyxy")
    # A padded slot becomes the empty box at the origin: IoU 0 with every prior (so it never
    # matches, and its rows stay constant, the fast case of topk), at no [B, G, P] cost.
    boxes = torch.where(gt_mask.unsqueeze(-1), gt_boxes.float(), 0.0)
    tie = _tie_factor(p, device)
    k = min(g, p)
    key = torch.empty(b, g, k, dtype=torch.float64, device=device)
    cand = torch.empty(b, g, k, dtype=torch.long, device=device)
    usable = torch.empty(b, g, k, dtype=torch.bool, device=device)
    # One spare column: where the bipartite step writes a GT that found no prior (below).
    overlap = torch.empty(b, p + 1, dtype=torch.float32, device=device)
    gt_idx = torch.empty(b, p + 1, dtype=torch.long, device=device)
    if g > 0xFFFF:
        raise ValueError(f"{g} GT slots: at most {0xFFFF} supported")
    slot = (0xFFFF - torch.arange(g, device=device)).view(g, 1)  # [G, 1], reversed
    step = _chunk(b, g, p, device)
    for s in range(0, b, step):
        e = min(b, s + step)
        iou = box_iou_batched(boxes[s:e], priors_xyxy)
        # Step 2's candidates: each GT's k best priors, ordered as Caffe's scan meets them.
        torch.topk(iou.double().mul_(tie), k, dim=2, out=(key[s:e], cand[s:e]))
        torch.gt(iou.gather(2, cand[s:e]), MIN_OVERLAP, out=usable[s:e])  # step 1
        # Step 3's choice: the best GT of every prior, the first on ties. IoUs are >= 0, so
        # their float32 bits order as the values: one amax over (bits, reversed GT index)
        # packed into int64 (torch.max with indices over this dim is ten times slower).
        packed = iou.view(torch.int32).long().mul_(1 << 16).add_(slot)
        best = packed.amax(dim=1)
        torch.bitwise_and(best, 0xFFFF, out=gt_idx[s:e, :p]).neg_().add_(0xFFFF)
        overlap[s:e, :p].view(torch.int32).copy_(best.bitwise_right_shift_(16))

    # Step 2 (bipartite): g masked rounds of Caffe's greedy on the [B, G, k] candidates.
    # rank > 0 marks a candidate still available (prior free, GT in the pool, overlap > 1e-6);
    # larger for earlier candidates, so its argmax is each GT's best available prior.
    rank = torch.arange(k, 0, -1, dtype=torch.int16, device=device).expand(b, g, k)
    rank = rank.masked_fill(~(usable & gt_mask.unsqueeze(-1)), 0)
    winner = torch.full((b, g), p, dtype=torch.long, device=device)  # p: no prior
    batch = torch.arange(b, device=device)
    none = torch.full((b,), -1, dtype=torch.long, device=device)
    for _ in range(g):
        pos = rank.argmax(dim=2, keepdim=True)  # [B, G, 1]
        best = key.gather(2, pos).squeeze(2).masked_fill_(rank.gather(2, pos).squeeze(2) == 0, -1.0)
        best_key, j = best.max(dim=1)  # the global pair: largest IoU, lower prior, lower GT
        found = best_key > 0
        i = torch.where(found, cand[batch, j, pos[batch, j, 0]], none)  # [B]
        winner[batch, j] = torch.where(found, i, winner[batch, j])
        rank[batch, j] = torch.where(found[:, None], 0, rank[batch, j])  # GT leaves the pool
        rank = rank.masked_fill_(cand == i[:, None, None], 0)  # its prior is taken

    # The bipartite matches override step 3 (each prior at most once: distinct priors).
    gt_idx.scatter_(1, winner, torch.arange(g, device=device).expand(b, g))
    overlap.scatter_(1, winner, 2.0)
    return gt_idx[:, :p], overlap[:, :p]


def match(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_mask: Tensor,
    *,
    priors: Tensor,
    variances: Sequence[float] | Tensor,
    iou_threshold: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Training targets for a padded batch.

    Args: ``gt_boxes [B,G,4]`` xyxy normalised, ``gt_labels [B,G]`` contiguous 1..C, ``gt_mask
    [B,G]`` bool, ``priors [P,4]`` cxcywh. Returns ``(loc_t [B,P,4], labels [B,P])`` with label 0
    for background; ``loc_t`` is zero on background priors (finite, never read by the loss).
    """
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4:
        raise ValueError(f"gt_boxes must be [B, G, 4], got {tuple(gt_boxes.shape)}")
    if gt_labels.shape != gt_boxes.shape[:2] or gt_mask.shape != gt_boxes.shape[:2]:
        raise ValueError(
            f"gt_labels {tuple(gt_labels.shape)} and gt_mask {tuple(gt_mask.shape)} must be "
            f"{tuple(gt_boxes.shape[:2])}"
        )
    b, g, _ = gt_boxes.shape
    p = priors.shape[0]
    if g == 0:  # no slots at all: everything is background
        return (
            torch.zeros(b, p, 4, dtype=torch.float32, device=gt_boxes.device),
            torch.zeros(b, p, dtype=torch.long, device=gt_boxes.device),
        )
    device = gt_boxes.device
    with torch.no_grad():
        gt_idx, overlap = match_indices(gt_boxes, gt_mask.bool(), priors)
        gt_labels = gt_labels.long()
        gt_part, prior_offset, prior_scale = encode_parts(
            gt_boxes.float(), priors.float(), variances
        )
        background = ~((overlap >= iou_threshold) & (overlap > MIN_OVERLAP))
        loc_t = torch.empty(b, p, 4, dtype=torch.float32, device=device)
        labels = torch.empty(b, p, dtype=torch.long, device=device)
        step = _chunk(b, 4, p, device)
        for s in range(0, b, step):  # in chunks on the CPU, see _chunk
            e = min(b, s + step)
            idx, bg = gt_idx[s:e], background[s:e]
            torch.gather(gt_labels[s:e], 1, idx, out=labels[s:e]).masked_fill_(bg, 0)
            loc = torch.gather(
                gt_part[s:e], 1, idx.unsqueeze(-1).expand(e - s, p, 4), out=loc_t[s:e]
            )
            loc.sub_(prior_offset).div_(prior_scale).masked_fill_(bg.unsqueeze(-1), 0.0)
    return loc_t, labels
