"""The SSD training augmentation for a whole batch at once, on any device (meant for the GPU).

Same recipe as :mod:`scratchdet.data.transforms` and the same parameter distributions: both draw
from ``sample_photometric``, ``sample_expansion`` and ``sample_crops`` and map boxes with
``crop_boxes``/``mirror_boxes``. Here every step is a tensor op over the batch:

* photometric distortion with per-image parameters ``[B]`` (a step that does not fire for an image
  gets the identity value), in Caffe's two orders (contrast second or last, chosen per image);
* expand + all 50 trials of all 7 samplers for all images in one IoU computation, one pick each;
* crop + expand + mirror + warp-resize of every image in one ``grid_sample`` call: the sampling grid
  is the crop (in the expanded canvas) mapped back into the padded image batch; points outside an
  image read the mean (the expansion fill), because the mean is subtracted before sampling and
  grid_sample pads with zeros;
* boxes filtered by centre-in-crop, clipped and mirrored in place: padded ``[B, G, 4]`` + mask.

Differences from the per-image path (and from Caffe), none of which changes a parameter's
distribution:

* one interpolation for the batch (``bilinear`` by default; ``nearest``/``bicubic`` selectable)
  instead of a random one of five per image, and without antialiasing (Caffe's LINEAR has none
  either; its AREA/LANCZOS4 slots do smooth large downscales);
* the crop is continuous, not truncated to whole canvas pixels, and the canvas is never built:
  sampling outside the image reads the mean directly;
* the resized image stays float (the per-image path rounds it to uint8 before the mean).

Random numbers are drawn from the generator on its own device (a CPU generator by default), so a
seed gives the same parameters whatever device the pixels are on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
from torch import Tensor

from scratchdet.data.transforms import (
    CAFFE_MEAN_RGB,
    AugmentConfig,
    Expansion,
    PhotometricParams,
    SeededRandomness,
    _mean_tensor,
    _rand,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    boxes_to_canvas,
    crop_boxes,
    mirror_boxes,
    sample_crops,
    sample_expansion,
    sample_photometric,
)
from scratchdet.errors import ConfigError

GRID_SAMPLE_MODES = ("bilinear", "nearest", "bicubic")


@dataclass
class BatchParams:
    """Every random decision for a batch (``sample`` draws them, ``apply`` uses them)."""

    photometric: PhotometricParams
    expansion: Expansion
    crops: Tensor  # [B, 4] xyxy normalised to each canvas
    sampler: Tensor  # [B] index into the samplers, -1 = whole canvas (no sampler found one)
    mirror: Tensor  # [B] bool


class AugmentedBatch(NamedTuple):
    images: Tensor  # [B, 3, S, S] float32, image - mean
    boxes: Tensor  # [B, G, 4] xyxy in [0, 1]; zeros where mask is False
    labels: Tensor  # [B, G]; 0 where mask is False
    mask: Tensor  # [B, G] bool


def apply_photometric(x: Tensor, params: PhotometricParams) -> Tensor:
    """Caffe's ``ApplyDistort`` on a float batch ``[B, 3, H, W]`` in 0..255, per-image parameters.

    Contrast is applied at both of its possible positions with the identity where it does not
    belong, so both orders run in the same ops. Steps no image needs are skipped.
    """
    # Decide what to skip on a CPU copy (sample_photometric's own output: no device sync).
    c = params.to("cpu")
    needs = {
        "brightness": bool((c.brightness != 0).any()),
        "contrast_first": bool(((c.contrast != 1) & ~c.contrast_last).any()),
        "saturation": bool((c.saturation != 1).any()),
        "hue": bool((c.hue != 0).any()),
        "contrast_last": bool(((c.contrast != 1) & c.contrast_last).any()),
        "channels": bool((c.channel_order != torch.arange(3)).any()),
    }
    p = params.to(x.device)
    one = torch.ones_like(p.contrast)
    if needs["brightness"]:
        x = adjust_brightness(x, p.brightness)
    if needs["contrast_first"]:
        x = adjust_contrast(x, torch.where(p.contrast_last, one, p.contrast))
    if needs["saturation"]:
        x = adjust_saturation(x, p.saturation)
    if needs["hue"]:
        x = adjust_hue(x, p.hue)
    if needs["contrast_last"]:
        x = adjust_contrast(x, torch.where(p.contrast_last, p.contrast, one))
    if needs["channels"]:
        x = x.gather(1, p.channel_order[:, :, None, None].expand_as(x))
    return x


def sampling_grid(params: BatchParams, padded_hw: tuple[int, int], size: int) -> Tensor:
    """The ``grid_sample`` grid ``[B, size, size, 2]`` that cuts each crop out of its canvas,
    mirrors it if asked and warps it to ``size`` x ``size``, in the padded batch's coordinates
    (``align_corners=False``: pixel k of an n-pixel axis spans [k, k+1], centre k + 0.5)."""
    exp = params.expansion.to(params.crops.device)
    dev, dt = params.crops.device, torch.float32
    crops = params.crops.to(dt)
    t = (torch.arange(size, device=dev, dtype=dt) + 0.5) / size  # output pixel centres in [0, 1]
    tx = torch.where(params.mirror.to(dev)[:, None], 1.0 - t, t)  # [B, S]
    ty = t.expand(len(crops), size)

    def to_grid(frac: Tensor, lo: Tensor, hi: Tensor, canvas: Tensor, offset: Tensor, padded: int):
        canvas = canvas.to(dt)[:, None]
        pixel = (lo[:, None] + frac * (hi - lo)[:, None]) * canvas - offset.to(dt)[:, None]
        return 2.0 * pixel / padded - 1.0

    gx = to_grid(tx, crops[:, 0], crops[:, 2], exp.width, exp.left, padded_hw[1])
    gy = to_grid(ty, crops[:, 1], crops[:, 3], exp.height, exp.top, padded_hw[0])
    n = len(crops)
    return torch.stack((gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)),
                       dim=-1)


class SSDBatchAugment:
    """Caffe SSD's training augmentation for a batch of differently sized uint8 images."""

    def __init__(self, size: int = 300, mean: Sequence[float] = CAFFE_MEAN_RGB,
                 config: AugmentConfig | None = None, interpolation: str = "bilinear",
                 seed: int | None = None, generator: torch.Generator | None = None):
        if interpolation not in GRID_SAMPLE_MODES:
            raise ConfigError(None, "interpolation", f"{interpolation!r} is not one of "
                              f"{GRID_SAMPLE_MODES} (grid_sample's modes)")
        if size < 1:
            raise ConfigError(None, "size", f"must be >= 1, got {size}")
        self.size = int(size)
        self.mean = _mean_tensor(mean)
        self.config = config if config is not None else AugmentConfig()
        self.interpolation = interpolation
        self._random = SeededRandomness(seed, generator)

    def __call__(self, images: Sequence[Tensor], boxes: Tensor, labels: Tensor, mask: Tensor,
                 device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> AugmentedBatch:
        """``images``: B uint8 ``[3, H_i, W_i]``; ``boxes`` ``[B, G, 4]`` xyxy normalised to each
        image; ``labels``/``mask`` ``[B, G]``. Output on ``device`` (default: ``boxes.device``)."""
        heights, widths = self._check(images, boxes, labels, mask)
        device = torch.device(device) if device is not None else boxes.device
        g = generator if generator is not None else self._random.generator()
        params = self.sample(heights, widths, boxes.to(device), mask.to(device), g)
        return self.apply(images, boxes.to(device), labels.to(device), mask.to(device), params)

    @staticmethod
    def _check(images: Sequence[Tensor], boxes: Tensor, labels: Tensor,
               mask: Tensor) -> tuple[Tensor, Tensor]:
        if boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != len(images):
            raise ValueError(f"boxes must be [B={len(images)}, G, 4], got {list(boxes.shape)}")
        if labels.shape != boxes.shape[:2] or mask.shape != boxes.shape[:2]:
            raise ValueError(f"labels {list(labels.shape)} and mask {list(mask.shape)} must be "
                             f"{list(boxes.shape[:2])}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {mask.dtype}")
        for i, im in enumerate(images):
            if im.dtype != torch.uint8 or im.ndim != 3 or im.shape[0] != 3:
                raise ValueError(f"image {i} must be uint8 [3, H, W], got {im.dtype} "
                                 f"{list(im.shape)}")
        heights = torch.tensor([im.shape[-2] for im in images], dtype=torch.int64)
        widths = torch.tensor([im.shape[-1] for im in images], dtype=torch.int64)
        return heights, widths

    def sample(self, heights: Tensor, widths: Tensor, boxes: Tensor, mask: Tensor,
               generator: torch.Generator) -> BatchParams:
        """Draw the whole batch's decisions; ``boxes`` normalised to each image."""
        cfg, n = self.config, len(heights)
        photometric = sample_photometric(n, generator, cfg.photometric)
        exp = sample_expansion(heights, widths, generator, cfg.expand_prob, cfg.max_expand_ratio)
        gt = boxes_to_canvas(boxes.float(), heights, widths, exp)
        crops, sampler = sample_crops(gt, mask, generator, cfg.samplers)
        mirror = _rand((n,), generator).to(boxes.device) < cfg.mirror_prob
        return BatchParams(photometric, exp, crops, sampler, mirror)

    def apply(self, images: Sequence[Tensor], boxes: Tensor, labels: Tensor, mask: Tensor,
              params: BatchParams) -> AugmentedBatch:
        """Apply ``params``; everything happens on ``boxes.device``."""
        heights, widths = self._check(images, boxes, labels, mask)
        device, n = boxes.device, len(images)
        if n == 0:
            empty = torch.zeros((0, 3, self.size, self.size), device=device)
            return AugmentedBatch(empty, boxes.float(), labels, mask)
        mean = self.mean.to(device)

        # Pad into one batch whose spare pixels (and, after distortion, every pixel outside an
        # image) hold the mean, which becomes 0 after subtraction = grid_sample's zero padding.
        ph, pw = int(heights.max()), int(widths.max())
        fill = mean.round().to(torch.uint8)[:, None, None]
        padded = fill.expand(n, 3, ph, pw).clone()
        for i, im in enumerate(images):
            padded[i, :, : im.shape[-2], : im.shape[-1]].copy_(im, non_blocking=True)
        x = apply_photometric(padded.float(), params.photometric)
        rows = torch.arange(ph, device=device)[None, :, None] < heights.to(device)[:, None, None]
        cols = torch.arange(pw, device=device)[None, None, :] < widths.to(device)[:, None, None]
        x = torch.where((rows & cols)[:, None], x, mean[None, :, None, None])
        x = x - mean[None, :, None, None]
        grid = sampling_grid(params, (ph, pw), self.size)
        out = nnf.grid_sample(x, grid, mode=self.interpolation, padding_mode="zeros",
                              align_corners=False)

        gt = boxes_to_canvas(boxes.float(), heights, widths, params.expansion)
        out_boxes, keep = crop_boxes(gt, mask, params.crops.to(device, torch.float32))
        out_boxes = mirror_boxes(out_boxes, params.mirror.to(device), keep)
        out_labels = torch.where(keep, labels, torch.zeros_like(labels))
        return AugmentedBatch(out, out_boxes, out_labels, keep)
