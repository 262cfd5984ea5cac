"""Paper tables (params/*.tsv) + a scale (config/scales/*.yaml) -> one run config per table row.

The workflow (workflow/rules/common.smk, through `scratchdet.workflow_plan`) plans one training job
per row with these functions, and the report commands read results through the same `RunPaths`,
so the file layout of a run is defined here only. Importing this module does not import torch (a
dry run stays fast); checking a row's model cell does, until the model registry is torch-free.

A run's folder is named after the digest of its run config (`<table>/<row>/<digest>/`): a changed
config is a new folder, so Snakemake retrains it because its outputs are missing, never because of
file times or its own metadata. That is what lets results restored by `dvc pull` (new file times,
no `.snakemake/`) be reused, and a row whose config changed since be retrained.

A params table has one row per ablation: `row` (a path-safe id), descriptive columns shown in the
report, then the fixed columns below, `paper_<metric>` columns with the paper's numbers (empty =
unknown, `NAN` = the paper reports divergence) and a free-text `note`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from .config import config_from_dict
from .errors import ConfigError
from .yaml_io import parse_yaml

__all__ = [
    "DIGEST_PATTERN", "EVALS", "FIXED", "RUN_WILDCARDS", "SPLITS", "SPLIT_ARCHIVES", "SYNTH_FOLDER",
    "VOC_SOURCES",
    "Row", "RunPaths", "check_references", "check_row", "check_scale", "config_digest",
    "dataset_dir", "deep_merge", "download_options", "extracted_dir", "load_table",
    "parse_paper_value", "run_config", "skip_reason", "split_file", "submission_file",
    "synth_folder", "synth_options", "voc_competition", "voc_split_sources",
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

# Logical split -> dataset file (under the dataset folder) for each kind of dataset. The
# synthetic dataset stands in for every split at the smoke scale.
SPLITS = {
    "synth": {
        "voc07+12": "trainval.json", "voc07++12": "trainval.json", "coco": "trainval.json",
        "voc07_test": "test.json", "voc12_test": "test.json", "coco_val": "test.json",
        "coco_testdev": "test.json",
    },
    "official": {
        "voc07+12": "voc/trainval_0712.json", "voc07++12": "voc/trainval_0712_test07.json",
        "coco": "coco/train2017.json", "voc07_test": "voc/test_07.json",
        "voc12_test": "voc/test_12.json", "coco_val": "coco/val2017.json",
        "coco_testdev": "coco/test-dev2017.json",
    },
}

SYNTH_FOLDER = "{trainval}trainval_{test}test_seed{seed}"
"""The synthetic dataset's folder under `<data>/synth/`, named after its recipe (`synth:`); the
optional object knobs add a suffix (`synth_folder`)."""


def synth_folder(synth: dict[str, Any]) -> str:
    """The folder name of a synthetic recipe: sizes and seed, then any object knobs, so that a
    changed recipe is a new folder (and new run digests)."""
    name = SYNTH_FOLDER.format(**synth)
    if "objects" in synth:
        name += "_obj{}-{}".format(*synth["objects"])
    if "object_size" in synth:
        name += "_size{}-{}".format(*synth["object_size"])
    if "classes" in synth:
        name += "_" + "-".join(synth["classes"])
    return name


def synth_options(synth: dict[str, Any]) -> str:
    """`scratchdet data synth` options of a synthetic recipe (besides --out)."""
    opts = [f"--trainval {synth['trainval']}", f"--test {synth['test']}", f"--seed {synth['seed']}"]
    if "objects" in synth:
        opts.append("--objects {} {}".format(*synth["objects"]))
    if "object_size" in synth:
        opts.append("--object-size {} {}".format(*synth["object_size"]))
    if "classes" in synth:
        opts.append("--classes " + " ".join(synth["classes"]))
    return " ".join(opts)

VOC_SOURCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    # logical split -> the (archive, VOC year, image set) it merges, from the extracted devkits
    "voc07+12": (("VOCtrainval_06-Nov-2007.tar", "VOC2007", "trainval"),
                 ("VOCtrainval_11-May-2012.tar", "VOC2012", "trainval")),
    "voc07++12": (("VOCtrainval_06-Nov-2007.tar", "VOC2007", "trainval"),
                  ("VOCtest_06-Nov-2007.tar", "VOC2007", "test"),
                  ("VOCtrainval_11-May-2012.tar", "VOC2012", "trainval")),
    "voc07_test": (("VOCtest_06-Nov-2007.tar", "VOC2007", "test"),),
}
"""The labelled VOC splits; VOC 2012 test has no labels and becomes an image list instead."""


SPLIT_ARCHIVES: dict[str, tuple[str, ...]] = {
    # logical split of the official datasets -> the archives of config/downloads.yaml it needs
    **{split: tuple(dict.fromkeys(a for a, _, _ in parts)) for split, parts in VOC_SOURCES.items()},
    "voc12_test": ("VOC2012test.tar",),
    "coco": ("annotations_trainval2017.zip", "train2017.zip"),
    "coco_val": ("annotations_trainval2017.zip", "val2017.zip"),
    "coco_testdev": ("image_info_test2017.zip", "test2017.zip"),
}


def voc_split_sources() -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Dataset file stem under `<data>/voc/` (as `SPLITS["official"]` names it) -> its sources."""
    return {Path(SPLITS["official"][split]).stem: parts for split, parts in VOC_SOURCES.items()}


