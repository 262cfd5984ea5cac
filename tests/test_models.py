"""The model zoo: parameter counts against the released code, every table row forward + backward,
source sizes, prior alignment, config errors, initialisation and ImageNet weights offline."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from scratchdet.errors import ConfigError
from scratchdet.models import (
    CANONICAL_MODELS,
    FAMILIES,
    SSD,
    DSODOptions,
    Family,
    L2Norm,
    MultiBoxHead,
    build_dsod,
    build_model,
    count_parameters,
    list_models,
    resolve_config,
)
from scratchdet.models.dsod import DenseLayer
from scratchdet.models.input import CAFFE_MEAN_RGB
from scratchdet.models.layers import CenterCrop
from scratchdet.models.pretrained import ImageNetInput, checkpoint_path
from scratchdet.models.resnet import ResidualExtras
from scratchdet.paper_tables import load_table
from scratchdet.ssd.priors import make_priors, num_priors_per_cell, ssd300_voc

ROOT = Path(__file__).resolve().parent.parent
VOC = 20  # object classes; the models predict 21 scores per prior
COCO = 80

# --- every row of DSOD Tables 2-4 and ScratchDet Tables 1-3: the params tables' model cells -----
# (paper numbers and assumptions are in the tables; training settings such as lr are not part of a
# model config, so rows that differ only in those share a network)
PARAMS_ROWS = {r.key: r for p in sorted((ROOT / "params").glob("*.tsv")) for r in load_table(p)}


def _num_classes(row) -> int:
    return COCO if row.train_data == "coco" else VOC


# Documented source sizes: SSD300's, except where the last map is 2x2 (DSOD, dense prediction)
# and ScratchDet's residual extras as released (Caffe 5/5/5, mmdetection 3/3).
SSD_SIZES = (38, 19, 10, 5, 3, 1)
DSOD_SIZES = (38, 19, 10, 5, 3, 2)
SCRATCHDET_CAFFE_SIZES = (38, 19, 10, 5, 5, 5)
SCRATCHDET_MMDET_SIZES = (38, 19, 10, 5, 3, 3)


def _expected_sizes(cfg: dict) -> tuple[int, ...]:
    _, opts = resolve_config(cfg)
    last_is_2x2 = opts.family == "dsod" or getattr(opts, "prediction", "") == "dense"
    extras = getattr(opts, "extras", "")
    if extras in ("caffe", "mmdet"):
        return SCRATCHDET_CAFFE_SIZES if extras == "caffe" else SCRATCHDET_MMDET_SIZES
    return DSOD_SIZES if last_is_2x2 else SSD_SIZES


def _unique_architectures() -> list[tuple[str, dict, int]]:
    """Canonical models and params rows, each distinct (network, classes) once: (id, cfg, C)."""
    cases = [(f"canonical/{n}", {"name": n}, VOC) for n in CANONICAL_MODELS]
    cases += [(key, row.model, _num_classes(row)) for key, row in PARAMS_ROWS.items()]
    seen, out = set(), []
    for rid, cfg, num_classes in cases:
        key = (repr(sorted(resolve_config(cfg)[1].as_dict().items())), num_classes)
        if key not in seen:
            seen.add(key)
            out.append((rid, cfg, num_classes))
    return out


def _meta_count(cfg, num_classes: int = VOC) -> tuple[int, int]:
    """(learnable parameters, BN running statistics) without allocating weights."""
    with torch.device("meta"):
        model = build_model(cfg, num_classes)
    stats = sum(b.numel() for n, b in model.named_buffers() if "running_" in n)
    return count_parameters(model), stats


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, target, tol",
    [
        ("dsod300", 14.72e6, 0.01),  # recomputed from the released code: 14.716M
        ("dsod300_smallest", 5.87e6, 0.01),  # 5.83M learnable; 5.87M with BN statistics (below)
        ("ssd300_vgg16", 26.29e6, 0.01),
        ("scratchdet300", 24.6e6, 0.03),  # the Caffe release, VOC head: 24.55M
        ("scratchdet300_mmdet", 24.6e6, 0.03),  # 24.57M
    ],
)
def test_learnable_parameters_match_the_released_code(name, target, tol):
    params, _ = _meta_count(name)
    assert abs(params - target) <= tol * target, f"{name}: {params / 1e6:.3f}M"


@pytest.mark.parametrize(
    "cfg, num_classes, paper",
    [
        ("dsod300", VOC, 14.80e6),  # the paper's 14.8M counts the saved model: + BN statistics
        ("dsod300_smallest", VOC, 5.87e6),  # paper 5.9M
        ("dsod300", 80, 21.78e6),  # DSOD300 COCO
    ],
)
def test_dsod_counts_with_bn_statistics_match_the_paper(cfg, num_classes, paper):
    params, stats = _meta_count(cfg, num_classes)
    assert abs(params + stats - paper) <= 0.005 * paper


def test_dsod300_plain_count_is_the_one_documented_next_to_the_papers():
    params, stats = _meta_count("dsod300_plain")
    doc = build_dsod.__doc__
    assert "18.2M" in doc  # the paper's number, with the explanation of the difference
    stated = re.search(r"``dsod300_plain`` ([\d.]+)M \(\+([\d.]+)M", doc)
    assert stated, "build_dsod's docstring must state the plain count"
    assert round(params / 1e6, 2) == float(stated.group(1))
    assert round(stats / 1e6, 2) == float(stated.group(2))
    assert params > 18.2e6  # the documented direction of the difference


def test_list_models_rows():
    rows = {r["name"]: r for r in list_models()}
    assert list(rows) == list(CANONICAL_MODELS)
    for r in rows.values():
        assert {"name", "params", "priors", "sources", "family", "description"} <= set(r)
    assert rows["dsod300"]["priors"] == 8744 and rows["ssd300_vgg16"]["priors"] == 8732
    assert rows["dsod300"]["sources"] == list(DSOD_SIZES)
    assert rows["scratchdet300"]["sources"] == list(SCRATCHDET_CAFFE_SIZES)
    assert rows["scratchdet300"]["priors"] == 8892  # 38/19/10/5/5/5, ssd_pascal.py's priors
    assert rows["scratchdet300_mmdet"]["sources"] == list(SCRATCHDET_MMDET_SIZES)
    assert rows["scratchdet300_mmdet"]["priors"] == 8764  # SSDBNHead's anchors
    assert rows["scratchdet300_caffe"]["params"] == rows["scratchdet300"]["params"]
    # meta-device counting equals counting a real model
    assert rows["dsod300_smallest"]["params"] == count_parameters(
        build_model("dsod300_smallest", VOC)
    )
    coco = {r["name"]: r for r in list_models(num_classes=80)}
    assert coco["dsod300"]["params"] > rows["dsod300"]["params"]


# --- forward + backward of every network, source sizes --------------------------------------------


@pytest.mark.parametrize(
    "cfg, num_classes", [pytest.param(c, n, id=r) for r, c, n in _unique_architectures()]
)
def test_forward_backward_and_source_sizes(cfg, num_classes):
    """Every distinct network: shapes and a backward pass reaching every parameter, on the meta
    device (shapes without arithmetic; the numbers are checked per family below)."""
    with torch.device("meta"):
        model = build_model(cfg, num_classes, load_pretrained=False)  # pretrained rows: no download
        images = torch.empty(2, 3, 300, 300)
    assert isinstance(model, SSD) and model.training
    sources = model.backbone(images)
    sizes = tuple(s.shape[-1] for s in sources)
    assert sizes == _expected_sizes(cfg) == model.source_sizes
    assert all(s.shape[-2] == s.shape[-1] for s in sources)
    assert tuple(s.shape[1] for s in sources) == model.source_channels
    loc, conf = model.head(sources)
    n = model.priors.shape[0]
    assert loc.shape == (2, n, 4) and conf.shape == (2, n, num_classes + 1)
    (loc.square().mean() + conf.logsumexp(-1).mean()).backward()
    missing = [k for k, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters outside the graph: {missing[:5]}"


@pytest.mark.parametrize(
    "cfg",
    [
        "dsod300",
        "ssd300_vgg16",
        "ssd300_vgg16_bn",
        "scratchdet300",
        "scratchdet300_mmdet",
        "root_resnet18_ssd300",
    ],
)
def test_forward_backward_numbers_are_finite(cfg):
    """One network per family, for real: finite outputs and gradients from a fresh init."""
    torch.manual_seed(0)
    model = build_model(cfg, VOC, load_pretrained=False)
    loc, conf = model(torch.randn(2, 3, 300, 300))
    assert torch.isfinite(loc).all() and torch.isfinite(conf).all()
    (loc.square().mean() + conf.logsumexp(-1).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_channels_last_bf16_forward():
    model = build_model("dsod300_smallest", VOC).eval().to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 300, 300).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loc, conf = model(images)
    assert loc.shape == (2, 8744, 4) and conf.shape == (2, 8744, 21)
    assert torch.isfinite(loc.float()).all() and torch.isfinite(conf.float()).all()


# --- outputs line up with the priors --------------------------------------------------------------


def test_head_flattening_matches_prior_order():
    """Prediction i must belong to prior i: (map, y, x, anchor), NHWC, maps concatenated."""
    torch.manual_seed(0)
    cfg = ssd300_voc()
    anchors = num_priors_per_cell(cfg)
    channels = (8, 6, 5, 4, 4, 3)
    head = MultiBoxHead(channels, anchors, 3).eval()
    feats = [torch.randn(2, c, f, f) for c, f in zip(channels, cfg.feature_maps)]
    loc, conf = head(feats)
    priors = make_priors(cfg)
    assert loc.shape[1] == conf.shape[1] == priors.shape[0] == 8732
    offset = 0
    for k, (f, a) in enumerate(zip(cfg.feature_maps, anchors)):
        loc_map = head.loc[k](head.norms[k](feats[k]))  # [B, a*4, f, f]
        conf_map = head.conf[k](head.norms[k](feats[k]))
        for y, x, j in {(0, 0, 0), (f - 1, 0, a - 1), (0, f - 1, 1), (f // 2, f - 1, a - 1)}:
            i = offset + (y * f + x) * a + j
            assert torch.allclose(loc[:, i], loc_map[:, 4 * j : 4 * j + 4, y, x])
            assert torch.allclose(conf[:, i], conf_map[:, 3 * j : 3 * j + 3, y, x])
            step = cfg.steps[k] / cfg.image_size
            assert priors[i, 0].item() == pytest.approx((x + 0.5) * step)
            assert priors[i, 1].item() == pytest.approx((y + 0.5) * step)
        offset += f * f * a


def test_priors_follow_the_family_and_dataset():
    with torch.device("meta"):
        dsod, vgg = build_model("dsod300", VOC), build_model("ssd300_vgg16", VOC)
        coco = build_model("ssd300_vgg16", 80)
        forced = build_model({"name": "scratchdet300", "priors": "coco"}, VOC)
    assert dsod.prior_config.feature_maps == DSOD_SIZES and dsod.prior_config.steps[-1] == 300
    assert vgg.prior_config.min_sizes[0] == 30 and coco.prior_config.min_sizes[0] == 21
    assert forced.prior_config.min_sizes[0] == 21
    assert dsod.head.anchors == num_priors_per_cell(dsod.prior_config) == (4, 6, 6, 6, 4, 4)


def test_ssd_refuses_priors_that_do_not_match_the_sources():
    model = build_model("root_resnet18_ssd300", VOC)
    with pytest.raises(ValueError, match="priors expect"):
        SSD(model.backbone, model.head, ssd300_voc(feature_maps=DSOD_SIZES))


# --- what the config keys build -------------------------------------------------------------------


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_ds_a_b_k_theta_and_stem_switches():
    with torch.device("meta"):
        m = build_model(
            {
                "family": "dsod",
                "stem_channels": 32,
                "bottleneck": 12,
                "growth": 16,
                "theta": 0.5,
                "stem": False,
                "transition_wo_pool": True,
            },
            VOC,
        )
        s = build_model("dsod300", VOC)
    root = _convs(m.backbone.root)
    assert [(c.out_channels, c.kernel_size, c.stride) for c in root] == [(32, (7, 7), (2, 2))]
    layer = m.backbone.block1[0]
    assert [c.out_channels for c in _convs(layer)] == [12, 16]  # B, k
    # root 32, block1 +6k = 128, transition x0.5 = 64, block2 +8k = 192, "First" x0.5 = 96
    assert m.source_channels[0] == 96
    stem = _convs(s.backbone.root)
    assert [(c.out_channels, c.stride) for c in stem] == [(64, (2, 2)), (64, (1, 1)), (128, (1, 1))]
    assert s.source_channels == (800, 512, 512, 256, 256, 256)
    assert build_model("dsod300_plain", VOC).source_channels[1] == 1568  # DSOD Table 1


def test_transition_without_pooling_switch_keeps_depth():
    with torch.device("meta"):
        with_t = build_model({"name": "dsod300_smallest", "transition_wo_pool": True}, VOC)
        without = build_model({"name": "dsod300_smallest", "transition_wo_pool": False}, VOC)
    dense_layers = [
        sum(isinstance(x, DenseLayer) for x in m.backbone.modules()) for m in (with_t, without)
    ]
    assert dense_layers[0] == dense_layers[1] == 30
    assert len(_convs(with_t.backbone.body)) == len(_convs(without.backbone.body)) + 1


def test_norm_layers_per_family():
    names = (
        "dsod300",
        "ssd300_vgg16",
        "ssd300_vgg16_bn",
        "scratchdet300",
        "scratchdet300_mmdet",
        "root_resnet18_ssd300",
    )
    with torch.device("meta"):
        models = {n: build_model(n, VOC) for n in names}
        coco = build_model("scratchdet300", COCO)
    l2 = {n: sum(isinstance(x, L2Norm) for x in m.modules()) for n, m in models.items()}
    assert l2 == {
        "dsod300": 6,
        "ssd300_vgg16": 1,
        "ssd300_vgg16_bn": 0,
        "scratchdet300": 0,
        "scratchdet300_mmdet": 0,
        "root_resnet18_ssd300": 0,
    }
    bn_head = {n: isinstance(m.head.loc[0], nn.Sequential) for n, m in models.items()}
    # ScratchDet's Caffe scripts: ssd_pascal.py use_batchnorm = False, ssd_coco.py True
    assert bn_head == {
        "dsod300": True,
        "ssd300_vgg16": False,
        "ssd300_vgg16_bn": True,
        "scratchdet300": False,
        "scratchdet300_mmdet": True,
        "root_resnet18_ssd300": True,
    }
    assert isinstance(coco.head.loc[0], nn.Sequential) and coco.head.loc[0][1].eps == 1e-3
    assert models["dsod300"].head.loc[0][1].eps == 1e-3  # Caffe ConvBNLayer
    assert models["root_resnet18_ssd300"].head.loc[0][1].eps == 1e-3
    assert models["scratchdet300_mmdet"].head.loc[0][1].eps == 1e-5  # mmdetection
    bn_backbone = {
        n: any(isinstance(x, nn.BatchNorm2d) for x in m.backbone.modules())
        for n, m in models.items()
    }
    assert bn_backbone == {
        "dsod300": True,
        "ssd300_vgg16": False,
        "ssd300_vgg16_bn": True,
        "scratchdet300": True,
        "scratchdet300_mmdet": True,
        "root_resnet18_ssd300": True,
    }


def test_resnet_roots():
    with torch.device("meta"):
        root = build_model("scratchdet300", VOC).backbone.root
        r18a = build_model(PARAMS_ROWS["scratchdet_table2/resnet18-a"].model, VOC).backbone.root
        down = build_model(PARAMS_ROWS["scratchdet_table2/ds_2x3x3"].model, VOC)
    assert [(c.kernel_size, c.stride) for c in _convs(root)] == [((3, 3), (1, 1))] * 3
    assert isinstance(root[-1], nn.MaxPool2d) and root[-1].kernel_size == 2
    assert not any(isinstance(x, nn.MaxPool2d) for x in r18a)
    assert [c.stride for c in _convs(down.backbone.root)] == [(2, 2), (1, 1)]
    # root downsampling 4: the 38x38 source is layer2 (128 channels) and layer4 does not stride
    assert down.source_channels[:2] == (128, 512)
    assert down.backbone.layer4[0].conv1.stride == (1, 1)
    assert down.backbone.layer4[0].shortcut.stride == (1, 1)  # 1x1 projection 256 -> 512


def test_caffe_blocks_are_pre_activation_and_feed_the_head_raw_branches():
    """Resnet34rootV2_res: BN-ReLU before each conv, 1x1 shortcuts without BN, and the sources
    are the second conv of each last branch before the addition (conv4_12, conv5_6, ...)."""
    from scratchdet.models.resnet import PreActBlock

    torch.manual_seed(0)
    model = build_model("scratchdet300", VOC).eval()
    blocks = [m for m in model.backbone.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 3 + 4 + 6 + 3 + 4
    assert isinstance(blocks[0].preact, nn.Identity)  # conv2_1 reads pool1 directly
    assert all(isinstance(b.preact, nn.Sequential) for b in blocks[1:])
    shortcuts = [b.shortcut for b in blocks if isinstance(b.shortcut, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.bias) for c in shortcuts] == [
        (64, 128, None),
        (128, 256, None),
        (256, 512, None),
        (512, 128, None),
        (128, 128, None),
    ]
    outputs = {}
    last = [model.backbone.layer3[-1], model.backbone.layer4[-1], *model.backbone.extras.blocks]
    for i, block in enumerate(last):
        block.conv2.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
    sources = model.backbone(torch.randn(1, 3, 300, 300))
    assert all(sources[i] is outputs[i] for i in range(6))
    # Resnet18rootV2: the first block has a BN-ReLU on pool1 (the shortcut keeps raw pool1)
    r18 = build_model("root_resnet18_ssd300", VOC)
    assert isinstance(r18.backbone.layer1[0].preact, nn.Sequential)
    assert isinstance(r18.backbone.extras.blocks[0][0][0], nn.BatchNorm2d)  # BN-ReLU-conv6_1


def test_vgg_bn_backbone_is_the_released_vggnetbnbody():
    with torch.device("meta"):
        caffe = build_model("ssd300_vgg16_bn", VOC).backbone
        tv = build_model({"name": "ssd300_vgg16_bn", "bn_layout": "torchvision"}, VOC).backbone
        plain = build_model("ssd300_vgg16", VOC).backbone
    assert all(c.bias is None for c in _convs(caffe))
    assert sum(c.bias is not None for c in _convs(tv)) == 13  # vgg16_bn's trunk
    assert all(c.bias is not None for c in _convs(plain))

    def after_pools(backbone):
        mods = [m for m in backbone.modules() if not list(m.children())]
        return [
            type(mods[i + 1]).__name__ for i, m in enumerate(mods) if isinstance(m, nn.MaxPool2d)
        ]

    assert after_pools(caffe) == ["BatchNorm2d"] * 5
    assert after_pools(tv) == ["Conv2d"] * 5
    with pytest.raises(ConfigError, match=r"model.bn_layout"):
        resolve_config({"name": "ssd300_vgg16", "bn_layout": "torchvision"})


def test_vgg_bn_imagenet_biases_fold_into_the_running_means(offline):
    """torchvision's vgg16_bn has conv biases; VGGNetBNBody has none, so a loaded bias moves into
    the following BN's running mean (the same function in eval mode)."""
    from torchvision.models import VGG16_BN_Weights, vgg16_bn

    torch.manual_seed(0)
    reference = vgg16_bn().state_dict()
    for k in reference:
        if k.endswith("running_mean"):
            reference[k] = torch.randn_like(reference[k])
    (offline / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, checkpoint_path(VGG16_BN_Weights.IMAGENET1K_V1))
    model = build_model({"name": "ssd300_vgg16_bn", "pretrained": True}, VOC)
    conv, bn = model.backbone.conv4_3[0], model.backbone.conv4_3[1]
    assert conv.bias is None and torch.equal(conv.weight, reference["features.0.weight"])
    assert torch.allclose(
        bn.running_mean, reference["features.1.running_mean"] - reference["features.0.bias"]
    )


