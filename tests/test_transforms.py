"""The per-image SSD augmentation: Caffe's numbers, box/pixel consistency, reproducibility."""

from __future__ import annotations

import colorsys
import pickle
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from scratchdet.config import AUGMENTATIONS as config_augmentations
from scratchdet.errors import ConfigError
from scratchdet.input.augment import (
    AUGMENT_CONFIGS,
    NO_AUGMENTATION,
    SSD_CROP_SAMPLERS,
    AugmentConfig,
    CropSampler,
    PhotometricConfig,
    augment_config,
)
from scratchdet.input.geometry import (
    box_iou_batched,
    crop_boxes,
    mirror_boxes,
    sample_crops,
    sample_expansion,
)
from scratchdet.input.per_image import SSDTrainTransform
from scratchdet.input.photometric import (
    PhotometricParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    distort_image,
    sample_photometric,
)
from scratchdet.input.sampling import sample_generator
from scratchdet.input.test_time import SSDTestTransform
from scratchdet.models.input import CAFFE_MEAN_RGB
from tests.paths import KANGAROO

MEAN = torch.tensor(CAFFE_MEAN_RGB)[:, None, None]
NO_PHOTOMETRIC = PhotometricConfig(
    brightness_prob=0, contrast_prob=0, saturation_prob=0, hue_prob=0
)
# Geometry only, nearest-neighbour resize: box edges must match pixel edges to one pixel.
GEOMETRY = AugmentConfig(photometric=NO_PHOTOMETRIC, interpolations=("nearest",))
# Nothing random but the mirror.
FIXED = AugmentConfig(
    photometric=NO_PHOTOMETRIC,
    expand_prob=0.0,
    samplers=(CropSampler(),),
    interpolations=("linear",),
    mirror_prob=0.0,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def apply(t: SSDTrainTransform, image, boxes, labels, params):
    """``params`` applied as the CPU pipeline does (``apply_uint8``), then the mean subtracted as
    the device does next: the network's input."""
    pixels, out_boxes, out_labels = t.apply_uint8(image, boxes, labels, params)
    return pixels.float() - MEAN, out_boxes, out_labels


def augment(t: SSDTrainTransform, image, boxes, labels, generator):
    """One sample as the CPU pipeline augments it (``pipeline._AugmentOnCpu``): every decision
    drawn from the sample's generator, then applied."""
    return apply(
        t, image, boxes, labels, t.sample(image.shape[-2], image.shape[-1], boxes, generator)
    )


def white_box_image(h: int, w: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    img = torch.zeros((3, h, w), dtype=torch.uint8)
    x0, y0, x1, y1 = box
    img[:, y0:y1, x0:x1] = 255
    return img


def bright_extent(out: torch.Tensor, threshold: float) -> torch.Tensor | None:
    """Normalised xyxy extent of the grey pixels (channels within 6 levels) >= threshold.

    Grey excludes the mean fill (123, 117, 104) and its ringing under cubic/lanczos resizing;
    a white box on black stays grey under every photometric step.
    """
    pixels = out + MEAN
    lo, hi = pixels.aminmax(dim=0)
    bright = (lo >= threshold) & (hi - lo <= 6)
    if not bright.any():
        return None
    ys, xs = torch.nonzero(bright, as_tuple=True)
    size = out.shape[-1]
    extent = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    return extent / size


def check_contract(out, boxes, labels, size=300):
    assert out.shape == (3, size, size) and out.dtype == torch.float32
    pixels = out + MEAN
    assert pixels.min() >= -1e-4 and pixels.max() <= 255 + 1e-4
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(labels) == len(boxes)
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


# ----------------------------------------------------------------------------- configuration


def test_defaults_are_caffe_ssd_recipe():
    assert len(SSD_CROP_SAMPLERS) == 7
    assert [s.min_iou for s in SSD_CROP_SAMPLERS] == [None, 0.1, 0.3, 0.5, 0.7, 0.9, None]
    assert SSD_CROP_SAMPLERS[-1].max_iou == 1.0
    assert SSD_CROP_SAMPLERS[0] == CropSampler(1, 1, 1, 1, None, None, 1)
    for s in SSD_CROP_SAMPLERS[1:]:
        assert (s.min_scale, s.max_scale, s.min_aspect_ratio, s.max_aspect_ratio, s.max_trials) == (
            0.3,
            1.0,
            0.5,
            2.0,
            50,
        )
    cfg = AugmentConfig()
    p = cfg.photometric
    assert (p.brightness_prob, p.brightness_delta) == (0.5, 32)
    assert (p.contrast_prob, p.contrast_lower, p.contrast_upper) == (0.5, 0.5, 1.5)
    assert (p.saturation_prob, p.saturation_lower, p.saturation_upper) == (0.5, 0.5, 1.5)
    assert (p.hue_prob, p.hue_delta, p.channel_swap_prob) == (0.5, 18, 0.0)
    assert (cfg.expand_prob, cfg.max_expand_ratio, cfg.mirror_prob) == (0.5, 4.0, 0.5)
    assert cfg.interpolations == ("linear", "area", "nearest", "cubic", "lanczos4")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expand_prob": 1.5},
        {"mirror_prob": -0.1},
        {"max_expand_ratio": 0.5},
        {"interpolations": ("bilinear",)},
        {"interpolations": ()},
        {"samplers": ()},
        {"samplers": (CropSampler(min_scale=0.0),)},
        {"photometric": PhotometricConfig(hue_delta=120)},
        {"photometric": PhotometricConfig(contrast_lower=2.0)},
    ],
)
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        AugmentConfig(**kwargs)


