"""Caffe SSD's photometric distortion (``DistortionParameter``): draws and pixel operations.

With p=0.5 the order is brightness, contrast, saturation, hue, else brightness, saturation, hue,
contrast; each step fires with p=0.5. Brightness adds U(-32, 32), contrast multiplies by
U(0.5, 1.5) (Caffe's ``convertTo(alpha, 0)``, a scale about 0, not torchvision's blend towards the
mean grey), saturation multiplies HSV's S by U(0.5, 1.5) (Caffe; torchvision blends with greyscale
instead), hue adds U(-18, 18) to HSV's H in OpenCV's 8-bit units (0..180, so +-36 degrees). The
channel shuffle (``random_order_prob``) is 0 in ssd_pascal.py and in caffe.proto's default; it is
implemented and off by default. Each step rounds and saturates to 0..255, as Caffe does on its
uint8 ``cv::Mat``.

Deliberate differences from Caffe: hue wraps around in both directions (OpenCV saturates H below
0 to 0, so negative shifts clamp reds, and only wraps above 180), and the HSV arithmetic is in
float (OpenCV quantises H to 180 steps and S to 256). v2's adjust_brightness/contrast/saturation
define different operations (see each function), so those are written out; hue is written out too
(v2's definition, but batched and faster).

Every operation takes per-image parameters ``[B]`` (or a scalar) and works on one image
``[3, H, W]`` or a batch ``[B, 3, H, W]`` of floats in 0..255, on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scratchdet.input.augment import PhotometricConfig
from scratchdet.input.sampling import uniform

__all__ = [
    "PHOTOMETRIC_STEPS",
    "PhotometricParams",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_photometric",
    "distort_image",
    "photometric_steps",
    "sample_photometric",
    "saturate_uint8",
]

PHOTOMETRIC_STEPS = (
    "brightness",
    "contrast_first",
    "saturation",
    "hue",
    "contrast_last",
    "channels",
)
"""The steps of ``apply_photometric``, in order (contrast sits at one of two places per image)."""


@dataclass
class PhotometricParams:
    """Per-image distortion parameters ``[B]``; an identity value means the step did not fire."""

    brightness: Tensor  # additive delta, 0 = off
    contrast: Tensor  # factor, 1 = off
    saturation: Tensor  # factor, 1 = off
    hue: Tensor  # OpenCV hue units (2 degrees), 0 = off
    contrast_last: Tensor  # bool: order brightness, saturation, hue, contrast
    channel_order: Tensor  # [B, 3] long permutation, arange(3) = off

    def to(self, device: torch.device | str) -> PhotometricParams:
        return PhotometricParams(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def sample_photometric(
    n: int, generator: torch.Generator, cfg: PhotometricConfig
) -> PhotometricParams:
    """Draw Caffe's ``ApplyDistort`` decisions for ``n`` images at once."""
    u = uniform((n, 10), generator).cpu()

    def maybe(fires: Tensor, value: Tensor, identity: float) -> Tensor:
        return torch.where(fires, value, torch.full_like(value, identity))

    p = cfg
    brightness = maybe(u[:, 1] < p.brightness_prob, (2 * u[:, 2] - 1) * p.brightness_delta, 0.0)
    contrast = maybe(
        u[:, 3] < p.contrast_prob,
        p.contrast_lower + u[:, 4] * (p.contrast_upper - p.contrast_lower),
        1.0,
    )
    saturation = maybe(
        u[:, 5] < p.saturation_prob,
        p.saturation_lower + u[:, 6] * (p.saturation_upper - p.saturation_lower),
        1.0,
    )
    hue = maybe(u[:, 7] < p.hue_prob, (2 * u[:, 8] - 1) * p.hue_delta, 0.0)
    shuffled = torch.argsort(uniform((n, 3), generator).cpu(), dim=1)
    order = torch.where((u[:, 9] < p.channel_swap_prob)[:, None], shuffled, torch.arange(3))
    # Caffe: `if (prob > 0.5)` brightness, contrast, saturation, hue; else contrast comes last.
    return PhotometricParams(brightness, contrast, saturation, hue, u[:, 0] <= 0.5, order)


def _per_image(value: Tensor | float, x: Tensor, trailing: int = 3) -> Tensor | float:
    """Reshape a ``[B]`` parameter to broadcast over ``x`` with ``trailing`` dims per image
    (``[B, 3, H, W]``: 3; an HSV plane ``[B, H, W]``: 2). Scalars pass through."""
    if isinstance(value, Tensor):
        value = value.to(x.device, x.dtype)
        if value.ndim > 0:
            return value.reshape(value.shape + (1,) * trailing)
    return value


def saturate_uint8(x: Tensor) -> Tensor:
    """Round and clamp to 0..255 in place, as OpenCV's ``saturate_cast<uchar>`` after each step."""
    return x.round_().clamp_(0.0, 255.0)


def adjust_brightness(x: Tensor, delta: Tensor | float) -> Tensor:
    """Caffe: ``convertTo(out, -1, 1, delta)``; v2's adjust_brightness multiplies instead."""
    return saturate_uint8(x + _per_image(delta, x))


def adjust_contrast(x: Tensor, alpha: Tensor | float) -> Tensor:
    """Caffe: ``convertTo(out, -1, alpha, 0)``; v2's adjust_contrast blends with the mean grey."""
    return saturate_uint8(x * _per_image(alpha, x))


