"""Inputs for the training benchmark: pre-made synthetic tensors and the real data pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from scratchdet.config import config_from_dict
from scratchdet.data.annotations import load_annotations
from scratchdet.data.dataset import DetectionDataset
from scratchdet.input import TrainBatch, build_train_input
from scratchdet.models.input import CAFFE_MEAN_RGB
from scratchdet.ssd.matching import match

__all__ = [
    "pipeline_batches",
    "random_targets",
    "synthetic_batch",
    "synthetic_images",
    "to_network_input",
    "training_split",
]


def random_targets(
    batch: int, num_classes: int, generator: torch.Generator, boxes_per_image: int = 3
) -> tuple[Tensor, Tensor, Tensor]:
    """Padded normalised xyxy boxes, labels 1..C and an all-True mask (CPU tensors)."""
    centre = torch.rand(batch, boxes_per_image, 2, generator=generator) * 0.6 + 0.2
    half = torch.rand(batch, boxes_per_image, 2, generator=generator) * 0.25 + 0.03
    boxes = torch.cat([centre - half, centre + half], -1).clamp(0, 1)
    labels = torch.randint(1, num_classes + 1, (batch, boxes_per_image), generator=generator)
    return boxes, labels, torch.ones(batch, boxes_per_image, dtype=torch.bool)


def synthetic_images(batch: int, size: int, generator: torch.Generator) -> Tensor:
    """Images in [0, 1] (the torchvision reference's input; ours is ``255 * x - mean``)."""
    return torch.rand(batch, 3, size, size, generator=generator)


def to_network_input(images01: Tensor) -> Tensor:
    mean = torch.tensor(CAFFE_MEAN_RGB, device=images01.device)[None, :, None, None]
    return images01 * 255.0 - mean


def synthetic_batch(
    *,
    batch: int,
    num_classes: int,
    priors: Tensor,
    variances,
    size: int,
    memory_format: torch.memory_format,
    seed: int,
) -> TrainBatch:
    """A fixed batch already on the priors' device: the step alone, no input cost."""
    g = torch.Generator().manual_seed(seed)
    images = to_network_input(synthetic_images(batch, size, g).to(priors.device))
    boxes, labels, mask = (t.to(priors.device) for t in random_targets(batch, num_classes, g))
    loc_t, labels_t = match(boxes, labels, mask, priors=priors, variances=variances)
    return TrainBatch(images.contiguous(memory_format=memory_format), loc_t, labels_t)


def training_split(data: str | None, n_images: int, workdir: str | Path) -> Path:
    """The annotation JSON to read: ``data`` as given, else a synthetic VOC split in ``workdir``."""
    if data:
        return Path(data)
    from scratchdet.data.annotations import save_annotations
    from scratchdet.data.synth import make_synthetic_voc
    from scratchdet.data.voc import read_voc

    root = Path(workdir)
    voc = make_synthetic_voc(root / "synth", n_trainval=n_images, n_test=1, seed=0)
    out = root / "trainval.json"
    save_annotations(read_voc(voc, "trainval"), out)
    return out


def pipeline_batches(
    split: Path,
    *,
    pipeline: str,
    batch: int,
    steps: int,
    priors: Tensor,
    variances,
    memory_format: torch.memory_format,
    workers: int,
    seed: int,
) -> Iterator[TrainBatch]:
    """The training input exactly as ``scratchdet train`` builds it (``input.build_train_input``)
    for ``pipeline`` ('cpu' or 'device'), with the SSD augmentation."""
    cfg = config_from_dict(
        {
            "seed": seed,
            "data": {"train": str(split), "num_workers": workers, "pipeline": pipeline},
            "train": {"batch_size": batch, "max_steps": steps},
        }
    )
    dataset = DetectionDataset(load_annotations(split))
    return iter(
        build_train_input(
            cfg,
            dataset,
            device=priors.device,
            priors=priors,
            variances=variances,
            start_step=0,
            memory_format=memory_format,
        )
    )