def test_bad_input_is_rejected():
    t = SSDTrainTransform()
    boxes, labels = torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64)
    with pytest.raises(ValueError):
        augment(t, torch.zeros((3, 10, 10)), boxes, labels, gen(0))  # float image
    with pytest.raises(ValueError):
        augment(t, torch.zeros((3, 10, 10), dtype=torch.uint8), torch.zeros((2, 4)), labels, gen(0))


# ----------------------------------------------------------------------------- photometric


def test_brightness_and_contrast_are_caffe_convert_to():
    x = torch.tensor([0.0, 10.0, 100.0, 250.0]).reshape(1, 1, 4).expand(3, 1, 4)
    assert adjust_brightness(x, 32.0)[0, 0].tolist() == [32, 42, 132, 255]  # saturates at 255
    assert adjust_brightness(x, -20.4)[0, 0].tolist() == [0, 0, 80, 230]  # rounds, floors at 0
    # A scale about 0 (not v2's blend with the mean grey): 0 stays 0.
    assert adjust_contrast(x, 1.5)[0, 0].tolist() == [0, 15, 150, 255]
    assert adjust_contrast(x, 0.5)[0, 0].tolist() == [0, 5, 50, 125]


def test_saturation_scales_hsv_s_like_colorsys():
    img = torch.randint(0, 256, (3, 6, 7), generator=gen(1)).float()
    for factor in (0.5, 0.8, 1.3, 1.5):
        out = adjust_saturation(img, factor)
        for (r, g, b), got in zip(img.reshape(3, -1).T.tolist(), out.reshape(3, -1).T.tolist()):
            h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
            want = [c * 255 for c in colorsys.hsv_to_rgb(h, min(s * factor, 1.0), v)]
            assert max(abs(a - w) for a, w in zip(got, want)) <= 0.5 + 1e-3


def test_hue_matches_torchvision_adjust_hue():
    img = torch.randint(0, 256, (3, 32, 32), generator=gen(2), dtype=torch.uint8)
    for delta in (-18.0, -7.3, 0.4, 12.0, 18.0):  # OpenCV units: 1/180 of the circle
        ours = adjust_hue(img.float(), delta)
        theirs = F.adjust_hue(img.float() / 255, delta / 180) * 255
        assert (ours - theirs).abs().max() <= 1.0


