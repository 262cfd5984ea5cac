"""The SSD training augmentation for a whole batch at once, on any device (the device pipeline).

The random decisions are those of the per-image path: each image's ``TrainParams`` come from
``per_image.sample_train_params`` (on the CPU, one generator per sample), stacked into
``BatchParams``, the interpolation included (one of Caffe's five per image, drawn from the same
stream, so both pipelines make the same choice for the same sample). What the device must know
to size its work (each image's crop and interpolation, the photometric steps some image needs)
is known on the host when the batch is packed (``HostPlan``), so nothing reads a value back from
the device. Applying the decisions:

1. **crop window** (``window_axis``): each image's crop is read straight out of the padded uint8
   batch, at its own resolution when it fits in ``2 S`` pixels a side, else every ``k``-th pixel
   with the smallest ``k`` that fits (never below twice the output resolution). Where the crop
   reaches into the expansion's fill, the window holds zeros there. Nothing else of the batch
   is read: the work follows each image's crop, not the largest image of the dataset.
2. **resize** to ``S x S`` and mirror, image by image (a crop's window has its own size, which
   no batched resize takes), with the image's drawn interpolation through v2's uint8 kernels,
   those of the per-image path (``DEVICE_INTERPOLATIONS``). With fill in the window, the result
   is the image's colour premultiplied by its coverage; the coverage (separable: the product of
   the two axes' 1-D resizes) divides it back out, so the colour is the image's alone.
3. **photometric distortion** at the output resolution, on the image's colour only; each pixel
   is then ``coverage * distorted + (1 - coverage) * mean``, so the fill is never distorted. On
   a GPU the batch is distorted at once with per-image parameters ``[B]`` (a step that does not
   fire for an image gets the identity value; Caffe's two orders run in the same ops); on the
   CPU image by image on the part of the output its image reaches, skipping the steps that do
   not fire (the same per-pixel arithmetic, so the same result).
4. boxes filtered by centre-in-crop, clipped and mirrored in place: padded ``[B, G, 4]`` + mask.

Differences from the per-image path (and from Caffe), none of which changes a decision:

* **the photometric distortion comes after the resize** (Caffe distorts the original image,
  then expands, crops and resizes). Cropping commutes with it exactly (it acts per pixel), the
  fill is excluded, and nearest interpolation (which only selects pixels) commutes, but a
  blending interpolation does not: where neighbouring pixels differ in hue, or a step saturates
  some of them at 0 or 255, distorting the blend differs from blending the distorted pixels.
  On photographs that is 0.2 grey levels on average, 2 to 4 at the 99th percentile
  (tests/test_input_batched.py measures it; docs/SPECS.md), against ~1.2 between linear and
  cubic interpolation of the same crop; in exchange the distortion costs at most ``S x S`` per
  image instead of the whole photo (or, before, the largest image of the dataset);
* crops wider than ``2 S`` are subsampled by an integer step before the resize;
* ``lanczos4`` is antialiased bicubic (the per-image path uses v2's lanczos, which has no
  F.interpolate kernel; OpenCV's has 4 lobes and no antialiasing); ``area`` (OpenCV's box
  filter) is antialiased bilinear on both paths;
* the resized colour is rounded to whole grey levels before the distortion (the per-image path
  distorts whole grey levels too, before its uint8 resize);
* the expanded canvas is never built: the coverage is the fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from scratchdet.input.augment import CAFFE_INTERPOLATIONS
from scratchdet.input.geometry import Expansion, boxes_to_canvas, crop_boxes, mirror_boxes
from scratchdet.input.per_image import TrainParams
from scratchdet.input.photometric import (
    PhotometricParams,
    apply_photometric,
    distort_image,
    photometric_steps,
)

__all__ = [
    "DEVICE_INTERPOLATIONS",
    "AugmentedBatch",
    "BatchParams",
    "CropPlan",
    "HostPlan",
    "Resampled",
    "augment_batch",
    "crop_plans",
    "host_plan",
    "interpolation_code",
    "resample_crops",
    "window_axis",
]

DEVICE_INTERPOLATIONS: dict[str, tuple[str, bool]] = {
    "linear": ("bilinear", False),
    "area": ("bilinear", True),
    "nearest": ("nearest", False),
    "cubic": ("bicubic", False),
    "lanczos4": ("bicubic", True),
}
"""Caffe's interp_mode -> (the v2 / ``F.interpolate`` mode, antialiased) on the device path: the
per-image path's (``augment.INTERPOLATIONS``), except lanczos4, antialiased bicubic (v2's lanczos
has no ``F.interpolate`` kernel, so not every device has it)."""


def interpolation_code(name: str) -> int:
    """A Caffe interpolation's index in ``CAFFE_INTERPOLATIONS`` (how a batch carries it)."""
    return CAFFE_INTERPOLATIONS.index(name)


