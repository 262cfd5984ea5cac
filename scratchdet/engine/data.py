"""Glue between the dataset, the augmentation and the resumable sample stream."""

from __future__ import annotations

import torch

from ..data.dataset import DetectionDataset
from ..data.transforms import AugmentConfig, SSDTrainTransform
from .sampling import sample_seed


class TrainSamples(torch.utils.data.Dataset):
    """Indexed by (stream position, dataset index); the position seeds the augmentation."""

    def __init__(self, dataset: DetectionDataset, image_size: int, seed: int,
                 augment: AugmentConfig | None = None):
        self.dataset = dataset
        self.transform = SSDTrainTransform(size=image_size, config=augment)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        position, index = key
        image, target = self.dataset[index]
        generator = torch.Generator().manual_seed(sample_seed(self.seed, position))
        return self.transform(image, target["boxes"], target["labels"], generator=generator)


def collate_train(batch):
    images, boxes, labels = zip(*batch)
    return torch.stack(images), list(boxes), list(labels)
