"""SSD machinery shared by every detector: priors, box coding, matching, loss, post-processing.

Conventions (docs/ARCHITECTURE.md): boxes normalised to [0, 1]; ground truth and decoded boxes
xyxy; priors cxcywh; class 0 = background.
"""

from scratchdet.ssd.box_coder import decode, encode
from scratchdet.ssd.loss import MultiBoxLoss
from scratchdet.ssd.matching import match
from scratchdet.ssd.postprocess import batch_detections
from scratchdet.ssd.priors import (
    PriorConfig,
    dsod300_coco,
    dsod300_voc,
    make_priors,
    num_priors,
    num_priors_per_cell,
    ssd300_coco,
    ssd300_voc,
)

__all__ = [
    "MultiBoxLoss",
    "PriorConfig",
    "batch_detections",
    "decode",
    "dsod300_coco",
    "dsod300_voc",
    "encode",
    "make_priors",
    "match",
    "num_priors",
    "num_priors_per_cell",
    "ssd300_coco",
    "ssd300_voc",
]
