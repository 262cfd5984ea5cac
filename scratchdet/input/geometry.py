"""The geometric part of the SSD augmentation, for one image or a batch: expand, sample a crop,
project the boxes onto it, mirror, and the resampling grid of the batched path.

Caffe's order (``AnnotatedDataLayer``): expand (``ExpansionParameter``: with p=0.5 paste the image
at a random integer offset into a canvas ``int(ratio * size)`` large, ratio ~ U(1, 4), filled with
the mean), then the batch samplers (``GenerateBatchSamples``: the whole image, and six samplers with
scale U(0.3, 1) and aspect ratio U(0.5, 2) clamped to [scale^2, 1/scale^2] (``SampleBBox``, which
keeps the crop inside the image) constrained by min IoU 0.1/0.3/0.5/0.7/0.9 or max IoU 1.0 (which
any crop meets as long as the image has an object) against any ground-truth box; each sampler
keeps its first satisfying crop within 50 trials; one kept crop is picked uniformly; with no boxes
only the whole image qualifies), then the crop (``CropImage``: truncated to integer pixels), keeping
the boxes whose centre lies inside it (``EmitConstraint.CENTER``), clipped to it, zero-area boxes
dropped, then mirror with p=0.5.

Boxes here are xyxy normalised to [0, 1]: to the image, to its expanded canvas or to the crop, as
each function says. Random numbers come from the generator passed in (``sampling.uniform``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scratchdet.input.augment import SSD_CROP_SAMPLERS, CropSampler
from scratchdet.input.sampling import uniform

__all__ = [
    "Expansion",
    "box_iou_batched",
    "boxes_to_canvas",
    "crop_boxes",
    "mirror_boxes",
    "sample_crops",
    "sample_expansion",
    "sampling_grid",
]


@dataclass
class Expansion:
    """Where each original image sits in its (mean-filled) canvas, in integer pixels ``[B]``."""

    height: Tensor
    width: Tensor
    top: Tensor
    left: Tensor

    def to(self, device: torch.device | str) -> Expansion:
        return Expansion(
            self.height.to(device), self.width.to(device), self.top.to(device), self.left.to(device)
        )


def sample_expansion(
    heights: Tensor, widths: Tensor, *, generator: torch.Generator, prob: float, max_ratio: float
) -> Expansion:
    """Caffe's ``ExpandImage`` for a batch: canvas ``int(ratio * size)`` with ratio ~ U(1, max),
    image at offset ``floor(U(0, canvas - size))``; no expansion with probability 1 - prob."""
    heights = heights.to("cpu", torch.int64)
    widths = widths.to("cpu", torch.int64)
    u = uniform((len(heights), 4), generator, torch.float64).cpu()
    # Caffe skips the expansion when max_expand_ratio is within 1e-2 of 1.
    fires = u[:, 0] < prob
    if abs(max_ratio - 1.0) < 1e-2:
        fires = torch.zeros_like(fires)
    ratio = torch.where(fires, 1.0 + u[:, 1] * (max_ratio - 1.0), 1.0)
    eh = torch.maximum(torch.floor(heights * ratio).long(), heights)
    ew = torch.maximum(torch.floor(widths * ratio).long(), widths)
    top = torch.minimum(torch.floor(u[:, 2] * (eh - heights)).long(), eh - heights)
    left = torch.minimum(torch.floor(u[:, 3] * (ew - widths)).long(), ew - widths)
    return Expansion(eh, ew, top, left)


def boxes_to_canvas(boxes: Tensor, heights: Tensor, widths: Tensor, exp: Expansion) -> Tensor:
    """Boxes ``[B, G, 4]`` normalised to the image -> normalised to the expanded canvas."""
    dev, dt = boxes.device, boxes.dtype

    def col(t: Tensor) -> Tensor:
        return t.to(dev, dt)[:, None]

    scale = torch.stack([col(widths) / col(exp.width), col(heights) / col(exp.height)] * 2, -1)
    shift = torch.stack([col(exp.left) / col(exp.width), col(exp.top) / col(exp.height)] * 2, -1)
    return boxes * scale + shift


def box_iou_batched(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``[..., N, 4]`` and ``[..., M, 4]`` xyxy boxes -> ``[..., N, M]`` (torchvision's
    ``box_iou`` has no batch dimension). Empty unions give 0, like Caffe's ``JaccardOverlap``."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, 1.0), 0.0)


def sample_crops(
    gt: Tensor,
    valid: Tensor,
    generator: torch.Generator,
    samplers: Sequence[CropSampler] = SSD_CROP_SAMPLERS,
) -> tuple[Tensor, Tensor]:
    """Caffe's ``GenerateBatchSamples`` + random pick, for a batch, all trials at once.

    ``gt`` ``[B, G, 4]`` is normalised to the canvas, ``valid`` ``[B, G]`` marks real boxes.
    Returns the crops ``[B, 4]`` (normalised to the canvas, inside [0, 1]) and the index of the
    sampler that produced each one (-1 when no sampler found a crop: the whole canvas, as Caffe).
    Each sampler keeps its first satisfying trial, which is what Caffe's loop with
    ``max_sample: 1`` returns; drawing all trials up front changes only how many numbers are drawn.
    """
    dev, dt = gt.device, gt.dtype
    n, n_samplers = gt.shape[0], len(samplers)
    trials = max(s.max_trials for s in samplers)
    u = uniform((n, n_samplers, trials, 4), generator).to(dev, dt)
    pick = uniform((n, n_samplers), generator).to(dev, dt)

    def per_sampler(values: list[float]) -> Tensor:
        return torch.tensor(values, device=dev, dtype=dt)[None, :, None]

    lo_s = per_sampler([s.min_scale for s in samplers])
    hi_s = per_sampler([s.max_scale for s in samplers])
    lo_a = per_sampler([s.min_aspect_ratio for s in samplers])
    hi_a = per_sampler([s.max_aspect_ratio for s in samplers])
    scale = lo_s + u[..., 0] * (hi_s - lo_s)
    # SampleBBox: ratio ~ U(min, max), then clamped to [scale^2, 1/scale^2] so the box fits in 1x1.
    ratio = lo_a + u[..., 1] * (hi_a - lo_a)
    ratio = torch.minimum(torch.maximum(ratio, scale**2), 1.0 / scale**2)
    w = (scale * ratio.sqrt()).clamp(max=1.0)
    h = (scale / ratio.sqrt()).clamp(max=1.0)
    x0 = u[..., 2] * (1.0 - w)
    y0 = u[..., 3] * (1.0 - h)
    crops = torch.stack((x0, y0, x0 + w, y0 + h), dim=-1)  # [B, S, T, 4]

    inf = float("inf")
    min_iou = per_sampler([-inf if s.min_iou is None else s.min_iou for s in samplers])
    max_iou = per_sampler([inf if s.max_iou is None else s.max_iou for s in samplers])
    flat = crops.reshape(n, n_samplers * trials, 4)
    iou = box_iou_batched(flat, gt).reshape(n, n_samplers, trials, gt.shape[1])
    meets = (iou >= min_iou[..., None]) & (iou <= max_iou[..., None]) & valid[:, None, None, :]
    constrained = torch.tensor([s.constrained for s in samplers], device=dev)[None, :, None]
    ok = torch.where(constrained, meets.any(-1), True)
    ok &= torch.tensor([[t < s.max_trials for t in range(trials)] for s in samplers], device=dev)[
        None
    ]
    first = ok.to(torch.uint8).argmax(-1)  # argmax returns the first of equal maxima
    found = ok.any(-1)  # [B, S]
    chosen_crops = crops.gather(2, first[:, :, None, None].expand(n, n_samplers, 1, 4))[:, :, 0]
    chosen = torch.where(found, pick, -1.0).argmax(-1)  # uniform among the samplers that found one
    any_found = found.any(-1)
    unit = torch.tensor([0.0, 0.0, 1.0, 1.0], device=dev, dtype=dt)
    out = torch.where(any_found[:, None], chosen_crops[torch.arange(n, device=dev), chosen], unit)
    return out, torch.where(any_found, chosen, -1)


def crop_boxes(boxes: Tensor, valid: Tensor, crop: Tensor) -> tuple[Tensor, Tensor]:
    """Keep boxes whose centre lies in the crop (inclusive, Caffe's CENTER emit constraint),
    express them in the crop's normalised frame, clip to [0, 1], drop zero-area ones.

    ``boxes`` ``[B, G, 4]``, ``valid`` ``[B, G]``, ``crop`` ``[B, 4]`` in the same frame.
    Dropped slots get zeros and ``valid`` False; kept slots stay where they were.
    """
    c = crop[:, None, :]
    cx = (boxes[..., 0] + boxes[..., 2]) / 2
    cy = (boxes[..., 1] + boxes[..., 3]) / 2
    inside = (cx >= c[..., 0]) & (cx <= c[..., 2]) & (cy >= c[..., 1]) & (cy <= c[..., 3])
    origin = c[..., :2].repeat(1, 1, 2)
    size = (c[..., 2:] - c[..., :2]).repeat(1, 1, 2)
    projected = ((boxes - origin) / size).clamp(0.0, 1.0)
    keep = (
        valid
        & inside
        & (projected[..., 2] > projected[..., 0])
        & (projected[..., 3] > projected[..., 1])
    )
    return torch.where(keep[..., None], projected, 0.0), keep


def mirror_boxes(boxes: Tensor, flip: Tensor, valid: Tensor | None = None) -> Tensor:
    """Flip normalised xyxy boxes ``[B, G, 4]`` left-right where ``flip`` ``[B]`` is True."""
    flipped = torch.stack((1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]), -1)
    out = torch.where(flip[:, None, None], flipped, boxes)
    return out if valid is None else torch.where(valid[..., None], out, 0.0)


def sampling_grid(
    crops: Tensor, *, mirror: Tensor, expansion: Expansion, padded_hw: tuple[int, int], size: int
) -> Tensor:
    """The ``grid_sample`` grid ``[B, size, size, 2]`` that cuts each crop (``[B, 4]`` xyxy
    normalised to its expanded canvas) out of the canvas, mirrors it where ``mirror`` ``[B]`` says
    and warps it to ``size`` x ``size``, in the coordinates of the padded batch the images sit in
    (top-left aligned; ``align_corners=False``: pixel k of an n-pixel axis spans [k, k+1], centre
    k + 0.5). Every tensor is on the same device; nothing is copied."""
    dev, dt = crops.device, torch.float32
    crops = crops.to(dt)
    t = (torch.arange(size, device=dev, dtype=dt) + 0.5) / size  # output pixel centres in [0, 1]
    tx = torch.where(mirror[:, None], 1.0 - t, t)  # [B, S]
    ty = t.expand(len(crops), size)

    def to_grid(frac: Tensor, lo: Tensor, hi: Tensor, canvas: Tensor, offset: Tensor, padded: int):
        canvas = canvas.to(dt)[:, None]
        pixel = (lo[:, None] + frac * (hi - lo)[:, None]) * canvas - offset.to(dt)[:, None]
        return 2.0 * pixel / padded - 1.0

    gx = to_grid(tx, crops[:, 0], crops[:, 2], expansion.width, expansion.left, padded_hw[1])
    gy = to_grid(ty, crops[:, 1], crops[:, 3], expansion.height, expansion.top, padded_hw[0])
    n = len(crops)
    return torch.stack(
        (gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)), dim=-1
    )
