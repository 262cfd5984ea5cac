"""The paper tables (params/*.tsv): one row per ablation, the paper's values and the tables' titles.

A params table has one row per ablation: `row` (a path-safe id), descriptive columns shown in the
report, then the fixed columns below, `paper_<metric>` columns with the paper's numbers (empty =
unknown, `NAN` = the paper reports divergence) and a free-text `note`. This module checks each
row's fixed cells (`ParamsRow`, through the project's one validation mechanism) and reads the
table into `Row`s, which the workflow plans runs from and the reports print beside the runs'
results. Importing it does not import torch.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from scratchdet.errors import ConfigError
from scratchdet.validation import Config, convert
from scratchdet.yaml_io import parse_yaml

__all__ = [
    "EVALS",
    "FIXED",
    "NAME",
    "NOT_METRICS",
    "PAPER_PREFIX",
    "ROW_ID",
    "ROW_REF",
    "TITLES",
    "ParamsRow",
    "Row",
    "load_table",
    "parse_paper_value",
]

FIXED = ("row", "recipe", "train_data", "eval", "pretrained", "init_from", "model", "train", "note")
PAPER_PREFIX = "paper_"
NOT_METRICS = ("params_m", "fps")
"""paper_ columns that are context rather than a metric of the trained run."""

EVALS = {
    # eval kind -> (local ground truth split, metric, evaluation-server split or None)
    "voc07": ("voc07_test", "voc07", None),
    "voc12": ("voc07_test", "voc12", "voc12_test"),
    "coco": ("coco_val", "coco", "coco_testdev"),
}
"""What a row's `eval` column means: where it is scored here, with which metric, and the
evaluation server's split the paper's number comes from."""

TITLES = {
    "dsod_table3": "DSOD Table 3: ablation on PASCAL VOC 2007 test",
    "dsod_table4": "DSOD Table 4: PASCAL VOC 2007 test",
    "dsod_table5": "DSOD Table 5: PASCAL VOC 2012 test",
    "dsod_table6": "DSOD Table 6: MS COCO test-dev",
    "scratchdet_table1": "ScratchDet Table 1: BatchNorm and learning rate, SSD300 VGG-16, "
    "VOC 2007 test",
    "scratchdet_table2": "ScratchDet Table 2: ResNet-18 root variants, VOC 2007 test",
    "scratchdet_table3": "ScratchDet Table 3: ScratchDet300 on PASCAL VOC",
    "scratchdet_table4": "ScratchDet Table 4: MS COCO test-dev",
    "scratchdet_table5": "ScratchDet Table 5: from MS COCO to PASCAL VOC",
}
"""Each params table's title in the reports (the file stem where none is given)."""


NAME = r"[a-z0-9_]+"
"""A params table's file stem, or a recipe's name."""
ROW_ID = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
"""A row's id: also its folder name, so path-safe (the Snakefile's `row` wildcard constraint)."""
ROW_REF = rf"{NAME}/{ROW_ID}"
"""A row named across tables, "table/row" (init_from, the workflow config's showcase rows)."""


def _pattern(regex: str, what: str) -> msgspec.Meta:
    return msgspec.Meta(pattern=regex, description=what)


class ParamsRow(Config):
    """The fixed cells of one params row, as text (a TSV has no types): what each may hold."""

    row: Annotated[str, _pattern(f"^{ROW_ID}$", "a path-safe id")]
    """Id of the row, also its folder name under results/<scale>/<table>/."""
    recipe: Annotated[str, _pattern(f"^{NAME}$", "a recipe name")]
    """Training recipe (config/recipes.yaml)."""
    train_data: Literal["voc07+12", "voc07++12", "coco"]
    eval: Literal["voc07", "voc12", "coco"]
    """voc12 and coco also write the evaluation server's upload file."""
    pretrained: Literal["yes", "no", "unpublished"]
    """yes = fine-tunes torchvision's ImageNet weights; unpublished = needs ImageNet weights that
    were never released (shown as not run at every scale)."""
    init_from: Annotated[str, _pattern(f"^({ROW_REF})?$", "table/row or empty")]
    """table/row whose trained weights initialise this run (empty = none)."""
    model: Annotated[str, _pattern(r"^\{.*\}$", "a YAML flow mapping {...}")]
    """Model config for scratchdet.models.build_model."""
    train: Annotated[str, _pattern(r"^(\{.*\})?$", "a YAML flow mapping {...} or empty")]
    """train-section overrides on top of the recipe."""
    note: str


