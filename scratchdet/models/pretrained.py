"""ImageNet weights for backbones, through torchvision's weights API, with an actionable error.

torchvision downloads into ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``) and
reuses a file already there, which is how an offline machine is provisioned. The workflow does
exactly that: its ``imagenet_weights`` jobs run ``python -m scratchdet.models.pretrained`` to
fetch each file a row needs (verified against the SHA-256 prefix in its name, as torch.hub
checks it) into the ``TORCH_HOME`` its training jobs then use, so training never downloads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import (
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    VGG16_BN_Weights,
    VGG16_Weights,
    WeightsEnum,
)

from scratchdet.errors import ConfigError, DataError, ScratchdetError
from scratchdet.models.input import CAFFE_MEAN_RGB  # the network input's mean

__all__ = [
    "CAFFE_MEAN_RGB",
    "ImageNetInput",
    "checkpoint_path",
    "fetch_weights",
    "imagenet_weights",
    "load_state_dict",
    "weights_file",
]

_RESNET = {18: ResNet18_Weights, 34: ResNet34_Weights, 50: ResNet50_Weights, 101: ResNet101_Weights}
_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's: <name>-<sha256 prefix>.<ext>


def imagenet_weights(model: Mapping[str, Any] | str) -> WeightsEnum | None:
    """The torchvision weights a model config fine-tunes (None: trained from scratch).

    The same choice as the builders make (vgg.py: VGG16 or VGG16_BN by ``bn_backbone``;
    resnet.py: by ``depth``); tests/test_pretrained_weights.py checks that they agree."""
    from scratchdet.models.registry import resolve_config  # registry imports this module

    _, opts = resolve_config(model)
    if not getattr(opts, "pretrained", False):
        return None
    if opts.family == "vgg":
        return VGG16_BN_Weights.IMAGENET1K_V1 if opts.bn_backbone else VGG16_Weights.IMAGENET1K_V1
    if opts.family == "resnet":
        return _RESNET[opts.depth].IMAGENET1K_V1
    return None


def weights_file(weights: WeightsEnum) -> str:
    """The file name torchvision stores ``weights`` under in ``$TORCH_HOME/hub/checkpoints``."""
    return os.path.basename(urlparse(weights.url).path)


def _sha256_prefix(path: Path) -> str:
    match = _HASH_PREFIX.search(path.name)
    if not match:
        raise DataError(
            path,
            "the file name carries no SHA-256 prefix (<name>-<hex>.pth), so the "
            "download cannot be verified",
        )
    return match.group(1)


def fetch_weights(url: str, dest: str | Path) -> Path:
    """Download torchvision weights from ``url`` to ``dest`` (a ``hub/checkpoints`` path), checked
    against the SHA-256 prefix in the file name; a verified file already there is kept.

    Written through a temporary file (torch.hub's own), so a failed or interrupted download
    leaves nothing at ``dest``."""
    dest = Path(dest)
    prefix = _sha256_prefix(dest)
    if dest.exists():
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        if digest.startswith(prefix):
            return dest
        raise DataError(
            dest,
            f"exists but its SHA-256 {digest[:12]}... does not start with "
            f"{prefix} (a corrupt copy): delete it and run again",
        )
    try:
        _download(url, dest, prefix)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a wrong hash a RuntimeError
        raise DataError(dest, f"cannot fetch {url}: {err}") from None
    return dest


def _download(url: str, dest: Path, prefix: str) -> None:
    """Stream `url` into `dest` through a temporary file, with progress on stderr (a bar on a
    terminal, lines in a job's log); a SHA-256 that does not start with `prefix` leaves nothing."""
    import urllib.request

    from scratchdet.io import atomic_path
    from scratchdet.progress import Progress

    with urllib.request.urlopen(url, timeout=60) as resp, atomic_path(dest) as tmp:
        length = resp.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        digest = hashlib.sha256()
        with (
            open(tmp, "wb") as fh,
            Progress(
                f"download {dest.name}", total, in_bytes=True, every=None if total else 64 << 20
            ) as progress,
        ):
            while block := resp.read(1 << 20):
                fh.write(block)
                digest.update(block)
                progress.update(len(block))
        if not digest.hexdigest().startswith(prefix):
            raise RuntimeError(
                f"invalid hash value (expected a SHA-256 starting with {prefix}, "
                f"got {digest.hexdigest()[:12]}...)"
            )


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
            None,
            "model.pretrained",
            f"cannot load ImageNet weights {type(weights).__name__}.{weights.name} ({err}). "
            f"Download {weights.url} on a machine with internet access and place it at "
            f"{checkpoint_path(weights)} (that is $TORCH_HOME/hub/checkpoints/; TORCH_HOME "
            f"defaults to ~/.cache/torch), or set pretrained: false.",
        ) from err


class ImageNetInput(nn.Module):
    """Maps this project's input (Caffe-style ``pixel - mean``, 0-255) to torchvision's
    ImageNet normalisation, so torchvision's pretrained weights see the statistics they were
    trained on while the data pipeline stays the same for every model."""

    def __init__(
        self,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        caffe = torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1)
        m = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
        s = torch.tensor(std).view(1, 3, 1, 1) * 255.0
        # (x + caffe - m) / s  ==  x * scale + shift
        self.register_buffer("scale", 1.0 / s, persistent=False)
        self.register_buffer("shift", (caffe - m) / s, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


def main(argv: list[str] | None = None) -> int:
    """``python -m scratchdet.models.pretrained --url URL --out FILE``: one verified download."""
    parser = argparse.ArgumentParser(
        prog="python -m scratchdet.models.pretrained",
        description=fetch_weights.__doc__.splitlines()[0],
    )
    parser.add_argument("--url", required=True, help="torchvision's URL of the weights")
    parser.add_argument(
        "--out",
        required=True,
        help="destination: $TORCH_HOME/hub/checkpoints/<the URL's file name>",
    )
    args = parser.parse_args(argv)
    try:
        path = fetch_weights(args.url, args.out)
    except ScratchdetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
