"""The SSD training augmentation for one image, on the CPU (the CPU input pipeline's workers).

Interface (docs/ARCHITECTURE.md): an image ``uint8 [3, H, W]`` RGB, boxes ``float [N, 4]`` xyxy in
pixels and per-box labels ``[N, ...]`` go in; the resized image ``uint8 [3, S, S]``, boxes xyxy
normalised to [0, 1] and the labels of the kept boxes come out (``apply_uint8``; the device then
subtracts the mean, RGB (123, 117, 104), no std). ``labels`` may be any tensor indexed by box
along dim 0 (labels, difficult flags, ...).

The order and the numbers follow Caffe SSD's ``AnnotatedDataLayer`` (``augment.py``): photometric
distortion (``photometric.py``), expand, IoU-constrained crop, box projection (``geometry.py``),
then warp-resize to ``S`` x ``S`` with one of Caffe's five interpolations at random
(``ResizeParameter`` WARP), mirror with p=0.5 (the mean is subtracted on the device).

Deliberate differences from Caffe, all small:

* Boxes are projected onto the integer crop actually cut out, so they agree with the pixels
  exactly; Caffe projects them onto the un-truncated crop (an error below one source pixel).
* Interpolation: v2 works on uint8 tensors with bilinear, nearest, bicubic and (antialiased)
  lanczos. ``area`` (cv::INTER_AREA, a box filter) has no tensor kernel, so it is antialiased
  bilinear; ``lanczos4`` is v2's antialiased 3-lobe lanczos (OpenCV: 4 lobes, no antialiasing).
* The photometric steps run on the visible part of the image only (they act per pixel, so this is
  the same as Caffe's distort-then-expand-then-crop, with less work).

Speed: the geometry stays on uint8 (crop, paste, v2's uint8 resize kernels). The photometric
steps go through float only when one of them fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from scratchdet.errors import ConfigError
from scratchdet.input.augment import INTERPOLATIONS, AugmentConfig
from scratchdet.input.geometry import (
    Expansion,
    boxes_to_canvas,
    crop_boxes,
    mirror_boxes,
    sample_crops,
    sample_expansion,
)
from scratchdet.input.photometric import PhotometricParams, distort_image, sample_photometric
from scratchdet.input.sampling import uniform
from scratchdet.models.input import CAFFE_MEAN_RGB

__all__ = [
    "SSDTrainTransform",
    "TrainParams",
    "check_image_input",
    "normalise_boxes",
    "resize_mode",
    "sample_train_params",
]


@dataclass
class TrainParams:
    """Every random decision for one image (``sample_train_params`` draws them, ``apply`` uses
    them)."""

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
        return torch.tensor(
            [left / ew, top / eh, (left + w) / ew, (top + h) / eh], dtype=torch.float64
        )


def check_image_input(image: Tensor, boxes: Tensor, labels: Tensor) -> None:
    """ValueError unless image is uint8 ``[3, H, W]`` with ``[N, 4]`` boxes and N labels."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [N, 4] xyxy, got {list(boxes.shape)}")
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {boxes.shape[0]} boxes")


@cache
def resize_mode(name: str) -> tuple[InterpolationMode, bool]:
    """The v2 mode for a Caffe name (torchvision without tensor lanczos: antialiased cubic)."""
    mode, antialias = INTERPOLATIONS[name]
    if mode == InterpolationMode.LANCZOS:
        try:
            F.resize(
                torch.zeros(3, 4, 4, dtype=torch.uint8), [2, 2], interpolation=mode, antialias=True
            )
        except (ValueError, TypeError, RuntimeError, NotImplementedError):
            return InterpolationMode.BICUBIC, True
    return mode, antialias


