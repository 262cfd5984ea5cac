"""The SSD training augmentation (the recipe DSOD and ScratchDet inherit) and the test-time resize.

Interface (docs/ARCHITECTURE.md): an image ``uint8 [3, H, W]`` RGB, boxes ``float [N, 4]`` xyxy in
pixels and per-box labels ``[N, ...]`` go in; ``float32 [3, S, S]`` = resized image - mean
(RGB (123, 117, 104), no std), boxes xyxy normalised to [0, 1] and the labels of the kept boxes
come out. ``labels`` may be any tensor indexed by box along dim 0 (labels, difficult flags, ...).

The order and the numbers follow Caffe SSD's ``AnnotatedDataLayer`` with ``ssd_pascal.py``'s
``train_transform_param`` and ``batch_sampler`` (the "standard SSD" augmentation that
/work/shared/papers/SPECS.md records for DSOD's and ScratchDet's Caffe scripts):

1. photometric distortion (``DistortionParameter``): with p=0.5 the order is brightness, contrast,
   saturation, hue, else brightness, saturation, hue, contrast; each step fires with p=0.5.
   Brightness adds U(-32, 32), contrast multiplies by U(0.5, 1.5) (Caffe's ``convertTo(alpha, 0)``,
   a scale about 0, not torchvision's blend towards the mean grey), saturation multiplies HSV's S
   by U(0.5, 1.5) (Caffe; torchvision blends with greyscale instead), hue adds U(-18, 18) to HSV's
   H in OpenCV's 8-bit units (0..180, so +-36 degrees). The channel shuffle (``random_order_prob``)
   is 0 in ssd_pascal.py and in caffe.proto's default; it is implemented and off by default.
   Each step rounds and saturates to 0..255, as Caffe does on its uint8 ``cv::Mat``.
2. expand (``ExpansionParameter``): with p=0.5 paste the image at a random integer offset into a
   canvas ``int(ratio * size)`` large, ratio ~ U(1, 4), filled with the mean.
3. batch samplers (``GenerateBatchSamples``): the whole image, and six samplers with scale
   U(0.3, 1) and aspect ratio U(0.5, 2) clamped to [scale^2, 1/scale^2] (Caffe's ``SampleBBox``,
   which keeps the crop inside the image) constrained by min IoU 0.1/0.3/0.5/0.7/0.9 or max IoU 1.0
   (which any crop meets as long as the image has an object) against any ground-truth box. Each
   sampler keeps its first satisfying crop within 50 trials; one kept crop is picked uniformly.
   With no boxes only the whole image qualifies.
4. crop (``CropImage``: the crop is truncated to integer pixels) and keep the boxes whose centre
   lies inside the crop (``EmitConstraint.CENTER``), clipped to it; zero-area boxes are dropped.
5. resize (``ResizeParameter`` WARP, one of linear/area/nearest/cubic/lanczos4 at random),
   mirror with p=0.5, subtract the mean.

Deliberate differences from Caffe, all small:

* Hue wraps around in both directions; OpenCV saturates H below 0 to 0 (so negative shifts clamp
  reds) and only wraps above 180. The HSV arithmetic is in float (OpenCV quantises H to 180 steps
  and S to 256). v2's adjust_brightness/contrast/saturation define different operations (see each
  function), so those are written out; hue is written out too (v2's definition, but batched and
  faster).
* Boxes are projected onto the integer crop actually cut out, so they agree with the pixels exactly;
  Caffe projects them onto the un-truncated crop (an error below one source pixel).
* Interpolation: v2 works on uint8 tensors with bilinear, nearest, bicubic and (antialiased)
  lanczos. ``area`` (cv::INTER_AREA, a box filter) has no tensor kernel, so it is antialiased
  bilinear; ``lanczos4`` is v2's antialiased 3-lobe lanczos (OpenCV: 4 lobes, no antialiasing).
* The photometric steps run on the visible part of the image only (they act per pixel, so this is
  the same as Caffe's distort-then-expand-then-crop, with less work).

Speed: the geometry stays on uint8 (crop, paste, v2's uint8 resize kernels) and the image becomes
float once, at the end. The photometric steps go through float only when one of them fires.

The random parts are small batched functions (``sample_photometric``, ``sample_expansion``,
``sample_crops``, ``crop_boxes``, ``mirror_boxes``) shared with ``gpu_augment`` so both paths
draw from the same distributions, and so tests can check each one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import torch
from torch import Tensor
from torch.utils.data import get_worker_info
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from scratchdet.errors import ConfigError
from scratchdet.models.input import CAFFE_MEAN_RGB  # the network input's mean (one home)

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSampler:
    """One of Caffe's ``batch_sampler`` entries; the defaults give the whole image (unit box)."""

    min_scale: float = 1.0
    max_scale: float = 1.0
    min_aspect_ratio: float = 1.0
    max_aspect_ratio: float = 1.0
    min_iou: float | None = None
    max_iou: float | None = None
    max_trials: int = 1

    @property
    def constrained(self) -> bool:
        return self.min_iou is not None or self.max_iou is not None