def adjust_saturation(x: Tensor, factor: Tensor | float) -> Tensor:
    """Caffe: scale HSV's S by ``factor``, saturating at 1 (v2's adjust_saturation blends with
    grey instead).

    With H and V fixed, every channel c of a pixel satisfies V - c = V S g(H), so scaling S by k
    is c' = V - k (V - c) with k = min(factor, 1 / S): the HSV round trip without the trip.
    """
    maxc = x.amax(dim=-3, keepdim=True)
    span = maxc - x.amin(dim=-3, keepdim=True)
    f = _per_image(factor, x)
    ratio = maxc / torch.where(span > 0, span, 1.0)
    k = torch.minimum(f, ratio) if isinstance(f, Tensor) else ratio.clamp(max=f)
    return saturate_uint8(maxc - k * (maxc - x))


def adjust_hue(x: Tensor, delta: Tensor | float) -> Tensor:
    """Rotate HSV's H by ``delta`` OpenCV units (1/180 of the circle) per image, wrapping around.

    The same definition as v2's ``adjust_hue`` (tests check they agree to one grey level), which
    takes one factor per call, cannot batch per-image factors and, on one CPU thread, takes about
    twice as long. S and V, hence each pixel's max and min, stay; channel n becomes
    max - span * clamp(min(k, 4 - k), 0, 1) with k = (n + 6H) mod 6.
    """
    r, g, b = x.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)  # much faster than aminmax over dim -3 on CPU
    span = maxc - torch.minimum(torch.minimum(r, g), b)
    safe = torch.where(span > 0, span, 1.0)
    h6 = torch.where(
        maxc == r,
        (g - b) / safe,
        torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe),
    )
    h6 = h6 + _per_image(delta, h6, trailing=2) / 30.0  # 180 units = 6 sectors
    # h6 lies in [-4, 8] (|delta| <= 90): two conditional shifts wrap it into [0, 6), much
    # cheaper than torch.remainder (a division and a floor per element).
    h6 = torch.where(h6 < 0.0, h6 + 6.0, h6)
    h6 = torch.where(h6 >= 6.0, h6 - 6.0, h6)
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = h6 + n  # in [1, 11): k mod 6 by one conditional shift
        k = torch.where(k >= 6.0, k - 6.0, k)
        out.append(maxc - span * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return saturate_uint8(torch.stack(out, dim=-3))


def distort_image(image: Tensor, params: PhotometricParams, index: int = 0) -> Tensor:
    """Apply image ``index``'s distortion to one uint8 ``[3, H, W]`` image (skipping idle steps)."""
    b, c, s, h = (
        float(params.brightness[index]),
        float(params.contrast[index]),
        float(params.saturation[index]),
        float(params.hue[index]),
    )
    order = params.channel_order[index]
    steps: list = []
    if b != 0.0:
        steps.append(lambda x: adjust_brightness(x, b))
    contrast = [lambda x: adjust_contrast(x, c)] if c != 1.0 else []
    colour = []
    if s != 1.0:
        colour.append(lambda x: adjust_saturation(x, s))
    if h != 0.0:
        colour.append(lambda x: adjust_hue(x, h))
    steps += (colour + contrast) if bool(params.contrast_last[index]) else (contrast + colour)
    shuffle = bool((order != torch.arange(3)).any())
    if not steps and not shuffle:
        return image
    x = image.float()
    for step in steps:
        x = step(x)
    return (x[order] if shuffle else x).to(torch.uint8)


def photometric_steps(params: PhotometricParams) -> frozenset[str]:
    """The steps that some image of the batch needs; ``params`` on the CPU (where they were
    drawn), so deciding costs no device sync."""
    c = params.to("cpu")
    needs = {
        "brightness": bool((c.brightness != 0).any()),
        "contrast_first": bool(((c.contrast != 1) & ~c.contrast_last).any()),
        "saturation": bool((c.saturation != 1).any()),
        "hue": bool((c.hue != 0).any()),
        "contrast_last": bool(((c.contrast != 1) & c.contrast_last).any()),
        "channels": bool((c.channel_order != torch.arange(3)).any()),
    }
    return frozenset(step for step, needed in needs.items() if needed)


def apply_photometric(
    x: Tensor,
    params: PhotometricParams,
    steps: frozenset[str] | tuple[str, ...] = PHOTOMETRIC_STEPS,
) -> Tensor:
    """Caffe's ``ApplyDistort`` on a float batch ``[B, 3, H, W]`` in 0..255, per-image parameters
    (on ``x``'s device).

    Contrast is applied at both of its possible positions with the identity where it does not
    belong, so both orders run in the same ops. Only ``steps`` run (``photometric_steps`` of the
    batch skips those no image needs; an identity parameter leaves a pixel as it is anyway).
    """
    p = params
    one = torch.ones_like(p.contrast)
    if "brightness" in steps:
        x = adjust_brightness(x, p.brightness)
    if "contrast_first" in steps:
        x = adjust_contrast(x, torch.where(p.contrast_last, one, p.contrast))
    if "saturation" in steps:
        x = adjust_saturation(x, p.saturation)
    if "hue" in steps:
        x = adjust_hue(x, p.hue)
    if "contrast_last" in steps:
        x = adjust_contrast(x, torch.where(p.contrast_last, p.contrast, one))
    if "channels" in steps:
        x = x.gather(1, p.channel_order[:, :, None, None].expand_as(x))
    return x
