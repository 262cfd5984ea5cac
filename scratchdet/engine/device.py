"""Which device a command runs on, and the memory layout that is fast there."""

from __future__ import annotations

import torch

from scratchdet.errors import ConfigError

__all__ = ["memory_format_for", "resolve_device"]


def resolve_device(name: str, key: str = "device") -> torch.device:
    """'auto' = CUDA when available, else CPU; asking for CUDA without a GPU, a GPU index this
    machine lacks or a device string torch does not parse is a ConfigError naming `key`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usage = "use cpu, cuda, cuda:N or auto"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(None, key, f"{name!r} is not a device; {usage}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(None, key, f"{name!r}: only CPU and CUDA devices are supported; {usage}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(None, key, f"{name!r}: CUDA was asked for but torch sees no GPU")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(
            None,
            key,
            f"{name!r}: torch sees {torch.cuda.device_count()} GPU(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}",
        )
    return device


def memory_format_for(device: torch.device, channels_last: bool) -> torch.memory_format:
    """NHWC on CUDA, where cuDNN convolutions are faster in it; the default layout elsewhere."""
    return (
        torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
    )
