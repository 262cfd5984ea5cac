"""scratchdet.reports: table reports, figures, evaluation-server files, run configs."""

from __future__ import annotations

import json
import math
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scratchdet.cli import main
from scratchdet.config import write_run_config
from scratchdet.data.annotations import load_annotations
from scratchdet.errors import ConfigError, DataError
from scratchdet.evaluation import evaluate
from scratchdet.io import meta_path, read_json, write_json
from scratchdet.paper_tables import load_table
from scratchdet.reports.figures import (
    draw_detection_grid,
    draw_figure1,
    draw_pr_curves,
    fluctuation,
)
from scratchdet.reports.learning_curve import draw_learning_curves
from scratchdet.reports.precision_recall import precision_recall
from scratchdet.reports.submission import coco_test_list, voc_submission, voc_test_list
from scratchdet.reports.tables import write_table_report
from scratchdet.run_folder import RunPaths

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
DEFAULT_SCALE = yaml.safe_load((ROOT / "config/scales/default.yaml").read_text())
SMOKE_NOTE = DEFAULT_SCALE["description"].strip()


def _detections(gt_path: Path, drop_every: int = 3) -> list[dict]:
    """The ground truth as detections, minus every `drop_every`-th box, plus one miss per image."""
    ds = json.loads(gt_path.read_text())
    out = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9 - 0.001 * i,
        }
        for i, a in enumerate(ds["annotations"])
        if i % drop_every
    ]
    out += [
        {
            "image_id": img["id"],
            "category_id": ds["categories"][0]["id"],
            "bbox": [0.0, 0.0, 5.0, 5.0],
            "score": 0.95,
        }
        for img in ds["images"]
    ]
    return out


@pytest.fixture()
def dets(synth_splits, tmp_path) -> Path:
    path = tmp_path / "dets.json"
    write_json(path, _detections(synth_splits["test"]))
    return path


# --- precision-recall --------------------------------------------------------------------------


def test_pr_curves_agree_with_the_evaluation(synth_splits, dets):
    curves = precision_recall(synth_splits["test"], dets)
    reference = evaluate(synth_splits["test"], dets, "voc07")["per_class"]
    assert set(curves) == set(reference)
    for name, curve in curves.items():
        if math.isnan(reference[name]):
            assert math.isnan(curve.ap)
        else:
            assert curve.ap == pytest.approx(reference[name])
            assert np.all(np.diff(curve.recall) >= 0) and curve.recall[-1] <= 1.0
    assert any(0 < c.ap < 1 for c in curves.values())  # the test data is not trivial


# --- table reports ------------------------------------------------------------------------------


def _fake_run(
    results: Path, table: str, row: str, status: dict, metrics: dict, device: str = "cpu"
) -> RunPaths:
    """The files `scratchdet train` and `scratchdet eval` leave for one row."""
    p = RunPaths.of(results, table, row, "0123456789")
    write_json(p.status, status)
    write_json(p.metrics, metrics)
    write_json(p.provenance, {"hardware": {"device": device, "cpu": "x86_64", "cpu_count": 2}})
    return p


