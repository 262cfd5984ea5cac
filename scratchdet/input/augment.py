"""The SSD training augmentation as data: every knob of it, and the named augmentations.

The numbers are those of Caffe SSD's ``AnnotatedDataLayer`` in ``ssd_pascal.py``
(``train_transform_param`` and ``batch_sampler``): the "standard SSD" augmentation that DSOD's and
ScratchDet's released Caffe scripts use unchanged (docs/SPECS.md). ``per_image.py`` applies an
``AugmentConfig`` to one image on the CPU, ``batched.py`` to a whole batch on any device; both
draw their random decisions with ``per_image.sample_train_params``. Each knob declares its range
in its type and an ``AugmentConfig`` is checked when it is made (``scratchdet.validation``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
from torchvision.transforms import InterpolationMode

from scratchdet.config import AUGMENTATIONS
from scratchdet.errors import ConfigError
from scratchdet.validation import bounds, check

__all__ = [
    "AUGMENT_CONFIGS",
    "CAFFE_INTERPOLATIONS",
    "INTERPOLATIONS",
    "NO_AUGMENTATION",
    "SSD_CROP_SAMPLERS",
    "AugmentConfig",
    "CropSampler",
    "PhotometricConfig",
    "augment_config",
]

Probability = Annotated[float, bounds("[0, 1]")]
NonNegative = Annotated[float, bounds("[0, inf)")]
Scale = Annotated[float, bounds("(0, 1]")]
AspectRatio = Annotated[float, bounds("(0, inf)")]
Interpolation = Literal["linear", "area", "nearest", "cubic", "lanczos4"]
"""Caffe's ``interp_mode`` names."""


@dataclass(frozen=True)
class CropSampler:
    """One of Caffe's ``batch_sampler`` entries (a crop proposal rule, not torch's
    ``BatchSampler``); the defaults give the whole image (unit box)."""

    min_scale: Scale = 1.0
    max_scale: Scale = 1.0
    min_aspect_ratio: AspectRatio = 1.0
    max_aspect_ratio: AspectRatio = 1.0
    min_iou: float | None = None
    max_iou: float | None = None
    max_trials: Annotated[int, bounds("[1, inf)")] = 1

    @property
    def constrained(self) -> bool:
        return self.min_iou is not None or self.max_iou is not None


def _ssd_sampler(**constraint: float) -> CropSampler:
    return CropSampler(0.3, 1.0, 0.5, 2.0, max_trials=50, **constraint)


SSD_CROP_SAMPLERS: tuple[CropSampler, ...] = (
    CropSampler(),
    _ssd_sampler(min_iou=0.1),
    _ssd_sampler(min_iou=0.3),
    _ssd_sampler(min_iou=0.5),
    _ssd_sampler(min_iou=0.7),
    _ssd_sampler(min_iou=0.9),
    _ssd_sampler(max_iou=1.0),
)
"""ssd_pascal.py's seven samplers (max_sample 1 each)."""

# Caffe's interp_mode names -> (v2 mode, antialias). See per_image.py for the substitutes.
INTERPOLATIONS: dict[str, tuple[InterpolationMode, bool]] = {
    "linear": (InterpolationMode.BILINEAR, False),
    "area": (InterpolationMode.BILINEAR, True),
    "nearest": (InterpolationMode.NEAREST, False),
    "cubic": (InterpolationMode.BICUBIC, False),
    "lanczos4": (InterpolationMode.LANCZOS, True),
}
CAFFE_INTERPOLATIONS: tuple[str, ...] = typing.get_args(Interpolation)
assert tuple(INTERPOLATIONS) == CAFFE_INTERPOLATIONS


@dataclass(frozen=True)
class PhotometricConfig:
    """Caffe's ``distort_param`` from ssd_pascal.py (``hue_delta`` in OpenCV units of 2 degrees)."""

    brightness_prob: Probability = 0.5
    brightness_delta: NonNegative = 32.0
    contrast_prob: Probability = 0.5
    contrast_lower: NonNegative = 0.5
    contrast_upper: NonNegative = 1.5
    saturation_prob: Probability = 0.5
    saturation_lower: NonNegative = 0.5
    saturation_upper: NonNegative = 1.5
    hue_prob: Probability = 0.5
    hue_delta: Annotated[float, bounds("[0, 90]")] = 18.0  # 90 OpenCV units = half the circle
    channel_swap_prob: Probability = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    """Every knob of the augmentation; the defaults are Caffe SSD's."""

    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    expand_prob: Probability = 0.5
    max_expand_ratio: Annotated[float, bounds("[1, inf)")] = 4.0
    samplers: Annotated[tuple[CropSampler, ...], msgspec.Meta(min_length=1)] = SSD_CROP_SAMPLERS
    mirror_prob: Probability = 0.5
    interpolations: Annotated[tuple[Interpolation, ...], msgspec.Meta(min_length=1)] = (
        CAFFE_INTERPOLATIONS
    )

    def __post_init__(self) -> None:
        check(self, path=None, key="augment")  # every knob's range, as for a config file
        p = self.photometric
        for name, lo, hi in [
            ("contrast", p.contrast_lower, p.contrast_upper),
            ("saturation", p.saturation_lower, p.saturation_upper),
        ]:
            if lo > hi:
                raise ConfigError(
                    None, f"augment.photometric.{name}_lower", "need 0 <= lower <= upper"
                )
        for i, s in enumerate(self.samplers):
            if s.min_scale > s.max_scale:
                raise ConfigError(
                    None, f"augment.samplers[{i}]", "need 0 < min_scale <= max_scale <= 1"
                )
            if s.min_aspect_ratio > s.max_aspect_ratio:
                raise ConfigError(
                    None, f"augment.samplers[{i}]", "need 0 < min_aspect_ratio <= max_aspect_ratio"
                )


NO_AUGMENTATION = AugmentConfig(
    photometric=PhotometricConfig(
        brightness_prob=0.0,
        contrast_prob=0.0,
        saturation_prob=0.0,
        hue_prob=0.0,
        channel_swap_prob=0.0,
    ),
    expand_prob=0.0,
    samplers=(CropSampler(),),
    mirror_prob=0.0,
    interpolations=("linear",),
)
"""``data.augment: none``: the whole image, warp-resized (linear, as at test time); no
distortion, expansion, crop or mirror. For debugging and memorisation checks."""

AUGMENT_CONFIGS: dict[str, AugmentConfig] = {"ssd": AugmentConfig(), "none": NO_AUGMENTATION}
"""``data.augment`` value (``scratchdet.config.AUGMENTATIONS``) -> its AugmentConfig."""
assert tuple(AUGMENT_CONFIGS) == AUGMENTATIONS


def augment_config(name: str) -> AugmentConfig:
    """The AugmentConfig of a ``data.augment`` value."""
    if name not in AUGMENT_CONFIGS:
        raise ConfigError(
            None, "data.augment", f"must be one of {', '.join(AUGMENTATIONS)}, got {name!r}"
        )
    return AUGMENT_CONFIGS[name]