def test_hue_and_saturation_leave_grey_alone_and_keep_value():
    grey = torch.full((3, 4, 4), 77.0)
    assert torch.equal(adjust_hue(grey, 15.0), grey)
    assert torch.equal(adjust_saturation(grey, 1.5), grey)
    img = torch.randint(0, 256, (3, 8, 8), generator=gen(3)).float()
    assert torch.equal(adjust_hue(img, 9.0).amax(0), img.amax(0))  # V is kept
    assert torch.equal(adjust_hue(img, 0.0), img)


def test_batched_ops_use_per_image_parameters():
    imgs = torch.randint(0, 256, (3, 3, 5, 5), generator=gen(4)).float()
    factors = torch.tensor([0.5, 1.0, 1.4])
    deltas = torch.tensor([-10.0, 0.0, 16.0])
    for i in range(3):
        f, d = float(factors[i]), float(deltas[i])
        assert torch.equal(adjust_saturation(imgs, factors)[i], adjust_saturation(imgs[i], f))
        assert torch.equal(adjust_hue(imgs, deltas)[i], adjust_hue(imgs[i], d))
        assert torch.equal(adjust_brightness(imgs, deltas)[i], adjust_brightness(imgs[i], d))
        assert torch.equal(adjust_contrast(imgs, factors)[i], adjust_contrast(imgs[i], f))


def params(
    brightness=0.0, contrast=1.0, saturation=1.0, hue=0.0, contrast_last=False, order=(0, 1, 2)
) -> PhotometricParams:
    return PhotometricParams(
        torch.tensor([brightness]),
        torch.tensor([contrast]),
        torch.tensor([saturation]),
        torch.tensor([hue]),
        torch.tensor([contrast_last]),
        torch.tensor([order]),
    )


def test_distortion_order_follows_caffe():
    img = torch.full((3, 2, 2), 250, dtype=torch.uint8)
    # Brightness always comes first: 250 + 20 saturates at 255, then x0.5 -> 128 (rounded).
    for last in (False, True):
        out = distort_image(img, params(brightness=20, contrast=0.5, contrast_last=last))
        assert out.unique().tolist() == [128]
    # Contrast before or after saturation gives different results on a saturated colour.
    colour = torch.tensor([200, 100, 50], dtype=torch.uint8)[:, None, None].expand(3, 2, 2)
    first = distort_image(colour, params(contrast=1.5, saturation=1.5, contrast_last=False))
    last = distort_image(colour, params(contrast=1.5, saturation=1.5, contrast_last=True))
    assert not torch.equal(first, last)
    expected_first = adjust_saturation(adjust_contrast(colour.float(), 1.5), 1.5)
    assert torch.equal(first.float(), expected_first)
    # Identity parameters return the image untouched; the channel shuffle permutes channels.
    assert distort_image(colour, params()) is colour
    assert distort_image(colour, params(order=(2, 0, 1)))[:, 0, 0].tolist() == [50, 200, 100]


def test_photometric_parameter_distributions():
    n = 20000
    p = sample_photometric(n, gen(5), PhotometricConfig())
    for fired in (
        p.brightness != 0,
        p.contrast != 1,
        p.saturation != 1,
        p.hue != 0,
        p.contrast_last,
    ):
        assert abs(fired.float().mean().item() - 0.5) < 0.02
    assert p.brightness.abs().max() <= 32 and p.brightness.abs().max() > 31
    assert p.contrast.min() >= 0.5 and p.contrast.max() <= 1.5
    assert p.saturation.min() >= 0.5 and p.saturation.max() <= 1.5
    assert p.hue.abs().max() <= 18 and p.hue.abs().max() > 17.5
    fired = p.brightness[p.brightness != 0]
    assert abs(fired.mean().item()) < 1.0  # symmetric
    assert torch.equal(p.channel_order, torch.arange(3).expand(n, 3))  # Caffe SSD: p = 0
    q = sample_photometric(2000, gen(6), PhotometricConfig(channel_swap_prob=1.0))
    assert torch.equal(q.channel_order.sort(1).values, torch.arange(3).expand(2000, 3))
    assert (q.channel_order != torch.arange(3)).any(1).float().mean() > 0.7  # 5/6 expected