@dataclass
class BatchParams:
    """Every random decision for a batch: per-image ``TrainParams`` stacked into tensors."""

    photometric: PhotometricParams  # [B]
    expansion: Expansion  # [B]
    crops: Tensor  # [B, 4] xyxy normalised to each expanded canvas (whole canvas pixels)
    mirror: Tensor  # [B] bool
    interpolation: Tensor  # [B] long: index into augment.CAFFE_INTERPOLATIONS
    sampler: Tensor | None = None  # [B] which crop sampler fired (-1: none); not needed to apply

    @staticmethod
    def stack(params: Sequence[TrainParams]) -> BatchParams:
        def cat(get) -> Tensor:
            return torch.cat([get(p) for p in params])

        photometric = PhotometricParams(
            *(
                cat(lambda p, f=f: getattr(p.photometric, f))
                for f in PhotometricParams.__dataclass_fields__
            )
        )
        expansion = Expansion(
            *(cat(lambda p, f=f: getattr(p.expansion, f)) for f in Expansion.__dataclass_fields__)
        )
        crops = torch.stack([p.crop_in_canvas() for p in params]).to(torch.float32)
        mirror = torch.tensor([p.mirror for p in params], dtype=torch.bool)
        interpolation = torch.tensor(
            [interpolation_code(p.interpolation) for p in params], dtype=torch.int64
        )
        sampler = torch.tensor([p.sampler for p in params], dtype=torch.int64)
        return BatchParams(photometric, expansion, crops, mirror, interpolation, sampler)

    def to(self, device: torch.device | str) -> BatchParams:
        return BatchParams(
            self.photometric.to(device),
            self.expansion.to(device),
            self.crops.to(device),
            self.mirror.to(device),
            self.interpolation.to(device),
            None if self.sampler is None else self.sampler.to(device),
        )


class AugmentedBatch(NamedTuple):
    images: Tensor  # [B, 3, S, S] float32, image - mean
    boxes: Tensor  # [B, G, 4] xyxy in [0, 1]; zeros where mask is False
    labels: Tensor  # [B, G]; 0 where mask is False
    mask: Tensor  # [B, G] bool


class CropPlan(NamedTuple):
    """One image's crop as the host knows it (``crop_plans``): the crop in the image's own pixel
    frame (it reaches beyond the image where the expansion's fill shows), the image's size, the
    mirror and the interpolation (a Caffe name)."""

    top: int
    left: int
    height: int
    width: int
    image_height: int
    image_width: int
    mirror: bool
    interpolation: str


def crop_plans(sizes: Tensor, params: BatchParams) -> tuple[CropPlan, ...]:
    """Each image's ``CropPlan`` from its size ``[B, 2]`` (h, w) and decisions (read on the host:
    the pipeline calls this where it packs the batch)."""
    e = params.expansion.to("cpu")
    eh, ew = e.height.to(torch.float64), e.width.to(torch.float64)
    crops = params.crops.to("cpu", torch.float64)
    top, bottom = (crops[:, 1] * eh).round().long(), (crops[:, 3] * eh).round().long()
    left, right = (crops[:, 0] * ew).round().long(), (crops[:, 2] * ew).round().long()
    rows = zip(
        (top - e.top).tolist(),
        (left - e.left).tolist(),
        (bottom - top).tolist(),
        (right - left).tolist(),
        sizes.tolist(),
        params.mirror.tolist(),
        params.interpolation.tolist(),
    )
    return tuple(
        CropPlan(
            t,
            lf,
            max(h, 1),
            max(w, 1),
            int(hw[0]),
            int(hw[1]),
            bool(m),
            CAFFE_INTERPOLATIONS[int(c)],
        )
        for t, lf, h, w, hw, m, c in rows
    )


