"""Prior layout: counts, the Caffe/ssd.pytorch order, DSOD's last step, validation."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from scratchdet.errors import ConfigError
from scratchdet.ssd.priors import (
    PriorConfig,
    dsod300_coco,
    dsod300_voc,
    make_priors,
    num_priors,
    num_priors_per_cell,
    ssd300_coco,
    ssd300_voc,
)


def reference_priors(cfg: PriorConfig) -> torch.Tensor:
    """Plain loops in the order of ssd.pytorch's PriorBox.forward (square maps)."""
    out = []
    for k, f in enumerate(cfg.feature_maps):
        f_k = cfg.image_size / cfg.steps[k]
        for i, j in itertools.product(range(f), repeat=2):
            cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
            s_k = cfg.min_sizes[k] / cfg.image_size
            out.append([cx, cy, s_k, s_k])
            s_big = math.sqrt(s_k * cfg.max_sizes[k] / cfg.image_size)
            out.append([cx, cy, s_big, s_big])
            for ar in cfg.aspect_ratios[k]:
                out.append([cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)])
                out.append([cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    ("factory", "expected"),
    [(ssd300_voc, 8732), (ssd300_coco, 8732), (dsod300_voc, 8744), (dsod300_coco, 8744)],
)
def test_prior_counts(factory, expected):
    cfg = factory()
    priors = make_priors(cfg)
    assert priors.shape == (expected, 4)
    assert num_priors(cfg) == expected
    assert num_priors_per_cell(cfg) == (4, 6, 6, 6, 4, 4)
    assert priors.dtype == torch.float32


@pytest.mark.parametrize("factory", [ssd300_voc, ssd300_coco, dsod300_voc])
def test_order_matches_reference_loops(factory):
    cfg = factory()
    got = make_priors(cfg, dtype=torch.float64)
    torch.testing.assert_close(got, reference_priors(cfg), rtol=0, atol=1e-12)


def test_first_cell_values():
    priors = make_priors(ssd300_voc())
    c = 4 / 300  # (0 + 0.5) * 8 / 300
    s, big, r = 0.1, math.sqrt(30 * 60) / 300, math.sqrt(2)
    expected = torch.tensor(
        [[c, c, s, s], [c, c, big, big], [c, c, s * r, s / r], [c, c, s / r, s * r]]
    )
    torch.testing.assert_close(priors[:4], expected)
    # The next cell is the one to the right (row-major, x inner).
    assert priors[4, 0].item() == pytest.approx(12 / 300)
    assert priors[4, 1].item() == pytest.approx(c)


def test_coco_sizes_differ_from_voc():
    voc, coco = make_priors(ssd300_voc()), make_priors(ssd300_coco())
    torch.testing.assert_close(voc[:, :2], coco[:, :2])
    assert coco[0, 2].item() == pytest.approx(21 / 300)


def test_dsod_last_step_released_vs_consistent():
    released = make_priors(dsod300_voc())
    consistent = make_priors(dsod300_voc(consistent_last_step=True))
    last = 2 * 2 * 4  # the 2x2 map, 4 priors per cell
    torch.testing.assert_close(released[:-last], consistent[:-last])
    # Released step 300: centres at 0.5 and 1.5 (half the priors off the image).
    assert sorted(set(released[-last:, 0].tolist())) == pytest.approx([0.5, 1.5])
    # Step 150 tiles the image: centres at 0.25 and 0.75.
    assert sorted(set(consistent[-last:, 0].tolist())) == pytest.approx([0.25, 0.75])
    assert dsod300_voc().steps[-1] == 300 and dsod300_voc(True).steps[-1] == 150


def test_ssd300_feature_maps_override():
    cfg = ssd300_voc(feature_maps=(38, 19, 10, 5, 3, 3))
    assert num_priors(cfg) == 8732 - 4 + 9 * 4


@pytest.mark.parametrize(
    "maps, expected",
    [
        ((38, 19, 10, 5, 5, 5), 8892),  # ScratchDet Caffe: conv8/conv9 keep 5x5 (ssd_pascal.py:255)
        ((38, 19, 10, 5, 3, 3), 8764),  # ScratchDet mmdetection: layer8 keeps 3x3 (SSDRES300)
    ],
)
def test_scratchdet_release_maps_keep_ssd_steps_and_sizes(maps, expected):
    """Both releases keep SSD300's steps (8 ... 300) and sizes on their last maps, so the priors of
    a 5x5 map with step 300 sit mostly outside the image, as released."""
    for factory in (ssd300_voc, ssd300_coco):
        cfg = factory(feature_maps=maps)
        assert num_priors(cfg) == expected and cfg.steps == (8, 16, 32, 64, 100, 300)
    last = make_priors(ssd300_voc(feature_maps=maps))[-(maps[-1] ** 2) * 4 :]
    assert last[:, 0].max().item() == pytest.approx((maps[-1] - 0.5) * 300 / 300)


def test_clip_clamps_corners_into_image():
    cfg = dataclasses.replace(ssd300_voc(), clip=True)
    priors = make_priors(cfg)
    x1y1 = priors[:, :2] - priors[:, 2:] / 2
    x2y2 = priors[:, :2] + priors[:, 2:] / 2
    assert x1y1.min() >= -1e-6 and x2y2.max() <= 1 + 1e-6
    unclipped = make_priors(ssd300_voc())
    assert (unclipped[:, :2] - unclipped[:, 2:] / 2).min() < -0.1  # clipping did something


def test_lists_normalised_to_tuples_and_frozen():
    cfg = PriorConfig(
        feature_maps=[2], steps=[150], min_sizes=[100], max_sizes=[200], aspect_ratios=[[2]]
    )
    assert cfg.aspect_ratios == ((2.0,),)
    assert cfg == PriorConfig(
        feature_maps=(2,), steps=(150,), min_sizes=(100,), max_sizes=(200,), aspect_ratios=((2,),)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 512  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"steps": (8, 16)}, "priors.steps"),
        ({"min_sizes": (30, 60, 111, 162, 213)}, "priors.min_sizes"),
        ({"aspect_ratios": ((2,),)}, "priors.aspect_ratios"),
        ({"max_sizes": (60, 111, 162, 213, 264, 200)}, "priors.max_sizes"),
        ({"aspect_ratios": ((2,), (2, 3), (2, 3), (2, 3), (2,), (1,))}, "priors.aspect_ratios"),
        ({"aspect_ratios": ((2,), (2, 2), (2, 3), (2, 3), (2,), (2,))}, "priors.aspect_ratios"),
        ({"variances": (0.1, 0.2)}, "priors.variances"),
        ({"feature_maps": (38, 19, 10, 5, 3, 0)}, "priors.feature_maps"),
        ({"image_size": 0}, "priors.image_size"),
    ],
)
def test_invalid_configs_raise_config_error(changes, key):
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(ssd300_voc(), **changes)
    assert info.value.key == key