def test_table_report_reads_nan_not_run_and_differences(tmp_path):
    results = tmp_path / "results"
    table = "scratchdet_table1"
    params = ROOT / "params" / f"{table}.tsv"
    rows = pd.read_csv(params, sep="\t", dtype=str, keep_default_na=False)
    skips, runs = {}, {}
    for rid, pre in zip(rows["row"], rows["pretrained"]):
        if pre == "yes":
            skips[rid] = "needs ImageNet weights, offline"
        elif rid == "scratch_bn-none_lr0.05":
            runs[rid] = _fake_run(
                results,
                table,
                rid,
                {"status": "diverged", "step": 7, "reason": "loss is nan"},
                {"map": float("nan"), "diverged": True},
            ).root
        else:
            runs[rid] = _fake_run(
                results,
                table,
                rid,
                {"status": "finished", "step": 2, "reason": None},
                {"map": 0.5, "diverged": False},
            ).root
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    blind = tmp_path / "blind.json"
    write_json(blind, {"metric": "voc07", "map": 0.031, "baseline": "image-blind"})
    write_table_report(
        params,
        scale_file=ROOT / "config/scales/default.yaml",
        scale_name="default",
        runs=runs,
        skips=skips,
        out_md=md,
        out_csv=csv_path,
        out_json=tmp_path / "t.json",
        baselines={rid: blind for rid in runs},
    )
    text = md.read_text()
    assert "image-blind: the same split scored with per-class mean training boxes" in text
    assert "Smoke scale: numbers are not comparable to the paper" in text
    assert "hardware: CPU (x86_64, 2 cores)" in text
    # Numbers stay numbers: pandas reads float columns whose mean works; the status is its own
    # column; a smoke scale's numbers stand beside the paper's without a difference column.
    df = pd.read_csv(csv_path).set_index("row")
    assert list(df.columns[:3]) == ["bn_backbone", "bn_head", "lr"]
    assert "mAP diff" not in df.columns and "diff = reproduced" not in text
    for column in ("mAP reproduced", "mAP paper", "image-blind"):
        assert df[column].dtype == float, column
    assert df["mAP reproduced"].mean() == pytest.approx(50.0)  # NaN and not-run rows left out
    assert df.loc["scratch_bn-none_lr0.001", "mAP reproduced"] == 50.0
    assert df.loc["scratch_bn-none_lr0.001", "mAP paper"] == 67.6
    assert df.loc["scratch_bn-none_lr0.001", "image-blind"] == 3.1
    assert math.isnan(df.loc["pretrained_bn-both_lr0.01", "image-blind"])
    diverged = df.loc["scratch_bn-none_lr0.05"]
    assert math.isnan(diverged["mAP reproduced"]) and math.isnan(diverged["mAP paper"])
    assert diverged["status"] == "diverged (at step 7: loss is nan)"
    assert "| scratch_bn-none_lr0.05 | no | no | 0.05 | no | NAN | NAN |" in text
    skipped = df.loc["pretrained_bn-both_lr0.01"]
    assert math.isnan(skipped["mAP reproduced"])
    assert skipped["status"] == "not run (needs ImageNet weights, offline)"
    # A plain CSV, its notes in the sidecar: the lines the Markdown states on top, the scale,
    # the inputs and the provenance.
    assert csv_path.read_text().startswith("row,bn_backbone,bn_head,lr,pretrained,mAP reproduced,")
    assert "#" not in csv_path.read_text()
    assert list(pd.read_csv(csv_path).index) == list(range(len(rows)))
    meta = read_json(meta_path(csv_path))
    assert meta_path(csv_path).name == "t.csv.meta.json"
    assert meta["scale"] == {"name": "default", "description": SMOKE_NOTE, "smoke": True}
    assert meta["notes"][0] == f"scale: default: {SMOKE_NOTE}"
    assert meta["notes"][1] == "hardware: CPU (x86_64, 2 cores)"
    assert all(f"- {line}" in text for line in meta["notes"])
    assert meta["table"] == table and meta["params"] == str(params)
    assert meta["provenance"]["code"] and meta["provenance"]["packages"]["scratchdet"]
    record = {r["row"]: r for r in read_json(tmp_path / "t.json")["rows"]}
    assert record["scratch_bn-none_lr0.05"]["reproduced"] == {"map": "NaN"}
    assert record["scratch_bn-none_lr0.05"]["run"] == str(runs["scratch_bn-none_lr0.05"])
    assert record["scratch_bn-none_lr0.001"]["reproduced"] == {"map": 50.0}
    assert record["scratch_bn-none_lr0.001"]["image_blind"] == pytest.approx(3.1)
    assert record["pretrained_bn-both_lr0.01"]["status"] == "not run"
    assert record["pretrained_bn-both_lr0.01"]["run"] is None


def test_committed_report_csvs_are_plain_with_their_sidecar():
    csvs = sorted((ROOT / "reports/proof").glob("*.csv"))
    assert csvs
    for path in csvs:
        df = pd.read_csv(path)
        assert df.columns[0] == "row" and len(df) == len(
            load_table(ROOT / "params" / f"{path.stem}.tsv")
        ), path
        # numeric, the status apart, no difference to the paper at the proof scale
        assert df["mAP reproduced"].dtype == float and df["mAP paper"].dtype == float, path
        assert 0 < df["mAP reproduced"].mean() <= 100 and not df.filter(like="diff").columns.size
        assert df["status"].str.startswith(("finished", "diverged", "not run")).all()
        meta = read_json(meta_path(path))
        assert meta["table"] == path.stem and meta["scale"]["name"] == "proof"
        text = path.with_suffix(".md").read_text()
        assert all(f"- {line}\n" in text for line in meta["notes"])  # what the Markdown states