# ----------------------------------------------------------------------------- geometry units


def test_batched_iou_matches_torchvision():
    a = torch.rand(3, 5, 4, generator=gen(7))
    b = torch.rand(3, 6, 4, generator=gen(8))
    a = torch.cat([a[..., :2].minimum(a[..., 2:]), a[..., :2].maximum(a[..., 2:])], -1)
    b = torch.cat([b[..., :2].minimum(b[..., 2:]), b[..., :2].maximum(b[..., 2:])], -1)
    ours = box_iou_batched(a, b)
    for i in range(3):
        torch.testing.assert_close(ours[i], box_iou(a[i], b[i]))


def test_expansion_distribution():
    n = 20000
    h = torch.randint(50, 600, (n,), generator=gen(9))
    w = torch.randint(50, 600, (n,), generator=gen(10))
    e = sample_expansion(h, w, generator=gen(11), prob=0.5, max_ratio=4.0)
    ratio = e.width.double() / w
    fired = (e.width > w) | (e.height > h)
    assert abs(fired.float().mean().item() - 0.5) < 0.02
    assert ratio.min() >= 1.0 and ratio.max() <= 4.0
    assert (e.height.double() / h).max() <= 4.0
    assert abs(ratio[fired].mean().item() - 2.5) < 0.05  # U(1, 4)
    assert torch.equal(e.width[~fired], w[~fired]) and (e.left[~fired] == 0).all()
    # The image lies inside its canvas, at an integer offset.
    assert (e.top >= 0).all() and (e.left >= 0).all()
    assert (e.top + h <= e.height).all() and (e.left + w <= e.width).all()
    none = sample_expansion(h, w, generator=gen(12), prob=0.0, max_ratio=4.0)
    assert torch.equal(none.height, h) and (none.top == 0).all()


def test_crops_respect_sampler_constraints():
    n = 3000
    centre = torch.rand(n, 3, 2, generator=gen(13)) * 0.8 + 0.1
    half = torch.rand(n, 3, 2, generator=gen(14)) * 0.3 + 0.02
    gt = torch.cat([(centre - half).clamp(0, 1), (centre + half).clamp(0, 1)], -1)
    valid = torch.rand(n, 3, generator=gen(15)) < 0.8
    valid[:, 0] = True
    crops, chosen = sample_crops(gt, valid, gen(16))
    w, h = crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]
    assert (crops >= 0).all() and (crops <= 1 + 1e-6).all()
    sampled = chosen >= 1
    assert sampled.float().mean() > 0.5
    # SampleBBox: area = scale^2 with scale in [0.3, 1]; aspect clamped into [0.5, 2].
    area = (w * h)[sampled]
    assert area.min() >= 0.09 - 1e-5 and area.max() <= 1 + 1e-5
    aspect = (w / h)[sampled]
    assert aspect.min() >= 0.5 - 1e-4 and aspect.max() <= 2 + 1e-4
    whole = crops[chosen == 0]
    assert torch.equal(whole, torch.tensor([[0.0, 0, 1, 1]]).expand(len(whole), 4))
    iou = box_iou_batched(crops[:, None], gt)[:, 0].masked_fill(~valid, -1)
    best = iou.max(1).values
    for s, sampler in enumerate(SSD_CROP_SAMPLERS):
        picked = chosen == s
        assert picked.any()
        if sampler.min_iou is not None:
            assert (best[picked] >= sampler.min_iou - 1e-6).all()


