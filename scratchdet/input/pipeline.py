"""The training input: one home for both pipelines, which yield the same ``TrainBatch``.

Both pipelines read the resumable sample stream (``sampling.py``: positions -> dataset indices and
per-sample seeds), draw every random decision of a sample on the CPU with
``per_image.sample_train_params`` from that sample's own generator, and hand the training loop
``TrainBatch(images, loc_t, labels_t)`` on the training device. They differ in where the pixels
are augmented:

- ``cpu``: DataLoader workers decode, augment and resize each image (``per_image.py``) and ship
  uint8 ``[3, S, S]`` images; the device subtracts the mean and matches the targets to the priors.
- ``device``: workers only decode and draw the decisions; the device applies them to the batch
  (``batched.augment_batch``: each crop resized with its drawn interpolation, the photometric
  distortion at the output resolution), then matches. Fast on a GPU, where per-image CPU
  augmentation cannot keep up; on a CPU it costs no more than the ``cpu`` pipeline
  (``scratchdet benchmark pipeline``), whatever the size of the dataset's largest image.

Fast by construction. Every micro-batch reaches the device as **one** pinned uint8 buffer copied
without blocking (on a side stream, one batch ahead, on CUDA): the pixels (uint8 until the device)
followed by a float32 table with one row per image (boxes, labels and box mask padded to a fixed
``max_boxes``; for the device pipeline also the image size and the drawn decisions). Its shape
never changes within a run: the batch, the buffer's box slots (the largest box count of the
dataset; matching uses the batch's bucket of them, ``matching.box_slots``) and the device
pipeline's canvas (the largest image of the dataset, capped at ``MAX_CANVAS`` by
downscaling larger images in the workers) are fixed when the pipeline is built; the device
reads only each image's crop out of the canvas. What the device pipeline must know to size its
work (each image's crop and interpolation, the photometric steps some image needs) travels
beside the buffer as host values (``HostBatch.plan``). Constants (the mean, the variances) are
made on the device once. Nothing after the copy reads a value back to the host, so the training
step never waits for the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

from scratchdet.input.augment import AugmentConfig, augment_config
from scratchdet.input.batched import BatchParams, HostPlan, augment_batch, host_plan
from scratchdet.input.geometry import Expansion
from scratchdet.input.per_image import SSDTrainTransform, normalise_boxes, sample_train_params
from scratchdet.input.photometric import PhotometricParams
from scratchdet.input.sampling import StreamBatchSampler, sample_generator
from scratchdet.models.input import CAFFE_MEAN_RGB
from scratchdet.ssd.matching import box_slots, match

if TYPE_CHECKING:
    from scratchdet.config import RunConfig
    from scratchdet.data.dataset import DetectionDataset

__all__ = [
    "MAX_CANVAS",
    "HostBatch",
    "HostLayout",
    "TrainBatch",
    "TrainInput",
    "augment_buffer",
    "build_train_input",
    "dataset_canvas",
    "device_pipeline_on_cpu",
    "resolve_pipeline",
]

MAX_CANVAS = 1024
"""Largest side of the device pipeline's canvas; larger images are downscaled in the workers
(boxes are normalised, so only the resolution the crops are cut from changes)."""
_ALIGN = 16  # bytes: the float32 table starts aligned after the pixels


class TrainBatch(NamedTuple):
    """A training micro-batch on the device, whichever pipeline made it."""

    images: Tensor  # [B, 3, S, S] float32 = image - mean, in the run's memory format
    loc_t: Tensor  # [B, P, 4] encoded regression targets
    labels_t: Tensor  # [B, P] long, 0 = background


def resolve_pipeline(name: str, device: torch.device) -> str:
    """``data.pipeline`` for a run on ``device``: 'auto' is 'device' on CUDA, else 'cpu'."""
    if name == "auto":
        return "device" if device.type == "cuda" else "cpu"
    return name


# --------------------------------------------------------------------------------------------
# The host-side batch: one buffer, a fixed layout
# --------------------------------------------------------------------------------------------

_PHOTOMETRIC = ("brightness", "contrast", "saturation", "hue", "contrast_last")


@dataclass(frozen=True, kw_only=True)
class HostLayout:
    """Where everything sits in a micro-batch's buffer: uint8 pixels ``[B, 3, H, W]``, then a
    float32 table ``[B, columns]``. ``decisions`` adds the device pipeline's columns."""

    batch: int
    height: int
    width: int
    max_boxes: int
    decisions: bool

    @property
    def columns(self) -> int:
        targets = 6 * self.max_boxes  # boxes (4G), labels (G), mask (G)
        # size (2), photometric (5 + channel order 3), expansion (4), crop (4), mirror (1),
        # interpolation (1)
        return targets + (20 if self.decisions else 0)

    @property
    def pixel_bytes(self) -> int:
        n = self.batch * 3 * self.height * self.width
        return -(-n // _ALIGN) * _ALIGN

    @property
    def nbytes(self) -> int:
        return self.pixel_bytes + 4 * self.batch * self.columns

    def views(self, buffer: Tensor) -> tuple[Tensor, Tensor]:
        """(pixels uint8 ``[B, 3, H, W]``, table float32 ``[B, columns]``): views, no copy."""
        pixels = buffer[: self.batch * 3 * self.height * self.width]
        table = buffer[self.pixel_bytes : self.nbytes].view(torch.float32)
        return (
            pixels.view(self.batch, 3, self.height, self.width),
            table.view(self.batch, self.columns),
        )

    def targets(self, table: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(boxes ``[B, G, 4]``, labels long ``[B, G]``, mask bool ``[B, G]``) from the table."""
        g = self.max_boxes
        boxes = table[:, : 4 * g].reshape(self.batch, g, 4)
        return boxes, table[:, 4 * g : 5 * g].long(), table[:, 5 * g : 6 * g] > 0.5

    def decisions_of(self, table: Tensor) -> tuple[Tensor, BatchParams]:
        """(sizes long ``[B, 2]`` (h, w), the batch's decisions) from the table."""
        d = table[:, 6 * self.max_boxes :]
        photometric = PhotometricParams(
            d[:, 2], d[:, 3], d[:, 4], d[:, 5], d[:, 6] > 0.5, d[:, 7:10].long()
        )
        expansion = Expansion(*(d[:, k].long() for k in range(10, 14)))
        return d[:, :2].long(), BatchParams(
            photometric, expansion, d[:, 14:18], d[:, 18] > 0.5, d[:, 19].long()
        )

    def fill_targets(
        self, table: Tensor, boxes: Sequence[Tensor], labels: Sequence[Tensor]
    ) -> None:
        g = self.max_boxes
        for i, (b, lab) in enumerate(zip(boxes, labels)):
            n = len(b)
            if n > g:
                raise ValueError(f"a sample has {n} boxes, more than max_boxes={g}")
            table[i, : 4 * n] = b.reshape(-1)
            table[i, 4 * g : 4 * g + n] = lab
            table[i, 5 * g : 5 * g + n] = 1.0

    def fill_decisions(
        self, table: Tensor, sizes: Sequence[tuple[int, int]], stacked: BatchParams
    ) -> None:
        p, e = stacked.photometric, stacked.expansion
        columns = [
            torch.tensor(sizes, dtype=torch.float32),
            *(getattr(p, f).float()[:, None] for f in _PHOTOMETRIC),
            p.channel_order.float(),
            *(getattr(e, f).float()[:, None] for f in ("height", "width", "top", "left")),
            stacked.crops,
            stacked.mirror.float()[:, None],
            stacked.interpolation.float()[:, None],
        ]
        table[:, 6 * self.max_boxes :] = torch.cat(columns, dim=1)


@dataclass
class HostBatch:
    """A micro-batch as the workers hand it over; the DataLoader pins ``buffer``."""

    buffer: Tensor  # uint8 [layout.nbytes]
    plan: HostPlan | None  # device pipeline: what the device needs to know without asking
    positions: tuple[int, ...]  # stream positions, for debugging
    slots: int | None = None  # box slots the device matches (matching.box_slots), None: all

    @property
    def steps(self) -> HostPlan | None:
        """The former name of ``plan`` (it held the photometric steps alone)."""
        return self.plan

    def pin_memory(self) -> HostBatch:
        """Called by DataLoader(pin_memory=True) in its pinning thread."""
        return HostBatch(self.buffer.pin_memory(), self.plan, self.positions, self.slots)


# --------------------------------------------------------------------------------------------
# What a worker prepares per sample, and how a micro-batch is packed
# --------------------------------------------------------------------------------------------


class _Samples(torch.utils.data.Dataset):
    """Indexed by (stream position, dataset index): the position seeds the sample's decisions."""

    def __init__(self, dataset: DetectionDataset, seed: int, prepare: Callable):
        self.dataset, self.seed, self.prepare = dataset, seed, prepare

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        position, index = key
        image, target = self.dataset[index]
        return (
            *self.prepare(
                image, target["boxes"], target["labels"], sample_generator(self.seed, position)
            ),
            position,
        )


class _AugmentOnCpu:
    """cpu pipeline: the whole augmentation per image; uint8 ``[3, S, S]`` out."""

    def __init__(self, size: int, config: AugmentConfig):
        self.transform = SSDTrainTransform(size=size, config=config)

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor, generator: torch.Generator):
        params = self.transform.sample(image.shape[-2], image.shape[-1], boxes, generator)
        return self.transform.apply_uint8(image, boxes, labels.long(), params)


class _DecideOnCpu:
    """device pipeline: the decoded image (downscaled to fit the canvas if needed), its boxes
    normalised to it, and its decisions."""

    def __init__(self, canvas: tuple[int, int], config: AugmentConfig):
        self.canvas, self.config = canvas, config

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor, generator: torch.Generator):
        h, w = image.shape[-2:]
        norm = normalise_boxes(boxes, h, w)  # the same for the downscaled image
        scale = min(self.canvas[0] / h, self.canvas[1] / w)
        if scale < 1:
            image = F.resize(
                image,
                [max(1, math.floor(h * scale)), max(1, math.floor(w * scale))],
                antialias=True,
            )
        params = sample_train_params(
            image.shape[-2], image.shape[-1], boxes=norm, generator=generator, cfg=self.config
        )
        return image, norm, labels.long(), params


class _Pack:
    """collate_fn: a list of prepared samples -> one ``HostBatch``."""

    def __init__(self, layout: HostLayout):
        self.layout = layout

    def __call__(self, samples: Sequence[tuple]) -> HostBatch:
        layout = self.layout
        if len(samples) != layout.batch:
            raise ValueError(f"expected {layout.batch} samples, got {len(samples)}")
        buffer = torch.empty(layout.nbytes, dtype=torch.uint8)
        pixels, table = layout.views(buffer)
        table.zero_()
        layout.fill_targets(table, [s[1] for s in samples], [s[2] for s in samples])
        plan = None
        if layout.decisions:
            for i, s in enumerate(samples):  # the rest of the canvas is never read
                pixels[i, :, : s[0].shape[-2], : s[0].shape[-1]] = s[0]
            params = BatchParams.stack([s[3] for s in samples])
            sizes_of = [tuple(s[0].shape[-2:]) for s in samples]
            layout.fill_decisions(table, sizes_of, params)
            plan = host_plan(torch.tensor(sizes_of), params)
        else:
            torch.stack([s[0] for s in samples], out=pixels)
        slots = box_slots(max(len(s[1]) for s in samples), layout.max_boxes)
        return HostBatch(buffer, plan, tuple(int(s[-1]) for s in samples), slots)


def dataset_canvas(dataset: DetectionDataset, cap: int = MAX_CANVAS) -> tuple[int, int]:
    """The device pipeline's fixed canvas (H, W): the dataset's largest sides, at most ``cap``."""
    h, w = (int(v) for v in dataset.sizes.max(axis=0))
    return min(h, cap), min(w, cap)


def max_boxes(dataset: DetectionDataset) -> int:
    """The largest number of training boxes in one image (at least 1): the fixed box slots."""
    return max(1, int(np.diff(dataset.table.offsets).max(initial=0)))


# --------------------------------------------------------------------------------------------
# The device side
# --------------------------------------------------------------------------------------------


def augment_buffer(
    layout: HostLayout,
    buffer: Tensor,
    *,
    mean: Tensor,
    size: int,
    plan: HostPlan | None = None,
    slots: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A micro-batch's buffer (on the device) -> (images ``[B, 3, S, S]`` float32 - mean, boxes
    ``[B, G, 4]``, labels ``[B, G]``, mask ``[B, G]``): the augmentation, before matching.
    ``plan`` comes from the ``HostBatch``; without it, it is read back from the table (a device
    sync). ``slots``: the box slots kept (``HostBatch.slots``), None: all of the layout's."""
    pixels, table = layout.views(buffer)
    boxes, labels, mask = (t[:, :slots] for t in layout.targets(table))
    if not layout.decisions:
        return pixels.float() - mean[None, :, None, None], boxes, labels, mask
    sizes, params = layout.decisions_of(table)
    return tuple(
        augment_batch(
            pixels,
            sizes=sizes,
            boxes=boxes,
            labels=labels,
            mask=mask,
            params=params,
            mean=mean,
            size=size,
            plan=plan,
        )
    )


def device_pipeline_on_cpu(
    samples: Sequence[tuple[Tensor, Tensor, Tensor]],
    *,
    seeds: Sequence[int],
    positions: Sequence[int],
    canvas: tuple[int, int],
    size: int,
    config: AugmentConfig,
) -> Tensor:
    """The device pipeline's whole work for a micro-batch, in this process on the CPU: each
    sample (uint8 image, pixel boxes, labels) as a worker prepares it, packed, then augmented.
    Returns the images ``[B, 3, S, S]``; for the pipeline benchmark and tests."""
    prepare = _DecideOnCpu(canvas, config)
    prepared = [
        (*prepare(image, boxes, labels, sample_generator(seed, position)), position)
        for (image, boxes, labels), seed, position in zip(samples, seeds, positions)
    ]
    layout = HostLayout(
        batch=len(samples),
        height=canvas[0],
        width=canvas[1],
        max_boxes=max(1, max(len(s[1]) for s in samples)),
        decisions=True,
    )
    host = _Pack(layout)(prepared)
    mean = torch.as_tensor(CAFFE_MEAN_RGB, dtype=torch.float32)
    return augment_buffer(layout, host.buffer, mean=mean, size=size, plan=host.plan)[0]


class TrainInput:
    """Iterates ``TrainBatch`` micro-batches on ``device`` from a resumable stream position."""

    def __init__(
        self,
        loader: DataLoader,
        layout: HostLayout,
        *,
        device: torch.device,
        priors: Tensor,
        variances: Sequence[float],
        size: int,
        iou_threshold: float,
        memory_format: torch.memory_format,
    ):
        self.loader, self.layout, self.device = loader, layout, device
        self.priors = priors
        self.variances = torch.as_tensor(variances, dtype=torch.float32, device=device)
        self.mean = torch.as_tensor(CAFFE_MEAN_RGB, dtype=torch.float32, device=device)
        self.size = size
        self.iou_threshold = float(iou_threshold)
        self.memory_format = memory_format

    def __iter__(self) -> Iterator[TrainBatch]:
        for buffer, host in self._transfers():
            yield self.to_train_batch(buffer, host.plan, host.slots)

    def _transfers(self) -> Iterator[tuple[Tensor, HostBatch]]:
        """(buffer on the device, host batch): one non-blocking copy each, one batch ahead on a
        side stream on CUDA so that the copy overlaps the previous step."""
        hosts = iter(self.loader)
        if self.device.type != "cuda":
            for host in hosts:
                yield host.buffer.to(self.device, non_blocking=True), host
            return
        side, main = torch.cuda.Stream(self.device), torch.cuda.current_stream(self.device)

        def start(host: HostBatch | None):
            if host is None:
                return None
            with torch.cuda.stream(side):
                return host.buffer.to(self.device, non_blocking=True), host

        ahead = start(next(hosts, None))
        while ahead is not None:
            main.wait_stream(side)
            buffer, host = ahead
            buffer.record_stream(main)
            ahead = start(next(hosts, None))
            yield buffer, host

    def to_train_batch(
        self, buffer: Tensor, plan: HostPlan | None = None, slots: int | None = None
    ) -> TrainBatch:
        """A copied buffer -> images and matched targets; device ops only, no host sync (given
        the host batch's ``plan``; see ``augment_buffer``). ``slots`` (known on the host when the
        batch was packed) trims the box slots to the batch's bucket, so that matching does not
        pay for the dataset's most crowded image."""
        images, boxes, labels, mask = augment_buffer(
            self.layout, buffer, mean=self.mean, size=self.size, plan=plan, slots=slots
        )
        loc_t, labels_t = match(
            boxes,
            labels,
            mask,
            priors=self.priors,
            variances=self.variances,
            iou_threshold=self.iou_threshold,
        )
        return TrainBatch(images.contiguous(memory_format=self.memory_format), loc_t, labels_t)


def build_train_input(
    cfg: RunConfig,
    dataset: DetectionDataset,
    *,
    device: torch.device,
    priors: Tensor,
    variances: Sequence[float],
    start_step: int,
    max_steps: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> TrainInput:
    """The run's input from ``start_step`` to ``max_steps`` (default ``train.max_steps``):
    ``data.pipeline`` picks the pipeline, ``data.augment`` the augmentation."""
    config = augment_config(cfg.data.augment)
    micro = cfg.micro_batch
    sampler = StreamBatchSampler(
        len(dataset),
        batch_size=cfg.train.batch_size,
        micro_batch=micro,
        seed=cfg.seed,
        start_step=start_step,
        max_steps=cfg.train.max_steps if max_steps is None else max_steps,
        rank=rank,
        world_size=world_size,
    )
    size = cfg.data.image_size
    if resolve_pipeline(cfg.data.pipeline, device) == "device":
        canvas = dataset_canvas(dataset)
        layout = HostLayout(
            batch=micro,
            height=canvas[0],
            width=canvas[1],
            max_boxes=max_boxes(dataset),
            decisions=True,
        )
        prepare: Callable = _DecideOnCpu(canvas, config)
    else:
        layout = HostLayout(
            batch=micro, height=size, width=size, max_boxes=max_boxes(dataset), decisions=False
        )
        prepare = _AugmentOnCpu(size, config)
    loader = DataLoader(
        _Samples(dataset, cfg.seed, prepare),
        batch_sampler=sampler,
        collate_fn=_Pack(layout),
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
    )
    return TrainInput(
        loader,
        layout,
        device=device,
        priors=priors,
        variances=variances,
        size=size,
        iou_threshold=cfg.loss.iou_threshold,
        memory_format=memory_format,
    )
