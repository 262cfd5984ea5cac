"""``scratchdet benchmark pipeline``: per-image cost of the training augmentation, on the CPU.

Three ways to turn decoded uint8 images and their boxes into a batch of 300 x 300 network inputs
(``float32``, image - mean) and boxes, timed on the same images in one process, interleaved:

* ``device``: the device pipeline (``data.pipeline: device``) run on the CPU
  (``pipeline.device_pipeline_on_cpu``): what its workers do (downscale to the canvas if
  needed, draw the decisions), the packing into the fixed canvas (the set's largest image) and
  the batched augmentation (``pipeline.augment_buffer``);
* ``cpu``: the CPU pipeline (``data.pipeline: cpu``): ``per_image.SSDTrainTransform`` per image,
  stacked, minus the mean;
* ``torchvision``: torchvision's SSD augmentation as its detection reference recipe has it
  (``references/detection/presets.py``, ``data_augmentation="ssd"``), in ``transforms.v2``:
  RandomPhotometricDistort, RandomZoomOut (mean fill), RandomIoUCrop, RandomHorizontalFlip, then
  a Resize to 300 x 300 and SanitizeBoundingBoxes, per image, stacked, minus the mean.

Matching the boxes to priors is left out (both of ours do the same ``ssd.matching.match``; the
matching benchmark times it). The image sets: synthetic smooth images of 300 to 500 pixels a side,
the same set with one 1024 x 1024 image in every batch (the device pipeline's cost must not
follow the largest image), and real photos (``--photos``, a flat VOC folder: annots/ + images/).
The pipelines see the same stream positions (the same decisions for both of ours; torchvision
draws its own). Times are per image: a batch's time divided by its size; min and median over the
repeats. Torch runs with ``--threads`` threads (default 1: one DataLoader worker's view).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from scratchdet.benchmark.common import Record, check_positive, default_out, summary
from scratchdet.errors import ConfigError
from scratchdet.models.input import CAFFE_MEAN_RGB

__all__ = ["image_sets", "run_pipeline", "synthetic_images", "torchvision_ssd_augment"]

Sample = tuple[Tensor, Tensor, Tensor]  # uint8 [3, H, W], pixel xyxy boxes [N, 4], labels [N]


def synthetic_images(
    count: int, seed: int, sizes: tuple[int, int] = (300, 500), large: int | None = None
) -> list[Sample]:
    """``count`` smooth random colour images (low-frequency noise, like a photo's colour spread)
    of random sides in ``sizes``, with 1 to 4 random boxes each; the first one ``large`` x
    ``large`` when given."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        if i == 0 and large:
            h = w = large
        else:
            h, w = (int(v) for v in torch.randint(sizes[0], sizes[1] + 1, (2,), generator=g))
        coarse = torch.rand((1, 3, 12, 12), generator=g) * 255
        image = torch.nn.functional.interpolate(
            coarse, size=(h, w), mode="bicubic", align_corners=False
        )
        image = (image[0] + torch.randn((3, h, w), generator=g) * 8).clamp(0, 255)
        n = int(torch.randint(1, 5, (1,), generator=g))
        centre = torch.rand((n, 2), generator=g) * 0.6 + 0.2
        half = torch.rand((n, 2), generator=g) * 0.15 + 0.05
        boxes = torch.cat([centre - half, centre + half], 1) * torch.tensor([w, h, w, h])
        out.append((image.round().to(torch.uint8), boxes, torch.ones(n, dtype=torch.int64)))
    return out


def _photos(folder: Path, limit: int) -> list[Sample]:
    from scratchdet.data.dataset import DetectionDataset
    from scratchdet.data.voc import read_voc_files

    if not (folder / "annots").is_dir() or not (folder / "images").is_dir():
        raise ConfigError(
            None,
            "--photos",
            f"{folder} needs annots/*.xml and images/ (a flat "
            "VOC folder such as the kangaroo photographs)",
        )
    xmls = sorted((folder / "annots").glob("*.xml"))[:limit]
    dataset = DetectionDataset(read_voc_files(xmls, folder / "images"))
    out = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        out.append((image, target["boxes"], target["labels"]))
    return out


def image_sets(
    *, batch_size: int, batches: int, seed: int, photos: str | Path | None = None
) -> dict[str, list[Sample]]:
    """Case name -> images, each set a whole number of batches."""
    n = batch_size * batches
    sets = {f"{batch_size} synthetic images of 300-500 px": synthetic_images(n, seed)}
    large = []
    for b in range(batches):
        large += synthetic_images(batch_size, seed + 1000 + b, large=1024)
    sets[f"{batch_size} synthetic images, one of them 1024x1024"] = large
    if photos:
        photos = _photos(Path(photos), n)
        usable = len(photos) - len(photos) % batch_size
        if usable == 0:
            raise ConfigError(None, "--photos", f"fewer than {batch_size} photos")
        sets[f"{batch_size} photos ({Path(photos).name})"] = photos[:usable]
    return sets


def torchvision_ssd_augment(size: int, mean: Sequence[float]) -> Callable:
    """torchvision's SSD training augmentation (detection reference recipe) + resize."""
    from torchvision.transforms import v2

    fill = [round(float(m)) for m in mean]
    return v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(
                fill={v2.tv_tensors.Image: fill, "others": 0}, side_range=(1.0, 4.0), p=0.5
            )
            if hasattr(v2, "tv_tensors")
            else v2.RandomZoomOut(fill=fill, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.Resize([size, size]),
            v2.SanitizeBoundingBoxes(),
        ]
    )