def test_crop_pick_is_uniform_over_samplers_that_found_one():
    # Against a full-image box every sampler finds a crop (IoU = area), so the pick is 1/7 each.
    n = 7000
    gt = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]).expand(n, 1, 4)
    _, chosen = sample_crops(gt, torch.ones(n, 1, dtype=torch.bool), gen(17))
    freq = torch.bincount(chosen, minlength=7).float() / n
    assert ((freq - 1 / 7).abs() < 0.02).all(), freq


def test_crops_without_boxes_use_the_whole_image():
    no_boxes = torch.zeros(50, 0, dtype=torch.bool)
    crops, chosen = sample_crops(torch.zeros(50, 0, 4), no_boxes, gen(18))
    assert (chosen == 0).all() and torch.equal(crops, torch.tensor([[0.0, 0, 1, 1]]).expand(50, 4))
    # Without the whole-image sampler nothing qualifies: fall back to the whole canvas (-1).
    crops, chosen = sample_crops(
        torch.zeros(5, 0, 4), torch.zeros(5, 0, dtype=torch.bool), gen(19), SSD_CROP_SAMPLERS[1:]
    )
    assert (chosen == -1).all() and torch.equal(crops, torch.tensor([[0.0, 0, 1, 1]]).expand(5, 4))


def test_crop_boxes_centre_rule_clip_and_drop():
    crop = torch.tensor([[0.2, 0.2, 0.6, 0.6]])
    boxes = torch.tensor(
        [
            [
                [0.3, 0.3, 0.5, 0.5],  # inside
                [0.1, 0.1, 0.5, 0.5],  # centre 0.3 inside: clipped
                [0.5, 0.5, 0.9, 0.9],  # centre 0.7 outside: dropped
                [0.4, 0.4, 0.8, 0.8],  # centre 0.6 on the edge: kept (inclusive)
                [0.3, 0.3, 0.3, 0.5],  # zero width: dropped
                [0.3, 0.3, 0.5, 0.5],
            ]
        ]
    )  # padding slot: dropped
    valid = torch.tensor([[True, True, True, True, True, False]])
    out, keep = crop_boxes(boxes, valid, crop)
    assert keep.tolist() == [[True, True, False, True, False, False]]
    torch.testing.assert_close(out[0, 0], torch.tensor([0.25, 0.25, 0.75, 0.75]))
    torch.testing.assert_close(out[0, 1], torch.tensor([0.0, 0.0, 0.75, 0.75]))
    torch.testing.assert_close(out[0, 3], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    assert (out[0, ~keep[0]] == 0).all()


def test_mirror_boxes_flips_x_only():
    b = torch.tensor([[[0.1, 0.2, 0.3, 0.4]], [[0.1, 0.2, 0.3, 0.4]]])
    out = mirror_boxes(b, torch.tensor([True, False]))
    torch.testing.assert_close(out[0, 0], torch.tensor([0.7, 0.2, 0.9, 0.4]))
    torch.testing.assert_close(out[1, 0], b[1, 0])


# ----------------------------------------------------------------------------- the transform


def test_output_contract_on_random_images():
    t = SSDTrainTransform()
    for i in range(20):
        h, w = torch.randint(40, 400, (2,), generator=gen(i)).tolist()
        xy = torch.rand(5, 2, generator=gen(100 + i)) * torch.tensor([w, h]) * 0.8
        wh = torch.rand(5, 2, generator=gen(200 + i)) * torch.tensor([w, h]) * 0.5 + 1
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1)
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen(300 + i))
        out, b, lab = augment(t, img, boxes, torch.arange(5), sample_generator(0, i))
        check_contract(out, b, lab)
        assert len(lab.unique()) == len(lab)