def test_residual_extras_last_block_reaches_1x1_with_a_centre_shortcut():
    extras = ResidualExtras(16, width=8).eval()
    assert extras.out_sizes(19) == (10, 5, 3, 1)
    last = extras.blocks[3]
    assert isinstance(last.downsample, CenterCrop) and last.conv1.padding == (0, 0)
    nn.init.zeros_(last.bn2.weight)  # residual branch off: the block is relu(centre pixel)
    nn.init.zeros_(last.bn2.bias)
    x = torch.randn(2, 8, 3, 3)
    assert torch.equal(last(x), torch.relu(x[..., 1:2, 1:2]))


# --- initialisation -------------------------------------------------------------------------------


def test_initialisation_follows_the_releases():
    torch.manual_seed(0)
    dsod = build_model("dsod300", VOC)
    w = dsod.head.conf[1][0].weight  # Caffe ConvBNLayer: Gaussian std 0.01, no bias
    assert dsod.head.conf[1][0].bias is None and w.std().item() == pytest.approx(0.01, rel=0.05)
    conv = dsod.backbone.block2[0].new[1][2]  # Caffe xavier: U(+-sqrt(3 / fan_in))
    bound = math.sqrt(3 / (conv.in_channels * 9))
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert all(torch.all(n.weight == 20) for n in dsod.modules() if isinstance(n, L2Norm))
    bns = [m for m in dsod.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)

    caffe = build_model("scratchdet300", VOC)  # Caffe: xavier everywhere, head with bias 0
    for conv in (caffe.backbone.layer3[0].conv1, caffe.head.conf[1]):
        bound = math.sqrt(3 / (conv.in_channels * 9))
        assert conv.weight.abs().max().item() <= bound
        assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.all(caffe.head.conf[1].bias == 0)

    sd = build_model("scratchdet300_mmdet", VOC)
    head = sd.head.conf[1][0]  # mmdetection: xavier_uniform
    fan_in, fan_out = head.in_channels * 9, head.out_channels * 9
    assert head.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    c = sd.backbone.layer3[0].conv1  # He normal, fan_out
    assert c.weight.std().item() == pytest.approx(math.sqrt(2 / (c.out_channels * 9)), rel=0.05)