def test_table_report_coco_metrics_params_and_server_file(tmp_path):
    results = tmp_path / "results"
    run = _fake_run(
        results,
        "dsod_table6",
        "dsod300_coco",
        {"status": "finished", "step": 9},
        {
            "map": 0.25,
            "stats": {"AP": 0.25, "AP50": 0.5, "AP75": 0.2, "APs": 0.1, "APm": 0.3, "APl": 0.4},
        },
        device="cuda:0",
    )
    write_json(
        run.provenance, {"hardware": {"device": "cuda:0", "gpus": ["NVIDIA H100"], "cuda": "12.8"}}
    )
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    write_table_report(
        ROOT / "params/dsod_table6.tsv",
        scale_file=ROOT / "config/scales/paper.yaml",
        scale_name="paper",
        runs={"dsod300_coco": run.root},
        skips={},
        out_md=md,
        out_csv=csv_path,
    )
    df = pd.read_csv(csv_path)  # the paper scale is comparable: a difference column, numeric
    assert df.loc[0, "AP50 reproduced"] == 50.0 and df.loc[0, "AP50 paper"] == 47.3
    assert df.loc[0, "AP50 diff"] == pytest.approx(2.7)
    assert "| +2.7 |" in md.read_text()
    assert df.loc[0, "server file"].endswith("detections_test-dev2017_dsod300coco_results.zip")
    text = md.read_text()
    assert "NVIDIA H100" in text and "Smoke scale" not in text
    meta = read_json(meta_path(csv_path))
    assert meta["scale"]["name"] == "paper" and meta["scale"]["smoke"] is False
    assert "hardware: NVIDIA H100 (CUDA 12.8)" in meta["notes"]


def test_table_report_counts_parameters_like_the_paper(tmp_path):
    params = ROOT / "params/dsod_table3.tsv"
    rows = pd.read_csv(params, sep="\t", dtype=str, keep_default_na=False)["row"]
    write_table_report(
        params,
        scale_file=ROOT / "config/scales/default.yaml",
        scale_name="default",
        runs={},
        skips={r: "test" for r in rows},
        out_md=tmp_path / "t.md",
        out_csv=tmp_path / "t.csv",
    )
    df = pd.read_csv(tmp_path / "t.csv")
    dsod = df.set_index("row").loc["ds64-192-48-1_stem_dense"]
    assert dsod["params (M) reproduced"] == 14.80 and dsod["params (M) paper"] == 14.8
    assert (df["status"] == "not run (test)").all()


def test_table_report_needs_every_run_result(tmp_path):
    params = ROOT / "params/scratchdet_table3.tsv"
    ids = list(pd.read_csv(params, sep="\t", dtype=str)["row"])
    args = dict(
        scale_file=ROOT / "config/scales/default.yaml",
        scale_name="default",
        out_md=tmp_path / "t.md",
        out_csv=tmp_path / "t.csv",
    )
    with pytest.raises(DataError, match=r"metrics.json"):
        write_table_report(params, runs={i: tmp_path / i for i in ids}, skips={}, **args)
    with pytest.raises(ConfigError, match="neither a run folder nor a reason"):
        write_table_report(params, runs={ids[0]: tmp_path}, skips={}, **args)
    with pytest.raises(ConfigError, match="--skip: rows \\['no_such_row'\\] are not in this"):
        write_table_report(
            params, runs={}, skips={"no_such_row": "x", **{i: "x" for i in ids}}, **args
        )
    with pytest.raises(ConfigError, match="--run: rows"):
        write_table_report(
            params, runs={"no_such_row": tmp_path}, skips={i: "x" for i in ids}, **args
        )


# --- figures -------------------------------------------------------------------------------------


def test_fluctuation_is_a_sliding_standard_deviation():
    s = pd.Series([1.0, 3.0, 1.0, 3.0, 10.0])
    assert fluctuation(s, 2).tolist() == [0.0, 1.0, 1.0, 1.0, 3.5]


