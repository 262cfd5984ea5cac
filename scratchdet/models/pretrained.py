"""ImageNet weights for backbones, through torchvision's weights API, with an actionable error.

torchvision downloads into ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``) and
reuses a file already there, which is how an offline machine is provisioned.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from scratchdet.errors import ConfigError
from scratchdet.models.input import CAFFE_MEAN_RGB  # the network input's mean

__all__ = ["CAFFE_MEAN_RGB", "ImageNetInput", "checkpoint_path", "load_state_dict"]



def checkpoint_path(weights: WeightsEnum) -> str:
    """Where torchvision looks for (and stores) the file of ``weights``."""
    filename = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def load_state_dict(weights: WeightsEnum) -> dict[str, Tensor]:
    """The state dict of ``weights`` (downloaded if needed), or a ConfigError saying how."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        raise ConfigError(
            None, "model.pretrained",
            f"cannot load ImageNet weights {type(weights).__name__}.{weights.name} ({err}). "
            f"Download {weights.url} on a machine with internet access and place it at "
            f"{checkpoint_path(weights)} (that is $TORCH_HOME/hub/checkpoints/; TORCH_HOME "
            f"defaults to ~/.cache/torch), or set pretrained: false.") from err


class ImageNetInput(nn.Module):
    """Maps this project's input (Caffe-style ``pixel - mean``, 0-255) to torchvision's
    ImageNet normalisation, so torchvision's pretrained weights see the statistics they were
    trained on while the data pipeline stays the same for every model."""

    def __init__(self, mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                 std: tuple[float, ...] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        caffe = torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1)
        m = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
        s = torch.tensor(std).view(1, 3, 1, 1) * 255.0
        # (x + caffe - m) / s  ==  x * scale + shift
        self.register_buffer("scale", 1.0 / s, persistent=False)
        self.register_buffer("shift", (caffe - m) / s, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