# --- config errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, key, words",
    [
        ({"name": "dsod300", "growht": 4}, "model.growht", "allowed keys"),
        ({"name": "dsod300", "pretrained": True}, "model.pretrained", "unknown key"),
        ({"name": "dsod300", "prediction": "sparse"}, "model.prediction", "dense, plain"),
        ({"name": "dsod300", "theta": 0}, "model.theta", "must be in (0, 1], got 0"),
        ({"name": "dsod300", "theta": 1.5}, "model.theta", "must be in (0, 1], got 1.5"),
        ({"name": "dsod300", "growth": 4.5}, "model.growth", "integer"),
        ({"name": "ssd300_vgg16", "bn_head": 1}, "model.bn_head", "true or false"),
        ({"name": "ssd300_vgg16", "bn_head": "yes"}, "model.bn_head", "true or false"),
        ({"name": "scratchdet300", "depth": 152}, "model.depth", "18, 34, 50, 101"),
        ({"name": "scratchdet300", "maxpool": False}, "model.root_stride", "downsample"),
        ({"name": "scratchdet300_mmdet", "pretrained": True}, "model.pretrained", "root"),
        ({"name": "scratchdet300", "pretrained": True}, "model.pretrained", "style: torchvision"),
        ({"name": "scratchdet300", "depth": 50}, "model.style", "depth 18 and 34"),
        ({"name": "scratchdet300_mmdet", "pool1_bn": True}, "model.pool1_bn", "style: caffe"),
        ({"name": "scratchdet300", "extras": "residual"}, "model.extras", "caffe, mmdet, paper"),
        ({"name": "ssd512"}, "model.name", "ssd300_vgg16"),
        ({"name": "dsod300", "family": "vgg"}, "model.family", "dsod"),
        ({"family": "yolo"}, "model.family", "resnet"),
        ({"bn_head": True}, "model", "name"),
    ],
)
def test_config_errors_name_the_key(cfg, key, words):
    with pytest.raises(ConfigError) as err:
        build_model(cfg, VOC)
    assert err.value.key == key and words in err.value.problem


