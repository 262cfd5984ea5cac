"""The SSD training augmentation for a whole batch at once, on any device (the device pipeline).

The random decisions are those of the per-image path: each image's ``TrainParams`` come from
``per_image.sample_train_params`` (on the CPU, one generator per sample), stacked into
``BatchParams``. Applying them is one tensor program over the batch, with static shapes and no
data-dependent op, so it runs on the GPU without a host sync:

* photometric distortion with per-image parameters ``[B]`` (a step that does not fire for an image
  gets the identity value), in Caffe's two orders (contrast second or last, chosen per image);
* crop + expand + mirror + warp-resize of every image in one ``grid_sample`` call: the sampling grid
  is the crop (in the expanded canvas) mapped back into the padded image batch; points outside an
  image read the mean (the expansion fill), because the mean is subtracted before sampling and
  grid_sample pads with zeros;
* boxes filtered by centre-in-crop, clipped and mirrored in place: padded ``[B, G, 4]`` + mask.

Differences from the per-image path (and from Caffe), none of which changes a decision:

* one interpolation for the batch (``bilinear`` by default; ``nearest``/``bicubic`` selectable)
  instead of the random one of five drawn per image, and without antialiasing (Caffe's LINEAR has
  none either; its AREA/LANCZOS4 slots do smooth large downscales);
* the expanded canvas is never built: sampling outside the image reads the mean directly;
* the resized image stays float (the per-image path rounds it to uint8 before the mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
from torch import Tensor

from ..errors import ConfigError
from ..models.input import CAFFE_MEAN_RGB
from .geometry import Expansion, boxes_to_canvas, crop_boxes, mirror_boxes, sampling_grid
from .per_image import TrainParams, mean_tensor, sample_train_params
from .photometric import (
    PHOTOMETRIC_STEPS,
    PhotometricParams,
    apply_photometric,
    photometric_steps,
)
from .recipe import AugmentConfig
from .sampling import SeededRandomness

__all__ = ["GRID_SAMPLE_MODES", "AugmentedBatch", "BatchParams", "SSDBatchAugment",
           "augment_batch"]

GRID_SAMPLE_MODES = ("bilinear", "nearest", "bicubic")


@dataclass
class BatchParams:
    """Every random decision for a batch: per-image ``TrainParams`` stacked into tensors."""

    photometric: PhotometricParams  # [B]
    expansion: Expansion  # [B]
    crops: Tensor  # [B, 4] xyxy normalised to each expanded canvas (whole canvas pixels)
    mirror: Tensor  # [B] bool
    sampler: Tensor | None = None  # [B] which crop sampler fired (-1: none); not needed to apply

    @staticmethod
    def stack(params: Sequence[TrainParams]) -> BatchParams:
        def cat(get) -> Tensor:
            return torch.cat([get(p) for p in params])

        photometric = PhotometricParams(*(cat(lambda p, f=f: getattr(p.photometric, f))
                                          for f in PhotometricParams.__dataclass_fields__))
        expansion = Expansion(*(cat(lambda p, f=f: getattr(p.expansion, f))
                                for f in Expansion.__dataclass_fields__))
        crops = torch.stack([p.crop_in_canvas() for p in params]).to(torch.float32)
        mirror = torch.tensor([p.mirror for p in params], dtype=torch.bool)
        sampler = torch.tensor([p.sampler for p in params], dtype=torch.int64)
        return BatchParams(photometric, expansion, crops, mirror, sampler)

    def to(self, device: torch.device | str) -> BatchParams:
        return BatchParams(self.photometric.to(device), self.expansion.to(device),
                           self.crops.to(device), self.mirror.to(device),
                           None if self.sampler is None else self.sampler.to(device))


class AugmentedBatch(NamedTuple):
    images: Tensor  # [B, 3, S, S] float32, image - mean
    boxes: Tensor  # [B, G, 4] xyxy in [0, 1]; zeros where mask is False
    labels: Tensor  # [B, G]; 0 where mask is False
    mask: Tensor  # [B, G] bool


def augment_batch(pixels: Tensor, sizes: Tensor, boxes: Tensor, labels: Tensor, mask: Tensor,
                  params: BatchParams, mean: Tensor, size: int, interpolation: str = "bilinear",
                  steps: frozenset[str] | tuple[str, ...] = PHOTOMETRIC_STEPS) -> AugmentedBatch:
    """Apply ``params`` to a padded batch; every tensor on one device, nothing copied, no sync.

    ``pixels`` uint8 ``[B, 3, H, W]``: image i in its top-left ``sizes[i]`` = (h, w) corner (the
    rest is ignored); ``boxes`` ``[B, G, 4]`` xyxy normalised to each image, ``labels``/``mask``
    ``[B, G]``; ``mean`` float32 ``[3]``; ``steps``: the photometric steps to run
    (``photometric.photometric_steps`` of the batch, known on the host)."""
    _, _, ph, pw = pixels.shape
    device = pixels.device
    x = apply_photometric(pixels.float(), params.photometric, steps)
    # Every pixel outside its image becomes the mean, which is 0 after the subtraction =
    # grid_sample's zero padding: the expansion fill.
    heights, widths = sizes[:, 0], sizes[:, 1]
    rows = torch.arange(ph, device=device)[None, :, None] < heights[:, None, None]
    cols = torch.arange(pw, device=device)[None, None, :] < widths[:, None, None]
    centred = torch.where((rows & cols)[:, None], x - mean[None, :, None, None], 0.0)
    grid = sampling_grid(params.crops, params.mirror, params.expansion, (ph, pw), size)
    out = nnf.grid_sample(centred, grid, mode=interpolation, padding_mode="zeros",
                          align_corners=False)

    gt = boxes_to_canvas(boxes.float(), heights, widths, params.expansion)
    out_boxes, keep = crop_boxes(gt, mask, params.crops)
    out_boxes = mirror_boxes(out_boxes, params.mirror, keep)
    out_labels = torch.where(keep, labels, torch.zeros_like(labels))
    return AugmentedBatch(out, out_boxes, out_labels, keep)


class SSDBatchAugment:
    """Caffe SSD's training augmentation for a list of differently sized uint8 images, for use
    on its own (tests, notebooks); the training pipeline calls ``augment_batch`` directly."""

    def __init__(self, size: int = 300, mean: Sequence[float] = CAFFE_MEAN_RGB,
                 config: AugmentConfig | None = None, interpolation: str = "bilinear",
                 seed: int | None = None, generator: torch.Generator | None = None):
        if interpolation not in GRID_SAMPLE_MODES:
            raise ConfigError(None, "interpolation", f"{interpolation!r} is not one of "
                              f"{GRID_SAMPLE_MODES} (grid_sample's modes)")
        if size < 1:
            raise ConfigError(None, "size", f"must be >= 1, got {size}")
        self.size = int(size)
        self.mean = mean_tensor(mean)
        self.config = config if config is not None else AugmentConfig()
        self.interpolation = interpolation
        self._random = SeededRandomness(seed, generator)

    def __call__(self, images: Sequence[Tensor], boxes: Tensor, labels: Tensor, mask: Tensor,
                 device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> AugmentedBatch:
        """``images``: B uint8 ``[3, H_i, W_i]``; ``boxes`` ``[B, G, 4]`` xyxy normalised to each
        image; ``labels``/``mask`` ``[B, G]``. Output on ``device`` (default: ``boxes.device``)."""
        self._check(images, boxes, labels, mask)
        device = torch.device(device) if device is not None else boxes.device
        if not images:
            empty = torch.zeros((0, 3, self.size, self.size), device=device)
            return AugmentedBatch(empty, boxes.to(device).float(), labels.to(device),
                                  mask.to(device))
        g = generator if generator is not None else self._random.generator()
        heights = torch.tensor([im.shape[-2] for im in images], dtype=torch.int64)
        widths = torch.tensor([im.shape[-1] for im in images], dtype=torch.int64)
        params = self.sample(heights, widths, boxes, mask, g)
        return self.apply(images, boxes.to(device), labels.to(device), mask.to(device), params)

    @staticmethod
    def _check(images: Sequence[Tensor], boxes: Tensor, labels: Tensor, mask: Tensor) -> None:
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

    def sample(self, heights: Tensor, widths: Tensor, boxes: Tensor, mask: Tensor,
               generator: torch.Generator) -> BatchParams:
        """Draw each image's decisions in turn from ``generator`` (on the CPU); ``boxes``
        ``[B, G, 4]`` normalised to each image, ``mask`` ``[B, G]``."""
        boxes, mask = boxes.cpu(), mask.cpu()
        return BatchParams.stack([
            sample_train_params(int(h), int(w), b[m], generator, self.config)
            for h, w, b, m in zip(heights.tolist(), widths.tolist(), boxes, mask)])

    def apply(self, images: Sequence[Tensor], boxes: Tensor, labels: Tensor, mask: Tensor,
              params: BatchParams) -> AugmentedBatch:
        """Apply ``params``; everything happens on ``boxes.device``."""
        self._check(images, boxes, labels, mask)
        device = boxes.device
        sizes = torch.tensor([im.shape[-2:] for im in images], dtype=torch.int64)
        ph, pw = (int(v) for v in sizes.max(0).values)
        padded = torch.zeros((len(images), 3, ph, pw), dtype=torch.uint8)
        for i, im in enumerate(images):
            padded[i, :, : im.shape[-2], : im.shape[-1]] = im.cpu()
        return augment_batch(padded.to(device), sizes.to(device), boxes, labels, mask,
                             params.to(device), self.mean.to(device), self.size,
                             self.interpolation, photometric_steps(params.photometric))
