"""The test-time input: warp-resize to the network's size and subtract the mean."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError
from ..models.input import CAFFE_MEAN_RGB
from .per_image import mean_tensor, resize_mode
from .augment import INTERPOLATIONS

__all__ = ["SSDTestTransform"]


class SSDTestTransform:
    """Test time: warp-resize to ``size`` x ``size`` (Caffe's test ``interp_mode: LINEAR``),
    subtract the mean; boxes are normalised to [0, 1] and clipped, none dropped."""

    def __init__(self, size: int = 300, mean: Sequence[float] = CAFFE_MEAN_RGB,
                 interpolation: str = "linear"):
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(None, "interpolation", f"unknown {interpolation!r}")
        self.size = int(size)
        self.mean = mean_tensor(mean)
        self.interpolation = interpolation

    def resize(self, image: Tensor) -> Tensor:
        """The uint8 ``[3, S, S]`` image before the mean (what detection's workers ship)."""
        mode, antialias = resize_mode(self.interpolation)
        return F.resize(image, [self.size, self.size], interpolation=mode, antialias=antialias)

    def __call__(self, image: Tensor, boxes: Tensor | None = None,
                 labels: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} "
                             f"{list(image.shape)}")
        _, height, width = image.shape
        out = self.resize(image).float() - self.mean[:, None, None]
        if boxes is None:
            return out, None, labels
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return out, (boxes.to(torch.float32) / scale).clamp(0.0, 1.0), labels