def test_white_box_is_exact_under_geometry_only():
    """Expand, crop and mirror with nearest resizing: the box matches the white pixels to 1 px."""
    box = (150, 90, 290, 230)
    img = white_box_image(300, 400, box)
    boxes = torch.tensor([box], dtype=torch.float32)
    t = SSDTrainTransform(config=GEOMETRY)
    seen = {"kept": 0, "mirrored": 0, "expanded": 0, "clipped": 0}
    for seed in range(80):
        p = t.sample(300, 400, boxes, gen(seed))
        out, b, lab = apply(t, img, boxes, torch.tensor([7]), p)
        check_contract(out, b, lab)
        extent = bright_extent(out, 128)
        if len(b) == 0:
            continue
        seen["kept"] += 1
        seen["mirrored"] += p.mirror
        seen["expanded"] += int(p.expansion.width[0]) > 400
        seen["clipped"] += bool((b[0] == 0).any() or (b[0] == 1).any())
        assert lab.tolist() == [7]
        assert extent is not None
        assert (extent - b[0]).abs().max() <= 1.0 / 300 + 1e-6, (seed, extent, b[0])
    assert all(v >= 5 for v in seen.values()), seen


def test_white_box_encloses_bright_pixels_under_full_recipe():
    box = (120, 60, 260, 200)
    img = white_box_image(280, 380, box)
    boxes = torch.tensor([box], dtype=torch.float32)
    t = SSDTrainTransform()
    kept = 0
    for seed in range(60):
        out, b, lab = augment(t, img, boxes, torch.tensor([1]), gen(seed))
        check_contract(out, b, lab)
        if len(b) == 0:
            continue
        kept += 1
        # White ends up >= (255 - 32) * 0.5; black <= 32 * 1.5; the mean fill has B = 104.
        extent = bright_extent(out, 108)
        assert extent is not None
        assert (extent - b[0]).abs().max() <= 0.035, (seed, extent, b[0])
    assert kept > 30


def test_labels_stay_aligned_with_boxes():
    """Four boxes painted with their own grey level: each output box shows its label's grey."""
    img = torch.zeros((3, 240, 320), dtype=torch.uint8)
    boxes = torch.tensor(
        [[20, 20, 140, 100], [180, 30, 300, 110], [30, 140, 150, 220], [170, 130, 310, 230]],
        dtype=torch.float32,
    )
    levels = torch.tensor([40, 90, 160, 230])
    for (x0, y0, x1, y1), v in zip(boxes.int().tolist(), levels.tolist()):
        img[:, y0:y1, x0:x1] = v
    t = SSDTrainTransform(config=GEOMETRY)
    checked = 0
    for seed in range(40):
        out, b, lab = augment(t, img, boxes, levels, gen(seed))
        pixels = out + MEAN
        for (x0, y0, x1, y1), v in zip((b * 300).tolist(), lab.tolist()):
            if x1 - x0 < 3 or y1 - y0 < 3:
                continue
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            assert pixels[:, cy, cx].tolist() == [v, v, v]
            checked += 1
    assert checked > 50


def test_mirror_flips_image_and_boxes():
    img = torch.randint(0, 256, (3, 120, 160), dtype=torch.uint8, generator=gen(20))
    boxes = torch.tensor([[16.0, 12.0, 64.0, 96.0]])
    plain = SSDTrainTransform(config=FIXED)
    flipped = SSDTrainTransform(config=replace(FIXED, mirror_prob=1.0))
    out0, b0, _ = augment(plain, img, boxes, torch.tensor([1]), gen(0))
    out1, b1, _ = augment(flipped, img, boxes, torch.tensor([1]), gen(0))
    torch.testing.assert_close(b0, torch.tensor([[0.1, 0.1, 0.4, 0.8]]))
    torch.testing.assert_close(b1, torch.tensor([[0.6, 0.1, 0.9, 0.8]]))
    assert torch.equal(out1, out0.flip(-1))
    expected = (
        F.resize(img, [300, 300], interpolation=InterpolationMode.BILINEAR, antialias=False).float()
        - MEAN
    )
    assert torch.equal(out0, expected)


