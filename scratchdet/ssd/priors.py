"""Default boxes ("priors") of SSD300-style detectors, in the order the Caffe PriorBox layer emits.

The order matters: the heads' output channels are reshaped to ``[B, P, 4]`` assuming it, so a
checkpoint is only meaningful together with the prior layout it was trained with.

Order (same as Caffe ``PriorBoxLayer`` and ssd.pytorch ``PriorBox``): for each source map, for each
cell in row-major order (``y`` outer, ``x`` inner), the boxes

1. square of side ``min_size``,
2. square of side ``sqrt(min_size * max_size)``,
3. for each aspect ratio ``ar`` of the map: ``(min*sqrt(ar), min/sqrt(ar))`` then the flipped
   ``(min/sqrt(ar), min*sqrt(ar))``.

Centres are ``(j + 0.5) * step / image_size``. Priors are ``cxcywh`` normalised to the input size,
not clipped unless ``clip=True`` (corners clamped to [0, 1] as Caffe does; both released configs
use ``clip=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from torchvision.ops import box_convert

from scratchdet.errors import ConfigError

__all__ = [
    "PriorConfig",
    "dsod300_coco",
    "dsod300_voc",
    "make_priors",
    "num_priors",
    "num_priors_per_cell",
    "ssd300_coco",
    "ssd300_voc",
]

SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SSD300_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
VOC_MIN_SIZES = (30.0, 60.0, 111.0, 162.0, 213.0, 264.0)
VOC_MAX_SIZES = (60.0, 111.0, 162.0, 213.0, 264.0, 315.0)
COCO_MIN_SIZES = (21.0, 45.0, 99.0, 153.0, 207.0, 261.0)
COCO_MAX_SIZES = (45.0, 99.0, 153.0, 207.0, 261.0, 315.0)
DSOD300_FEATURE_MAPS = (38, 19, 10, 5, 3, 2)


def _fail(key: str, problem: str) -> ConfigError:
    return ConfigError(None, f"priors.{key}", problem)


@dataclass(frozen=True, kw_only=True)
class PriorConfig:
    """Everything that fixes the prior layout; validated on construction.

    Sizes and steps are in pixels of the ``image_size`` x ``image_size`` network input. Each
    entry of ``aspect_ratios`` lists the ratios (> 0, != 1) of one map; their flips are added.
    """

    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    image_size: int = 300
    variances: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    clip: bool = False
    # Extra, free-form note (e.g. why a step deviates); not used in computations.
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Normalise lists to tuples so configs built from YAML compare/hash like literals.
        object.__setattr__(self, "feature_maps", tuple(int(f) for f in self.feature_maps))
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        object.__setattr__(self, "min_sizes", tuple(float(s) for s in self.min_sizes))
        object.__setattr__(self, "max_sizes", tuple(float(s) for s in self.max_sizes))
        object.__setattr__(
            self, "aspect_ratios", tuple(tuple(float(a) for a in ars) for ars in self.aspect_ratios)
        )
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
        self._validate()

    def _validate(self) -> None:
        n = len(self.feature_maps)
        if n == 0:
            raise _fail("feature_maps", "at least one source map is required")
        for key in ("steps", "min_sizes", "max_sizes", "aspect_ratios"):
            got = len(getattr(self, key))
            if got != n:
                raise _fail(key, f"has {got} entries but feature_maps has {n}")
        if self.image_size <= 0:
            raise _fail("image_size", f"must be positive, got {self.image_size}")
        if any(f <= 0 for f in self.feature_maps):
            raise _fail("feature_maps", f"sizes must be positive, got {list(self.feature_maps)}")
        if any(s <= 0 for s in self.steps):
            raise _fail("steps", f"must be positive, got {list(self.steps)}")
        for k, (lo, hi) in enumerate(zip(self.min_sizes, self.max_sizes)):
            if lo <= 0:
                raise _fail("min_sizes", f"map {k}: must be positive, got {lo}")
            if hi <= lo:
                raise _fail("max_sizes", f"map {k}: max size {hi} must exceed min size {lo}")
        for k, ars in enumerate(self.aspect_ratios):
            for a in ars:
                if a <= 0 or math.isclose(a, 1.0):
                    raise _fail(
                        "aspect_ratios",
                        f"map {k}: ratios must be > 0 and != 1 (1 is always present), got {a}",
                    )
            if len(set(ars)) != len(ars):
                raise _fail("aspect_ratios", f"map {k}: duplicate ratios {list(ars)}")
        if len(self.variances) != 4 or any(v <= 0 for v in self.variances):
            raise _fail("variances", f"need 4 positive numbers, got {list(self.variances)}")


def ssd300_voc(feature_maps: Sequence[int] = (38, 19, 10, 5, 3, 1)) -> PriorConfig:
    """SSD300 PASCAL VOC priors (``ssd_pascal.py``): 8732 priors with the standard maps.

    ScratchDet uses the same layout; pass other ``feature_maps`` when a backbone's last map differs.
    """
    return PriorConfig(
        feature_maps=tuple(feature_maps),
        steps=SSD300_STEPS,
        min_sizes=VOC_MIN_SIZES,
        max_sizes=VOC_MAX_SIZES,
        aspect_ratios=SSD300_ASPECT_RATIOS,
    )


def ssd300_coco(feature_maps: Sequence[int] = (38, 19, 10, 5, 3, 1)) -> PriorConfig:
    """SSD300 COCO priors: smaller minimum sizes (``ssd_coco.py``), same layout as VOC."""
    return replace(ssd300_voc(feature_maps), min_sizes=COCO_MIN_SIZES, max_sizes=COCO_MAX_SIZES)


def _dsod_steps(consistent_last_step: bool) -> tuple[float, ...]:
    # The released DSOD300 keeps SSD's last step (300) although its last map is 2x2 (ceil-mode
    # pooling): the two columns of priors are then centred at 0.5 and 1.5 (off the image). 150
    # would tile the image like every other map. The default reproduces the released models.
    return SSD300_STEPS[:-1] + ((150,) if consistent_last_step else (300,))


def dsod300_voc(consistent_last_step: bool = False) -> PriorConfig:
    """DSOD300 VOC priors: SSD300 VOC sizes on maps (38,19,10,5,3,2) -> 8744 priors.

    ``consistent_last_step=False`` (default) is the released step 300 for the 2x2 map;
    ``True`` uses 150 so the last map's priors tile the image.
    """
    return PriorConfig(
        feature_maps=DSOD300_FEATURE_MAPS,
        steps=_dsod_steps(consistent_last_step),
        min_sizes=VOC_MIN_SIZES,
        max_sizes=VOC_MAX_SIZES,
        aspect_ratios=SSD300_ASPECT_RATIOS,
        note="" if consistent_last_step else "released DSOD: last step 300 on a 2x2 map",
    )


def dsod300_coco(consistent_last_step: bool = False) -> PriorConfig:
    """DSOD300 COCO priors: COCO sizes (``DSOD300_coco.py``) on the 2x2-last-map layout."""
    return replace(
        dsod300_voc(consistent_last_step), min_sizes=COCO_MIN_SIZES, max_sizes=COCO_MAX_SIZES
    )


def num_priors_per_cell(cfg: PriorConfig) -> tuple[int, ...]:
    """Priors per cell of each map: two squares plus each aspect ratio and its flip."""
    return tuple(2 + 2 * len(ars) for ars in cfg.aspect_ratios)


def num_priors(cfg: PriorConfig) -> int:
    """Total number of priors P, without building them (heads need it to size outputs)."""
    return sum(f * f * a for f, a in zip(cfg.feature_maps, num_priors_per_cell(cfg)))


def _cell_shapes(cfg: PriorConfig, k: int) -> list[tuple[float, float]]:
    """(w, h) of the priors of one cell of map k, normalised, in the Caffe order."""
    s = cfg.min_sizes[k] / cfg.image_size
    s_big = math.sqrt(s * cfg.max_sizes[k] / cfg.image_size)
    shapes = [(s, s), (s_big, s_big)]
    for ar in cfg.aspect_ratios[k]:
        r = math.sqrt(ar)
        shapes += [(s * r, s / r), (s / r, s * r)]
    return shapes


def make_priors(
    cfg: PriorConfig, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """All priors of ``cfg`` as ``[P, 4]`` cxcywh, normalised to the input size."""
    per_map = []
    for k, f in enumerate(cfg.feature_maps):
        centres = (torch.arange(f, dtype=torch.float64) + 0.5) * cfg.steps[k] / cfg.image_size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # row-major cells: y outer
        wh = torch.tensor(_cell_shapes(cfg, k), dtype=torch.float64)  # [A, 2]
        a = wh.shape[0]
        ctr = torch.stack([cx, cy], dim=-1).reshape(f * f, 1, 2).expand(f * f, a, 2)
        boxes = torch.cat([ctr, wh.expand(f * f, a, 2)], dim=-1)  # [cells, A, 4]
        per_map.append(boxes.reshape(-1, 4))
    priors = torch.cat(per_map, dim=0)
    if cfg.clip:
        # Caffe clips the corners (ssd.pytorch clamps cx, cy, w, h instead, which is not a clip).
        corners = box_convert(priors, "cxcywh", "xyxy").clamp(0.0, 1.0)
        priors = box_convert(corners, "xyxy", "cxcywh")
    return priors.to(device=device, dtype=dtype)
