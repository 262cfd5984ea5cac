"""Component benchmarks against a reference (issue 21): the result-file schema, its rendering into
benchmarks/README.md, and eval-startup / train-step at a tiny size. No timing is asserted: only
the record (keys, positive numbers, ratios that are the ratios of the numbers beside them) and
the checks the benchmarks make along the way (torch not imported by `scratchdet eval`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from scratchdet.benchmark.table import END, START, render, write_into
from scratchdet.cli import main

TINY = "{family: dsod, stem_channels: 8, bottleneck: 8, growth: 4}"


def component_file(folder, name: str, device: str = "cpu") -> dict:
    """A result file in the schema other benchmarks (pipeline, matching, ...) write."""
    data = {
        "schema": 1,
        "benchmark": name,
        "device": "CPU (x86_64, 2 cores)",
        "device_type": device,
        "command": f"scratchdet benchmark {name} --repeats 3",
        "config": {},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.5, 1.0, 1.0]},
        "provenance": {"created": "2026-12-06T20:00:00+00:00", "packages": {"torch": "2.x"}},
        "results": [],
        "cases": [
            {
                "case": "batch 32, 20 boxes",
                "ours": {"name": "match (batched)", "min_ms": 1.5, "median_ms": 2.0},
                "reference": {"name": "torchvision SSDMatcher", "min_ms": 6.0, "median_ms": 8.0},
                "ratio_min": 0.25,
                "ratio_median": 0.25,
                "boxes": 20,
            }
        ],
    }
    (folder / f"{name}_{device}.json").write_text(json.dumps(data))
    return data


def check_cases(data: dict, benchmark: str) -> list[dict]:
    assert data["benchmark"] == benchmark and data["command"].startswith(
        f"scratchdet benchmark {benchmark} "
    )
    assert data["provenance"]["packages"]["torch"]
    for c in data["cases"]:
        for side in ("ours", "reference"):
            s = c[side]
            assert s["name"] and 0 < s["min_ms"] <= s["median_ms"], c
        assert c["ratio_min"] == pytest.approx(
            c["ours"]["min_ms"] / c["reference"]["min_ms"], rel=1e-3
        )
        assert c["ratio_median"] == pytest.approx(
            c["ours"]["median_ms"] / c["reference"]["median_ms"], rel=1e-3
        )
    return data["cases"]


def test_every_component_file_renders_into_the_readme(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    component_file(results, "matching")
    component_file(results, "pipeline")
    component_file(results, "some-future-benchmark")
    (results / "notes.json").write_text(json.dumps({"not": "a result"}))
    text = render(results)
    # components in step order (pipeline, matching, ...), unknown ones after them
    order = [text.index(f"### {n}: ") for n in ("pipeline", "matching", "some-future-benchmark")]
    assert order == sorted(order)
    assert (
        "| batch 32, 20 boxes | match (batched) | 1.50 | 2.00 | torchvision SSDMatcher | "
        "6.00 | 8.00 | 0.25 | **0.25** |"
    ) in text
    assert "- batch 32, 20 boxes: boxes 20" in text  # a case's extra fields under the table
    assert "Command: `scratchdet benchmark matching --repeats 3`" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    write_into(readme, results)
    assert text in readme.read_text() and "old" not in readme.read_text()


def test_eval_startup_tiny_times_a_fresh_eval_that_imports_no_torch(tmp_path):
    out = tmp_path / "eval-startup_cpu.json"
    assert (
        main(
            [
                "benchmark",
                "eval-startup",
                "--images",
                "4",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    cases = check_cases(data, "eval-startup")
    assert [c["case"].split(":")[0] for c in cases] == ["start-up", "end to end", "end to end"]
    assert all(c["torch_imported"] is False for c in cases)
    assert all(math.isfinite(c["map"]) for c in cases)  # both sides agreed on it
    assert "### eval-startup: `eval-startup_cpu.json`" in render(tmp_path)


def test_train_step_tiny_eager_against_torchvision(tmp_path):
    out = tmp_path / "train-step_cpu.json"
    assert (
        main(
            [
                "benchmark",
                "train-step",
                "--models",
                TINY,
                "--batch-size",
                "2",
                "--steps",
                "1",
                "--repeats",
                "2",
                "--warmup",
                "1",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    [case] = check_cases(data, "train-step")
    assert case["case"] == f"{TINY}, batch 2: eager step"
    assert case["reference"]["name"].startswith("torchvision SSD")
    assert case["first_step_s"] > 0


def test_the_new_subcommands_parse_without_torch():
    code = (
        "import argparse, sys\n"
        "from scratchdet.cli.benchmark import register\n"
        "p = argparse.ArgumentParser(); register(p.add_subparsers(dest='command'))\n"
        "a = p.parse_args(['benchmark', 'train-step', '--batch-size', '8'])\n"
        "assert a.batch_size == 8 and not a.compile and callable(a.func)\n"
        "a = p.parse_args(['benchmark', 'eval-startup', '--images', '9'])\n"
        "assert a.images == 9 and callable(a.func)\n"
        "assert 'torch' not in sys.modules, 'parser construction imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