def normalise_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """Pixel xyxy ``[N, 4]`` -> normalised to the image, float32."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return boxes.to(torch.float32) / scale


def sample_train_params(
    height: int, width: int, *, boxes: Tensor, generator: torch.Generator, cfg: AugmentConfig
) -> TrainParams:
    """Draw every random decision for one ``height x width`` image whose ``boxes`` ``[N, 4]``
    are xyxy normalised to it. Both input pipelines draw with this (one CPU generator per sample,
    ``sampling.sample_generator``), so a sample gets the same decisions on either."""
    photometric = sample_photometric(1, generator, cfg.photometric)
    h, w = torch.tensor([height]), torch.tensor([width])
    exp = sample_expansion(
        h, w, generator=generator, prob=cfg.expand_prob, max_ratio=cfg.max_expand_ratio
    )
    gt = boxes_to_canvas(boxes.to(torch.float32)[None], h, w, exp)
    valid = torch.ones(gt.shape[:2], dtype=torch.bool)
    crop, sampler = sample_crops(gt, valid, generator, cfg.samplers)
    # CropImage: the crop is truncated to whole canvas pixels.
    eh, ew = int(exp.height[0]), int(exp.width[0])
    x0, y0, x1, y1 = crop[0].tolist()
    left, top = min(int(x0 * ew), ew - 1), min(int(y0 * eh), eh - 1)
    cw = min(max(int((x1 - x0) * ew), 1), ew - left)
    ch = min(max(int((y1 - y0) * eh), 1), eh - top)
    mirror = bool(uniform((1,), generator)[0] < cfg.mirror_prob)
    pick = int(uniform((1,), generator)[0] * len(cfg.interpolations))
    interpolation = cfg.interpolations[min(pick, len(cfg.interpolations) - 1)]
    return TrainParams(
        photometric, exp, (top, left, ch, cw), int(sampler[0]), mirror, interpolation
    )


class SSDTrainTransform:
    """The full Caffe SSD training augmentation for one image (see the module docstring).

    ``sample`` draws the decisions from the generator it is given (the CPU pipeline gives each
    sample its own, ``sampling.sample_generator``), ``apply_uint8`` applies them.
    """

    def __init__(
        self,
        size: int = 300,
        mean: Sequence[float] = CAFFE_MEAN_RGB,
        config: AugmentConfig | None = None,
    ):
        if size < 1:
            raise ConfigError(None, "size", f"must be >= 1, got {size}")
        if len(mean) != 3:
            raise ConfigError(None, "mean", f"need 3 values (RGB), got {len(mean)}")
        self.size = int(size)
        self.fill = [round(float(m)) for m in mean]  # the canvas is uint8
        self.config = config if config is not None else AugmentConfig()

    def sample(
        self, height: int, width: int, boxes: Tensor, generator: torch.Generator
    ) -> TrainParams:
        """Draw every random decision for one ``height x width`` image with pixel ``boxes``."""
        return sample_train_params(
            height,
            width,
            boxes=normalise_boxes(boxes, height, width),
            generator=generator,
            cfg=self.config,
        )

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

    def apply_uint8(
        self, image: Tensor, boxes: Tensor, labels: Tensor, params: TrainParams
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Apply the decisions in ``params`` to an image, its pixel boxes and their labels. The
        image stays uint8 ``[3, S, S]`` (the device subtracts the mean): what the CPU pipeline's
        workers send, a quarter of the bytes of float32."""
        check_image_input(image, boxes, labels)
        _, height, width = image.shape
        h, w = torch.tensor([height]), torch.tensor([width])
        gt = boxes_to_canvas(
            normalise_boxes(boxes, height, width)[None].double(), h, w, params.expansion
        )
        valid = torch.ones(gt.shape[:2], dtype=torch.bool)
        out_boxes, keep = crop_boxes(gt, valid, params.crop_in_canvas()[None])
        flip = torch.tensor([params.mirror])
        out_boxes = mirror_boxes(out_boxes, flip)[0][keep[0]].to(torch.float32)
        # float64 -> float32 can round a tiny box to zero width; never return one.
        nonzero = (out_boxes[:, 2] > out_boxes[:, 0]) & (out_boxes[:, 3] > out_boxes[:, 1])
        out_labels = labels[keep[0]][nonzero]

        mode, antialias = resize_mode(params.interpolation)
        pixels = F.resize(
            self.render(image, params),
            [self.size, self.size],
            interpolation=mode,
            antialias=antialias,
        )
        if params.mirror:
            pixels = F.horizontal_flip(pixels)
        return pixels, out_boxes[nonzero], out_labels
