"""The preflight of a run of the workflow: what it needs from a person, which ImageNet weight files
its download jobs fetch, and how many GPU-hours its training jobs should take.

The workflow prints it when it plans (so `snakemake -n --config scale=paper` shows it before
anything runs) at any scale that is not a smoke test or that needs something. The estimate comes
only from committed speed measurements (`scratchdet benchmark train` result files in
`benchmarks/results/`): with no GPU measurement it says so and what to run, never a guess.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from scratchdet.benchmark.fps import RESULTS_DIR
from scratchdet.paper_tables import EVALS, Row
from scratchdet.workflow.datasets import SPLIT_ARCHIVES
from scratchdet.workflow.plan import Plan

__all__ = [
    "PIPELINE_MODE",
    "Estimate",
    "estimate_row",
    "gpu_train_benchmark",
    "needed_archives",
    "pipeline_mode",
    "preflight_report",
    "restorable_runs",
    "restore_line",
    "train_benchmarks",
]

PIPELINE_MODE = {"cpu": "cpu_augment", "device": "device_augment"}
"""A run config's `data.pipeline` (where augmentation and matching run) -> the training
benchmark's mode that measures the same input path. `auto` is the device pipeline on a GPU, and
the benchmarks this module reads are GPU ones (`input.pipeline.resolve_pipeline`)."""


def pipeline_mode(run_config: dict[str, Any]) -> str:
    """The benchmark mode of a run config's input path, on a GPU. `data.augment` (`ssd`/`none`)
    says which augmentation, not where it runs: `none` only decodes and resizes, which the same
    pipeline's measurement bounds from above."""
    pipeline = run_config.get("data", {}).get("pipeline", "auto")
    return PIPELINE_MODE["device" if pipeline == "auto" else pipeline]


def needed_archives(plan: Plan) -> list[str]:
    """The archives of config/downloads.yaml that the running rows need (none for a synthetic
    dataset), in the order of the downloads file."""
    if plan.scale["dataset"] != "official":
        return []
    splits = set()
    for key in plan.run_keys:
        row = plan.rows[key]
        local_gt, _, server = EVALS[row.eval]
        splits.update(s for s in (row.train_data, local_gt, server) if s)
    archives = {a for split in splits for a in SPLIT_ARCHIVES[split]}
    return [a for a in plan.config["downloads"] if a in archives]