def test_mirror_and_interpolation_rates():
    t = SSDTrainTransform()
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    draws = [t.sample(100, 100, boxes, g) for g in [gen(0)] for _ in range(1500)]
    assert abs(sum(p.mirror for p in draws) / 1500 - 0.5) < 0.05
    names = [p.interpolation for p in draws]
    for name in AugmentConfig().interpolations:
        assert abs(names.count(name) / 1500 - 0.2) < 0.04


def test_same_sample_seed_same_output_and_a_different_one_differs():
    """The pipeline seeds each sample by (run seed, stream position): the same pair gives the
    same sample, another seed or position another one."""
    img = torch.randint(0, 256, (3, 200, 260), dtype=torch.uint8, generator=gen(21))
    boxes = torch.tensor([[20.0, 30.0, 120.0, 150.0], [100.0, 80.0, 250.0, 190.0]])
    labels = torch.tensor([3, 5])
    t = SSDTrainTransform()

    def run(seed):
        return [augment(t, img, boxes, labels, sample_generator(seed, k)) for k in range(4)]

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    assert any(not torch.equal(x[0], z[0]) for x, z in zip(a, c))
    assert any(not torch.equal(a[0][0], x[0]) for x in a[1:])


def test_transform_survives_pickling():
    """DataLoader workers get a pickled copy: it augments a sample exactly as the original."""
    t = SSDTrainTransform()
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=gen(22))
    boxes, labels = torch.tensor([[5.0, 5.0, 40.0, 40.0]]), torch.tensor([1])
    first = augment(t, img, boxes, labels, sample_generator(11, 0))
    clone = pickle.loads(pickle.dumps(t))
    again = augment(clone, img, boxes, labels, sample_generator(11, 0))
    assert all(torch.equal(u, v) for u, v in zip(first, again))


def test_zero_box_images():
    t = SSDTrainTransform()
    img = torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8, generator=gen(23))
    empty, no_labels = torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64)
    for seed in range(10):
        p = t.sample(90, 120, empty, gen(seed))
        assert p.sampler == 0
        assert p.crop == (0, 0, int(p.expansion.height[0]), int(p.expansion.width[0]))
        out, b, lab = apply(t, img, empty, no_labels, p)
        assert out.shape == (3, 300, 300) and b.shape == (0, 4) and lab.shape == (0,)


def test_degenerate_boxes_are_dropped():
    t = SSDTrainTransform(config=FIXED)
    img = torch.zeros((3, 50, 50), dtype=torch.uint8)
    boxes = torch.tensor(
        [
            [10.0, 10.0, 10.0, 30.0],  # zero width
            [5.0, 5.0, 20.0, 20.0],
            [60.0, 60.0, 70.0, 70.0],
        ]
    )  # outside the image
    _, b, lab = augment(t, img, boxes, torch.tensor([1, 2, 3]), gen(0))
    assert lab.tolist() == [2]
    torch.testing.assert_close(b, torch.tensor([[0.1, 0.1, 0.4, 0.4]]))


# ----------------------------------------------------------------------------- test transform


def test_test_transform_is_caffes_linear_warp():
    """What detection's workers ship: Caffe's test-time ``interp_mode: LINEAR`` warp, uint8."""
    img = torch.randint(0, 256, (3, 150, 200), dtype=torch.uint8, generator=gen(25))
    out = SSDTestTransform().resize(img)
    expected = F.resize(img, [300, 300], interpolation=InterpolationMode.BILINEAR, antialias=False)
    assert out.dtype == torch.uint8 and torch.equal(out, expected)


# ----------------------------------------------------------------------------- real photos


