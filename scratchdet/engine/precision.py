"""The arithmetic a training run computes in (``train.precision``).

The releases train in float32 (Caffe has no other type for these layers). A run config picks one
of: ``fp32`` (float32 everywhere, TF32 off, as the releases), ``tf32`` (float32 storage, TF32
matrix products and convolutions on CUDA: 10-bit mantissas inside the products, float32 sums),
``bf16`` (bf16 autocast of the forward pass on any device; the loss, BatchNorm statistics and the
optimizer stay float32) and ``auto`` (``bf16`` on CUDA, ``fp32`` elsewhere, as before this key
existed; the old ``train.amp: false`` still means fp32). docs/SPECS.md says which the paper
scale uses and why.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from scratchdet.config import TrainConfig

__all__ = ["autocast_for", "resolved_precision", "set_matmul_precision"]


def resolved_precision(train: TrainConfig, device: torch.device) -> str:
    """fp32, tf32 or bf16: what ``train.precision`` (with the old ``amp``) means on ``device``."""
    if train.precision != "auto":
        return train.precision
    return "bf16" if train.amp and device.type == "cuda" else "fp32"


def autocast_for(train: TrainConfig, device: torch.device) -> AbstractContextManager:
    """The forward pass's context: bf16 autocast, or nothing."""
    if resolved_precision(train, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def set_matmul_precision(train: TrainConfig, device: torch.device) -> None:
    """TF32 on for ``tf32``, off for ``fp32`` (cuDNN allows it by default, so float32 must switch
    it off to be float32); left as it is under bf16 autocast, whose products are bf16 anyway."""
    precision = resolved_precision(train, device)
    if device.type != "cuda" or precision == "bf16":
        return
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