class _Runners:
    """One batch through each pipeline; each returns (images [B, 3, S, S], anything)."""

    def __init__(self, size: int, seed: int):
        from torchvision import tv_tensors

        from scratchdet.input.augment import AugmentConfig
        from scratchdet.input.per_image import SSDTrainTransform

        self.size, self.seed = size, seed
        self.config = AugmentConfig()
        self.mean = torch.tensor(CAFFE_MEAN_RGB, dtype=torch.float32)
        self.cpu_transform = SSDTrainTransform(size=size, config=self.config)
        self.tv = torchvision_ssd_augment(size, CAFFE_MEAN_RGB)
        self.tv_tensors = tv_tensors

    def cpu(self, batch: Sequence[Sample], first: int) -> Tensor:
        from scratchdet.input.sampling import sample_generator

        out = []
        for k, (image, boxes, labels) in enumerate(batch):
            g = sample_generator(self.seed, first + k)
            params = self.cpu_transform.sample(image.shape[-2], image.shape[-1], boxes, g)
            out.append(self.cpu_transform.apply_uint8(image, boxes, labels, params)[0])
        return torch.stack(out).float() - self.mean[:, None, None]

    def device(self, batch: Sequence[Sample], first: int, canvas: tuple[int, int]) -> Tensor:
        from scratchdet.input.pipeline import device_pipeline_on_cpu

        return device_pipeline_on_cpu(
            batch,
            seeds=[self.seed] * len(batch),
            positions=range(first, first + len(batch)),
            canvas=canvas,
            size=self.size,
            config=self.config,
        )

    def torchvision(self, batch: Sequence[Sample], first: int) -> Tensor:
        tvt = self.tv_tensors
        torch.manual_seed(self.seed * 1_000_003 + first)
        out = []
        for image, boxes, labels in batch:
            img, _ = self.tv(
                tvt.Image(image),
                {
                    "boxes": tvt.BoundingBoxes(boxes, format="XYXY", canvas_size=image.shape[-2:]),
                    "labels": labels,
                },
            )
            out.append(img.as_subclass(Tensor))
        return torch.stack(out).float() - self.mean[:, None, None]