def test_bad_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("dsod300", 0)


def test_canonical_configs_are_overridable_and_rebuild_from_their_record():
    _, opts = resolve_config({"name": "dsod300", "theta": 1})
    assert opts.theta == 1.0 and isinstance(opts.theta, float)
    _, opts = resolve_config({"name": "dsod300_smallest", "growth": 32})
    assert (opts.bottleneck, opts.growth) == (64, 32)  # the variant's change stays, the row's wins
    with torch.device("meta"):
        m = build_model({"name": "ssd300_vgg16", "bn_backbone": True}, VOC)
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.backbone.conv4_3)
    assert m.name == "ssd300_vgg16" and m.config["bn_backbone"] is True
    # a model's recorded config rebuilds it (checkpoints store configs, not code)
    with torch.device("meta"):
        again = build_model(m.config, VOC)
    assert again.config == m.config and count_parameters(again) == count_parameters(m)
    with pytest.raises(ConfigError, match="mapping"):
        build_model(["dsod300"], VOC)


# --- named models: declared as differences from their family's defaults --------------------------


def test_named_models_are_their_family_defaults_with_their_changes():
    for name, variant in CANONICAL_MODELS.items():
        family = FAMILIES[variant.family]
        assert family.variants[name] is variant
        defaults = family.options().as_dict()
        assert resolve_config(name) == (name, variant.options)
        assert variant.options.as_dict() == {**defaults, **variant.changes}
        assert all(defaults[k] != v for k, v in variant.changes.items())
        assert variant.description
    # each family's defaults are the model its options docstring names
    for name in ("dsod300", "ssd300_vgg16", "scratchdet300"):
        assert dict(CANONICAL_MODELS[name].changes) == {}
    assert list(CANONICAL_MODELS) == [n for f in FAMILIES.values() for n in f.variants]


