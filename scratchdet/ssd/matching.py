"""Prior <-> ground-truth matching for a whole padded batch at once (SSD's "bipartite + per-prior").

Rules (ssd.pytorch ``match`` / Caffe ``MatchBBox`` with ``match_type=PER_PREDICTION``):

1. every prior takes the ground truth (GT) it overlaps most (IoU with the unclipped prior);
2. it is positive if that IoU >= ``iou_threshold`` (0.5), background otherwise;
3. every valid GT additionally claims its best prior, whatever the IoU (so tiny or odd-shaped
   objects get at least one positive). This overrides rule 1/2 for that prior.

When two GTs of one image share the same best prior, the GT with the **higher index** (later in the
annotation order) wins: ssd.pytorch writes ``best_truth_idx[best_prior_idx[j]] = j`` in a loop over
``j``, so the last write stays. Here that is a ``scatter_reduce(amax)`` over GT indices, which gives
the same result without a loop and deterministically on GPU. Ties in an argmax go to the lowest
index (first prior / first GT), as ``torch.max`` does.

Images are padded to a common number of GT slots ``G``; a mask says which slots are real. Padded
slots never match anything, and an image with no valid GT is all background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from scratchdet.ssd.box_coder import encode

__all__ = ["match", "match_indices", "pad_targets"]


def pad_targets(
    boxes: Sequence[Tensor], labels: Sequence[Tensor], max_boxes: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image targets into ``boxes [B,G,4]``, ``labels [B,G]`` (long), ``mask [B,G]``.

    ``G`` is the largest count in the batch (at least 1, so tensors are never empty), or
    ``max_boxes`` when given: a fixed ``G`` keeps shapes static for ``torch.compile``.
    """
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} box tensors but {len(labels)} label tensors")
    if len(boxes) == 0:
        raise ValueError("pad_targets needs at least one image")
    counts = [int(b.shape[0]) for b in boxes]
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        if b.ndim != 2 or b.shape[-1] != 4:
            raise ValueError(f"image {i}: boxes must be [N, 4], got {tuple(b.shape)}")
        if lab.shape != (b.shape[0],):
            raise ValueError(
                f"image {i}: {b.shape[0]} boxes but labels of shape {tuple(lab.shape)}"
            )
    g = max(1, max(counts))
    if max_boxes is not None:
        if max(counts) > max_boxes:
            raise ValueError(f"an image has {max(counts)} boxes, more than max_boxes={max_boxes}")
        g = max(1, max_boxes)
    device = boxes[0].device
    dtype = boxes[0].dtype if boxes[0].is_floating_point() else torch.float32
    out_boxes = torch.zeros(len(boxes), g, 4, dtype=dtype, device=device)
    out_labels = torch.zeros(len(boxes), g, dtype=torch.long, device=device)
    mask = torch.zeros(len(boxes), g, dtype=torch.bool, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        n = counts[i]
        out_boxes[i, :n] = b.to(device=device, dtype=dtype)
        out_labels[i, :n] = lab.to(device=device, dtype=torch.long)
        mask[i, :n] = True
    return out_boxes, out_labels, mask


def match_indices(gt_boxes: Tensor, gt_mask: Tensor, priors: Tensor) -> tuple[Tensor, Tensor]:
    """For each prior, the GT slot it is matched to and the IoU that decides positive/negative.

    Returns ``(gt_idx [B,P] long, overlap [B,P] float)``; ``overlap`` is 2 for forced best-prior
    matches (above any threshold) and -1 when the image has no valid GT.
    """
    b, g, _ = gt_boxes.shape
    p = priors.shape[0]
    priors_xyxy = box_convert(priors.float(), "cxcywh", "xyxy")
    iou = box_iou(gt_boxes.float().reshape(b * g, 4), priors_xyxy).reshape(b, g, p)
    iou = iou.masked_fill(~gt_mask.unsqueeze(-1), -1.0)  # padded slots never win

    overlap, gt_idx = iou.max(dim=1)  # [B,P]: best GT per prior
    best_prior = iou.argmax(dim=2)  # [B,G]: best prior per GT

    # Forced matches: the highest valid GT index pointing at a prior wins (ssd.pytorch's loop).
    slot = torch.arange(g, device=gt_boxes.device).expand(b, g)
    slot = torch.where(gt_mask, slot, torch.full_like(slot, -1))
    forced = torch.full((b, p), -1, dtype=torch.long, device=gt_boxes.device)
    forced = forced.scatter_reduce(1, best_prior, slot, reduce="amax", include_self=True)
    is_forced = forced >= 0
    gt_idx = torch.where(is_forced, forced, gt_idx)
    overlap = torch.where(is_forced, torch.full_like(overlap, 2.0), overlap)
    return gt_idx, overlap


def match(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_mask: Tensor,
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
    with torch.no_grad():
        gt_idx, overlap = match_indices(gt_boxes, gt_mask.bool(), priors)
        positive = overlap >= iou_threshold
        labels = torch.gather(gt_labels.long(), 1, gt_idx)
        labels = torch.where(positive, labels, torch.zeros_like(labels))
        matched = torch.gather(gt_boxes.float(), 1, gt_idx.unsqueeze(-1).expand(b, p, 4))
        loc_t = encode(matched, priors.float(), variances)
        loc_t = torch.where(positive.unsqueeze(-1), loc_t, torch.zeros_like(loc_t))
    return loc_t, labels
