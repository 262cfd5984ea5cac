"""MultiBox loss (SSD): smooth-L1 on positives + softmax cross-entropy with 3:1 hard negatives.

Semantics follow ssd.pytorch / Caffe ``MultiBoxLossLayer`` (``MAX_NEGATIVE`` mining, ``VALID``
normalisation):

- localisation: smooth L1 (beta 1), summed over the 4 offsets of every positive prior;
- confidence: cross-entropy summed over positives and, per image, the ``neg_pos_ratio * num_pos``
  negatives with the largest background loss ``-log softmax(conf)[0]`` (capped at ``P - 1``);
  an image without positives contributes no negatives;
- both sums are divided by the number of positives in the whole batch, clamped to >= 1. ssd.pytorch
  divides by zero there (NaN); Caffe skips normalisation. With the clamp, an all-background batch
  gives a finite loss of 0 with zero gradients instead of poisoning the weights.

Everything is computed for the whole batch at once: the per-image top-k of negatives is a rank
obtained from one sort, so there is no Python loop and no host sync (``.item()``), which keeps the
module CUDA-graph/``torch.compile`` friendly. Inputs may be bf16/fp16 (autocast); the loss is
computed in float32.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiBoxLoss", "hard_negative_mask"]


def hard_negative_mask(background_loss: Tensor, positive: Tensor, neg_pos_ratio: float) -> Tensor:
    """``[B,P]`` bool: per image, the top ``ratio * num_pos`` negatives by ``background_loss``.

    Positives are ranked below every negative so they are never counted as negatives; ties among
    negatives go to the lower prior index (stable sort).
    """
    b, p = background_loss.shape
    score = background_loss.detach().masked_fill(positive, float("-inf"))
    order = score.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(p, device=score.device).expand(b, p)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # rank[b, prior] = position
    num_neg = (neg_pos_ratio * positive.sum(dim=1, keepdim=True)).long().clamp(max=p - 1)
    return (rank < num_neg) & ~positive


class MultiBoxLoss(nn.Module):
    """SSD training loss; ``forward`` returns a dict with ``loss``, ``loc``, ``conf``,
    ``num_pos``."""

    def __init__(self, neg_pos_ratio: float = 3.0, loc_weight: float = 1.0) -> None:
        super().__init__()
        if neg_pos_ratio < 0:
            raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio}")
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.loc_weight = float(loc_weight)

    def forward(
        self, loc_pred: Tensor, conf_pred: Tensor, loc_t: Tensor, labels_t: Tensor
    ) -> dict[str, Tensor]:
        """``loc_pred [B,P,4]``, ``conf_pred [B,P,K]``, targets from ``matching.match``."""
        b, p, _ = conf_pred.shape
        if loc_pred.shape != (b, p, 4) or loc_t.shape != (b, p, 4) or labels_t.shape != (b, p):
            raise ValueError(
                f"shape mismatch: loc_pred {tuple(loc_pred.shape)}, conf_pred "
                f"{tuple(conf_pred.shape)}, loc_t {tuple(loc_t.shape)}, labels_t "
                f"{tuple(labels_t.shape)}"
            )
        device_type = loc_pred.device.type
        no_autocast = (
            torch.autocast(device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else nullcontext()
        )
        with no_autocast:
            loc_pred, conf_pred, loc_t = loc_pred.float(), conf_pred.float(), loc_t.float()
            labels_t = labels_t.long()
            positive = labels_t > 0
            num_pos = positive.sum()
            denom = num_pos.clamp(min=1).float()

            loc_each = F.smooth_l1_loss(loc_pred, loc_t, reduction="none", beta=1.0).sum(-1)
            loc_loss = torch.where(positive, loc_each, torch.zeros_like(loc_each)).sum() / denom

            # Cross-entropy with the target label; on negatives it is the background loss.
            ce = F.cross_entropy(
                conf_pred.reshape(b * p, -1), labels_t.reshape(b * p), reduction="none"
            ).reshape(b, p)
            selected = positive | hard_negative_mask(ce, positive, self.neg_pos_ratio)
            conf_loss = torch.where(selected, ce, torch.zeros_like(ce)).sum() / denom

            total = self.loc_weight * loc_loss + conf_loss
        return {"loss": total, "loc": loc_loss, "conf": conf_loss, "num_pos": num_pos}
