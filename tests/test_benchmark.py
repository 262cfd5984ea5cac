"""The benchmark commands at a tiny size on CPU: they run and write valid result files.

No timing is asserted (speeds go in benchmarks/results and benchmarks/README.md); what is checked
is the record: keys, finite positive numbers, medians inside their range, one raw value per
repeat, and the correctness checks the benchmarks make along the way.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from scratchdet.benchmark.common import parse_model, summary
from scratchdet.benchmark.table import END, START, render, write_into
from scratchdet.cli import main
from scratchdet.cli.benchmark import register
from scratchdet.errors import ConfigError

TINY = "{family: dsod, stem_channels: 8, bottleneck: 8, growth: 4}"
TOP_KEYS = {
    "schema",
    "benchmark",
    "device",
    "device_type",
    "command",
    "config",
    "load_average",
    "provenance",
    "results",
}


def check_summary(s: dict, n: int) -> None:
    assert set(s) >= {"median", "q1", "q3", "min", "max", "n", "raw"}
    assert s["n"] == n == len(s["raw"])
    values = [s[k] for k in ("median", "q1", "q3", "min", "max")] + s["raw"]
    assert all(math.isfinite(v) and v > 0 for v in values), s
    assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert s["min"] == min(s["raw"]) and s["max"] == max(s["raw"])


def check_record(path, benchmark: str) -> dict:
    data = json.loads(path.read_text())
    assert set(data) >= TOP_KEYS and data["benchmark"] == benchmark
    assert data["device_type"] == "cpu" and data["device"].startswith("CPU")
    assert data["command"].startswith(f"scratchdet benchmark {benchmark} ")
    assert data["provenance"]["packages"]["torch"] and data["provenance"]["code"]
    assert data["results"]
    return data


def test_summary_matches_numpy_quantiles():
    values = [5.0, 1.0, 4.0, 2.5, 9.0, 3.0]
    s = summary(values)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    assert (s["q1"], s["median"], s["q3"]) == pytest.approx((q1, med, q3))
    assert s["raw"] == values  # kept in measurement order
    with pytest.raises(ValueError):
        summary([])


def test_parse_model_accepts_names_and_inline_mappings():
    assert parse_model("dsod300") == ("dsod300", "dsod300")
    label, cfg = parse_model(TINY)
    assert label == TINY and cfg == {
        "family": "dsod",
        "stem_channels": 8,
        "bottleneck": 8,
        "growth": 4,
    }
    with pytest.raises(ConfigError):
        parse_model("{family: [")


def test_train_benchmark_tiny(tmp_path, synth_splits):
    out = tmp_path / "train.json"
    rc = main(
        [
            "benchmark",
            "train",
            "--models",
            TINY,
            "--batch-sizes",
            "2",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "2",
            "--workers",
            "0",
            "--reference",
            "backbone",
            "--data",
            str(synth_splits["trainval"]),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    data = check_record(out, "train")
    (row,) = data["results"]
    assert row["batch_size"] == 2 and row["params"] > 0 and row["priors"] > 0
    assert set(row["modes"]) == {"synthetic", "device_augment", "cpu_augment", "torchvision"}
    for mode, entry in row["modes"].items():
        assert "error" not in entry, (mode, entry)
        check_summary(entry["images_per_s"], 2)
        check_summary(entry["step_ms"], 2)
        assert math.isfinite(entry["last_loss"]) and entry["last_loss"] > 0
        # images/s and step time describe the same measurements
        for rate, ms in zip(entry["images_per_s"]["raw"], entry["step_ms"]["raw"]):
            assert rate * ms / 1000 == pytest.approx(2, rel=1e-4)
    assert set(row["pipeline_cost"]) == {"device_augment", "cpu_augment"}
    assert all(math.isfinite(c) and c < 1 for c in row["pipeline_cost"].values())
    synth = row["modes"]["synthetic"]["images_per_s"]["median"]
    tv = row["modes"]["torchvision"]["images_per_s"]["median"]
    assert row["speedup_vs_torchvision"] == pytest.approx(synth / tv, rel=1e-2)


def test_infer_benchmark_tiny(tmp_path):
    out = tmp_path / "infer_cpu.json"
    assert (
        main(
            [
                "benchmark",
                "infer",
                "--models",
                TINY,
                "--batch-sizes",
                "1",
                "2",
                "--iters",
                "2",
                "--warmup",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = check_record(out, "infer")
    assert [(r["model"], r["batch_size"]) for r in data["results"]] == [(TINY, 1), (TINY, 2)]
    for row in data["results"]:
        for key in ("latency_ms", "forward_ms", "postprocess_ms", "process_cpu_ms", "fps"):
            check_summary(row[key], 2)
        for total, f, p in zip(
            row["latency_ms"]["raw"], row["forward_ms"]["raw"], row["postprocess_ms"]["raw"]
        ):
            assert total == pytest.approx(f + p, abs=1e-5)
        assert 0 < row["detections_per_image"] <= 200
    assert "paper_fps" not in data["results"][0]  # only the papers' models have one


def test_eval_benchmark_tiny_agrees_with_the_reference(tmp_path):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "benchmark",
                "eval",
                "--scale",
                "0.004",
                "--coco-images",
                "10",
                "--repeats",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = check_record(out, "eval")
    voc, coco = data["results"]
    assert voc["case"] == "voc" and voc["images"] == 20 and voc["detections"] == 20 * 200
    for key in ("end_to_end", "read_detections", "match_and_ap"):
        check_summary(voc[key]["wall_s"], 2)
        check_summary(voc[key]["cpu_s"], 2)
    check_summary(voc["naive"]["wall_s"], 1)
    assert max(voc["max_abs_diff_vs_reference"].values()) <= 1e-9
    assert 0 < voc["map"] <= 1
    assert coco["case"] == "coco" and coco["identical_across_backends"] is True
    assert coco["backends"] and 0 < coco["stats"]["AP"] <= 1
    for timing in coco["backends"].values():
        check_summary(timing["wall_s"], 2)


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["benchmark", "eval", "--scale", "2", "--out", str(tmp_path / "x.json")]) == 2
    assert "--scale" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                "train",
                "--models",
                "no_such_model",
                "--batch-sizes",
                "1",
                "--steps",
                "1",
                "--modes",
                "synthetic",
                "--out",
                str(tmp_path / "y.json"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


def test_table_renders_result_files_into_the_readme(tmp_path):
    results = tmp_path / "results"
    assert (
        main(
            [
                "benchmark",
                "eval",
                "--scale",
                "0.002",
                "--coco-images",
                "0",
                "--repeats",
                "1",
                "--out",
                str(results / "eval_cpu.json"),
            ]
        )
        == 0
    )
    text = render(results)
    assert "### eval: `eval_cpu.json`" in text and "scratchdet benchmark eval" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold numbers\n{END}\noutro\n")
    write_into(readme, results)
    new = readme.read_text()
    assert new.startswith("intro\n") and new.endswith("outro\n") and "old numbers" not in new
    assert text in new


def test_register_adds_the_subcommands_without_importing_torch():
    code = (
        "import argparse, sys\n"
        "from scratchdet.cli.benchmark import register\n"
        "p = argparse.ArgumentParser(); register(p.add_subparsers(dest='command'))\n"
        "a = p.parse_args(['benchmark', 'train', '--batch-sizes', '2'])\n"
        "assert a.batch_sizes == [2] and callable(a.func)\n"
        "assert 'torch' not in sys.modules, 'parser construction imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    for name in ("train", "infer", "eval", "table"):
        assert callable(p.parse_args(["benchmark", name]).func)


def test_each_benchmark_takes_keywords_whose_defaults_are_the_cli_defaults():
    """The library is called from Python without argparse; a bare call and a bare command
    measure the same thing (the defaults are stated twice: the parser must not import torch)."""
    import inspect

    from scratchdet.benchmark import eval as eval_bench
    from scratchdet.benchmark import (
        eval_startup,
        infer,
        matching,
        pipeline,
        postprocess,
        train,
        train_step,
    )

    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    for name, run in (
        ("train", train.run_train),
        ("infer", infer.run_infer),
        ("eval", eval_bench.run_eval),
        ("pipeline", pipeline.run_pipeline),
        ("matching", matching.run_matching),
        ("postprocess", postprocess.run_postprocess),
        ("eval-startup", eval_startup.run_eval_startup),
        ("train-step", train_step.run_train_step),
    ):
        parsed = vars(p.parse_args(["benchmark", name]))
        params = inspect.signature(run).parameters
        assert all(q.kind is q.KEYWORD_ONLY for q in params.values()), name
        assert set(params) - set(parsed) == {"argv"}, name
        for key in set(params) - {"argv"}:
            default = params[key].default
            assert (list(default) if isinstance(default, tuple) else default) == parsed[key], (
                name,
                key,
            )


def test_a_benchmark_called_from_python_records_its_keywords(tmp_path):
    from scratchdet.benchmark.eval import run_eval

    out = tmp_path / "eval.json"
    data = run_eval(
        scale=0.004,
        coco_images=0,
        repeats=1,
        out=out,
        argv=["benchmark", "eval", "--scale", "0.004", "--coco-images", "0"],
    )
    assert data == check_record(out, "eval")
    assert data["config"] == {
        "scale": 0.004,
        "metric": "voc07",
        "repeats": 1,
        "naive_repeats": 1,
        "coco_images": 0,
        "seed": 0,
        "workdir": None,
        "out": str(out),
    }
