"""config/recipes.yaml + a scale's overlay (config/scales/<scale>.yaml) -> the resolved scale
(scratchdet.workflow.scales): every recipe defined once, every scale trains all of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scratchdet.errors import ConfigError
from scratchdet.workflow.run_configs import check_scale, deep_merge
from scratchdet.workflow.scales import OVERLAY_KEYS, load_recipes, load_scale
from scratchdet.yaml_io import dump_yaml, load_yaml
from tests.paths import ROOT

RECIPES = load_recipes(ROOT / "config" / "recipes.yaml")
SCALE_FILES = {p.stem: p for p in sorted((ROOT / "config" / "scales").glob("*.yaml"))}


def test_the_three_scales_ship():
    assert set(SCALE_FILES) == {"default", "proof", "paper"}


@pytest.mark.parametrize("name", sorted(SCALE_FILES))
def test_a_scale_is_the_recipes_with_its_overlay(name):
    overlay = load_yaml(SCALE_FILES[name])
    scale = load_scale(SCALE_FILES[name])
    # its own keys as written, the overlay keys resolved into `recipes`
    assert {k: v for k, v in scale.items() if k != "recipes"} == {
        k: v for k, v in overlay.items() if k not in OVERLAY_KEYS
    }
    assert list(scale["recipes"]) == list(RECIPES)  # every recipe, in the file's order
    start = overlay.get("released_recipes", True)
    for recipe, released in RECIPES.items():
        expected = deep_merge(
            released if start else {},
            overlay.get("every_recipe", {}),
            overlay.get("recipe_overrides", {}).get(recipe, {}),
        )
        assert scale["recipes"][recipe] == expected, recipe
    check_scale(scale, SCALE_FILES[name])  # every recipe over base is a valid run config


def test_the_paper_scale_trains_the_recipes_as_they_are():
    assert not set(OVERLAY_KEYS) & set(load_yaml(SCALE_FILES["paper"]))
    assert load_scale(SCALE_FILES["paper"])["recipes"] == RECIPES


def test_the_cpu_scales_give_every_recipe_their_own_schedule():
    default = load_scale(SCALE_FILES["default"])["recipes"]
    assert all(
        r
        == {
            "train": {
                "batch_size": 2,
                "max_steps": 2,
                "milestones": [1],
                "warmup_steps": 0,
                "bn_stats": "caffe",
                "param_groups": "caffe",
                "sgd": "caffe",
            }
        }
        for r in default.values()
    )
    proof = load_scale(SCALE_FILES["proof"])["recipes"]
    assert {r["train"]["max_steps"] for r in proof.values()} == {300}
    # BatchNorm over the release's images per GPU where they fit in the batch of 8: DSOD's 4
    assert {name: r["train"]["bn_group"] for name, r in proof.items()} == {
        name: 4 if name.startswith("dsod_") and name != "dsod_voc0712_bn12" else 0
        for name in RECIPES
    }


def _copy_config(tmp_path: Path, recipes: dict | None = None) -> Path:
    """A config/ folder under tmp_path: the shipped scale files over `recipes`."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config" / "scales", config / "scales")
    (config / "recipes.yaml").write_text(dump_yaml(RECIPES if recipes is None else recipes))
    return config


def test_a_recipe_added_once_is_a_recipe_of_every_scale(tmp_path):
    added = {"train": {"lr": 0.02, "batch_size": 64, "max_steps": 7000, "milestones": [5000]}}
    config = _copy_config(tmp_path, {**RECIPES, "new_recipe": added})
    for name in SCALE_FILES:
        overlay = load_yaml(config / "scales" / f"{name}.yaml")
        scale = load_scale(config / "scales" / f"{name}.yaml")
        assert list(scale["recipes"]) == [*RECIPES, "new_recipe"]
        expected = added if overlay.get("released_recipes", True) else overlay["every_recipe"]
        assert scale["recipes"]["new_recipe"] == expected, name
        # the other recipes are untouched
        assert {k: v for k, v in scale["recipes"].items() if k != "new_recipe"} == load_scale(
            SCALE_FILES[name]
        )["recipes"]
        check_scale(scale, config / "scales" / f"{name}.yaml")


