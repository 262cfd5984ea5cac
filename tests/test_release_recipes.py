"""The paper scale's recipes against the releases' solver scripts (tests/releases/recipes.yaml).

The transcription is data with file and line; this test does the scripts' own arithmetic on it
(``batch_size_per_device = ceil(batch_size / num_gpus)``, ``iter_size = ceil(accum_batch_size /
(batch_size_per_device * num_gpus))``, ``base_lr *= 25 / loc_weight``, then the solver's
multiplier) and compares every recipe setting of the paper scale (config/recipes.yaml, which it
trains as they are, over config/scales/paper.yaml's base) with the result:
learning rate, milestones, iterations, warm-up, effective batch, BatchNorm group and running
average, weight decay, momentum, parameter groups, momentum form and precision.
"""

from __future__ import annotations

import math

import pytest
import yaml

from scratchdet.config import config_from_dict
from scratchdet.workflow.run_configs import deep_merge
from scratchdet.workflow.scales import load_scale
from tests.paths import ROOT

DATA = yaml.safe_load((ROOT / "tests" / "releases" / "recipes.yaml").read_text())
PAPER = load_scale(ROOT / "config" / "scales" / "paper.yaml")  # config/recipes.yaml, as trained


def _values(entry: dict) -> dict:
    return {k: v["value"] for k, v in entry.items() if isinstance(v, dict) and "value" in v}


def _expected(script: dict) -> dict:
    """What the release trains with, by the script's own arithmetic and Caffe's."""
    s = _values(script)
    per_gpu = math.ceil(s["batch_size"] / s["gpus"])
    iter_size = math.ceil(s["accum_batch_size"] / (per_gpu * s["gpus"]))
    caffe = _values(DATA["caffe"])
    return {
        "lr": s["base_lr"]
        * s["valid_normalization_factor"]
        / s["loc_weight"]
        * s["solver_lr_multiplier"],
        "batch_size": per_gpu * s["gpus"] * iter_size,
        "bn_group": per_gpu,
        # Caffe's multistep (sgd_solver.cpp:43-51) drops at iter >= stepvalue: one at max_iter
        # never acts, so the recipe leaves it out.
        "milestones": [step for step in s["stepvalue"] if step < s["max_iter"]],
        "max_steps": s["max_iter"],
        "gamma": s["gamma"],
        "momentum": s["momentum"],
        "weight_decay": s["weight_decay"],
        "warmup_steps": caffe["warmup_steps"],
        "bn_stats": caffe["bn_running_average"],
        "param_groups": "caffe",
        "sgd": caffe["sgd"],
        "precision": caffe["precision"],
    }


def _scripts() -> dict[str, dict]:
    """Every recipe with a script: the releases, and the variants (a release, values changed)."""
    scripts = dict(DATA["releases"])
    for name, variant in DATA["variants"].items():
        changed = {k: v for k, v in variant.items() if k != "base"}
        scripts[name] = {**DATA["releases"][variant["base"]], **changed}
    return scripts


def _project(recipe: str) -> dict:
    raw = deep_merge(PAPER["base"], PAPER["recipes"][recipe], {"model": {"name": "dsod300"}})
    return config_from_dict(raw, "config/scales/paper.yaml").to_dict()["train"]


def _compare(name: str, expected: dict) -> None:
    project = _project(name)
    differences = DATA["differences"]
    for key, value in expected.items():
        if key in differences:
            assert value == differences[key]["release"], (name, key)
            assert project[key] == differences[key]["project"] != value, (name, key)
        elif isinstance(value, float):
            assert project[key] == pytest.approx(value, rel=1e-9), (name, key, project[key])
        else:
            assert project[key] == value, (name, key, project[key], value)


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_recipe_is_the_release(name):
    _compare(name, _expected(_scripts()[name]))


@pytest.mark.parametrize("name", sorted(DATA["paper_text"]))
def test_paper_text_recipe(name):
    entry = DATA["paper_text"][name]
    expected = _expected(DATA["releases"][entry["base"]]) | _values(entry)
    _compare(name, expected)


def test_every_paper_recipe_is_accounted_for():
    """A recipe of the paper scale is a release, a variant of one, or the papers' text."""
    known = set(DATA["releases"]) | set(DATA["variants"]) | set(DATA["paper_text"])
    assert set(PAPER["recipes"]) == known


def test_release_values_cite_a_line():
    for section in ("releases", "variants", "paper_text"):
        for name, entry in DATA[section].items():
            for key, value in entry.items():
                if isinstance(value, dict):
                    assert value.get("at"), (section, name, key)
                    assert any(c.isdigit() for c in value["at"]) or "paper" in value["at"]


def test_known_values():
    """The arithmetic above on the transcribed lines gives the numbers docs/SPECS.md quotes."""
    dsod, scratch = (
        _expected(DATA["releases"]["dsod_voc0712"]),
        _expected(DATA["releases"]["scratchdet_coco"]),
    )
    assert (dsod["lr"], dsod["batch_size"], dsod["bn_group"]) == (pytest.approx(0.1), 128, 4)
    assert (scratch["lr"], scratch["batch_size"], scratch["bn_group"]) == (
        pytest.approx(0.05),
        128,
        16,
    )
    bn12 = _expected(_scripts()["dsod_voc0712_bn12"])
    assert (bn12["batch_size"], bn12["bn_group"]) == (192, 12)


def test_caffe_batchnorm_fraction_is_the_modules():
    from scratchdet.models.batchnorm import CAFFE_MOVING_AVERAGE_FRACTION

    assert DATA["caffe"]["bn_moving_average_fraction"]["value"] == CAFFE_MOVING_AVERAGE_FRACTION


def test_param_rules_are_the_releases():
    from scratchdet.engine.param_groups import RULES

    assert {
        role: (float(r["lr_mult"]), float(r["decay_mult"]))
        for role, r in DATA["param_rules"].items()
    } == RULES
    assert all(r["at"] for r in DATA["param_rules"].values())


@pytest.mark.parametrize("name", sorted(DATA["network_roles"]))
def test_network_parameter_roles(name):
    """Each network's parameters fall in the roles its release declares."""
    from scratchdet.engine.param_groups import parameter_roles
    from scratchdet.models import build_model

    model = build_model({"name": name}, num_classes=3, load_pretrained=False)
    roles = {role for _, _, role in parameter_roles(model, {"name": name})}
    assert roles == set(DATA["network_roles"][name])