def _canvas(images: Sequence[Sample], cap: int = 1024) -> tuple[int, int]:
    """The device pipeline's canvas for a set: its largest sides (``pipeline.dataset_canvas``)."""
    h = max(int(s[0].shape[-2]) for s in images)
    w = max(int(s[0].shape[-1]) for s in images)
    return min(h, cap), min(w, cap)


def _case(name: str, ours: str, o: list[float], ref: str, r: list[float]) -> dict[str, Any]:
    so, sr = summary(o, 4), summary(r, 4)
    return {
        "case": name,
        "ours": {"name": ours, "min_ms": so["min"], "median_ms": so["median"]},
        "reference": {"name": ref, "min_ms": sr["min"], "median_ms": sr["median"]},
        "ratio_min": round(so["min"] / sr["min"], 4),
        "ratio_median": round(so["median"] / sr["median"], 4),
    }


NAMES = {
    "device": "scratchdet device pipeline (on the CPU)",
    "cpu": "scratchdet cpu pipeline",
    "torchvision": "torchvision transforms.v2 SSD augmentation",
}


def run_pipeline(
    *,
    batch_size: int = 8,
    batches: int = 2,
    size: int = 300,
    photos: str | Path | None = None,
    repeats: int = 7,
    warmup: int = 1,
    threads: int = 1,
    seed: int = 0,
    out: str | Path | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``scratchdet benchmark pipeline``: the keywords are its options (``--help``); ``argv`` is
    the command line to record (default ``sys.argv``)."""
    args = SimpleNamespace(**locals())  # the options, as the private helpers take them
    check_positive("--batch-size", args.batch_size)
    check_positive("--batches", args.batches)
    check_positive("--repeats", args.repeats)
    check_positive("--threads", args.threads)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    record = Record("pipeline", device, config=config, argv=args.argv, seed=args.seed)
    record.data["cases"] = []
    runners = _Runners(args.size, args.seed)
    for set_name, images in image_sets(
        batch_size=args.batch_size, batches=args.batches, seed=args.seed, photos=args.photos
    ).items():
        canvas = _canvas(images)
        batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
        fns = {
            "device": lambda b, p, c=canvas: runners.device(b, p, c),
            "cpu": runners.cpu,
            "torchvision": runners.torchvision,
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        order = list(fns)
        for rep in range(args.warmup + args.repeats):
            for name in order[rep % 3 :] + order[: rep % 3]:  # rotate who runs first
                elapsed = 0.0
                for b, batch in enumerate(batches):
                    first = (rep * len(batches) + b) * args.batch_size
                    t0 = time.perf_counter()
                    fns[name](batch, first)
                    elapsed += time.perf_counter() - t0
                if rep >= args.warmup:
                    times[name].append(1000 * elapsed / len(images))
        record.add(
            {
                "images": set_name,
                "canvas": list(canvas),
                **{f"{k}_ms_per_image": summary(v, 4) for k, v in times.items()},
            }
        )
        cases = record.data["cases"]
        cases.append(
            _case(
                f"{set_name}: device pipeline vs torchvision",
                NAMES["device"],
                times["device"],
                NAMES["torchvision"],
                times["torchvision"],
            )
        )
        cases.append(
            _case(
                f"{set_name}: cpu pipeline vs torchvision",
                NAMES["cpu"],
                times["cpu"],
                NAMES["torchvision"],
                times["torchvision"],
            )
        )
        cases.append(
            _case(
                f"{set_name}: device pipeline vs cpu pipeline",
                NAMES["device"],
                times["device"],
                NAMES["cpu"],
                times["cpu"],
            )
        )
        for c in cases[-3:]:
            print(
                f"{c['case']}: {c['ours']['median_ms']:.2f} vs "
                f"{c['reference']['median_ms']:.2f} ms/image (median), ratio "
                f"{c['ratio_median']:.2f}; min ratio {c['ratio_min']:.2f}"
            )
    return record.write(args.out or default_out("pipeline", device))
