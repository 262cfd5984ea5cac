"""The device-side training input pipeline: light CPU decode, everything else batched on the device.

CPU (DataLoader workers): decode JPEG to uint8, normalise boxes, pack the batch into one flat
uint8 buffer (``collate_raw``), pinned by the DataLoader. Device (``DevicePipeline``): one
non-blocking copy, ``SSDBatchAugment`` over the whole batch (photometric, expand, IoU crop, flip,
resize), then batched matching and encoding. In ``engine/train.py`` the switch is one line:

    loader = DataLoader(RawSamples(dataset), batch_sampler=sampler, collate_fn=collate_raw,
                        num_workers=..., pin_memory=device.type == "cuda")
    pipeline = DevicePipeline(model.priors, model.prior_config.variances, seed=cfg.seed, ...)
    for raw in loader:
        images, loc_t, labels_t = pipeline(raw)

Reproducibility matches the CPU path's contract: a batch's random draws come from a CPU generator
seeded by (seed, the stream position of the batch's first sample), so the data a step sees depends
only on (seed, step), not on the device, the worker count or an interruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..data.dataset import DetectionDataset
from ..data.gpu_augment import SSDBatchAugment
from ..data.transforms import CAFFE_MEAN_RGB, AugmentConfig
from ..ssd.matching import match
from .sampling import sample_seed

__all__ = ["DevicePipeline", "RawBatch", "RawSamples", "TrainBatch", "collate_raw"]


class RawSamples(torch.utils.data.Dataset):
    """Decoded, unaugmented samples keyed by (stream position, dataset index), like TrainSamples.

    Returns ``(image uint8 [3,H,W], boxes float32 [N,4] xyxy normalised to the image,
    labels int64 [N], position)``.
    """

    def __init__(self, dataset: DetectionDataset):
        if dataset.transform is not None:
            raise ValueError("RawSamples needs a dataset without a transform (it augments later)")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        position, index = key
        image, target = self.dataset[index]
        h, w = image.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        return image, target["boxes"].float() / scale, target["labels"].long(), int(position)


@dataclass
class RawBatch:
    """A batch as the CPU hands it over: few tensors, so pinning and copying are cheap."""

    pixels: Tensor  # uint8 [sum 3*H_i*W_i], the images flattened and concatenated
    sizes: Tensor  # int64 [B, 2] (H, W), stays on the CPU
    boxes: Tensor  # float32 [B, G, 4] xyxy normalised to each image
    labels: Tensor  # int64 [B, G]
    mask: Tensor  # bool [B, G]
    positions: Tensor  # int64 [B] stream positions, stays on the CPU

    def __len__(self) -> int:
        return len(self.sizes)

    def pin_memory(self) -> RawBatch:
        """Called by DataLoader(pin_memory=True) in its pinning thread."""
        return RawBatch(self.pixels.pin_memory(), self.sizes, self.boxes.pin_memory(),
                        self.labels.pin_memory(), self.mask.pin_memory(), self.positions)

    def to(self, device: torch.device | str, non_blocking: bool = True) -> RawBatch:
        def move(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return RawBatch(move(self.pixels), self.sizes, move(self.boxes), move(self.labels),
                        move(self.mask), self.positions)

    def images(self) -> list[Tensor]:
        """Views ``[3, H_i, W_i]`` into ``pixels`` (no copy), on its device."""
        counts = (3 * self.sizes[:, 0] * self.sizes[:, 1]).tolist()
        return [flat.view(3, int(h), int(w)) for flat, (h, w)
                in zip(self.pixels.split(counts), self.sizes.tolist())]


def collate_raw(batch: Sequence[tuple[Tensor, Tensor, Tensor, int]],
                max_boxes: int | None = None) -> RawBatch:
    """Pack RawSamples items; ``max_boxes`` fixes G (static shapes for torch.compile)."""
    if not batch:
        raise ValueError("collate_raw needs at least one sample")
    images, boxes, labels, positions = zip(*batch)
    counts = [len(b) for b in boxes]
    g = max(1, max(counts)) if max_boxes is None else max_boxes
    if max(counts) > g:
        raise ValueError(f"a sample has {max(counts)} boxes, more than max_boxes={g}")
    out_boxes = torch.zeros(len(batch), g, 4)
    out_labels = torch.zeros(len(batch), g, dtype=torch.int64)
    mask = torch.zeros(len(batch), g, dtype=torch.bool)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        out_boxes[i, : len(b)], out_labels[i, : len(b)], mask[i, : len(b)] = b, lab, True
    pixels = torch.cat([im.reshape(-1) for im in images])
    sizes = torch.tensor([im.shape[-2:] for im in images], dtype=torch.int64)
    return RawBatch(pixels, sizes, out_boxes, out_labels, mask,
                    torch.tensor(positions, dtype=torch.int64))


class TrainBatch(NamedTuple):
    images: Tensor  # [B, 3, S, S] float32, image - mean, in the pipeline's memory format
    loc_t: Tensor  # [B, P, 4] encoded regression targets
    labels_t: Tensor  # [B, P] 0 = background


class DevicePipeline:
    """RawBatch -> (images, loc_t, labels_t) on the priors' device; see the module docstring."""

    def __init__(self, priors: Tensor, variances: Sequence[float], *, seed: int = 0,
                 size: int = 300, iou_threshold: float = 0.5,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 mean: Sequence[float] = CAFFE_MEAN_RGB, config: AugmentConfig | None = None,
                 interpolation: str = "bilinear"):
        self.priors = priors
        self.device = priors.device
        self.variances = tuple(variances)
        self.seed = int(seed)
        self.iou_threshold = float(iou_threshold)
        self.memory_format = memory_format
        self.augment = SSDBatchAugment(size=size, mean=mean, config=config,
                                       interpolation=interpolation)

    def generator(self, raw: RawBatch) -> torch.Generator:
        """The batch's CPU generator: a function of (seed, first stream position) only."""
        return torch.Generator().manual_seed(sample_seed(self.seed, int(raw.positions[0])))

    def __call__(self, raw: RawBatch) -> TrainBatch:
        g = self.generator(raw)
        raw = raw.to(self.device)
        aug = self.augment(raw.images(), raw.boxes, raw.labels, raw.mask, device=self.device,
                           generator=g)
        loc_t, labels_t = match(aug.boxes, aug.labels, aug.mask, self.priors, self.variances,
                                iou_threshold=self.iou_threshold)
        return TrainBatch(aug.images.contiguous(memory_format=self.memory_format), loc_t,
                          labels_t)
