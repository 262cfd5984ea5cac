"""Run-config composition: a params row + a scale -> the row's run config, checked when the
workflow plans (not when a job trains), and why a row does not run at a scale.

A run config is the scale's base < the row's recipe < the row's own `train`/`model` cells < the
scale's `row_overrides` for the row, with the data files of the scale's dataset
(`scratchdet.workflow.datasets`). Its digest names the run folder (`scratchdet.run_folder`).
A scale file is read in one place, `scales.load_scale`. Importing this module does not import torch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from scratchdet.config import config_from_dict
from scratchdet.errors import ConfigError
from scratchdet.models.registry import resolve_config
from scratchdet.paper_tables import Row
from scratchdet.workflow.datasets import split_file

__all__ = [
    "check_references",
    "check_row",
    "check_scale",
    "deep_merge",
    "run_config",
    "skip_reason",
]


def check_references(tables: dict[str, list[Row]], scale: dict[str, Any]) -> None:
    """Every recipe a row names exists in the scale; every init_from names a row."""
    keys = {r.key: r for rows in tables.values() for r in rows}
    for r in keys.values():
        if r.recipe not in scale["recipes"]:
            raise ConfigError(
                f"params/{r.table}.tsv",
                f"{r.id}.recipe",
                f"recipe {r.recipe!r} is not defined by the scale; defined: "
                f"{', '.join(sorted(scale['recipes']))}",
            )
        if r.init_from and r.init_from not in keys:
            raise ConfigError(
                f"params/{r.table}.tsv",
                f"{r.id}.init_from",
                f"{r.init_from!r} is not a table/row of the loaded tables",
            )


def skip_reason(row: Row, tables: dict[str, list[Row]], scale: dict[str, Any]) -> str | None:
    """Why `row` does not run at this scale (None: it runs). Never silent: reports show it."""
    if "rows" in scale and row.key not in scale["rows"]:
        return "not among the rows this scale trains"
    if row.unpublished:
        return "needs ImageNet weights that were never published"
    if row.pretrained and not scale["run_pretrained"]:
        return scale["pretrained_skip_reason"]
    if row.init_from:
        table, rid = row.init_from.split("/")
        parent = next(r for r in tables[table] if r.id == rid)
        why = skip_reason(parent, tables, scale)
        if why:
            return f"its initialisation run {row.init_from} does not run ({why})"
    return None


def deep_merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for over in overrides:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def run_config(
    row: Row,
    scale: dict[str, Any],
    data_dir: str | Path = "data",
    init_checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """The run config of `row` at `scale`: scale base < recipe < the row's own overrides < the
    scale's `row_overrides` for the row (e.g. the proof scale's CPU-sized settings)."""
    raw = deep_merge(
        scale["base"],
        scale["recipes"][row.recipe],
        {"train": row.train},
        {
            "model": row.model,
            "data": {
                "train": split_file(scale, row.train_data, data_dir),
                "test": split_file(scale, row.gt_split, data_dir),
            },
        },
        scale.get("row_overrides", {}).get(row.key, {}),
    )
    if init_checkpoint is not None:
        raw["train"]["init_from"] = str(init_checkpoint)
    config_from_dict(raw, row.where or row.key)  # fail at planning, not in the job
    return raw


def check_scale(
    scale: dict[str, Any], scale_file: str | Path, rows: dict[str, Row] | None = None
) -> None:
    """Every recipe of a scale, laid over its base, is a valid run config (any model); every row
    the scale names (`rows`, `row_overrides`) exists among `rows`, when given."""
    for name, recipe in scale["recipes"].items():
        config_from_dict(
            deep_merge(scale["base"], recipe, {"model": {"name": "<any>"}}),
            f"{scale_file} (recipes.{name} over base)",
        )
    if rows is None:
        return
    loaded = {key.split("/")[0] for key in rows}
    for key in ("rows", "row_overrides"):
        for ref in scale.get(key, []):
            if ref.split("/")[0] in loaded and ref not in rows:  # other tables: not loaded now
                raise ConfigError(scale_file, f"{key}.{ref}", "not a row of its params table")


def check_row(row: Row, scale: dict[str, Any]) -> None:
    """A row's `model` cell against the model registry and its `train` cell against the run-config
    schema, over its recipe (which `check_scale` found valid). A ConfigError names the params
    file, the row's line and the key, when the workflow plans rather than when the job trains."""
    try:
        resolve_config(row.model)
    except ConfigError as err:
        raise ConfigError(row.where, err.key, err.problem) from None
    config_from_dict(
        deep_merge(
            scale["base"],
            scale["recipes"][row.recipe],
            {"train": row.train, "model": row.model},
            scale.get("row_overrides", {}).get(row.key, {}),
        ),
        row.where,
    )
