"""A scale: the recipes of config/recipes.yaml with a scale file's overlay, checked and resolved.

The training recipes are defined once (config/recipes.yaml: recipe name -> run-config sections),
so that a recipe added there is a recipe of every scale. A scale file
(config/scales/<scale>.yaml) holds what is its own (dataset, resources, the `base` of every run
config, the rows it trains) and what it changes in the recipes: `every_recipe` is laid over every
recipe, then `recipe_overrides[name]` over that one; with `released_recipes: false` a recipe
starts from nothing instead of its released settings, so that a CPU-sized scale trains every
recipe with a schedule of its own while still defining every name the params rows refer to.

`load_scale` gives the resolved scale, the dict the workflow plans with (`recipes`: every recipe
by name, as the scale trains it; the overlay keys gone). `ScaleFile` is the schema of a scale
file, checked through `scratchdet.validation.convert`; the run-config sections inside it are
checked over `base` by the plan (workflow.run_configs.check_scale), against scratchdet.config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import field

from scratchdet.data.synth import SYNTH_CLASSES
from scratchdet.errors import ConfigError
from scratchdet.paper_tables import NAME
from scratchdet.validation import Config, bounds, convert
from scratchdet.workflow.run_configs import deep_merge
from scratchdet.yaml_io import load_yaml

__all__ = [
    "OVERLAY_KEYS",
    "Job",
    "Resources",
    "ScaleFile",
    "Synth",
    "load_recipes",
    "load_scale",
    "recipes_file",
    "resolve",
]

OVERLAY_KEYS = ("released_recipes", "every_recipe", "recipe_overrides")
"""The keys of a scale file that say how its recipes differ; resolved away into `recipes`."""

RECIPE_NAME = re.compile(f"^{NAME}$")  # the params column `recipe` (paper_tables.ParamsRow)

ROW_KEY = re.compile(r"^[^/]+/[^/]+$")  # table/row

PositiveInt = Annotated[int, bounds("[1, inf)")]
NonNegativeInt = Annotated[int, bounds("[0, inf)")]
Sections = dict[str, Any]
"""Run-config sections (seed, data, train, loss, detect, model), checked by scratchdet.config."""


class Job(Config, frozen=True):
    """What one job of a kind asks the scheduler for (the Slurm profile reads these)."""

    threads: PositiveInt
    mem_mb: PositiveInt
    runtime: PositiveInt
    """Minutes."""
    gpu: NonNegativeInt = 0


class Resources(Config, frozen=True):
    """Per job kind."""

    train: Job
    detect: Job
    eval: Job


class Synth(Config, frozen=True):
    """The synthetic dataset's recipe; it also names the dataset's folder."""

    trainval: Annotated[int, bounds("[2, inf)")]
    test: PositiveInt
    seed: NonNegativeInt
    objects: list[PositiveInt] | None = None
    """Objects per image, [min, max] (default 1 to 5)."""
    object_size: list[Annotated[float, bounds("(0, 0.9]")]] | None = None
    """Object sides as fractions of the image's short side, [min, max] (default 12 px to 0.7)."""
    classes: list[Literal[SYNTH_CLASSES]] | None = None
    """The synthetic classes to draw (default all five), each once."""


class ScaleFile(Config, frozen=True):
    """config/scales/<scale>.yaml: the dataset, the resources and what the scale changes in the
    recipes of config/recipes.yaml (config/README.md, "Scales", says what each key does)."""

    description: str
    """Stated on top of every report."""
    smoke: bool
    """True when the numbers are not comparable to the papers."""
    dataset: Literal["synth", "official"]
    run_pretrained: bool
    """Whether rows that fine-tune ImageNet weights run."""
    pretrained_skip_reason: str
    """Not empty: the reports show it."""
    resources: Resources
    detect_workers: NonNegativeInt
    base: Sections
    """The start of every run config."""
    synth: Synth | None = None
    """Required with `dataset: synth`."""
    released_recipes: bool = True
    """False: a recipe starts from nothing, not from its settings in config/recipes.yaml."""
    every_recipe: Sections = field(default_factory=dict)
    """Laid over every recipe."""
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    """Recipe name -> run-config sections laid over that recipe, after `every_recipe`."""
    rows: list[str] | None = None
    """Only these rows (table/row) run at this scale; the others are reported as not run."""
    row_overrides: dict[str, Any] = field(default_factory=dict)
    """table/row -> run-config sections laid over the row's own (last)."""
    showcase: list[str] | None = None
    """Runs (table/row) with precision-recall curves and a detection grid, instead of
    config.yaml's list."""
    figure1: list[str] | None = None
    """ScratchDet Table 1 runs of Figure 1, instead of config.yaml's list."""
    learning_curves: bool = False
    """Score every kept snapshot of every run and draw the learning curves."""
    precise_bn_check: NonNegativeInt = 0
    """With learning_curves, also score every snapshot with the BatchNorm statistics re-estimated
    from this many training batches (PreciseBN)."""