class HostPlan(NamedTuple):
    """What the host knows of a batch and the device needs without asking (``host_plan``): the
    photometric steps some image needs, and each image's ``CropPlan``."""

    steps: frozenset[str]
    crops: tuple[CropPlan, ...]


def host_plan(sizes: Tensor, params: BatchParams) -> HostPlan:
    """The ``HostPlan`` of a batch, from its image sizes ``[B, 2]`` and decisions on the CPU."""
    return HostPlan(photometric_steps(params.photometric), crop_plans(sizes, params))


def window_axis(
    start: int, length: int, extent: int, limit: int
) -> tuple[int, int, int, slice | None]:
    """One axis of a crop window: (window length n, first and last window pixel that lies in
    the image, the source slice that fills them, or None when no pixel does). Window pixel m is
    source pixel ``start + k m + k // 2``, with ``k`` the smallest step giving ``n <= limit``
    (``k = 1``, the crop itself, whenever the crop fits)."""
    k = max(1, -(-length // limit))
    n = -(-length // k)
    first = max(0, -(-(-start - k // 2) // k))
    last = min(n - 1, (extent - 1 - start - k // 2) // k)
    if last < first:
        return n, first, last, None
    p0 = start + k * first + k // 2
    return n, first, last, slice(p0, start + k * last + k // 2 + 1, k)


def _interpolate(x: Tensor, size: tuple[int, int], name: str) -> Tensor:
    mode, antialias = DEVICE_INTERPOLATIONS[name]
    if mode == "nearest":
        return nnf.interpolate(x, size=size, mode=mode)
    return nnf.interpolate(x, size=size, mode=mode, antialias=antialias, align_corners=False)


_V2_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
_COVERED = 1e-2  # at or below this coverage an output pixel is fill


class Resampled(NamedTuple):
    """``resample_crops``' result: the image colour of every crop at the output size, and where
    the image shows."""

    colour: Tensor  # uint8 [B, 3, S, S]: the image's own colour (0 where only fill shows)
    coverage: list[Tensor | None]  # per image float32 [1, S, S], None: the crop is all image
    shown: list[tuple[slice, slice] | None]  # per image the output rows/cols the image reaches
    # (on the CPU only, where reading them costs nothing; None: all, or not computed)


def resample_crops(pixels: Tensor, plans: Sequence[CropPlan], size: int, limit: int) -> Resampled:
    """Steps 1 and 2 of the module docstring, one image at a time (a crop's window has its own
    size, which neither ``F.interpolate`` nor v2 can batch).

    ``pixels``: the padded uint8 batch; ``limit``: the largest window side (larger crops are
    subsampled by a step). Every crop is resized from uint8 with v2's kernels (those of the
    per-image path). Where a crop shows fill, its window holds zeros there, which makes the
    resized window the image's colour premultiplied by its coverage (a separable interpolation's
    coverage is the product of the two axes', cheap to compute): dividing by it leaves the
    image's colour alone, to within the rounding of the premultiplied value (at most half a grey
    level of the final pixel, which is the colour times the coverage)."""
    b = len(plans)
    on_cpu = pixels.device.type == "cpu"
    colour = pixels.new_empty((b, 3, size, size))
    result = Resampled(colour, [None] * b, [None] * b)
    for i, p in enumerate(plans):
        ny, y0, y1, rows = window_axis(p.top, p.height, p.image_height, limit)
        nx, x0, x1, cols = window_axis(p.left, p.width, p.image_width, limit)
        if rows is None or cols is None:  # only fill in the crop
            colour[i] = 0
            result.coverage[i] = colour.new_zeros((1, size, size), dtype=torch.float32)
            result.shown[i] = (slice(0, 0), slice(0, 0))
            continue
        part = pixels[i, :, rows, cols]
        mode, antialias = DEVICE_INTERPOLATIONS[p.interpolation]
        whole = (y0, x0, y1, x1) == (0, 0, ny - 1, nx - 1)
        if not whole:  # zeros around the image: the colour premultiplied by the coverage
            window = part.new_zeros((3, ny, nx))
            window[:, y0 : y1 + 1, x0 : x1 + 1] = part
            part = window
        out = TF.resize(part, [size, size], interpolation=_V2_MODES[mode], antialias=antialias)
        colour[i] = out.flip(-1) if p.mirror else out
        if whole:
            continue
        # Each axis' coverage, as a 2-pixel-wide strip: antialiased F.interpolate returns
        # garbage along an axis of size 1 (torch 2.x).
        ind_y = colour.new_zeros((1, 1, ny, 2), dtype=torch.float32)
        ind_y[..., y0 : y1 + 1, :] = 1.0
        ind_x = colour.new_zeros((1, 1, 2, nx), dtype=torch.float32)
        ind_x[..., x0 : x1 + 1] = 1.0
        ind_x = ind_x.flip(-1) if p.mirror else ind_x
        cy = _interpolate(ind_y, (size, 2), p.interpolation)[..., :1].clamp_(0.0, 1.0)
        cx = _interpolate(ind_x, (2, size), p.interpolation)[..., :1, :].clamp_(0.0, 1.0)
        cov = (cy * cx)[0]
        covered = cov > _COVERED
        own = colour[i].to(torch.float32) / torch.where(covered, cov, 1.0)
        colour[i] = torch.where(covered, own, 0.0).clamp_(0.0, 255.0).round_()
        result.coverage[i] = cov
        if on_cpu:
            ys = torch.nonzero(cy.flatten() > _COVERED).flatten().tolist() or [0, -1]
            xs = torch.nonzero(cx.flatten() > _COVERED).flatten().tolist() or [0, -1]
            result.shown[i] = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    return result


def augment_batch(
    pixels: Tensor,
    *,
    sizes: Tensor,
    boxes: Tensor,
    labels: Tensor,
    mask: Tensor,
    params: BatchParams,
    mean: Tensor,
    size: int,
    plan: HostPlan | None = None,
    limit: int | None = None,
    per_image: bool | None = None,
) -> AugmentedBatch:
    """Apply ``params`` to a padded batch; every tensor on one device, nothing copied.

    ``pixels`` uint8 ``[B, 3, H, W]``: image i in its top-left ``sizes[i]`` = (h, w) corner (the
    rest is ignored); ``boxes`` ``[B, G, 4]`` xyxy normalised to each image, ``labels``/``mask``
    ``[B, G]``; ``mean`` float32 ``[3]``. ``plan``: the batch's ``HostPlan``, known on the host,
    so that nothing waits for the device (computed from ``params`` when not given, which reads
    them back from the device). ``limit``: the largest crop window (default ``2 * size``).

    The photometric distortion runs on the whole batch at once with per-image parameters (the
    identity where a step does not fire); on the CPU, where a batched op saves no kernel launch,
    image by image on the part of the output its image reaches, skipping the steps that do not
    fire (``distort_image``: the same per-pixel arithmetic, so the same result). ``per_image``
    picks one of the two regardless of the device (default: by the device).
    """
    limit = 2 * size if limit is None else int(limit)
    if plan is None:
        plan = host_plan(sizes.cpu(), params.to("cpu"))
    res = resample_crops(pixels, plan.crops, size, limit)
    if per_image is None:
        per_image = pixels.device.type == "cpu"
    if per_image:
        colour = res.colour
        for i, shown in enumerate(res.shown):
            view = colour[i] if shown is None else colour[i, :, shown[0], shown[1]]
            if view.numel():
                view.copy_(distort_image(view, params.photometric, i))
        out = colour.to(torch.float32)
    else:
        out = apply_photometric(res.colour.to(torch.float32), params.photometric, plan.steps)
    out = out.sub_(mean[None, :, None, None])
    for i, cov in enumerate(res.coverage):
        if cov is not None:  # coverage * distorted + (1 - coverage) * mean, minus the mean
            out[i] = torch.where(cov > _COVERED, out[i] * cov, 0.0)

    heights, widths = sizes[:, 0], sizes[:, 1]
    gt = boxes_to_canvas(boxes.float(), heights, widths, params.expansion)
    out_boxes, keep = crop_boxes(gt, mask, params.crops)
    out_boxes = mirror_boxes(out_boxes, params.mirror, keep)
    out_labels = torch.where(keep, labels, torch.zeros_like(labels))
    return AugmentedBatch(out, out_boxes, out_labels, keep)