@dataclasses.dataclass(frozen=True)
class Row:
    table: str
    id: str
    recipe: str
    train_data: str
    eval: str
    pretrained: bool
    """Fine-tunes ImageNet weights (torchvision's, fetched when the row runs)."""
    unpublished: bool
    """Its ImageNet weights were never released: it cannot run at any scale."""
    init_from: str | None
    """'table/row' of the run whose final weights initialise this one (COCO -> VOC)."""
    model: dict[str, Any]
    train: dict[str, Any]
    paper: dict[str, float | None]
    """paper_ columns without the prefix; None = unknown, NaN = diverged in the paper."""
    labels: dict[str, str]
    """The descriptive columns, in table order."""
    note: str
    where: str = ""
    """`<file>:<line>` of the row in its params table, for error messages."""

    @property
    def key(self) -> str:
        return f"{self.table}/{self.id}"

    @property
    def metrics(self) -> list[str]:
        return [k for k in self.paper if k not in NOT_METRICS]

    @property
    def gt_split(self) -> str:
        """The labelled split the row is scored on here (VOC 2007 test for VOC 2012 rows)."""
        return EVALS[self.eval][0]

    @property
    def metric(self) -> str:
        """The metric it is scored with (`scratchdet eval --metric`)."""
        return EVALS[self.eval][1]

    @property
    def server_split(self) -> str | None:
        """The evaluation server's split of the paper's number (None: scored locally)."""
        return EVALS[self.eval][2]


def parse_paper_value(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    if text.upper() == "NAN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            where, "paper value", f"expected a number, NAN or empty, got {text!r}"
        ) from None


def _yaml_cell(text: str, where: str, key: str) -> dict[str, Any]:
    value = parse_yaml(text, where, key) if text.strip() else {}
    if not isinstance(value, dict):
        raise ConfigError(where, key, f"expected a mapping like {{lr: 0.05}}, got {text!r}")
    return value


def _check_cell_counts(path: Path, records: list[dict[str | None, Any]]) -> None:
    """A row with more tab-separated cells than the header names: a stray tab in a cell or a
    value in a column nobody named (DictReader files the surplus under the key None)."""
    for line, rec in enumerate(records, start=2):
        if rec.get(None):
            extra = rec[None]
            raise ConfigError(
                f"{path}:{line}",
                "<row>",
                f"{len(extra)} more tab-separated "
                f"cell(s) than the header's {len(rec) - 1} columns ({extra[0]!r} "
                "...); remove the stray tab or name the column in the header",
            )


def load_table(path: str | Path) -> list[Row]:
    """Parse and check one params table: its header, each row's cell count and fixed cells
    (`ParamsRow`), the paper values and the YAML cells; errors name the file, line and column."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        records = list(reader)
        header = reader.fieldnames or []
    if not records:
        raise ConfigError(path, "<file>", "no rows")
    missing = [c for c in FIXED if c not in header]
    if missing:
        raise ConfigError(
            path,
            missing[0],
            f"missing column (the header has {len(header)} "
            "tab-separated names; every table has "
            f"{', '.join(FIXED)})",
        )
    _check_cell_counts(path, records)
    rows, seen = [], set()
    for i, rec in enumerate(records, start=2):
        where = f"{path}:{i}"
        short = [k for k, v in rec.items() if v is None]  # a row with fewer cells than the header
        if short:
            raise ConfigError(
                where,
                short[0],
                f"{len(short)} field(s) missing: the row has "
                f"{len(header) - len(short)} tab-separated cells, "
                f"the header {len(header)}",
            )
        convert({k: rec[k] for k in FIXED}, ParamsRow, path=where)
        if rec["row"] in seen:
            raise ConfigError(where, "row", f"duplicate row id {rec['row']!r}")
        seen.add(rec["row"])
        rows.append(
            Row(
                table=path.stem,
                id=rec["row"],
                recipe=rec["recipe"],
                train_data=rec["train_data"],
                eval=rec["eval"],
                pretrained=rec["pretrained"] != "no",
                unpublished=rec["pretrained"] == "unpublished",
                init_from=rec["init_from"] or None,
                model=_yaml_cell(rec["model"], where, "model"),
                train=_yaml_cell(rec["train"], where, "train"),
                paper={
                    k[len(PAPER_PREFIX) :]: parse_paper_value(v, where)
                    for k, v in rec.items()
                    if k.startswith(PAPER_PREFIX)
                },
                labels={
                    k: v
                    for k, v in rec.items()
                    if k not in FIXED and not k.startswith(PAPER_PREFIX)
                },
                note=rec["note"],
                where=where,
            )
        )
    return rows