def recipes_file(scale_file: str | Path) -> Path:
    """The recipes a scale file overlays: `recipes.yaml` beside its `scales/` folder."""
    return Path(scale_file).parent.parent / "recipes.yaml"


def load_recipes(path: str | Path) -> dict[str, Sections]:
    """config/recipes.yaml: recipe name -> run-config sections, in the file's order."""
    recipes = convert(load_yaml(path), dict[str, Any], path=path)
    for name, sections in recipes.items():
        if not RECIPE_NAME.match(name):
            raise ConfigError(
                path,
                name,
                "a recipe name is lower-case letters, digits and _ "
                "(the params column `recipe` names it)",
            )
        convert(sections, Sections, path=path, key=name)
    return recipes


def load_scale(scale_file: str | Path, recipes_path: str | Path | None = None) -> dict[str, Any]:
    """The resolved scale of `scale_file` over the recipes of `recipes_path` (default:
    `recipes_file(scale_file)`). Errors name the file and the key."""
    recipes_path = recipes_file(scale_file) if recipes_path is None else Path(recipes_path)
    return resolve(load_yaml(scale_file), load_recipes(recipes_path), scale_file, recipes_path)


def resolve(
    overlay: Any,
    recipes: dict[str, Sections],
    scale_file: str | Path,
    recipes_path: str | Path = "config/recipes.yaml",
) -> dict[str, Any]:
    """A scale file's contents (`overlay`) over `recipes`: its own keys as written, then
    `recipes` with one entry per recipe, `every_recipe` and the recipe's `recipe_overrides`
    laid over its released settings (or over nothing with `released_recipes: false`)."""
    if isinstance(overlay, dict) and "recipes" in overlay:
        raise ConfigError(
            scale_file,
            "recipes",
            f"the recipes are defined once, in "
            f"{recipes_path}; a scale changes them with every_recipe and "
            'recipe_overrides (config/README.md, "Scales")',
        )
    scale = convert(overlay, ScaleFile, path=scale_file)
    _check(scale, scale_file, recipes, recipes_path)
    resolved = {key: value for key, value in overlay.items() if key not in OVERLAY_KEYS}
    resolved["recipes"] = {
        name: deep_merge(
            recipe if scale.released_recipes else {},
            scale.every_recipe,
            scale.recipe_overrides.get(name, {}),
        )
        for name, recipe in recipes.items()
    }
    return resolved


def _check(
    scale: ScaleFile, scale_file: str | Path, recipes: dict[str, Sections], recipes_path: str | Path
) -> None:
    """What the struct's types do not say: the synthetic dataset's recipe where the scale
    generates one, [min, max] pairs, lists without repeats, rows as table/row, overrides of
    recipes that exist; and each override a mapping, checked here so that the error names its
    recipe or row."""
    if scale.dataset == "synth" and scale.synth is None:
        raise ConfigError(
            scale_file,
            "synth",
            "missing key (`dataset: synth` needs the synthetic set's {trainval, test, seed})",
        )
    if not scale.pretrained_skip_reason.strip():
        raise ConfigError(
            scale_file,
            "pretrained_skip_reason",
            "is empty; say why rows that fine-tune ImageNet weights do not run",
        )
    for i, row in enumerate(scale.rows or []):
        if not ROW_KEY.match(row):
            raise ConfigError(scale_file, f"rows[{i}]", f"{row!r} is not table/row")
    synth = scale.synth
    for key in ("objects", "object_size"):
        pair = getattr(synth, key, None)
        if pair is not None and len(pair) != 2:
            raise ConfigError(
                scale_file, f"synth.{key}", f"needs two values, [min, max], got {pair}"
            )
    classes = synth.classes if synth else None
    if classes == []:
        raise ConfigError(
            scale_file, "synth.classes", "needs at least one class (or leave it out: all five)"
        )
    for key, items in (("rows", scale.rows), ("synth.classes", classes)):
        for i, item in enumerate(items or []):
            if item in items[:i]:
                raise ConfigError(scale_file, f"{key}[{i}]", f"{item!r} is listed twice")
    for name, sections in scale.recipe_overrides.items():
        if name not in recipes:
            raise ConfigError(
                scale_file,
                f"recipe_overrides.{name}",
                f"not a recipe of {recipes_path} (recipes: {', '.join(recipes)})",
            )
        convert(sections, Sections, path=scale_file, key=f"recipe_overrides.{name}")
    for row, sections in scale.row_overrides.items():  # which rows exist: check_scale
        convert(sections, Sections, path=scale_file, key=f"row_overrides.{row}")