def test_figure_commands_write_pngs(synth_splits, dets, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(
        {"step": range(5), "loss": [5, 4, float("inf"), 3, 2], "grad_norm": [1, 2, 3, 2, 1]}
    ).to_csv(run / "metrics.csv", index=False)
    outs = {name: tmp_path / f"{name}.png" for name in ("fig1", "pr", "grid")}
    assert (
        main(
            [
                "report",
                "figure1",
                "--run",
                f"a (paper 67.6)={run}",
                "--run",
                f"b={run}",
                "--note",
                "smoke",
                "--out",
                str(outs["fig1"]),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                "pr-curves",
                "--gt",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--out",
                str(outs["pr"]),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                "detections",
                "--gt",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--num-images",
                "4",
                "--note",
                "smoke",
                "--out",
                str(outs["grid"]),
            ]
        )
        == 0
    )
    for path in outs.values():
        assert path.read_bytes().startswith(PNG)


def _texts(fig) -> str:
    """Every text of a figure (title, note, legend), with line breaks as spaces."""
    texts = list(fig.texts) + [t for leg in fig.legends for t in (leg.get_title(), *leg.texts)]
    return " ".join(" ".join(t.get_text().split()) for t in texts)


def _steps_run(tmp_path: Path, steps: int = 3) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(
        {
            "step": range(steps),
            "loss": np.linspace(5, 2, steps),
            "grad_norm": np.linspace(1, 2, steps),
        }
    ).to_csv(run / "metrics.csv", index=False)
    return run


def test_every_figure_prints_the_scales_note(synth_splits, dets, tmp_path):
    import matplotlib.pyplot as plt

    run = _steps_run(tmp_path)
    curve = tmp_path / "curve.csv"
    pd.DataFrame(
        {"step": [1, 2], "map": [0.1, 0.2], "loss": [3.0, 2.0], "checkpoint": ["a", "b"]}
    ).to_csv(curve, index=False)
    figures = {
        "figure1": draw_figure1({"a": run}, note=SMOKE_NOTE)[0],
        "pr": draw_pr_curves(synth_splits["test"], dets, "t/r", note=SMOKE_NOTE)[0],
        "grid": draw_detection_grid(
            synth_splits["test"], dets, title="t/r", num_images=2, note=SMOKE_NOTE
        )[0],
        "curves": draw_learning_curves({"a": curve}, "curves", note=SMOKE_NOTE),
    }
    for name, fig in figures.items():
        assert SMOKE_NOTE in _texts(fig), name
        plt.close(fig)
    fig, _ = draw_figure1({"a": run}, title="plain")  # no note given, none printed
    assert _texts(fig) == "plain"
    plt.close(fig)


def test_step_axes_are_labelled_with_whole_steps(tmp_path):
    import matplotlib.pyplot as plt

    fig, _ = draw_figure1({"a": _steps_run(tmp_path, steps=2)})  # steps 0 and 1
    fig.canvas.draw()
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert labels and all(label.lstrip("\N{MINUS SIGN}-").isdigit() for label in labels), labels
    plt.close(fig)


def test_detection_grid_legend_says_what_the_boxes_are(synth_splits, dets):
    import matplotlib.pyplot as plt

    fig, n = draw_detection_grid(synth_splits["test"], dets, num_images=2, min_score=0.5)
    [legend] = fig.legends
    entries = [t.get_text() for t in legend.texts]
    # the ground truth, then every class with a detection of score >= 0.5 in the two images
    ds = load_annotations(synth_splits["test"])
    first = {img["id"] for img in sorted(ds["images"], key=lambda i: i["id"])[:2]}
    names = {c["id"]: c["name"] for c in ds["categories"]}
    shown = {
        d["category_id"]
        for d in json.loads(dets.read_text())
        if d["image_id"] in first and d["score"] >= 0.5
    }
    assert n == 2 and entries == ["ground truth"] + [names[c] for c in sorted(shown)]
    title = legend.get_title().get_text()
    assert "score >= 0.5" in title and "ground truth (white)" in title
    assert legend.legend_handles[0].get_edgecolor()[:3] == (1.0, 1.0, 1.0)
    plt.close(fig)


@pytest.mark.parametrize("scale", ["default", "proof"])
def test_html_report_landing_page_states_the_scale(tmp_path, monkeypatch, scale):
    """workflow/report/workflow.rst rendered as `snakemake --report` renders it: Jinja with the
    workflow's config, then docutils."""
    import shutil

    from docutils.core import publish_parts
    from jinja2 import Environment
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    for name in ("workflow", "config", "params", "benchmarks"):  # as tests/test_workflow.py
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    monkeypatch.chdir(tmp_path)
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            snakefile=tmp_path / "Snakefile",
            workdir=tmp_path,
            config_settings=ConfigSettings(config={"scale": scale}),
            resource_settings=ResourceSettings(cores=1),
        )._workflow

        class Snakemake:
            config = wf.config

        rst = Path(str(wf.report_text.get_path_or_uri(secret_free=True))).read_text()
    html = publish_parts(Environment().from_string(rst).render(snakemake=Snakemake), writer="html")[
        "html_body"
    ]
    description = yaml.safe_load((ROOT / f"config/scales/{scale}.yaml").read_text())["description"]
    assert "admonition" in html and " ".join(description.split()) in " ".join(html.split())


