"""SSD box encoding: offsets of a box relative to a prior, scaled by the "variances".

The variances are not statistics; they are fixed scale factors (0.1 for centres, 0.2 for sizes)
that bring the regression targets to roughly unit scale. ``encode`` and ``decode`` are exact
inverses (up to the size clamp in ``decode``) and broadcast over any leading dimensions, so the
same code serves one image, a padded batch, or a batch of matched targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["decode", "encode", "encode_parts", "variance_tensor"]

# Largest log-size offset decode will exponentiate (as torchvision's detection box coder): keeps
# wild predictions finite so NMS never sees inf/NaN. exp(4.135) = 62.5 prior widths, far beyond
# any box the image can hold, so no reasonable prediction is affected.
_MAX_LOG_SCALE = math.log(1000.0 / 16)
# Smallest size encode takes the log of: a degenerate ground-truth box gives a large finite target
# instead of -inf (which would turn the whole loss into NaN).
_MIN_SIZE = 1e-6


def variance_tensor(variances: Sequence[float] | Tensor, like: Tensor) -> Tensor:
    """Variances as a ``[4]`` tensor on ``like``'s device/dtype; accepts 2 (ssd.pytorch) or 4."""
    v = torch.as_tensor(variances, dtype=like.dtype, device=like.device).flatten()
    if v.numel() == 2:
        v = v.repeat_interleave(2)
    if v.numel() != 4:
        raise ValueError(f"variances must have 2 or 4 entries, got {v.numel()}")
    return v


def encode(gt_xyxy: Tensor, priors_cxcywh: Tensor, variances: Sequence[float] | Tensor) -> Tensor:
    """Regression targets ``[..., 4]`` of ``gt_xyxy`` boxes w.r.t. broadcastable priors."""
    v = variance_tensor(variances, gt_xyxy)
    p_ctr, p_wh = priors_cxcywh[..., :2], priors_cxcywh[..., 2:]
    g_ctr = (gt_xyxy[..., :2] + gt_xyxy[..., 2:]) / 2
    g_wh = (gt_xyxy[..., 2:] - gt_xyxy[..., :2]).clamp_min(_MIN_SIZE)
    d_ctr = (g_ctr - p_ctr) / (p_wh * v[:2])
    d_wh = torch.log(g_wh / p_wh) / v[2:]
    return torch.cat([d_ctr, d_wh], dim=-1)


def encode_parts(
    gt_xyxy: Tensor, priors_cxcywh: Tensor, variances: Sequence[float] | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``encode`` split into what depends on the box and what on the prior:
    ``encode(gt, priors) == (gt_part - prior_offset) / prior_scale`` up to rounding (the size
    offset as ``log(g) - log(p)`` instead of ``log(g / p)``). Matching gathers ``gt_part`` (one
    row per ground truth) for every prior, so that encoding a batch takes three passes."""
    v = variance_tensor(variances, priors_cxcywh)
    p_ctr, p_wh = priors_cxcywh[..., :2], priors_cxcywh[..., 2:]
    g_ctr = (gt_xyxy[..., :2] + gt_xyxy[..., 2:]) / 2
    g_wh = (gt_xyxy[..., 2:] - gt_xyxy[..., :2]).clamp_min(_MIN_SIZE)
    gt_part = torch.cat([g_ctr, g_wh.log()], dim=-1)
    prior_offset = torch.cat([p_ctr, p_wh.log()], dim=-1)
    prior_scale = torch.cat([p_wh * v[:2], v[2:].expand_as(p_wh)], dim=-1)
    return gt_part, prior_offset, prior_scale


def decode(loc: Tensor, priors_cxcywh: Tensor, variances: Sequence[float] | Tensor) -> Tensor:
    """Boxes ``[..., 4]`` xyxy from predicted offsets ``loc`` and broadcastable priors."""
    v = variance_tensor(variances, loc)
    p_ctr, p_wh = priors_cxcywh[..., :2], priors_cxcywh[..., 2:]
    ctr = p_ctr + loc[..., :2] * v[:2] * p_wh
    wh = p_wh * torch.exp((loc[..., 2:] * v[2:]).clamp(max=_MAX_LOG_SCALE))
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=-1)
