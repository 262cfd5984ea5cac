"""Run configs: defaults, overrides, and one clear error per kind of mistake."""

import pytest

from scratchdet.config import config_from_dict, dump_config, load_config
from scratchdet.errors import ConfigError


def test_defaults_and_accumulation():
    cfg = config_from_dict({"train": {"batch_size": 32, "micro_batch": 8}})
    assert cfg.accumulation == 4 and cfg.micro_batch == 8
    assert config_from_dict({}).accumulation == 1


def test_roundtrip_through_yaml(tmp_path):
    cfg = config_from_dict(
        {"seed": 3, "model": {"name": "dsod300"}, "train": {"milestones": [5, 9]}}
    )
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_override_dotted_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: ssd300_vgg16}\ntrain: {lr: 0.001}\n")
    cfg = load_config(path, {"train.lr": 0.05, "model.bn_head": True})
    assert cfg.train.lr == 0.05 and cfg.model["bn_head"] is True


@pytest.mark.parametrize(
    "raw, key, words",
    [
        ({"trian": {}}, "trian", "unknown key"),
        ({"train": {"lrr": 1}}, "train.lrr", "unknown key"),
        ({"train": {"lr": "fast"}}, "train.lr", "expected a number"),
        ({"train": {"batch_size": 0}}, "train.batch_size", "> 0"),
        ({"train": {"batch_size": 10, "micro_batch": 4}}, "train.micro_batch", "multiple"),
        ({"train": {"milestones": [9, 5]}}, "train.milestones", "increasing"),
        ({"train": {"amp": "yes"}}, "train.amp", "true or false"),
        ({"train": {"device": "tpu"}}, "train.device", "auto, cpu"),
        ({"loss": {"iou_threshold": 1.5}}, "loss.iou_threshold", "(0, 1]"),
        ({"model": {"bn_head": True}}, "model", "name"),
        ({"train": {"precision": "fp16"}}, "train.precision", "fp32, tf32, bf16"),
        ({"train": {"amp": False, "precision": "bf16"}}, "train.amp", "contradicts"),
        ({"train": {"bn_stats": "keras"}}, "train.bn_stats", "torch, caffe"),
        ({"train": {"param_groups": "mmdet"}}, "train.param_groups", "uniform, caffe"),
        ({"train": {"sgd": "adam"}}, "train.sgd", "torch, caffe"),
        ({"train": {"bn_group": -4}}, "train.bn_group", ">= 0"),
        (
            {"train": {"batch_size": 32, "micro_batch": 16, "bn_group": 12}},
            "train.bn_group",
            "divide the micro-batch (16",
        ),
    ],
)
def test_errors_name_key_and_problem(tmp_path, raw, key, words):
    path = tmp_path / "bad.yaml"
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, path)
    assert err.value.key == key
    assert words in err.value.problem
    assert str(path) in str(err.value)


def test_malformed_and_missing_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")


def test_recipe_keys_default_to_the_behaviour_before_them():
    """bn_group 0, PyTorch statistics, one parameter group, torch's SGD, bf16 on CUDA only."""
    import torch

    from scratchdet.engine.precision import autocast_for, resolved_precision

    t = config_from_dict({}).train
    assert (t.bn_group, t.bn_stats, t.param_groups, t.sgd) == (0, "torch", "uniform", "torch")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolved_precision(t, cpu) == "fp32" and resolved_precision(t, cuda) == "bf16"
    old = config_from_dict({"train": {"amp": False}}).train
    assert resolved_precision(old, cuda) == "fp32"
    bf16 = config_from_dict({"train": {"precision": "bf16"}}).train
    with autocast_for(bf16, cpu):
        y = torch.nn.functional.linear(torch.ones(1, 2), torch.ones(3, 2))
    assert y.dtype == torch.bfloat16
    assert (
        config_from_dict(
            {"train": {"batch_size": 32, "micro_batch": 16, "bn_group": 4}}
        ).train.bn_group
        == 4
    )


def test_detect_defaults_are_the_ssd_librarys():
    """config.py restates the SSD library's post-processing defaults (it stays torch-free)."""
    from scratchdet.config import DetectConfig
    from scratchdet.ssd.postprocess import DETECTION_DEFAULTS

    d = DetectConfig()
    assert tuple(getattr(d, k) for k in DETECTION_DEFAULTS._fields) == DETECTION_DEFAULTS