def _ssd_sampler(**constraint: float) -> BatchSampler:
    return BatchSampler(0.3, 1.0, 0.5, 2.0, max_trials=50, **constraint)


SSD_BATCH_SAMPLERS: tuple[BatchSampler, ...] = (
    BatchSampler(),
    _ssd_sampler(min_iou=0.1),
    _ssd_sampler(min_iou=0.3),
    _ssd_sampler(min_iou=0.5),
    _ssd_sampler(min_iou=0.7),
    _ssd_sampler(min_iou=0.9),
    _ssd_sampler(max_iou=1.0),
)
"""ssd_pascal.py's seven samplers (max_sample 1 each)."""

# Caffe's interp_mode names -> (v2 mode, antialias). See the module docstring for the substitutes.
INTERPOLATIONS: dict[str, tuple[InterpolationMode, bool]] = {
    "linear": (InterpolationMode.BILINEAR, False),
    "area": (InterpolationMode.BILINEAR, True),
    "nearest": (InterpolationMode.NEAREST, False),
    "cubic": (InterpolationMode.BICUBIC, False),
    "lanczos4": (InterpolationMode.LANCZOS, True),
}
CAFFE_INTERPOLATIONS: tuple[str, ...] = ("linear", "area", "nearest", "cubic", "lanczos4")


@dataclass(frozen=True)
class PhotometricConfig:
    """Caffe's ``distort_param`` from ssd_pascal.py (``hue_delta`` in OpenCV units of 2 degrees)."""

    brightness_prob: float = 0.5
    brightness_delta: float = 32.0
    contrast_prob: float = 0.5
    contrast_lower: float = 0.5
    contrast_upper: float = 1.5
    saturation_prob: float = 0.5
    saturation_lower: float = 0.5
    saturation_upper: float = 1.5
    hue_prob: float = 0.5
    hue_delta: float = 18.0
    channel_swap_prob: float = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    """Every knob of the recipe; the defaults are Caffe SSD's."""

    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    expand_prob: float = 0.5
    max_expand_ratio: float = 4.0
    samplers: tuple[BatchSampler, ...] = SSD_BATCH_SAMPLERS
    mirror_prob: float = 0.5
    interpolations: tuple[str, ...] = CAFFE_INTERPOLATIONS

    def __post_init__(self) -> None:
        p = self.photometric
        for key, value in [
            ("photometric.brightness_prob", p.brightness_prob),
            ("photometric.contrast_prob", p.contrast_prob),
            ("photometric.saturation_prob", p.saturation_prob),
            ("photometric.hue_prob", p.hue_prob),
            ("photometric.channel_swap_prob", p.channel_swap_prob),
            ("expand_prob", self.expand_prob),
            ("mirror_prob", self.mirror_prob),
        ]:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(None, f"augment.{key}", f"must be in [0, 1], got {value}")
        if p.brightness_delta < 0:
            raise ConfigError(None, "augment.photometric.brightness_delta", "must be >= 0")
        if not 0.0 <= p.hue_delta <= 90.0:  # 90 OpenCV units = half the hue circle
            raise ConfigError(None, "augment.photometric.hue_delta", "must be in [0, 90]")
        for name, lo, hi in [
            ("contrast", p.contrast_lower, p.contrast_upper),
            ("saturation", p.saturation_lower, p.saturation_upper),
        ]:
            if not 0.0 <= lo <= hi:
                raise ConfigError(None, f"augment.photometric.{name}_lower",
                                  "need 0 <= lower <= upper")
        if self.max_expand_ratio < 1.0:
            raise ConfigError(None, "augment.max_expand_ratio", "must be >= 1")
        if not self.samplers:
            raise ConfigError(None, "augment.samplers", "need at least one sampler")
        for i, s in enumerate(self.samplers):
            if not (0.0 < s.min_scale <= s.max_scale <= 1.0):
                raise ConfigError(None, f"augment.samplers[{i}]",
                                  "need 0 < min_scale <= max_scale <= 1")
            if not (0.0 < s.min_aspect_ratio <= s.max_aspect_ratio):
                raise ConfigError(None, f"augment.samplers[{i}]",
                                  "need 0 < min_aspect_ratio <= max_aspect_ratio")
            if s.max_trials < 1:
                raise ConfigError(None, f"augment.samplers[{i}]", "max_trials must be >= 1")
        if not self.interpolations:
            raise ConfigError(None, "augment.interpolations", "need at least one")
        for name in self.interpolations:
            if name not in INTERPOLATIONS:
                raise ConfigError(None, "augment.interpolations", f"unknown {name!r}, "
                                  f"choose from {sorted(INTERPOLATIONS)}")