def kangaroo_samples(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if not (KANGAROO / "annots").is_dir():
        pytest.skip("kangaroo dataset not present")
    samples = []
    for xml in sorted((KANGAROO / "annots").glob("*.xml"))[:count]:
        root = ET.parse(xml).getroot()
        with Image.open(KANGAROO / "images" / root.findtext("filename")) as pil:
            image = F.pil_to_tensor(pil.convert("RGB"))
        boxes = [
            [float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            for o in root.iter("object")
        ]
        xyxy = torch.tensor(boxes) - torch.tensor([1.0, 1.0, 0.0, 0.0])  # VOC 1-based inclusive
        samples.append((image, xyxy))
    return samples


def region_signature(img: torch.Tensor) -> torch.Tensor:
    return F.resize(img.float()[None], [12, 12], antialias=True)[0]


def test_real_photos_boxes_match_their_content():
    """On kangaroo photos: the pixels inside each output box are the visible part of its input
    box (resized), which the test recomputes from the sampled crop and expansion."""
    t = SSDTrainTransform(config=AugmentConfig(photometric=NO_PHOTOMETRIC))
    checked = 0
    for k, (image, boxes) in enumerate(kangaroo_samples()):
        _, height, width = image.shape
        labels = torch.arange(len(boxes))
        for seed in range(6):
            p = t.sample(height, width, boxes, gen(100 * k + seed))
            out, b, lab = apply(t, image, boxes, labels, p)
            check_contract(out, b, lab)
            top, left, ch, cw = p.crop
            oy, ox = top - int(p.expansion.top[0]), left - int(p.expansion.left[0])
            pixels = out + MEAN
            if p.mirror:
                pixels = pixels.flip(-1)
            for ob, i in zip(b, lab.tolist()):
                x0, y0, x1, y1 = boxes[i].tolist()
                vx0, vy0 = max(x0, ox), max(y0, oy)
                vx1, vy1 = min(x1, ox + cw), min(y1, oy + ch)
                ob = mirror_boxes(ob[None, None], torch.tensor([p.mirror]))[0, 0] * 300
                # The output box, mapped back through the crop, is the visible part of the box.
                back = torch.tensor(
                    [
                        ob[0] * cw / 300 + ox,
                        ob[1] * ch / 300 + oy,
                        ob[2] * cw / 300 + ox,
                        ob[3] * ch / 300 + oy,
                    ]
                )
                visible = torch.tensor([vx0, vy0, vx1, vy1], dtype=torch.float32)
                torch.testing.assert_close(back, visible, atol=1e-3, rtol=0)
                if min(ob[2] - ob[0], ob[3] - ob[1]) < 24 or min(vx1 - vx0, vy1 - vy0) < 24:
                    continue
                src = image[:, int(vy0) : int(vy1), int(vx0) : int(vx1)]
                dst = pixels[:, int(ob[1]) : int(ob[3]), int(ob[0]) : int(ob[2])]
                diff = (region_signature(src) - region_signature(dst)).abs().mean()
                assert diff < 12, (k, seed, float(diff))
                checked += 1
    assert checked >= 8


def test_no_augmentation_is_the_test_time_resize():
    """`data.augment: none` decodes and resizes only: the same pixels and boxes as test time."""
    g = torch.Generator().manual_seed(5)
    image = torch.randint(0, 256, (3, 120, 200), dtype=torch.uint8, generator=g)
    boxes = torch.tensor([[10.0, 20.0, 60.0, 100.0], [150.0, 0.0, 200.0, 40.0]])
    labels = torch.tensor([1, 2])
    out, out_boxes, out_labels = augment(
        SSDTrainTransform(config=NO_AUGMENTATION), image, boxes, labels, g
    )
    assert torch.equal(out, SSDTestTransform().resize(image).float() - MEAN)
    assert torch.allclose(out_boxes, boxes / torch.tensor([200.0, 120.0, 200.0, 120.0]))
    assert out_labels.tolist() == [1, 2]


def test_augment_names_agree_with_the_config_schema():
    assert set(config_augmentations) == set(AUGMENT_CONFIGS)
    assert augment_config("none") is NO_AUGMENTATION
    with pytest.raises(ConfigError, match=r"data.augment"):
        augment_config("gpu")
