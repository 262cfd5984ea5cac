"""scratchdet.workflow.preflight: what a paper run needs from a person, and its GPU-hours from
committed speed measurements (a fixture GPU benchmark here; none is committed yet)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scratchdet.cli import main
from scratchdet.config import config_from_dict
from scratchdet.workflow.preflight import (
    estimate_row,
    gpu_train_benchmark,
    needed_archives,
    preflight_report,
)
from tests.test_workflow_plan import load

ROOT = Path(__file__).resolve().parent.parent


def _timing(images_per_s: float) -> dict:
    return {
        "images_per_s": {
            "median": images_per_s,
            "q1": images_per_s,
            "q3": images_per_s,
            "min": images_per_s,
            "max": images_per_s,
            "n": 1,
            "raw": [images_per_s],
        }
    }


def gpu_benchmark(
    folder: Path, created: str = "2026-12-01T00:00:00+00:00", device: str = "NVIDIA H200"
) -> Path:
    """A `scratchdet benchmark train` result as a GPU run writes it (only the fields read)."""
    results = [
        {
            "model": "scratchdet300",
            "batch_size": 32,
            "modes": {
                "synthetic": _timing(500.0),
                "cpu_augment": _timing(400.0),
                "device_augment": _timing(480.0),
            },
        },
        {
            "model": "scratchdet300",
            "batch_size": 128,
            "modes": {
                "synthetic": _timing(520.0),
                "cpu_augment": _timing(410.0),
                "device_augment": _timing(500.0),
            },
        },
        {
            "model": "dsod300",
            "batch_size": 32,
            "modes": {
                "synthetic": _timing(300.0),
                "cpu_augment": _timing(250.0),
                "device_augment": _timing(280.0),
            },
        },
    ]
    path = folder / "train_h200.json"
    path.write_text(
        json.dumps(
            {
                "schema": 1,
                "benchmark": "train",
                "device": device,
                "device_type": "cuda",
                "results": results,
                "provenance": {"created": created},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def paper():
    return load(scale="paper")


def test_the_smoke_scale_needs_nothing_and_says_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results/ here: nothing to restore either
    plan = load()
    assert needed_archives(plan) == []
    assert preflight_report(plan, ROOT / "benchmarks/results") == ""


def test_runs_the_shipped_remote_holds_are_named_in_one_line(monkeypatch):
    """In the checkout the default scale's .dvc files are committed and its run folders absent:
    the plan would train all 50 rows, so the preflight's one line says to restore them."""
    monkeypatch.chdir(ROOT)
    plan = load()
    if not any(plan.paths(k).root.with_suffix(".dvc").exists() for k in plan.run_keys):
        pytest.skip("the committed .dvc files are not those of the current configs")
    if any(plan.paths(k).root.exists() for k in plan.run_keys):
        pytest.skip("results/default is restored in this checkout")
    text = preflight_report(plan, ROOT / "benchmarks/results")
    assert text.count("\n") == 1
    assert (
        text.startswith(
            "Restore first: 50 of the 50 runs this plan trains are in the DVC remote 'shipped'"
        )
        and "`dvc pull`" in text
    )


def test_a_paper_run_needs_every_archive_and_a_person_for_voc2012_test(paper):
    downloads = paper.config["downloads"]
    assert needed_archives(paper) == list(downloads)
    voc_only = load(scale="paper", tables=["scratchdet_table1"])
    assert needed_archives(voc_only) == [
        "VOCtrainval_06-Nov-2007.tar",
        "VOCtest_06-Nov-2007.tar",
        "VOCtrainval_11-May-2012.tar",
    ]
    text = preflight_report(voc_only, ROOT / "benchmarks/results")
    assert "Needs a person: nothing" in text and "VOC2012test" not in text
    assert "ImageNet weights: 2 file(s)" in text  # its pretrained rows


def test_without_a_gpu_benchmark_the_estimate_says_so_and_what_to_run(paper, tmp_path):
    shutil.copy(ROOT / "benchmarks/results/train_cpu.json", tmp_path)
    text = preflight_report(paper, tmp_path)
    assert "data/downloads/VOC2012test.tar: the VOC 2012 test images are only given" in text
    assert "GPU-hours: no estimate. No GPU training benchmark is committed" in text
    assert "train_cpu.json (CPU (x86_64, 2 cores))" in text
    command = next(line for line in text.splitlines() if "scratchdet benchmark train" in line)
    assert "--device cuda" in command and "scratchdet300" in command and "dsod300" in command
    assert "--batch-sizes 16 32" in command  # the paper recipes' micro-batches
    assert "GPU-h " not in text  # no number is made up


def test_the_estimate_reads_the_newest_gpu_benchmark(paper, tmp_path):
    shutil.copy(ROOT / "benchmarks/results/train_cpu.json", tmp_path)
    old = gpu_benchmark(tmp_path, created="2026-01-01T00:00:00+00:00", device="old GPU")
    old.rename(tmp_path / "train_old.json")
    gpu_benchmark(tmp_path)
    path, bench = gpu_train_benchmark(tmp_path)
    assert path.name == "train_h200.json" and bench["device"] == "NVIDIA H200"
    text = preflight_report(paper, tmp_path)
    assert "measured on NVIDIA H200" in text and "no estimate" not in text
    lines = {
        line.split()[0]: line
        for line in text.splitlines()
        if line.startswith("  ") and "/" in line.split()[0]
    }
    # ScratchDet300, VOC recipe: 100k steps x 128 images, micro-batch 32, data.pipeline auto:
    # the device pipeline on a GPU
    voc07 = lines["scratchdet_table3/scratchdet300_voc07"]
    assert f"{100000 * 128 / 480.0 / 3600:8.1f} GPU-h" in voc07
    assert "at 480.0/s" in voc07
    # DSOD300 (micro-batch 16): measured at batch 32 only, and the row says so
    dsod = lines["dsod_table4/dsod300"]
    assert f"{100000 * 128 / 280.0 / 3600:8.1f} GPU-h" in dsod
    assert "measured at batch 32, the row's micro-batch is 16" in dsod
    # a model the benchmark did not measure is listed, not guessed
    assert "(no benchmark of root_resnet18_ssd300)" in lines["scratchdet_table2/ds_1x7x7"]
    total = sum(float(line.split()[1]) for line in lines.values() if "GPU-h" in line)
    [summary] = [line for line in text.splitlines() if line.strip().startswith("total:")]
    assert abs(float(summary.split()[1]) - total) <= 0.1 * len(lines) + 1
    estimated = sum("GPU-h" in line for line in lines.values())
    assert f"for {estimated} of {len(paper.run_keys)} training runs" in summary