def train_benchmarks(folder: str | Path = RESULTS_DIR) -> list[tuple[Path, dict[str, Any]]]:
    """Every `scratchdet benchmark train` result file in `folder`, with its path."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("benchmark") == "train":
            found.append((path, data))
    return found


def gpu_train_benchmark(folder: str | Path = RESULTS_DIR) -> tuple[Path, dict[str, Any]] | None:
    """The newest training benchmark measured on a CUDA GPU, or None."""
    gpu = [(p, d) for p, d in train_benchmarks(folder) if d.get("device_type") == "cuda"]
    return max(gpu, key=lambda pd: pd[1].get("provenance", {}).get("created", "")) if gpu else None


@dataclasses.dataclass(frozen=True)
class Estimate:
    hours: float
    images_per_s: float
    basis: str
    """What the number rests on, when it is not an exact match (another batch size, ...)."""


def estimate_row(row: Row, run_config: dict[str, Any], bench: dict[str, Any]) -> Estimate | None:
    """GPU-hours of one row's training from a training benchmark: steps x batch / images per
    second of the benchmarked model the row is built from, in the mode that matches its input
    pipeline and at the batch closest to its micro-batch. None if its model was not measured."""
    train = run_config["train"]
    name = row.model.get("name")
    entries = [e for e in bench.get("results", []) if e.get("model") == name]
    if not entries:
        return None
    micro = train.get("micro_batch") or train["batch_size"]
    entry = min(entries, key=lambda e: (abs(e["batch_size"] - micro), -e["batch_size"]))
    basis = []
    if set(row.model) - {"name"}:
        basis.append(
            f"measured on {name}, the row changes {', '.join(sorted(set(row.model) - {'name'}))}"
        )
    if entry["batch_size"] != micro:
        basis.append(f"measured at batch {entry['batch_size']}, the row's micro-batch is {micro}")
    mode = pipeline_mode(run_config)
    if "images_per_s" not in entry["modes"].get(mode, {}):
        if "images_per_s" not in entry["modes"].get("synthetic", {}):
            return None  # the mode failed (e.g. out of memory): no number to build on
        mode = "synthetic"
        basis.append("input pipeline not measured (synthetic mode: the step alone)")
    ips = float(entry["modes"][mode]["images_per_s"]["median"])
    hours = train["max_steps"] * train["batch_size"] / ips / 3600.0
    return Estimate(hours, ips, "; ".join(basis))


def _gpu_hours(plan: Plan, bench_dir: Path) -> list[str]:
    keys = list(plan.run_keys)
    found = gpu_train_benchmark(bench_dir)
    if found is None:
        others = (
            ", ".join(f"{p.name} ({d.get('device', '?')})" for p, d in train_benchmarks(bench_dir))
            or "none"
        )
        models = sorted({plan.rows[k].model.get("name", "?") for k in keys})
        micro = sorted(
            {
                plan.row_config(k)["train"].get("micro_batch")
                or plan.row_config(k)["train"]["batch_size"]
                for k in keys
            }
        )
        why = (
            "GPU-hours: no estimate. No GPU training benchmark is committed in "
            f"{bench_dir}/ (training benchmarks there: {others}); CPU numbers say nothing "
            "about a GPU. On the GPU the runs will use, run"
        )
        command = (
            f"    scratchdet benchmark train --device cuda --models {' '.join(models)} "
            f"--batch-sizes {' '.join(map(str, micro))} "
            f"--modes cpu_augment device_augment --out {bench_dir}/train_<gpu>.json"
        )
        return [
            why,
            command,
            "  and commit the file: this preflight then estimates every row from it.",
        ]
    path, bench = found
    head = (
        f"GPU-hours of training, from {path} (measured on {bench.get('device', '?')}, "
        f"{bench.get('provenance', {}).get('created', '?')}): steps x batch / images per "
        "second of the row's model (detection and evaluation not included):"
    )
    lines = [head]
    total, missing = 0.0, []
    width = max(len(k) for k in keys)
    for key in keys:
        cfg = plan.row_config(key)
        est = estimate_row(plan.rows[key], cfg, bench)
        if est is None:
            missing.append(key)
            lines.append(
                f"  {key:<{width}}  {'-':>8}        (no benchmark of "
                f"{plan.rows[key].model.get('name')})"
            )
            continue
        total += est.hours
        lines.append(
            f"  {key:<{width}}  {est.hours:8.1f} GPU-h  "
            f"({cfg['train']['max_steps']} steps x {cfg['train']['batch_size']} images "
            f"at {est.images_per_s:.1f}/s{'; ' + est.basis if est.basis else ''})"
        )
    lines.append(
        f"  total: {total:.0f} GPU-hours for {len(keys) - len(missing)} of {len(keys)} "
        "training runs"
        + (
            f"; {len(missing)} without an estimate (benchmark their models to include them)"
            if missing
            else ""
        )
    )
    return lines


def _data_lines(plan: Plan) -> list[str]:
    """The data volume (config/downloads.yaml's size_mb), the datasets used where they already
    are (config existing_data) and where the downloads run."""
    archives = needed_archives(plan)
    if not archives:
        return []
    existing = plan.config.get("existing_data") or {}
    fetched = [a for a in archives if a not in existing]
    sizes = [plan.config["downloads"][a].get("size_mb") for a in fetched]
    known = sum(s for s in sizes if s)
    volume = (
        f"about {known / 1000:.0f} GB of archives"
        if all(sizes)
        else f"at least {known / 1000:.0f} GB of archives (sizes not recorded for "
        f"{', '.join(a for a, s in zip(fetched, sizes) if not s)})"
    )
    lines = [
        (
            f"Data: {len(fetched)} of {len(archives)} archives to download into "
            f"{Path(plan.data, 'downloads')}, {volume}, and about as much again extracted "
            f"(so about {2 * known / 1000:.0f} GB free in {plan.data}/ until the archives "
            "are deleted; sizes from config/downloads.yaml)."
        )
    ]
    if existing:
        lines.append(
            "  Used where they are (config existing_data, linked, not copied): "
            + ", ".join(f"{a} -> {existing[a]}" for a in archives if a in existing)
        )
    else:
        lines.append(
            "  A dataset the lab already has is used where it is, without copying: "
            "config/config.yaml `existing_data` (archive -> the folder holding its "
            "VOCdevkit/ or COCO folders)."
        )
    lines.append(
        "  Downloads run as local jobs (Snakemake localrules: download, "
        "imagenet_weights) on the machine running Snakemake, under the Slurm profile the "
        "login node: compute nodes often have no internet."
    )
    return lines


def restorable_runs(plan: Plan) -> dict[str, list[str]]:
    """The runs this plan would train whose folder is missing but whose `<digest>.dvc` file is
    there (committed by `scratchdet artifacts push`), by the DVC remote that holds them ("" for
    the repository's default remote, `shipped`)."""
    from scratchdet.yaml_io import load_yaml

    found: dict[str, list[str]] = {}
    for key in plan.run_keys:
        root = plan.paths(key).root
        dvc_file = root.with_name(root.name + ".dvc")
        if root.exists() or not dvc_file.is_file():
            continue
        outs = (load_yaml(dvc_file) or {}).get("outs") or [{}]
        found.setdefault(str(outs[0].get("remote") or ""), []).append(key)
    return found


def restore_line(plan: Plan) -> str:
    """One line when the plan would train runs a DVC remote holds: restore them instead."""
    found = restorable_runs(plan)
    if not found:
        return ""
    n = sum(len(v) for v in found.values())
    remotes = " and ".join(f"'{r or 'shipped'}'" for r in sorted(found))
    command = (
        "dvc pull" if set(found) == {""} else f"scratchdet artifacts pull --results {plan.results}"
    )
    return (
        f"Restore first: {n} of the {len(plan.run_keys)} runs this plan trains are in the "
        f"DVC remote {remotes} (their .dvc files are here, their folders not): `{command}` "
        "restores them, and then only what they lack runs (at the default scale: the "
        "reports).\n"
    )


def preflight_report(plan: Plan, bench_dir: str | Path = RESULTS_DIR) -> str:
    """The preflight text: the restore line when a DVC remote holds runs the plan would train
    (`restore_line`), then what the run needs ("" at a smoke scale that needs nothing from a
    person and has nothing to restore)."""
    restore = restore_line(plan)
    manual = [a for a in needed_archives(plan) if "manual" in plan.config["downloads"][a]]
    weights = plan.imagenet_weights
    if plan.scale["smoke"] and not manual and not weights:
        return restore
    skipped = len(plan.skipped)
    head = (
        f"Preflight, {plan.scale_name} scale: {len(plan.run_keys)} training runs "
        f"({skipped} row{'s' if skipped != 1 else ''} of the tables cannot run at this "
        "scale; the reports say why)."
    )
    lines = [head]
    if manual:
        lines.append("Needs a person before the jobs that use it can run:")
        for archive in manual:
            text = " ".join(plan.config["downloads"][archive]["manual"].split())
            lines.append(f"  {Path(plan.data, 'downloads', archive)}: {text}")
    else:
        lines.append("Needs a person: nothing (every archive is fetched and checksummed by a job).")
    lines.extend(_data_lines(plan))
    if weights:
        lines.append(
            f"ImageNet weights: {len(weights)} file(s) fetched by imagenet_weights jobs "
            f"into {plan.torch_home} (TORCH_HOME of the training jobs), verified: "
            + ", ".join(sorted(weights))
        )
    if not plan.scale["smoke"]:
        lines.extend(_gpu_hours(plan, Path(bench_dir)))
    return restore + "\n".join(lines) + "\n"