def test_register_variant_refuses_restated_defaults_duplicates_and_bad_values():
    family = Family(DSODOptions, builder="scratchdet.models.dsod:build_dsod")
    variant = family.register_variant("tiny", "a small DSOD", growth=16, theta=0.5)
    assert dict(variant.changes) == {"growth": 16, "theta": 0.5}
    assert variant.options == DSODOptions(growth=16, theta=0.5) and variant.family == "dsod"
    with pytest.raises(ValueError, match="declared twice"):
        family.register_variant("tiny", "again", growth=8)
    with pytest.raises(ValueError, match=r"restates .* growth"):
        family.register_variant("restating", "says a default", growth=48, theta=0.5)
    with pytest.raises(ValueError, match=r"restates .* theta"):
        family.register_variant("int_for_float", "1 is the default 1.0", theta=1)
    with pytest.raises(ConfigError) as err:
        family.register_variant("typo", "a misspelt key", growht=16)
    assert err.value.key == "model.growht"
    assert set(family.variants) == {"tiny"}
    assert family.build_function() is build_dsod


# The workflow validates every params row when it plans a dry run: that must not import torch.
TORCH_FREE_VALIDATION = """
import sys
from pathlib import Path

from scratchdet.errors import ConfigError
from scratchdet.models import CANONICAL_MODELS, build_model, list_models
from scratchdet.models.registry import resolve_config
from scratchdet.paper_tables import load_table

rows = [r for p in sorted(Path("params").glob("*.tsv")) for r in load_table(p)]
names = {resolve_config(row.model)[0] for row in rows}
assert names <= set(CANONICAL_MODELS), names
try:
    resolve_config({"name": "scratchdet300", "depth": 152})
except ConfigError as err:
    assert err.key == "model.depth", err.key
else:
    raise AssertionError("no ConfigError")
print(len(rows), sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""


def test_config_validation_does_not_import_torch():
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_VALIDATION],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    count, loaded = proc.stdout.split(maxsplit=1)
    assert int(count) == len(PARAMS_ROWS) and loaded.strip() == "[]"


def test_network_classes_are_imported_on_first_use():
    from scratchdet import models

    assert models.SSD is SSD and "SSD" in dir(models)
    with pytest.raises(AttributeError, match="no attribute 'Detector'"):
        models.Detector  # noqa: B018


def test_network_input_mean_has_one_home():
    from scratchdet.input import per_image, pipeline
    from scratchdet.models import pretrained

    assert CAFFE_MEAN_RGB == (123.0, 117.0, 104.0)
    assert (
        per_image.CAFFE_MEAN_RGB
        is pipeline.CAFFE_MEAN_RGB
        is CAFFE_MEAN_RGB
        is pretrained.CAFFE_MEAN_RGB
    )


# --- ImageNet weights ----------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty torch hub: the situation of a cluster node."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_pretrained_offline_gives_an_actionable_error(offline):
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ssd300_vgg16", "pretrained": True}, VOC)
    assert time.monotonic() - start < 30
    msg = str(err.value)
    assert err.value.key == "model.pretrained"
    assert "VGG16_Weights.IMAGENET1K_V1" in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert str(offline / "hub" / "checkpoints" / "vgg16-397923af.pth") in msg


def test_pretrained_from_a_provisioned_file_and_input_mapping(offline):
    from torchvision.models import ResNet18_Weights, resnet18

    reference = resnet18().state_dict()  # stands in for the ImageNet file
    path = checkpoint_path(ResNet18_Weights.IMAGENET1K_V1)
    assert path.startswith(str(offline))
    (offline / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, path)
    cfg = {
        "family": "resnet",
        "depth": 18,
        "root_kernel": 7,
        "root_stride": 2,
        "root_convs": 1,
        "maxpool": True,
        "maxpool_kernel": 3,
        "extras": "ssd",
        "style": "torchvision",
        "pretrained": True,
    }
    model = build_model(cfg, VOC)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])
    assert torch.equal(model.backbone.root[0].weight, reference["conv1.weight"])
    # the project's input (pixel - Caffe mean) reaches the weights ImageNet-normalised
    assert isinstance(model.backbone.input, ImageNetInput)
    pixels = torch.rand(1, 3, 4, 4) * 255
    x = pixels - torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(model.backbone.input(x), (pixels / 255 - mean) / std, atol=1e-5)


def test_checkpoint_rebuild_does_not_fetch_weights(offline):
    model = build_model({"name": "ssd300_vgg16", "pretrained": True}, VOC, load_pretrained=False)
    assert isinstance(model.backbone.input, ImageNetInput)


def test_fc6_fc7_decimation_from_the_classifier():
    """SSD's fc_reduced: every 4th unit, every 3rd tap of fc6's 7x7 kernel (small stand-ins)."""
    from scratchdet.models.vgg import reduce_fc6, reduce_fc7

    g = torch.Generator().manual_seed(0)
    w6, b6 = torch.randn(16, 3 * 49, generator=g), torch.randn(16, generator=g)
    w7, b7 = torch.randn(16, 16, generator=g), torch.randn(16, generator=g)
    fc6, fc6_b = reduce_fc6(w6, b6)
    fc7, fc7_b = reduce_fc7(w7, b7)
    assert fc6.shape == (4, 3, 3, 3) and fc7.shape == (4, 4, 1, 1)
    full6 = w6.view(16, 3, 7, 7)
    assert torch.equal(fc6[1, 2, 2, 1], full6[4, 2, 6, 3])
    assert torch.equal(fc6_b, b6[::4])
    assert torch.equal(fc7[3, 2, 0, 0], w7[12, 8]) and torch.equal(fc7_b, b7[::4])
    with torch.device("meta"):
        fc6_conv = build_model("ssd300_vgg16", VOC).backbone.fc7[-2][0]
    assert fc6_conv.dilation == (6, 6) and fc6_conv.weight.shape == (1024, 512, 3, 3)


def test_vgg_width_scales_every_conv_and_keeps_the_sources():
    full = build_model("ssd300_vgg16_bn", VOC, load_pretrained=False)
    narrow = build_model({"name": "ssd300_vgg16_bn", "width": 0.25}, VOC, load_pretrained=False)
    assert narrow.source_sizes == full.source_sizes == (38, 19, 10, 5, 3, 1)
    assert narrow.source_channels == tuple(c // 4 for c in full.source_channels)
    assert count_parameters(narrow) < count_parameters(full) / 10
    loc, conf = narrow(torch.zeros(2, 3, 300, 300))
    assert loc.shape == (2, 8732, 4) and conf.shape == (2, 8732, 21)
    with pytest.raises(ConfigError, match=r"model.width"):
        build_model({"name": "ssd300_vgg16", "width": 0.5, "pretrained": True}, VOC)
