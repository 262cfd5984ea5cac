"""scratchdet.workflow.plan: what one invocation of the workflow plans, without Snakemake."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scratchdet.errors import ConfigError
from scratchdet.paper_tables import load_table
from scratchdet.run_folder import config_digest
from scratchdet.workflow.plan import Plan
from scratchdet.workflow.rule_options import figure1_label, figure1_title, repeated_option

ROOT = Path(__file__).resolve().parent.parent


def config(**overrides) -> dict:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg.update(yaml.safe_load((ROOT / "config/downloads.yaml").read_text()))
    cfg.update(overrides)
    return cfg


def load(**overrides) -> Plan:
    cfg = config(**overrides)
    return Plan.load(cfg, ROOT / "config/scales" / f"{cfg['scale']}.yaml", ROOT / "params")


@pytest.fixture(scope="module")
def default() -> Plan:
    return load()


@pytest.fixture(scope="module")
def paper() -> Plan:
    return load(scale="paper")


def test_planning_modules_import_without_torch():
    code = (
        "import sys; import scratchdet.workflow.plan, scratchdet.workflow.preflight; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_default_scale_runs_every_row_that_needs_no_imagenet_weights(default):
    assert len(default.rows) == 59 and len(default.run_keys) == 50
    assert all(default.rows[k].pretrained for k in default.skipped)
    assert default.imagenet_weights == {}
    assert default.dataset == "data/synth/16trainval_4test_seed0"


def test_a_rows_folder_is_the_digest_of_its_run_config(default):
    key = "scratchdet_table3/scratchdet300_voc07"
    paths = default.paths(key)
    assert paths.root == Path("results/default", key, config_digest(default.row_config(key)))
    assert default.run_wildcards(key) == {
        "table": "scratchdet_table3",
        "row": "scratchdet300_voc07",
        "digest": paths.root.name,
    }
    assert json.loads(default.run_config_json(key, paths.root.name)) == default.row_config(key)
    with pytest.raises(ValueError, match="0000000000 is not the folder of the row's current"):
        default.run_config_json(key, "0000000000")


def test_a_fine_tuned_row_starts_from_its_parents_final_weights(default):
    child = default.rows["scratchdet_table5/scratchdet300_coco_voc07"]
    [init] = default.init_checkpoint(child)
    assert init == str(default.paths("scratchdet_table4/scratchdet300_coco").model)
    assert default.row_config(child.key)["train"]["init_from"] == init


def test_repeated_options_survive_the_shell():
    text = repeated_option("--skip", [("a", "needs ImageNet weights, offline"), ("b", "it's x")])
    assert shlex.split(text) == [
        "--skip",
        "a=needs ImageNet weights, offline",
        "--skip",
        "b=it's x",
    ]


def test_report_arguments_name_every_row_once(default):
    runs = shlex.split(default.run_options("scratchdet_table1"))
    skips = shlex.split(default.skip_options("scratchdet_table1"))
    ids = [a.split("=")[0] for a in runs[1::2] + skips[1::2]]
    assert sorted(ids) == sorted(r.id for r in default.tables["scratchdet_table1"])
    assert all(a.split("=", 1)[1] == "needs ImageNet weights, offline" for a in skips[1::2])
    figure = shlex.split(default.figure1_options())
    assert len(figure) == 2 * len(default.figure1)
    assert figure[1].startswith("scratch_bn-none_lr0.001 (paper 67.6 mAP)=results/default/")


def test_figure1_labels_and_title():
    row = load_table(ROOT / "params/scratchdet_table1.tsv")
    by_id = {r.id: r for r in row}
    assert (
        figure1_label(by_id["scratch_bn-none_lr0.01"]) == "scratch_bn-none_lr0.01 (paper NAN mAP)"
    )
    assert figure1_title("default") == "ScratchDet Figure 1, default scale"


def test_a_selected_table_loads_the_tables_its_rows_are_fine_tuned_from():
    plan = load(tables=["dsod_table4"])
    assert plan.selected == ["dsod_table4"] and sorted(plan.tables) == [
        "dsod_table4",
        "dsod_table6",
    ]
    assert "dsod_table6/dsod300_coco" in plan.run_keys  # DSOD300 + COCO starts from it


def test_refs_into_unselected_tables_are_dropped_and_typos_are_errors():
    plan = load(tables=["dsod_table4"])
    assert plan.showcase == ["dsod_table4/dsod300"] and plan.figure1 == []
    with pytest.raises(
        ConfigError, match="'dsod_table4/dsod301' is not a row of params/dsod_table4"
    ):
        load(showcase=["dsod_table4/dsod301"])
    with pytest.raises(ConfigError, match="'dsod_table9' has no file"):
        load(tables=["dsod_table9"])


def test_an_init_from_into_a_missing_table_names_the_row(tmp_path):
    for path in (ROOT / "params").glob("*.tsv"):
        (tmp_path / path.name).write_text(
            path.read_text().replace("dsod_table6/dsod300_coco", "dsod_table7/dsod300_coco")
        )
    cfg = config(tables=["dsod_table4"])
    with pytest.raises(
        ConfigError,
        match=r"dsod_table4.tsv: dsod300_coco.init_from: "
        r"'dsod_table7/dsod300_coco' is not a table/row",
    ):
        Plan.load(cfg, ROOT / "config/scales/default.yaml", tmp_path)


def test_data_rule_arguments(paper):
    parts = shlex.split(paper.voc_split_options("trainval_0712"))
    assert parts == [
        "--voc-dir",
        "data/extracted/VOCtrainval_06-Nov-2007/VOCdevkit/VOC2007",
        "--split",
        "trainval",
        "--voc-dir",
        "data/extracted/VOCtrainval_11-May-2012/VOCdevkit/VOC2012",
        "--split",
        "trainval",
    ]
    assert paper.archives_of("data/coco/val2017.json") == (
        "annotations_trainval2017.zip",
        "val2017.zip",
    )
    assert paper.official_file("voc12_test") == "data/voc/test_12.json"
    assert paper.download_options("VOC2012test.tar").startswith("--manual ")


def test_paper_scale_names_the_imagenet_weight_files_of_its_pretrained_rows(paper):
    assert sorted(paper.imagenet_weights) == ["vgg16-397923af.pth", "vgg16_bn-6c64b313.pth"]
    assert all(
        url.startswith("https://download.pytorch.org/models/")
        for url in paper.imagenet_weights.values()
    )
    row = paper.rows["scratchdet_table1/pretrained_bn-both_lr0.01"]
    assert paper.weight_files(row) == ["data/torch/hub/checkpoints/vgg16_bn-6c64b313.pth"]
    assert paper.weight_files(paper.rows["scratchdet_table3/scratchdet300_voc07"]) == []


def test_proof_scale_trains_its_rows_only_with_their_overrides_and_baselines():
    proof = load(scale="proof")
    rows = proof.scale["rows"]
    assert sorted(proof.run_keys) == sorted(rows)
    assert proof.selected == sorted({r.split("/")[0] for r in rows})  # only the tables involved
    assert set(proof.skipped.values()) == {"not among the rows this scale trains"}
    vgg = proof.row_config("scratchdet_table1/scratch_bn-both_lr0.01")
    assert vgg["model"]["width"] == 0.25 and vgg["train"]["lr"] == 0.01  # row's own lr stays
    dsod = proof.row_config("dsod_table3/ds32-12-16-0.5_3blocks")
    assert (
        "width" not in dsod["model"]
        and dsod["train"]["lr"] == proof.scale["recipes"]["dsod_voc0712"]["train"]["lr"]
    )
    assert (
        proof.dataset == "data/synth/96trainval_32test_seed1_obj1-3_size0.15-0.6_box-disc-triangle"
    )
    # One baseline for the four rows: same training split, test split and metric.
    assert list(proof.baseline_jobs) == ["trainval__test__voc07"]
    job = proof.baseline_jobs["trainval__test__voc07"]
    assert job == {
        "train": f"{proof.dataset}/trainval.json",
        "gt": f"{proof.dataset}/test.json",
        "metric": "voc07",
    }
    assert proof.learning_curves and proof.precise_bn_check > 0
    options = shlex.split(proof.curve_options("precise_bn"))
    assert options[::2] == ["--precise-bn-curve"] * len(rows)
    assert options[1].endswith("/learning_curve_precise_bn.csv")


def test_a_scale_row_that_does_not_exist_is_named(tmp_path):
    scale = yaml.safe_load((ROOT / "config/scales/proof.yaml").read_text())
    scale["row_overrides"] = {"dsod_table3/no_such_row": {"model": {"growth": 8}}}
    path = tmp_path / "scales" / "proof.yaml"  # beside a copy of the recipes it overlays
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(scale))
    shutil.copy(ROOT / "config/recipes.yaml", tmp_path / "recipes.yaml")
    with pytest.raises(ConfigError, match=r"row_overrides.dsod_table3/no_such_row"):
        Plan.load(config(scale="proof"), path, ROOT / "params")


def test_the_synthetic_dataset_folder_is_named_at_every_scale():
    assert load().synth_name.startswith("16trainval_4test_seed0")
    assert "--trainval 16 --test 4 --seed 0" in load().synth_options
    paper = load(scale="paper")  # official datasets: a placeholder, never an empty path part
    assert paper.synth_name == "unused" and paper.synth_options == ""