def _set(data: dict, key: str | tuple[str, ...], value) -> None:
    """Set (or delete) `key`: dotted, or a tuple of keys where one holds a dot."""
    *parents, last = key.split(".") if isinstance(key, str) else key
    for parent in parents:
        data = data[parent]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("scale", "key", "value", "message"),
    [
        (
            "default",
            "resources.train.threads",
            0,
            r"resources\.train\.threads: must be >= 1, got 0",
        ),
        ("default", "resources.eval.cpus", 2, r"resources\.eval\.cpus: unknown key"),
        ("default", "resourcez", {}, r"resourcez: unknown key \(did you mean 'resources'\?\)"),
        ("default", "smoke", _DELETE, r"smoke: missing key"),
        ("default", "smoke", "yes", r"smoke: expected true or false, got 'yes'"),
        (
            "default",
            "dataset",
            "synthetic",
            r"dataset: must be one of synth, official, got 'synthetic'",
        ),
        ("default", "synth", _DELETE, r"synth: missing key \(`dataset: synth` needs"),
        ("default", "synth.trainval", 1, r"synth\.trainval: must be >= 2, got 1"),
        ("proof", "synth.classes", ["box", "box"], r"synth\.classes\[1\]: 'box' is listed twice"),
        ("proof", "synth.classes", ["star"], r"synth\.classes\[0\]: must be one of box, disc"),
        ("proof", "synth.classes", [], r"synth\.classes: needs at least one class"),
        (
            "proof",
            "synth.object_size",
            [0, 0.5],
            r"synth\.object_size\[0\]: must be in \(0, 0\.9\]",
        ),
        ("proof", "synth.objects", [1], r"synth\.objects: needs two values, \[min, max\]"),
        ("proof", "rows", ["a/b", "a/b"], r"rows\[1\]: 'a/b' is listed twice"),
        ("proof", "rows", ["a_b"], r"rows\[0\]: 'a_b' is not table/row"),
        ("default", "pretrained_skip_reason", " ", r"pretrained_skip_reason: is empty"),
        (
            "default",
            "recipes",
            {"dsod_coco": {}},
            r"recipes: the recipes are defined once, in \S*recipes\.yaml; a scale changes them",
        ),
        (
            "proof",
            "recipe_overrides.dsod_cocoa",
            {"train": {"lr": 1}},
            r"recipe_overrides\.dsod_cocoa: not a recipe of \S*recipes\.yaml \(recipes: "
            r"dsod_voc0712,",
        ),
        ("default", "every_recipe", [1], r"every_recipe: expected a mapping, got \[1\]"),
        (
            "proof",
            "recipe_overrides.dsod_coco",
            [1],
            r"recipe_overrides\.dsod_coco: expected a mapping, got \[1\]",
        ),
        (
            "proof",
            ("row_overrides", "dsod_table3/ds32-12-16-0.5_3blocks"),
            "x",
            r"row_overrides\.dsod_table3/ds32-12-16-0\.5_3blocks: expected a mapping, got 'x'",
        ),
    ],
)
def test_a_bad_scale_file_is_one_line_naming_the_file_and_key(tmp_path, scale, key, value, message):
    config = _copy_config(tmp_path)
    path = config / "scales" / f"{scale}.yaml"
    data = load_yaml(path)
    _set(data, key, value)
    path.write_text(dump_yaml(data))
    with pytest.raises(ConfigError, match=rf"^{path}: {message}") as err:
        load_scale(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("recipes", "message"),
    [
        ({"Dsod-COCO": {"train": {}}}, r"Dsod-COCO: a recipe name is lower-case letters"),
        ({"dsod_coco": [1]}, r"dsod_coco: expected a mapping, got \[1\]"),
        ([1], r"<top>: expected a mapping, got \[1\]"),
    ],
)
def test_a_bad_recipes_file_is_named(tmp_path, recipes, message):
    config = _copy_config(tmp_path, recipes)
    with pytest.raises(ConfigError, match=rf"^{config / 'recipes.yaml'}: {message}"):
        load_scale(config / "scales" / "paper.yaml")