def test_estimate_row_matches_the_input_pipeline_and_notes_model_changes(paper, tmp_path):
    bench = json.loads(gpu_benchmark(tmp_path).read_text())
    row = paper.rows["scratchdet_table3/scratchdet300_voc07"]
    cfg = paper.row_config(row.key)
    assert "pipeline" not in cfg["data"]  # auto: the device pipeline on the GPU measured
    assert estimate_row(row, cfg, bench).images_per_s == 480.0
    for data, expected in (
        ({"pipeline": "cpu"}, 400.0),
        ({"pipeline": "device"}, 480.0),
        ({"pipeline": "auto", "augment": "ssd"}, 480.0),
        ({"pipeline": "cpu", "augment": "none"}, 400.0),
    ):
        changed_cfg = {**cfg, "data": {**cfg["data"], **data}}
        config_from_dict(changed_cfg)  # values the config schema accepts
        assert estimate_row(row, changed_cfg, bench).images_per_s == expected, data
    # a measured mode that failed (out of memory) falls back to the step alone, and says so
    failed = json.loads(json.dumps(bench))
    failed["results"][0]["modes"]["device_augment"] = {"error": "OutOfMemoryError: ..."}
    est = estimate_row(row, cfg, failed)
    assert est.images_per_s == 500.0 and "input pipeline not measured" in est.basis
    changed = paper.rows["dsod_table3/ds64-192-48-1"]  # dsod300 with stem: false, plain head
    est = estimate_row(changed, paper.row_config(changed.key), bench)
    assert "measured on dsod300, the row changes prediction, stem" in est.basis
    assert (
        estimate_row(
            paper.rows["dsod_table4/ssd300s_vgg16"],
            paper.row_config("dsod_table4/ssd300s_vgg16"),
            bench,
        )
        is None
    )


def test_the_estimate_reads_a_gpu_benchmark_as_the_train_benchmark_writes_it(paper, tmp_path):
    """The whole file `scratchdet benchmark train` writes today, not a hand-made excerpt: run at a
    tiny size on the CPU, then labelled as `--device cuda` labels it (the GPU's name, device_type
    cuda) and its model as the paper rows' scratchdet300."""
    tiny = "{family: dsod, stem_channels: 8, bottleneck: 8, growth: 4}"
    out = tmp_path / "run.json"
    assert (
        main(
            [
                "benchmark",
                "train",
                "--models",
                tiny,
                "--batch-sizes",
                "2",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--repeats",
                "1",
                "--workers",
                "0",
                "--synth-images",
                "4",
                "--modes",
                "synthetic",
                "device_augment",
                "cpu_augment",
                "torchvision",
                "--reference",
                "backbone",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    data.update(device="NVIDIA H100 80GB HBM3", device_type="cuda")
    data["config"]["device"] = "cuda"
    data["command"] = data["command"].replace("--models", "--device cuda --models")
    (row,) = data["results"]
    row["model"] = "scratchdet300"
    (tmp_path / "train_nvidia_h100_80gb_hbm3.json").write_text(json.dumps(data))
    out.unlink()
    text = preflight_report(paper, tmp_path)
    assert "measured on NVIDIA H100 80GB HBM3" in text and "no estimate" not in text
    device_ips = row["modes"]["device_augment"]["images_per_s"]["median"]
    [voc07] = [
        line
        for line in text.splitlines()
        if line.startswith("  scratchdet_table3/scratchdet300_voc07 ")
    ]
    assert f"{100000 * 128 / device_ips / 3600:8.1f} GPU-h" in voc07
    assert "measured at batch 2, the row's micro-batch is 32" in voc07
    assert "(no benchmark of dsod300)" in text


def test_the_preflight_states_the_data_volume_existing_data_and_local_downloads():
    paper = load(scale="paper")
    text = preflight_report(paper, ROOT / "benchmarks/results")
    sizes = sum(e["size_mb"] for e in paper.config["downloads"].values())
    assert 25_000 < sizes < 40_000  # the recorded sizes: about 30 GB for VOC + COCO
    assert (
        f"Data: 9 of 9 archives to download into data/downloads, about {sizes / 1000:.0f} GB"
        in text
    )
    assert "existing_data" in text and "localrules: download, imagenet_weights" in text
    lab = load(scale="paper", existing_data={"train2017.zip": "/datasets/coco"})
    text = preflight_report(lab, ROOT / "benchmarks/results")
    rest = sizes - paper.config["downloads"]["train2017.zip"]["size_mb"]
    assert (
        f"Data: 8 of 9 archives to download into data/downloads, about {rest / 1000:.0f} GB" in text
    )
    assert (
        "Used where they are (config existing_data, linked, not copied): train2017.zip -> "
        "/datasets/coco" in text
    )
