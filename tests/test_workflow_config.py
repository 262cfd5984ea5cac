"""params/*.tsv + config/scales/*.yaml -> run configs (scratchdet.workflow.run_configs)."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from scratchdet.config import config_from_dict
from scratchdet.errors import ConfigError
from scratchdet.models import build_model
from scratchdet.paper_tables import Row, load_table
from scratchdet.run_folder import DIGEST_PATTERN, RunPaths, config_digest
from scratchdet.workflow.datasets import (
    SPLIT_ARCHIVES,
    SPLITS,
    download_options,
    extracted_dir,
    voc_split_sources,
)
from scratchdet.workflow.run_configs import (
    check_references,
    check_row,
    check_scale,
    run_config,
    skip_reason,
)
from scratchdet.workflow.scales import load_scale
from scratchdet.workflow.servers import voc_competition

ROOT = Path(__file__).resolve().parent.parent
TABLE_FILES = sorted((ROOT / "params").glob("*.tsv"))
SCALES = {p.stem: load_scale(p) for p in (ROOT / "config/scales").glob("*.yaml")}
TABLES = {p.stem: load_table(p) for p in TABLE_FILES}
ALL_ROWS = [r for rows in TABLES.values() for r in rows]


def test_every_paper_table_has_a_params_file():
    assert {p.stem for p in TABLE_FILES} == {
        "dsod_table3",
        "dsod_table4",
        "dsod_table5",
        "dsod_table6",
        "scratchdet_table1",
        "scratchdet_table2",
        "scratchdet_table3",
        "scratchdet_table4",
        "scratchdet_table5",
    }


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("eval", "voc2007", "must be one of voc07, voc12, coco"),
        ("row", "a b", "a path-safe id"),
        ("init_from", "dsod_table3", "table/row or empty"),
        ("model", "name: dsod300", "a YAML flow mapping"),
        ("pretrained", "maybe", "must be one of yes, no, unpublished"),
    ],
)
def test_a_bad_params_cell_is_one_line_naming_file_line_and_column(
    tmp_path, column, value, problem
):
    """Every shipped table loads (TABLES above); a bad fixed cell stops at its file and line."""
    lines = (ROOT / "params" / "dsod_table3.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    cells = lines[1].split("\t")
    cells[header.index(column)] = value
    path = tmp_path / "dsod_table3.tsv"
    path.write_text("\n".join([lines[0], "\t".join(cells)]) + "\n")
    with pytest.raises(ConfigError) as err:
        load_table(path)
    message = str(err.value)
    assert f"{path}:2" in message and column in message and problem in message, message
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(SCALES))
def test_scales_resolve_and_define_every_recipe(name):  # load_scale checked the scale file
    check_references(TABLES, SCALES[name])


def test_paper_values_from_specs():
    rows = {r.key: r for r in ALL_ROWS}
    assert rows["scratchdet_table1/scratch_bn-none_lr0.001"].paper["map"] == 67.6
    assert math.isnan(rows["scratchdet_table1/scratch_bn-none_lr0.05"].paper["map"])  # NAN
    assert rows["dsod_table3/ds64-36-48-1_stem"].paper["map"] is None  # not recovered
    assert rows["dsod_table6/dsod300_coco"].paper == {
        "AP": 29.3,
        "AP50": 47.3,
        "AP75": 30.6,
        "APs": 9.4,
        "APm": 31.5,
        "APl": 47.0,
    }
    nan_rows = [r.id for r in TABLES["scratchdet_table1"] if r.paper["map"] != r.paper["map"]]
    assert nan_rows == [
        "scratch_bn-none_lr0.01",
        "scratch_bn-none_lr0.05",
        "scratch_bn-head_lr0.05",
        "pretrained_bn-none_lr0.05",
    ]


@pytest.mark.parametrize("row", ALL_ROWS, ids=lambda r: r.key)
def test_every_row_model_builds(row):
    with torch.device("meta"):
        model = build_model(row.model, 80 if row.eval == "coco" else 20, load_pretrained=False)
    assert model.priors.shape[0] > 8000


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_row_gives_a_valid_run_config(scale):
    for row in ALL_ROWS:
        init = "results/x/model_final.pt" if row.init_from else None
        cfg = config_from_dict(run_config(row, SCALES[scale], "data", init))
        overrides = SCALES[scale].get("row_overrides", {}).get(row.key, {})
        assert cfg.model == {**row.model, **overrides.get("model", {})}  # the scale's, last
        assert cfg.train.init_from == (init or "")
        for key, value in row.train.items():  # the row's overrides win over the recipe
            assert getattr(cfg.train, key) == value


def test_run_config_layers_scale_recipe_and_row():
    row = next(r for r in TABLES["scratchdet_table1"] if r.id == "scratch_bn-head_lr0.01")
    paper = run_config(row, SCALES["paper"], "data")
    assert paper["train"]["lr"] == 0.01  # row
    assert paper["train"]["milestones"] == [40000, 75000, 90000]  # recipe
    assert paper["data"] == {
        "num_workers": 8,
        "train": "data/voc/trainval_0712.json",
        "test": "data/voc/test_07.json",
    }  # scale base + split files
    smoke = run_config(row, SCALES["default"], "data")
    assert smoke["train"]["lr"] == 0.01 and smoke["train"]["max_steps"] < 10
    assert smoke["data"]["train"] == "data/synth/16trainval_4test_seed0/trainval.json"


def test_a_bad_row_override_fails_at_planning():
    row = TABLES["scratchdet_table1"][0]
    bad = Row(**{**row.__dict__, "train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"train.lr"):
        run_config(bad, SCALES["default"])


def test_skip_reasons_are_explicit():
    default, paper = SCALES["default"], SCALES["paper"]
    rows = {r.key: r for r in ALL_ROWS}
    pre = rows["scratchdet_table1/pretrained_bn-both_lr0.01"]
    assert skip_reason(pre, TABLES, default) == "needs ImageNet weights, offline"
    assert skip_reason(pre, TABLES, paper) is None
    lite = rows["dsod_table4/ds64-12-16-1_pretrained"]
    assert "never published" in skip_reason(lite, TABLES, paper)
    assert skip_reason(rows["scratchdet_table1/scratch_bn-none_lr0.001"], TABLES, default) is None
    coco_to_voc = rows["scratchdet_table5/scratchdet300_coco_voc07"]
    assert skip_reason(coco_to_voc, TABLES, default) is None  # its COCO run runs too
    orphan = Row(**{**coco_to_voc.__dict__, "init_from": pre.key})
    assert "does not run (needs ImageNet weights, offline)" in skip_reason(orphan, TABLES, default)


def test_load_table_errors_name_the_file_and_row(tmp_path):
    src = (ROOT / "params/scratchdet_table3.tsv").read_text().splitlines()
    (tmp_path / "t.tsv").write_text("\n".join([src[0], src[1], src[1]]) + "\n")
    with pytest.raises(ConfigError, match=r"t.tsv:3.*duplicate row id"):
        load_table(tmp_path / "t.tsv")
    (tmp_path / "u.tsv").write_text("\n".join([src[0], src[1].replace("80.4", "eighty")]) + "\n")
    with pytest.raises(ConfigError, match="expected a number, NAN or empty"):
        load_table(tmp_path / "u.tsv")


def test_run_paths_layout():
    p = RunPaths.of("results/paper", "dsod_table6", "dsod300_coco", "0123abcdef")
    assert p.model == Path("results/paper/dsod_table6/dsod300_coco/0123abcdef/train/model_final.pt")
    assert p.detections("data/coco/val2017.json").name == "dets_val2017.json"
    assert p.coco_submission.name == "detections_test-dev2017_dsod300coco_results.zip"
    assert p.job_file("results/paper/logs", "train") == Path(
        "results/paper/logs/dsod_table6/dsod300_coco/0123abcdef/train.log"
    )


def test_the_wildcard_form_of_the_run_layout_formats_to_a_runs_files():
    pattern = RunPaths.wildcards("results/paper")
    assert str(pattern.metrics) == "results/paper/{table}/{row}/{digest}/metrics.json"
    assert (
        str(pattern.detections("{testset}"))
        == "results/paper/{table}/{row}/{digest}/dets_{testset}.json"
    )
    assert pattern.coco_submission.name == "detections_test-dev2017_{alg}_results.zip"
    assert (
        str(pattern.job_file("L", "detect_{testset}", ".tsv"))
        == "L/{table}/{row}/{digest}/detect_{testset}.tsv"
    )
    run = RunPaths.of("results/paper", "dsod_table6", "dsod300_coco", "0123abcdef")
    values = {"table": "dsod_table6", "row": "dsod300_coco", "digest": "0123abcdef"}
    for name in (
        "run_config",
        "train_dir",
        "model",
        "status",
        "provenance",
        "metrics",
        "voc_submission",
    ):
        assert str(getattr(pattern, name)).format(**values) == str(getattr(run, name)), name
    assert str(pattern.coco_submission).format(**values, alg="dsod300coco") == str(
        run.coco_submission
    )


def test_voc_splits_are_the_official_split_files():
    sources = voc_split_sources()
    voc_files = {Path(f).stem for f in SPLITS["official"].values() if f.startswith("voc/")}
    assert set(sources) == voc_files - {"test_12"}  # VOC 2012 test: an image list, no labels
    assert sources["trainval_0712_test07"][1] == ("VOCtest_06-Nov-2007.tar", "VOC2007", "test")
    downloads = yaml.safe_load((ROOT / "config/downloads.yaml").read_text())["downloads"]
    assert set(SPLIT_ARCHIVES) == set(SPLITS["official"])
    assert {a for archives in SPLIT_ARCHIVES.values() for a in archives} == set(downloads)


def test_voc_competition_follows_the_training_data():
    rows = {r.key: r for r in ALL_ROWS}
    assert voc_competition(rows["scratchdet_table3/scratchdet300_voc12"]) == "comp3"
    assert voc_competition(rows["scratchdet_table5/scratchdet300_coco_voc12"]) == "comp4"
    assert voc_competition(rows["scratchdet_table1/pretrained_bn-both_lr0.01"]) == "comp4"


def test_download_options_verify_or_ask_a_person():
    assert download_options({"url": "u", "md5": "a" * 32}) == f"--md5 {'a' * 32}"
    opts = download_options({"url": "u", "manual": "log in; then put it 'here'"})
    assert shlex.split(opts) == ["--manual", "log in; then put it 'here'"]
    assert (
        extracted_dir("data", "VOCtest_06-Nov-2007.tar", "VOCdevkit")
        == "data/extracted/VOCtest_06-Nov-2007/VOCdevkit"
    )


def _with_cell(row: Row, **cells) -> Row:
    return Row(**{**row.__dict__, **cells})


def test_check_row_names_the_params_file_line_and_key():
    row = TABLES["scratchdet_table3"][1]
    assert row.where.endswith("params/scratchdet_table3.tsv:3")
    check_row(row, SCALES["paper"])
    with pytest.raises(ConfigError, match=r"scratchdet_table3.tsv:3: model.bn_haed: unknown key"):
        check_row(
            _with_cell(row, model={"name": "scratchdet300", "bn_haed": True}), SCALES["paper"]
        )
    with pytest.raises(ConfigError, match=r"scratchdet_table3.tsv:3: model.depth: must be one of"):
        check_row(_with_cell(row, model={"name": "scratchdet300", "depth": 35}), SCALES["default"])
    with pytest.raises(ConfigError, match=r"scratchdet_table3.tsv:3: train.max_step: unknown key"):
        check_row(_with_cell(row, train={"max_step": 5}), SCALES["default"])
    # over the paper recipe (batch 128, micro-batch 32) a micro-batch of 48 does not divide
    with pytest.raises(ConfigError, match=r"scratchdet_table3.tsv:3: train.micro_batch"):
        check_row(_with_cell(row, train={"micro_batch": 48}), SCALES["paper"])


def test_a_bad_recipe_names_the_scale_file_not_a_row():
    scale = {
        **SCALES["default"],
        "recipes": {**SCALES["default"]["recipes"], "dsod_coco": {"train": {"lr": -1}}},
    }
    with pytest.raises(
        ConfigError, match=r"default.yaml \(recipes.dsod_coco over base\): train.lr"
    ):
        check_scale(scale, "config/scales/default.yaml")
    check_scale(SCALES["default"], "config/scales/default.yaml")


def test_config_digest_names_the_config_not_its_formatting():
    a = {"train": {"lr": 0.1, "batch_size": 2}, "model": {"name": "dsod300"}}
    b = {"model": {"name": "dsod300"}, "train": {"batch_size": 2, "lr": 0.1}}
    assert config_digest(a) == config_digest(b)
    assert re.fullmatch(DIGEST_PATTERN, config_digest(a))
    b["train"]["lr"] = 0.05
    assert config_digest(a) != config_digest(b)


def test_a_rows_digest_follows_its_dataset_recipe_and_init_run():
    row = next(r for r in TABLES["scratchdet_table1"] if r.id == "scratch_bn-head_lr0.01")
    scale = SCALES["default"]
    base = config_digest(run_config(row, scale, "data"))
    other_data = {**scale, "synth": {**scale["synth"], "seed": 1}}
    assert config_digest(run_config(row, other_data, "data")) != base
    assert config_digest(run_config(row, scale, "data", "results/x/model_final.pt")) != base
    assert config_digest(run_config(row, scale, "data")) == base
