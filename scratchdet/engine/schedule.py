"""Learning rate as a pure function of the step, so a resumed run needs no scheduler state."""

from __future__ import annotations

import bisect

from scratchdet.config import TrainConfig

__all__ = ["lr_at"]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup from lr * warmup_factor, then multiply by gamma at each milestone passed.

    `step` counts optimizer steps from 0. Matches Caffe's "multistep" policy (the DSOD and
    ScratchDet releases) and mmdetection's linear warmup (the ScratchDet mmdetection release).
    """
    lr = cfg.lr * cfg.gamma ** bisect.bisect_right(cfg.milestones, step)
    if step < cfg.warmup_steps:
        alpha = step / cfg.warmup_steps
        lr *= cfg.warmup_factor * (1 - alpha) + alpha
    return lr
