"""Which device a command runs on, and the memory layout that is fast there."""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["memory_format_for", "resolve_device"]


def resolve_device(name: str, key: str = "device") -> torch.device:
    """'auto' = CUDA when available, else CPU; asking for CUDA without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(None, key, "CUDA was asked for but torch sees no GPU")
    return device


def memory_format_for(device: torch.device, channels_last: bool) -> torch.memory_format:
    """NHWC on CUDA, where cuDNN convolutions are faster in it; the default layout elsewhere."""
    return torch.channels_last if channels_last and device.type == "cuda" \
        else torch.contiguous_format
