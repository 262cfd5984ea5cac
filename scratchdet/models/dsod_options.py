"""The ``dsod`` family's keys (DS/A-B-k-theta and the ablation switches) and its named models.

No torch here: the network is ``dsod.py``, imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .family import Family
from .options import ModelOptions, option

__all__ = ["DSOD", "DSODOptions"]

_BOOL = (False, True)
_PRIORS = (None, "voc", "coco")
_L2NORM = ("none", "first", "all")


@dataclasses.dataclass(frozen=True)
class DSODOptions(ModelOptions):
    """Keys of the ``dsod`` family; defaults are DSOD300 (DS/64-192-48-1, dense)."""

    family: ClassVar[str] = "dsod"

    stem_channels: int = option(64, "A: channels of the first conv (stem: A, A, 2A)", kind=int,
                                lo=1, hi=1024)
    bottleneck: int = option(192, "B: channels of each dense layer's 1x1 bottleneck", kind=int,
                             lo=1, hi=4096)
    growth: int = option(48, "k: growth rate of the dense blocks", kind=int, lo=1, hi=1024)
    theta: float = option(1.0, "compression of the transition layers", kind=float, lo=0.0,
                          hi=1.0, lo_open=True)
    stem: bool = option(True, "stem block (3 convs + pool) instead of 7x7/2 conv + 3x3/2 pool",
                        choices=_BOOL)
    transition_wo_pool: bool = option(True, "4 dense blocks with a transition w/o pooling "
                                      "(else blocks 3 and 4 are one block)", choices=_BOOL)
    prediction: str = option("dense", "prediction structure", choices=("dense", "plain"))
    bn_head: bool = option(True, "BatchNorm after the loc/conf convs (released code)",
                           choices=_BOOL)
    l2norm: str = option("all", "L2Norm (scale 20) before the head", choices=_L2NORM)
    priors: str | None = option(None, "prior sizes; null = coco for 80 classes, else voc",
                                choices=_PRIORS)


DSOD = Family(DSODOptions, builder="scratchdet.models.dsod:build_dsod")

DSOD.register_variant("dsod300", "DSOD300, DS/64-192-48-1, dense prediction (DSOD Tables 3-4)")
DSOD.register_variant("dsod300_plain", "DSOD300, DS/64-192-48-1, plain SSD-style prediction "
                      "(DSOD Table 3 row 9)", prediction="plain")
DSOD.register_variant("dsod300_smallest", "DSOD300, DS/64-64-16-1, dense prediction "
                      "(DSOD Table 3, 5.9M)", bottleneck=64, growth=16)
