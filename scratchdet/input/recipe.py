"""The SSD training augmentation as data: every knob of the recipe, and the named recipes.

The numbers are those of Caffe SSD's ``AnnotatedDataLayer`` in ``ssd_pascal.py``
(``train_transform_param`` and ``batch_sampler``): the "standard SSD" augmentation that DSOD's and
ScratchDet's released Caffe scripts use unchanged (docs/SPECS.md). ``per_image.py`` applies a
recipe to one image on the CPU, ``batched.py`` to a whole batch on any device; both draw their
random decisions with ``per_image.sample_train_params``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torchvision.transforms import InterpolationMode

from ..errors import ConfigError

__all__ = ["AUGMENTATIONS", "CAFFE_INTERPOLATIONS", "INTERPOLATIONS", "NO_AUGMENTATION",
           "SSD_CROP_SAMPLERS", "AugmentConfig", "CropSampler", "PhotometricConfig",
           "augment_config"]


@dataclass(frozen=True)
class CropSampler:
    """One of Caffe's ``batch_sampler`` entries (a crop proposal rule, not torch's
    ``BatchSampler``); the defaults give the whole image (unit box)."""

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
    samplers: tuple[CropSampler, ...] = SSD_CROP_SAMPLERS
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


NO_AUGMENTATION = AugmentConfig(
    photometric=PhotometricConfig(brightness_prob=0.0, contrast_prob=0.0, saturation_prob=0.0,
                                  hue_prob=0.0, channel_swap_prob=0.0),
    expand_prob=0.0, samplers=(CropSampler(),), mirror_prob=0.0, interpolations=("linear",))
"""``data.augment: none``: the whole image, warp-resized (linear, as at test time); no
distortion, expansion, crop or mirror. For debugging and memorisation checks."""

AUGMENTATIONS: dict[str, AugmentConfig] = {"ssd": AugmentConfig(), "none": NO_AUGMENTATION}
"""``data.augment`` name -> recipe (``scratchdet.config.AUGMENTATIONS`` lists the same names)."""


def augment_config(name: str) -> AugmentConfig:
    """The recipe of a ``data.augment`` value."""
    if name not in AUGMENTATIONS:
        raise ConfigError(None, "data.augment", f"must be one of {', '.join(AUGMENTATIONS)}, "
                                                f"got {name!r}")
    return AUGMENTATIONS[name]
