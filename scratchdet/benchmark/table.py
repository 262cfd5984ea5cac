"""Markdown tables of the latest result files, for benchmarks/README.md.

``benchmark table --write benchmarks/README.md`` replaces the text between the two marker lines
below, so every number in the README is copied from a result file by code, with its device and
command next to it. Component benchmarks (a file with ``cases``: ours vs a torchvision or plain
reference, the schema of benchmarks/README.md) all render through ``component_table``, whatever
their name; train, infer and eval files keep their own tables.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from scratchdet.io import read_json, write_text

__all__ = [
    "COMPONENTS",
    "ORDER",
    "TABLES",
    "component_table",
    "eval_table",
    "infer_table",
    "render",
    "train_table",
    "write_into",
]

START, END = "<!-- results:start -->", "<!-- results:end -->"
COMPONENTS = ("pipeline", "matching", "postprocess", "train-step", "eval-startup")
"""The component benchmarks in the order of a training step, then evaluation; others follow."""
ORDER = {"train": 0, "infer": 1, "eval": 2} | {c: 3 + i for i, c in enumerate(COMPONENTS)}


def _num(v: float) -> str:
    """Three significant digits without exponents: 0.215, 2.15, 21.5, 215, 2150."""
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}" if v else "0"


def _m(entry: dict[str, Any] | None, key: str, scale: float = 1.0) -> str:
    """'median (min-max)' of a summary, or '-' / 'error'."""
    if not entry or key not in entry:
        return "error" if entry and "error" in entry else "-"
    s = entry[key]
    return f"{_num(s['median'] * scale)} ({_num(s['min'] * scale)}-{_num(s['max'] * scale)})"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _header(data: dict[str, Any]) -> list[str]:
    load = data.get("load_average") or {}
    return [
        (
            f"Device: **{data['device']}**; {data['provenance']['created']}; torch "
            f"{data['provenance']['packages'].get('torch')}; load average (1/5/15 min) at start "
            f"{load.get('start')}, end {load.get('end')}."
        ),
        "",
        f"Command: `{data['command']}`",
        "",
    ]


def train_table(data: dict[str, Any]) -> list[str]:
    lines = [
        (
            "| model | batch | synthetic img/s | device-augment img/s | cost | "
            "CPU-augment img/s | cost | torchvision SSD img/s | ours / torchvision |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        m, cost = r["modes"], r.get("pipeline_cost", {})
        ratio = r.get("speedup_vs_torchvision")
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {_m(m.get('synthetic'), 'images_per_s')} | "
            f"{_m(m.get('device_augment'), 'images_per_s')} | {_pct(cost.get('device_augment'))}"
            f" | {_m(m.get('cpu_augment'), 'images_per_s')} | {_pct(cost.get('cpu_augment'))} | "
            f"{_m(m.get('torchvision'), 'images_per_s')} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return lines


def infer_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| model | batch | latency ms | forward ms | NMS ms | process CPU ms | FPS | FPS paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        paper = f"{r['paper_fps']} ({r['paper_fps_source']})" if "paper_fps" in r else ""
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {_m(r, 'latency_ms')} | "
            f"{_m(r, 'forward_ms')} | {_m(r, 'postprocess_ms')} | {_m(r, 'process_cpu_ms')} | "
            f"{_m(r, 'fps')} | {paper} |"
        )
    return lines


def eval_table(data: dict[str, Any]) -> list[str]:
    lines = []
    for r in data["results"]:
        if r["case"] == "voc":
            lines += [
                (
                    f"VOC ({r['metric']}): {r['images']} images, {r['detections']} detections, "
                    f"{r['file_mb']} MB, parser {r['parser']}, mAP {r['map']:.6f}, max "
                    f"|difference| to the reference "
                    f"{max(r['max_abs_diff_vs_reference'].values()):.1e}."
                ),
                "",
                "| step | wall s | CPU s |",
                "|---|---|---|",
            ]
            for key, name in (
                ("end_to_end", "evaluate() end to end (read + match + AP)"),
                ("read_detections", "read the detections file"),
                ("match_and_ap", "matching + AP (in memory)"),
                ("naive", "naive: json.load + per-detection loop"),
            ):
                lines.append(f"| {name} | {_m(r[key], 'wall_s')} | {_m(r[key], 'cpu_s')} |")
            s = r["speedup_end_to_end"]
            lines += [
                "",
                (f"End-to-end speed-up over the naive loop: {s['wall']}x wall, {s['cpu']}x CPU."),
                "",
            ]
        else:
            lines += [
                (
                    f"COCO: {r['images']} images, {r['detections']} detections; identical "
                    f"numbers across backends: {r['identical_across_backends']}; versions: "
                    f"{_versions(r)}; not installed: "
                    f"{', '.join(r['backends_missing']) or 'none'}."
                ),
                "",
                "| backend | wall s | CPU s |",
                "|---|---|---|",
            ]
            lines += [
                f"| {b} | {_m(t, 'wall_s')} | {_m(t, 'cpu_s')} |" for b, t in r["backends"].items()
            ]
            lines.append("")
    return lines


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def component_table(data: dict[str, Any]) -> list[str]:
    """One row per case: ours and the reference (min and median of the interleaved repeats, in
    ms) and ours / reference (below 1: ours is faster); a case's extra fields go under it."""
    lines = [
        (
            "| case | ours | min ms | median ms | reference | min ms | median ms | "
            "ratio (min) | ratio (median) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for c in data["cases"]:
        o, r = c["ours"], c["reference"]
        lines.append(
            f"| {c['case']} | {o['name']} | {_num(o['min_ms'])} | "
            f"{_num(o['median_ms'])} | {r['name']} | {_num(r['min_ms'])} | "
            f"{_num(r['median_ms'])} | {_ratio(c.get('ratio_min'))} | "
            f"**{_ratio(c.get('ratio_median'))}** |"
        )
        extra = {
            k: v
            for k, v in c.items()
            if k not in ("case", "ours", "reference", "ratio_min", "ratio_median")
        }
        if extra:
            notes.append(
                f"- {c['case']}: " + "; ".join(f"{k} {_extra(v)}" for k, v in extra.items())
            )
    return lines + (["", *notes] if notes else [])


def _extra(v: Any) -> str:
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_extra(x)}" for k, x in v.items()) + "}" if v else "none"
    return str(v)


def _versions(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in row.get("versions", {}).items()) or "-"


TABLES = {"train": train_table, "infer": infer_table, "eval": eval_table}


def render(results_dir: str | Path) -> str:
    files = sorted(Path(results_dir).glob("*.json"))
    datas = [read_json(p) for p in files]
    pairs = sorted(
        zip(files, datas), key=lambda fd: (ORDER.get(fd[1].get("benchmark"), 9), fd[0].name)
    )
    out: list[str] = []
    for path, data in pairs:
        kind = data.get("benchmark")
        table = TABLES.get(kind) or (component_table if "cases" in data else None)
        if table is None:
            continue
        out += [f"### {kind}: `{path.name}`", "", *_header(data), *table(data), ""]
    return "\n".join(out).rstrip() + "\n"


def write_into(readme: str | Path, results_dir: str | Path) -> None:
    """Replace the block between START and END in ``readme`` with the rendered tables."""
    text = Path(readme).read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} block")
    block = f"{START}\n{render(results_dir)}{END}"
    write_text(
        readme,
        re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL),
    )