# --------------------------------------------------------------------------------------------
# Photometric distortion
# --------------------------------------------------------------------------------------------


@dataclass
class PhotometricParams:
    """Per-image distortion parameters ``[B]``; an identity value means the step did not fire."""

    brightness: Tensor  # additive delta, 0 = off
    contrast: Tensor  # factor, 1 = off
    saturation: Tensor  # factor, 1 = off
    hue: Tensor  # OpenCV hue units (2 degrees), 0 = off
    contrast_last: Tensor  # bool: order brightness, saturation, hue, contrast
    channel_order: Tensor  # [B, 3] long permutation, arange(3) = off

    def to(self, device: torch.device | str) -> PhotometricParams:
        return PhotometricParams(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def _rand(shape: Sequence[int], generator: torch.Generator,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform [0, 1) drawn on the generator's own device (so any generator works)."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device, dtype=dtype)


def sample_photometric(n: int, generator: torch.Generator,
                       cfg: PhotometricConfig) -> PhotometricParams:
    """Draw Caffe's ``ApplyDistort`` decisions for ``n`` images at once."""
    u = _rand((n, 10), generator).cpu()

    def maybe(fires: Tensor, value: Tensor, identity: float) -> Tensor:
        return torch.where(fires, value, torch.full_like(value, identity))

    p = cfg
    brightness = maybe(u[:, 1] < p.brightness_prob, (2 * u[:, 2] - 1) * p.brightness_delta, 0.0)
    contrast = maybe(u[:, 3] < p.contrast_prob,
                     p.contrast_lower + u[:, 4] * (p.contrast_upper - p.contrast_lower), 1.0)
    saturation = maybe(u[:, 5] < p.saturation_prob,
                       p.saturation_lower + u[:, 6] * (p.saturation_upper - p.saturation_lower),
                       1.0)
    hue = maybe(u[:, 7] < p.hue_prob, (2 * u[:, 8] - 1) * p.hue_delta, 0.0)
    shuffled = torch.argsort(_rand((n, 3), generator).cpu(), dim=1)
    order = torch.where((u[:, 9] < p.channel_swap_prob)[:, None], shuffled, torch.arange(3))
    # Caffe: `if (prob > 0.5)` brightness, contrast, saturation, hue; else contrast comes last.
    return PhotometricParams(brightness, contrast, saturation, hue, u[:, 0] <= 0.5, order)


def _per_image(value: Tensor | float, x: Tensor, trailing: int = 3) -> Tensor | float:
    """Reshape a ``[B]`` parameter to broadcast over ``x`` with ``trailing`` dims per image
    (``[B, 3, H, W]``: 3; an HSV plane ``[B, H, W]``: 2). Scalars pass through."""
    if isinstance(value, Tensor):
        value = value.to(x.device, x.dtype)
        if value.ndim > 0:
            return value.reshape(value.shape + (1,) * trailing)
    return value


def saturate_uint8(x: Tensor) -> Tensor:
    """Round and clamp to 0..255 in place, as OpenCV's ``saturate_cast<uchar>`` after each step."""
    return x.round_().clamp_(0.0, 255.0)


def adjust_brightness(x: Tensor, delta: Tensor | float) -> Tensor:
    """Caffe: ``convertTo(out, -1, 1, delta)``; v2's adjust_brightness multiplies instead."""
    return saturate_uint8(x + _per_image(delta, x))


def adjust_contrast(x: Tensor, alpha: Tensor | float) -> Tensor:
    """Caffe: ``convertTo(out, -1, alpha, 0)``; v2's adjust_contrast blends with the mean grey."""
    return saturate_uint8(x * _per_image(alpha, x))


def adjust_saturation(x: Tensor, factor: Tensor | float) -> Tensor:
    """Caffe: scale HSV's S by ``factor``, saturating at 1 (v2's adjust_saturation blends with
    grey instead).

    With H and V fixed, every channel c of a pixel satisfies V - c = V S g(H), so scaling S by k
    is c' = V - k (V - c) with k = min(factor, 1 / S): the HSV round trip without the trip.
    """
    maxc = x.amax(dim=-3, keepdim=True)
    span = maxc - x.amin(dim=-3, keepdim=True)
    f = _per_image(factor, x)
    k = torch.minimum(torch.as_tensor(f, dtype=x.dtype, device=x.device),
                      maxc / torch.where(span > 0, span, 1.0))
    return saturate_uint8(maxc - k * (maxc - x))


def adjust_hue(x: Tensor, delta: Tensor | float) -> Tensor:
    """Rotate HSV's H by ``delta`` OpenCV units (1/180 of the circle) per image, wrapping around.

    The same definition as v2's ``adjust_hue`` (tests check they agree to one grey level), which
    takes one factor per call, cannot batch per-image factors and, on one CPU thread, takes about
    twice as long. S and V, hence each pixel's max and min, stay; channel n becomes
    max - span * clamp(min(k, 4 - k), 0, 1) with k = (n + 6H) mod 6.
    """
    r, g, b = x.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)  # much faster than aminmax over dim -3 on CPU
    span = maxc - torch.minimum(torch.minimum(r, g), b)
    safe = torch.where(span > 0, span, 1.0)
    h6 = torch.where(maxc == r, (g - b) / safe,
                     torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h6 = h6 + _per_image(delta, h6, trailing=2) / 30.0  # 180 units = 6 sectors
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = torch.remainder(h6 + n, 6.0)
        out.append(maxc - span * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return saturate_uint8(torch.stack(out, dim=-3))


def distort_image(image: Tensor, params: PhotometricParams, index: int = 0) -> Tensor:
    """Apply image ``index``'s distortion to one uint8 ``[3, H, W]`` image (skipping idle steps)."""
    b, c, s, h = (float(params.brightness[index]), float(params.contrast[index]),
                  float(params.saturation[index]), float(params.hue[index]))
    order = params.channel_order[index]
    steps: list = []
    if b != 0.0:
        steps.append(lambda x: adjust_brightness(x, b))
    contrast = [lambda x: adjust_contrast(x, c)] if c != 1.0 else []
    colour = []
    if s != 1.0:
        colour.append(lambda x: adjust_saturation(x, s))
    if h != 0.0:
        colour.append(lambda x: adjust_hue(x, h))
    steps += (colour + contrast) if bool(params.contrast_last[index]) else (contrast + colour)
    shuffle = bool((order != torch.arange(3)).any())
    if not steps and not shuffle:
        return image
    x = image.float()
    for step in steps:
        x = step(x)
    return (x[order] if shuffle else x).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Geometry: expand, sample a crop, project the boxes, mirror
# --------------------------------------------------------------------------------------------


@dataclass
class Expansion:
    """Where each original image sits in its (mean-filled) canvas, in integer pixels ``[B]``."""

    height: Tensor
    width: Tensor
    top: Tensor
    left: Tensor

    def to(self, device: torch.device | str) -> Expansion:
        return Expansion(self.height.to(device), self.width.to(device), self.top.to(device),
                         self.left.to(device))


def sample_expansion(heights: Tensor, widths: Tensor, generator: torch.Generator, prob: float,
                     max_ratio: float) -> Expansion:
    """Caffe's ``ExpandImage`` for a batch: canvas ``int(ratio * size)`` with ratio ~ U(1, max),
    image at offset ``floor(U(0, canvas - size))``; no expansion with probability 1 - prob."""
    heights = heights.to("cpu", torch.int64)
    widths = widths.to("cpu", torch.int64)
    u = _rand((len(heights), 4), generator, torch.float64).cpu()
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


def sample_crops(gt: Tensor, valid: Tensor, generator: torch.Generator,
                 samplers: Sequence[BatchSampler] = SSD_BATCH_SAMPLERS) -> tuple[Tensor, Tensor]:
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
    u = _rand((n, n_samplers, trials, 4), generator).to(dev, dt)
    pick = _rand((n, n_samplers), generator).to(dev, dt)

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
    ok &= torch.tensor([[t < s.max_trials for t in range(trials)] for s in samplers],
                       device=dev)[None]
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
    keep = (valid & inside & (projected[..., 2] > projected[..., 0])
            & (projected[..., 3] > projected[..., 1]))
    return torch.where(keep[..., None], projected, 0.0), keep


def mirror_boxes(boxes: Tensor, flip: Tensor, valid: Tensor | None = None) -> Tensor:
    """Flip normalised xyxy boxes ``[B, G, 4]`` left-right where ``flip`` ``[B]`` is True."""
    flipped = torch.stack((1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]), -1)
    out = torch.where(flip[:, None, None], flipped, boxes)
    return out if valid is None else torch.where(valid[..., None], out, 0.0)


# --------------------------------------------------------------------------------------------
# Reproducible randomness in and out of DataLoader workers
# --------------------------------------------------------------------------------------------


class SeededRandomness:
    """Gives each process (and each DataLoader worker) its own reproducible generator.

    An explicit ``generator`` is used as is (single-process use). Otherwise a generator is made
    lazily in the process that first calls the transform: in the main process from ``seed`` (or
    ``torch.initial_seed()``), in a worker from the worker's seed (derived by the DataLoader from
    its own generator, so it differs per worker and per epoch and is reproducible when the loader
    is seeded) mixed with ``seed``. Copies sent to workers never share a stream.
    """

    def __init__(self, seed: int | None, generator: torch.Generator | None):
        self.seed = seed
        self._explicit = generator
        self._lazy: torch.Generator | None = None
        self._lazy_key: tuple | None = None

    def generator(self) -> torch.Generator:
        if self._explicit is not None:
            return self._explicit
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._lazy is None or self._lazy_key != key:
            if info is None:
                seed = torch.initial_seed() if self.seed is None else self.seed
            elif self.seed is None:
                seed = info.seed
            else:
                seed = self.seed * 6364136223846793005 + info.seed + 1442695040888963407
            self._lazy = torch.Generator().manual_seed(seed % 2**64)
            self._lazy_key = key
        return self._lazy

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lazy"] = state["_lazy_key"] = None
        return state


# --------------------------------------------------------------------------------------------
# The per-image transforms
# --------------------------------------------------------------------------------------------


@dataclass
class TrainParams:
    """Every random decision for one image (``sample`` draws them, ``apply`` uses them)."""

    photometric: PhotometricParams  # batch of 1
    expansion: Expansion  # batch of 1
    crop: tuple[int, int, int, int]  # top, left, height, width in canvas pixels
    sampler: int  # index into the samplers, -1 = fallback to the whole canvas
    mirror: bool
    interpolation: str

    def crop_in_canvas(self) -> Tensor:
        """The crop, xyxy normalised to the canvas ``[4]`` (float64)."""
        top, left, h, w = self.crop
        eh, ew = float(self.expansion.height[0]), float(self.expansion.width[0])
        return torch.tensor([left / ew, top / eh, (left + w) / ew, (top + h) / eh],
                            dtype=torch.float64)


def _check_input(image: Tensor, boxes: Tensor, labels: Tensor) -> None:
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [N, 4] xyxy, got {list(boxes.shape)}")
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {boxes.shape[0]} boxes")


def _mean_tensor(mean: Sequence[float]) -> Tensor:
    if len(mean) != 3:
        raise ConfigError(None, "mean", f"need 3 values (RGB), got {len(mean)}")
    return torch.tensor([float(m) for m in mean], dtype=torch.float32)


@cache
def _v2_resize_mode(name: str) -> tuple[InterpolationMode, bool]:
    """The v2 mode for a Caffe name (torchvision without tensor lanczos: antialiased cubic)."""
    mode, antialias = INTERPOLATIONS[name]
    if mode == InterpolationMode.LANCZOS:
        try:
            F.resize(torch.zeros(3, 4, 4, dtype=torch.uint8), [2, 2], interpolation=mode,
                     antialias=True)
        except (ValueError, TypeError, RuntimeError, NotImplementedError):
            return InterpolationMode.BICUBIC, True
    return mode, antialias


class SSDTrainTransform:
    """The full Caffe SSD training augmentation for one image (see the module docstring).

    ``seed``/``generator`` make runs reproducible (see ``SeededRandomness``); ``__call__`` also
    takes a ``generator`` that overrides both for one call.
    """

    def __init__(self, size: int = 300, mean: Sequence[float] = CAFFE_MEAN_RGB,
                 config: AugmentConfig | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None):
        if size < 1:
            raise ConfigError(None, "size", f"must be >= 1, got {size}")
        self.size = int(size)
        self.mean = _mean_tensor(mean)
        self.fill = [round(float(m)) for m in mean]  # the canvas is uint8
        self.config = config if config is not None else AugmentConfig()
        self._random = SeededRandomness(seed, generator)

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        _check_input(image, boxes, labels)
        g = generator if generator is not None else self._random.generator()
        params = self.sample(image.shape[-2], image.shape[-1], boxes, g)
        return self.apply(image, boxes, labels, params)

    def normalise(self, boxes: Tensor, height: int, width: int) -> Tensor:
        """Pixel xyxy ``[N, 4]`` -> normalised to the image, float32."""
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return boxes.to(torch.float32) / scale

    def sample(self, height: int, width: int, boxes: Tensor,
               generator: torch.Generator) -> TrainParams:
        """Draw every random decision for one ``height x width`` image with pixel ``boxes``."""
        cfg = self.config
        photometric = sample_photometric(1, generator, cfg.photometric)
        h, w = torch.tensor([height]), torch.tensor([width])
        exp = sample_expansion(h, w, generator, cfg.expand_prob, cfg.max_expand_ratio)
        gt = boxes_to_canvas(self.normalise(boxes, height, width)[None], h, w, exp)
        valid = torch.ones(gt.shape[:2], dtype=torch.bool)
        crop, sampler = sample_crops(gt, valid, generator, cfg.samplers)
        # CropImage: the crop is truncated to whole canvas pixels.
        eh, ew = int(exp.height[0]), int(exp.width[0])
        x0, y0, x1, y1 = crop[0].tolist()
        left, top = min(int(x0 * ew), ew - 1), min(int(y0 * eh), eh - 1)
        cw = min(max(int((x1 - x0) * ew), 1), ew - left)
        ch = min(max(int((y1 - y0) * eh), 1), eh - top)
        mirror = bool(_rand((1,), generator)[0] < cfg.mirror_prob)
        pick = int(_rand((1,), generator)[0] * len(cfg.interpolations))
        interpolation = cfg.interpolations[min(pick, len(cfg.interpolations) - 1)]
        return TrainParams(photometric, exp, (top, left, ch, cw), int(sampler[0]), mirror,
                           interpolation)

    def render(self, image: Tensor, params: TrainParams) -> Tensor:
        """The distorted crop of the canvas, uint8 ``[3, ch, cw]``, before the resize.

        Only the visible part of the image is distorted and pasted; the rest is the mean fill.
        """
        _, height, width = image.shape
        top, left, ch, cw = params.crop
        dy, dx = int(params.expansion.top[0]), int(params.expansion.left[0])
        # The crop in the original image's pixel frame, and its visible part.
        y0, x0 = top - dy, left - dx
        vy0, vx0 = max(y0, 0), max(x0, 0)
        vy1, vx1 = min(y0 + ch, height), min(x0 + cw, width)
        visible = image[:, vy0:vy1, vx0:vx1] if vy1 > vy0 and vx1 > vx0 else None
        if visible is not None and (vy0, vx0, vy1, vx1) == (y0, x0, y0 + ch, x0 + cw):
            return distort_image(visible, params.photometric)
        canvas = torch.empty((3, ch, cw), dtype=torch.uint8)
        canvas[:] = torch.tensor(self.fill, dtype=torch.uint8)[:, None, None]
        if visible is not None:
            distorted = distort_image(visible, params.photometric)
            canvas[:, vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0] = distorted
        return canvas

    def apply(self, image: Tensor, boxes: Tensor, labels: Tensor,
              params: TrainParams) -> tuple[Tensor, Tensor, Tensor]:
        """Apply the decisions in ``params`` to an image, its pixel boxes and their labels."""
        _check_input(image, boxes, labels)
        _, height, width = image.shape
        h, w = torch.tensor([height]), torch.tensor([width])
        gt = boxes_to_canvas(self.normalise(boxes, height, width)[None].double(), h, w,
                             params.expansion)
        valid = torch.ones(gt.shape[:2], dtype=torch.bool)
        out_boxes, keep = crop_boxes(gt, valid, params.crop_in_canvas()[None])
        flip = torch.tensor([params.mirror])
        out_boxes = mirror_boxes(out_boxes, flip)[0][keep[0]].to(torch.float32)
        # float64 -> float32 can round a tiny box to zero width; never return one.
        nonzero = (out_boxes[:, 2] > out_boxes[:, 0]) & (out_boxes[:, 3] > out_boxes[:, 1])
        out_labels = labels[keep[0]][nonzero]

        mode, antialias = _v2_resize_mode(params.interpolation)
        pixels = F.resize(self.render(image, params), [self.size, self.size], interpolation=mode,
                          antialias=antialias)
        if params.mirror:
            pixels = F.horizontal_flip(pixels)
        return pixels.float() - self.mean[:, None, None], out_boxes[nonzero], out_labels


class SSDTestTransform:
    """Test time: warp-resize to ``size`` x ``size`` (Caffe's test ``interp_mode: LINEAR``),
    subtract the mean; boxes are normalised to [0, 1] and clipped, none dropped."""

    def __init__(self, size: int = 300, mean: Sequence[float] = CAFFE_MEAN_RGB,
                 interpolation: str = "linear"):
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(None, "interpolation", f"unknown {interpolation!r}")
        self.size = int(size)
        self.mean = _mean_tensor(mean)
        self.interpolation = interpolation

    def __call__(self, image: Tensor, boxes: Tensor | None = None,
                 labels: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} "
                             f"{list(image.shape)}")
        _, height, width = image.shape
        mode, antialias = _v2_resize_mode(self.interpolation)
        pixels = F.resize(image, [self.size, self.size], interpolation=mode, antialias=antialias)
        out = pixels.float() - self.mean[:, None, None]
        if boxes is None:
            return out, None, labels
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return out, (boxes.to(torch.float32) / scale).clamp(0.0, 1.0), labels
