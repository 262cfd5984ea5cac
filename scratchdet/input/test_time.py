"""The test-time input: warp-resize to the network's size (the device subtracts the mean)."""

from __future__ import annotations

from torch import Tensor
from torchvision.transforms.v2 import functional as F

from scratchdet.errors import ConfigError
from scratchdet.input.augment import INTERPOLATIONS
from scratchdet.input.per_image import resize_mode

__all__ = ["SSDTestTransform"]


class SSDTestTransform:
    """Test time: warp-resize to ``size`` x ``size`` (Caffe's test ``interp_mode: LINEAR``);
    ``engine.detect`` subtracts the mean on the device."""

    def __init__(self, size: int = 300, interpolation: str = "linear"):
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(None, "interpolation", f"unknown {interpolation!r}")
        self.size = int(size)
        self.interpolation = interpolation

    def resize(self, image: Tensor) -> Tensor:
        """The uint8 ``[3, S, S]`` image before the mean (what detection's workers ship)."""
        mode, antialias = resize_mode(self.interpolation)
        return F.resize(image, [self.size, self.size], interpolation=mode, antialias=antialias)