def test_figure1_names_a_run_without_metrics(tmp_path, capsys):
    assert (
        main(["report", "figure1", "--run", f"x={tmp_path}", "--out", str(tmp_path / "f.png")]) == 2
    )
    assert "metrics.csv" in capsys.readouterr().err


# --- evaluation-server files --------------------------------------------------------------------


def test_voc_submission_writes_one_devkit_file_per_class(synth_splits, dets, tmp_path):
    out = tmp_path / "voc.tar.gz"
    n = voc_submission(synth_splits["test"], dets, out, comp="comp3")
    ds = load_annotations(synth_splits["test"])
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert names == [
            f"results/VOC2012/Main/comp3_det_test_{c['name']}.txt" for c in ds["categories"]
        ]
        lines = [
            line for name in names for line in tf.extractfile(name).read().decode().splitlines()
        ]
    assert len(lines) == n == len(json.loads(dets.read_text()))
    first = json.loads(dets.read_text())[0]
    stem = Path(next(i["file_name"] for i in ds["images"] if i["id"] == first["image_id"])).stem
    x, y, w, h = first["bbox"]  # VOC corners are 1-based and inclusive
    assert f"{stem} {first['score']:.6f} {x + 1:.1f} {y + 1:.1f} {x + w:.1f} {y + h:.1f}" in lines


def test_coco_submission_zip_and_its_checks(synth_splits, dets, tmp_path):
    out = tmp_path / "detections_test-dev2017_mine_results.zip"
    assert (
        main(
            [
                "report",
                "coco-submission",
                "--data",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["detections_test-dev2017_mine_results.json"]
        assert json.loads(zf.read(zf.namelist()[0])) == json.loads(dets.read_text())
    assert (
        main(
            [
                "report",
                "coco-submission",
                "--data",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--out",
                str(tmp_path / "results.zip"),
            ]
        )
        == 2
    )
    bad = tmp_path / "bad.json"
    write_json(bad, [{"image_id": 10**6, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])
    with pytest.raises(DataError, match="does not have"):
        voc_submission(synth_splits["test"], bad, tmp_path / "x.tar.gz")


def test_test_lists_have_images_and_no_labels(synth_splits, tmp_path):
    n = voc_test_list(synth_splits["voc_dir"], "test", tmp_path / "voc.json")
    ds = load_annotations(tmp_path / "voc.json")
    labelled = load_annotations(synth_splits["test"])
    assert n == len(labelled["images"]) and ds["annotations"] == []
    assert [(i["file_name"], i["width"], i["height"]) for i in ds["images"]] == [
        (i["file_name"], i["width"], i["height"]) for i in labelled["images"]
    ]
    assert ds["categories"] == [{"id": c["id"], "name": c["name"]} for c in labelled["categories"]]
    info = {
        "images": [
            {
                "id": 7,
                "file_name": labelled["images"][0]["file_name"],
                "width": labelled["images"][0]["width"],
                "height": labelled["images"][0]["height"],
                "license": 1,
            }
        ],
        "categories": [{"id": 3, "name": "thing", "supercategory": "x"}],
    }
    write_json(tmp_path / "info.json", info)
    assert (
        coco_test_list(
            tmp_path / "info.json", labelled["info"]["image_dir"], tmp_path / "coco.json"
        )
        == 1
    )
    assert load_annotations(tmp_path / "coco.json")["images"][0]["id"] == 7
    assert main(["data", "test-list", "coco", "--images", "x", "--out", "y"]) == 2


# --- run configs --------------------------------------------------------------------------------


def test_run_config_is_validated_before_it_is_written(tmp_path):
    cfg = {"model": {"name": "dsod300"}, "data": {"train": "t.json"}, "train": {"lr": 0.1}}
    write_run_config(json.dumps(cfg), tmp_path / "run.yaml")
    written = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert written["train"]["lr"] == 0.1 and written["train"]["batch_size"] == 32  # defaults
    with pytest.raises(ConfigError, match=r"train.lr"):
        write_run_config(json.dumps({"train": {"lr": -1}}), tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()


def test_the_report_commands_parse_repeated_pairs():
    import argparse

    from scratchdet.cli.report import cmd_table, register

    parser = argparse.ArgumentParser(prog="scratchdet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "report",
            "table",
            "--params",
            "p",
            "--scale",
            "s",
            "--scale-name",
            "default",
            "--run",
            "r=x/y",
            "--skip",
            "a=b c",
            "--out-md",
            "m",
            "--out-csv",
            "c",
        ]
    )
    assert args.func is cmd_table and args.skip == ["a=b c"] and args.run == ["r=x/y"]
