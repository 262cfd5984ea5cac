"""The ``dsod`` family's keys (DS/A-B-k-theta and the ablation switches) and its named models.

No torch here: the network is ``dsod.py``, imported only when a model is built.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from scratchdet.models.family import Family
from scratchdet.models.options import ModelOptions, doc
from scratchdet.validation import bounds

__all__ = ["DSOD", "DSODOptions"]

Priors = Literal["voc", "coco"] | None
L2Norm = Literal["none", "first", "all"]


class DSODOptions(ModelOptions, frozen=True):
    """Keys of the ``dsod`` family; defaults are DSOD300 (DS/64-192-48-1, dense)."""

    family: ClassVar[str] = "dsod"

    stem_channels: Annotated[
        int, bounds("[1, 1024]"), doc("A: channels of the first conv (stem: A, A, 2A)")
    ] = 64
    bottleneck: Annotated[
        int, bounds("[1, 4096]"), doc("B: channels of each dense layer's 1x1 bottleneck")
    ] = 192
    growth: Annotated[int, bounds("[1, 1024]"), doc("k: growth rate of the dense blocks")] = 48
    theta: Annotated[float, bounds("(0, 1]"), doc("compression of the transition layers")] = 1.0
    stem: Annotated[bool, doc("stem block (3 convs + pool) instead of 7x7/2 conv + 3x3/2 pool")] = (
        True
    )
    transition_wo_pool: Annotated[
        bool,
        doc("4 dense blocks with a transition w/o pooling (else blocks 3 and 4 are one block)"),
    ] = True
    prediction: Annotated[Literal["dense", "plain"], doc("prediction structure")] = "dense"
    bn_head: Annotated[bool, doc("BatchNorm after the loc/conf convs (released code)")] = True
    l2norm: Annotated[L2Norm, doc("L2Norm (scale 20) before the head")] = "all"
    priors: Annotated[Priors, doc("prior sizes; null = coco for 80 classes, else voc")] = None


DSOD = Family(DSODOptions, builder="scratchdet.models.dsod:build_dsod")

DSOD.register_variant("dsod300", "DSOD300, DS/64-192-48-1, dense prediction (DSOD Tables 3-4)")
DSOD.register_variant(
    "dsod300_plain",
    "DSOD300, DS/64-192-48-1, plain SSD-style prediction (DSOD Table 3 row 9)",
    prediction="plain",
)
DSOD.register_variant(
    "dsod300_smallest",
    "DSOD300, DS/64-64-16-1, dense prediction (DSOD Table 3, 5.9M)",
    bottleneck=64,
    growth=16,
)