def extracted_dir(data_dir: str | Path, archive: str, *parts: str) -> str:
    """A path inside the folder that `archive` is extracted into (one folder per archive)."""
    return str(Path(data_dir, "extracted", archive.split(".")[0], *parts))


def download_options(entry: dict[str, Any]) -> str:
    """`scratchdet data download` options that verify an archive of config/downloads.yaml, or
    make the job stop and say how a person gets it (`manual`)."""
    opts = [f"--{k} {entry[k]}" for k in ("md5", "sha256") if k in entry]
    if "manual" in entry:
        opts.append(f"--manual {shlex.quote(entry['manual'])}")
    return " ".join(opts)


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


RUN_WILDCARDS = ("{table}", "{row}", "{digest}")
"""The Snakemake wildcards of a run folder, `<results>/<scale>/{table}/{row}/{digest}`."""


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where every file of one row's run lives: `<results>/<scale>/<table>/<row>/<digest>/...`.

    `RunPaths.of(...)` gives one run's files; `RunPaths.wildcards(results)` gives the same layout
    with Snakemake wildcards, which the rules use as their `output:` patterns. Nothing else spells
    a run-folder path.
    """

    root: Path
    pattern: bool = False
    """True for the wildcard form: names derived from the row become wildcards too."""

    @classmethod
    def of(cls, results: str | Path, table: str, row: str, digest: str) -> RunPaths:
        return cls(Path(results) / table / row / digest)

    @classmethod
    def wildcards(cls, results: str | Path) -> RunPaths:
        """The layout as patterns with the wildcards `{table}`, `{row}` and `{digest}`."""
        return cls(Path(results).joinpath(*RUN_WILDCARDS), pattern=True)

    @property
    def run_config(self) -> Path:
        return self.root / "run.yaml"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.train_dir / "model_final.pt"

    @property
    def status(self) -> Path:
        return self.train_dir / "status.json"

    @property
    def metrics_csv(self) -> Path:
        return self.train_dir / "metrics.csv"

    @property
    def provenance(self) -> Path:
        return self.train_dir / "provenance.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    def learning_curve_file(self, variant: str) -> Path:
        """A learning curve of the run: ``variant`` "" (mAP of every kept snapshot on the row's
        test split, `scratchdet curve`) or "_precise_bn" (the BatchNorm statistics re-estimated
        first, PreciseBN); ``"{variant}"`` in a pattern."""
        return self.root / f"learning_curve{variant}.csv"

    @property
    def learning_curve(self) -> Path:
        return self.learning_curve_file("")

    @property
    def learning_curve_precise_bn(self) -> Path:
        return self.learning_curve_file("_precise_bn")

    def detections(self, split_file: str | Path) -> Path:
        """Detections on a dataset file, named after its stem (`"{testset}"` in a pattern)."""
        return self.root / f"dets_{Path(split_file).stem}.json"

    @property
    def voc_submission(self) -> Path:
        return self.root / "voc2012_test_submission.tar.gz"

    @property
    def coco_submission(self) -> Path:
        # The server reads the algorithm name between underscores: letters and digits only.
        alg = "{alg}" if self.pattern else re.sub(r"[^A-Za-z0-9]", "", self.root.parent.name)
        return self.root / f"detections_test-dev2017_{alg}_results.zip"

    def job_file(self, folder: str | Path, job: str, suffix: str = ".log") -> Path:
        """A per-job file kept outside the run folder (a log, a benchmark), in `folder` under
        the same `<table>/<row>/<digest>` as the run."""
        return Path(folder).joinpath(*self.root.parts[-3:], f"{job}{suffix}")


DIGEST_LENGTH = 10
DIGEST_PATTERN = f"[0-9a-f]{{{DIGEST_LENGTH}}}"


def config_digest(config: dict[str, Any]) -> str:
    """Short content hash of a run config (key order and formatting do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def submission_file(row: Row, paths: RunPaths) -> Path | None:
    """The evaluation-server upload file of a row (None when its metric is computed locally)."""
    server = EVALS[row.eval][2]
    return {"voc12_test": paths.voc_submission, "coco_testdev": paths.coco_submission}.get(server)


def voc_competition(row: Row) -> str:
    """VOC's comp3 = trained on VOC data only; comp4 = any other data (ImageNet, COCO) too."""
    return "comp4" if row.pretrained or row.init_from else "comp3"


def parse_paper_value(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    if text.upper() == "NAN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ConfigError(where, "paper value", f"expected a number, NAN or empty, got {text!r}") \
            from None


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
            raise ConfigError(f"{path}:{line}", "<row>", f"{len(extra)} more tab-separated "
                              f"cell(s) than the header's {len(rec) - 1} columns ({extra[0]!r} "
                              "...); remove the stray tab or name the column in the header")


def load_table(path: str | Path) -> list[Row]:
    """Parse one params table (the column schema is checked by the workflow's params schema)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        records = list(reader)
        header = reader.fieldnames or []
    if not records:
        raise ConfigError(path, "<file>", "no rows")
    missing = [c for c in FIXED if c not in header]
    if missing:
        raise ConfigError(path, missing[0], f"missing column (the header has {len(header)} "
                                            "tab-separated names; every table has "
                                            f"{', '.join(FIXED)})")
    _check_cell_counts(path, records)
    rows, seen = [], set()
    for i, rec in enumerate(records, start=2):
        where = f"{path}:{i}"
        short = [k for k, v in rec.items() if v is None]  # a row with fewer cells than the header
        if short:
            raise ConfigError(where, short[0], f"{len(short)} field(s) missing: the row has "
                                               f"{len(header) - len(short)} tab-separated cells, "
                                               f"the header {len(header)}")
        if rec["row"] in seen:
            raise ConfigError(where, "row", f"duplicate row id {rec['row']!r}")
        seen.add(rec["row"])
        rows.append(Row(
            table=path.stem, id=rec["row"], recipe=rec["recipe"], train_data=rec["train_data"],
            eval=rec["eval"], pretrained=rec["pretrained"] != "no",
            unpublished=rec["pretrained"] == "unpublished",
            init_from=rec["init_from"] or None,
            model=_yaml_cell(rec["model"], where, "model"),
            train=_yaml_cell(rec["train"], where, "train"),
            paper={k[len(PAPER_PREFIX):]: parse_paper_value(v, where)
                   for k, v in rec.items() if k.startswith(PAPER_PREFIX)},
            labels={k: v for k, v in rec.items()
                    if k not in FIXED and not k.startswith(PAPER_PREFIX)},
            note=rec["note"],
            where=where,
        ))
    return rows


def check_references(tables: dict[str, list[Row]], scale: dict[str, Any]) -> None:
    """Every recipe a row names exists in the scale; every init_from names a row."""
    keys = {r.key: r for rows in tables.values() for r in rows}
    for r in keys.values():
        if r.recipe not in scale["recipes"]:
            raise ConfigError(f"params/{r.table}.tsv", f"{r.id}.recipe",
                              f"recipe {r.recipe!r} is not defined by the scale; defined: "
                              f"{', '.join(sorted(scale['recipes']))}")
        if r.init_from and r.init_from not in keys:
            raise ConfigError(f"params/{r.table}.tsv", f"{r.id}.init_from",
                              f"{r.init_from!r} is not a table/row of the loaded tables")


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


def dataset_dir(scale: dict[str, Any], data_dir: str | Path = "data") -> Path:
    """The data folder of a scale's dataset. A synthetic dataset's folder names its recipe, so
    that the run configs (and so their digests) change when the recipe does."""
    if scale["dataset"] != "synth":
        return Path(data_dir)
    return Path(data_dir) / "synth" / synth_folder(scale["synth"])


def split_file(scale: dict[str, Any], split: str, data_dir: str | Path = "data") -> str:
    return str(dataset_dir(scale, data_dir) / SPLITS[scale["dataset"]][split])


def run_config(row: Row, scale: dict[str, Any], data_dir: str | Path = "data",
               init_checkpoint: str | Path | None = None) -> dict[str, Any]:
    """The run config of `row` at `scale`: scale base < recipe < the row's own overrides < the
    scale's `row_overrides` for the row (e.g. the proof scale's CPU-sized settings)."""
    gt_split = EVALS[row.eval][0]
    raw = deep_merge(scale["base"], scale["recipes"][row.recipe], {"train": row.train}, {
        "model": row.model,
        "data": {"train": split_file(scale, row.train_data, data_dir),
                 "test": split_file(scale, gt_split, data_dir)},
    }, scale.get("row_overrides", {}).get(row.key, {}))
    if init_checkpoint is not None:
        raw["train"]["init_from"] = str(init_checkpoint)
    config_from_dict(raw, row.where or row.key)  # fail at planning, not in the job
    return raw


def check_scale(scale: dict[str, Any], scale_file: str | Path,
                rows: dict[str, Row] | None = None) -> None:
    """Every recipe of a scale, laid over its base, is a valid run config (any model); every row
    the scale names (`rows`, `row_overrides`) exists among `rows`, when given."""
    for name, recipe in scale["recipes"].items():
        config_from_dict(deep_merge(scale["base"], recipe, {"model": {"name": "<any>"}}),
                         f"{scale_file} (recipes.{name} over base)")
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
    from .models.registry import resolve_config  # imports torch until the registry is torch-free

    try:
        resolve_config(row.model)
    except ConfigError as err:
        raise ConfigError(row.where, err.key, err.problem) from None
    config_from_dict(deep_merge(scale["base"], scale["recipes"][row.recipe],
                                {"train": row.train, "model": row.model},
                                scale.get("row_overrides", {}).get(row.key, {})), row.where)
