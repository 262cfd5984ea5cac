"""One paper table as Markdown and CSV: per row the reproduced value, the paper's and the difference.

Values are in percent like the papers. A diverged run reads NAN in the Markdown (as the papers
print it) and NaN in the CSV; a row that did not run has no value and says why in its status; a
paper value that was not recovered stays empty. The header states the scale and the hardware the
runs were trained on, read from the runs' own provenance. The difference to the paper is a column
only at a scale whose numbers are comparable to the paper's (`comparable`: the official data, not
a smoke run): a proof or smoke number minus a paper number means nothing.

The CSV is plain and numeric: the header row first, then per row numbers in the number columns
(empty where there is none, NaN for a diverged run or a paper's NAN) and text in the others, so
`pandas.read_csv(path)` reads float columns whose `.mean()` works; the status lives in its own
column. What the Markdown states on top (scale, hardware, evaluation, notes), the inputs and the
provenance go to its sidecar `<csv>.meta.json` (`meta_path`), the name the learning-curve CSVs
use too.

A fourth output, the JSON record (kept with the results, not in git), holds the same values with
each row's run folder and the provenance of the report itself. The workflow asks for it, so a
fresh clone, whose committed Markdown and CSV exist but whose results do not, still runs.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import meta_path, read_json, write_json, write_text
from ..paper_tables import TITLES, Row, load_table
from ..run_folder import RunPaths, RunStatus
from ..yaml_io import load_yaml

__all__ = [
    "EVAL_NOTES",
    "METRIC_NAMES",
    "RowResult",
    "collect",
    "comparable",
    "count_params_m",
    "csv_meta",
    "describe_hardware",
    "fmt",
    "header_lines",
    "record",
    "table_columns",
    "to_csv",
    "to_markdown",
    "write_table_report",
]

METRIC_NAMES = {"map": "mAP"}
EVAL_NOTES = {
    "voc07": "VOC 2007 test, 11-point mAP",
    "voc12": "paper: VOC 2012 test (evaluation server); reproduced: the local test split with the "
             "VOC 2012 AP rule (at the paper scale VOC 2007 test, which 07++12 trains on: an "
             "optimistic number); the server upload file is listed per row",
    "coco": "paper: COCO test-dev (evaluation server); reproduced: the local test split (COCO "
            "val2017 at the paper scale); the server upload file is listed per row",
}


def fmt(value: float | None, digits: int = 1, csv: bool = False, signed: bool = False) -> str:
    """A number as a cell: empty for none; NAN (Markdown, as the papers print it) or NaN (CSV,
    what pandas reads as a missing float) for a diverged value; a sign only in the Markdown."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN" if csv else "NAN"
    return f"{value:{'+' if signed and not csv else ''}.{digits}f}"


def comparable(scale: dict[str, Any]) -> bool:
    """Whether a scale's numbers can stand beside the paper's: the official datasets, no smoke
    run (the default and proof scales train a synthetic set)."""
    return not scale.get("smoke", True) and scale.get("dataset") == "official"


@dataclass
class RowResult:
    row: Row
    status: str
    """finished, diverged or not run"""
    detail: str = ""
    values: dict[str, float | None] = field(default_factory=dict)
    """metric -> reproduced value in percent (None: no value, NaN: diverged)"""
    params_m: float | None = None
    submission: str = ""
    hardware: str = ""
    blind: float | None = None
    """the image-blind baseline's main metric on the same split, in percent (None: not given)"""


def describe_hardware(prov: dict[str, Any]) -> str:
    hw = prov.get("hardware", {})
    if str(hw.get("device", "")).startswith("cuda") and hw.get("gpus"):
        return f"{hw['gpus'][0]} (CUDA {hw.get('cuda')})"
    return f"CPU ({hw.get('cpu') or 'unknown'}, {hw.get('cpu_count')} cores)"


def _metric_value(metrics: dict[str, Any], name: str, status: RunStatus) -> float | None:
    """A metric in percent; NaN for a run that diverged (its status.json says so)."""
    value = metrics.get("map") if name == "map" else metrics.get("stats", {}).get(name)
    if status.diverged:
        return math.nan
    return None if value is None else 100.0 * float(value)


def count_params_m(model_cfg: dict[str, Any], num_classes: int) -> float:
    """Parameters in millions the way the papers count them: learnable + BatchNorm statistics."""
    import torch

    from ..models.registry import build_model, count_parameters

    with torch.device("meta"):
        model = build_model(model_cfg, num_classes, load_pretrained=False)
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean",
                                                                          "running_var")))
    return (count_parameters(model) + stats) / 1e6


def collect(rows: list[Row], runs: dict[str, str | Path], skips: dict[str, str],
            baselines: dict[str, str | Path] | None = None) -> list[RowResult]:
    """Read each row's results (metrics.json, status, provenance) from its run folder in `runs`,
    or its reason for not running from `skips`; its image-blind baseline from `baselines`."""
    from ..artifacts import verify_restored

    reads = [p for row_id, run in runs.items() if row_id not in skips
             for p in (RunPaths(Path(run)).metrics, RunPaths(Path(run)).status)]
    verify_restored(reads + [Path(p) for p in (baselines or {}).values()])  # a pulled copy intact
    out = []
    for row in rows:
        res = RowResult(row, "not run", skips.get(row.id, ""))
        if "params_m" in row.paper:
            res.params_m = count_params_m(row.model, 80 if row.eval == "coco" else 20)
        if row.id in skips:
            out.append(res)
            continue
        paths = RunPaths(Path(runs[row.id]))
        metrics = read_json(paths.metrics)
        status = RunStatus.read(paths.status)
        res.status, res.detail = status.status, status.detail
        res.values = {m: _metric_value(metrics, m, status) for m in row.metrics}
        if baselines and row.id in baselines:
            res.blind = 100.0 * float(read_json(baselines[row.id])["map"])
        if paths.provenance.exists():
            res.hardware = describe_hardware(read_json(paths.provenance))
        server_file = paths.server_file(row.server_split)
        res.submission = str(server_file) if server_file else ""
        out.append(res)
    return out


def _diff(ours: float | None, paper: float | None) -> float | None:
    if ours is None or paper is None or math.isnan(ours) or math.isnan(paper):
        return None
    return round(ours, 1) - paper


def table_columns(results: list[RowResult], with_diff: bool = True, csv: bool = False
                  ) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the Markdown (`csv` False) or the CSV (`csv` True: numbers only in the
    number columns); `with_diff`: the reproduced - paper column (`comparable` scales)."""
    rows = [r.row for r in results]
    labels = list(rows[0].labels)
    show_pretrained = any(r.pretrained for r in rows)
    metrics = rows[0].metrics
    header = ["row", *labels] + (["pretrained"] if show_pretrained else [])
    for m in metrics:
        name = METRIC_NAMES.get(m, m)
        header += [f"{name} reproduced", f"{name} paper"] + ([f"{name} diff"] if with_diff else [])
    show_blind = any(r.blind is not None for r in results)
    if show_blind:
        header += ["image-blind"]
    if "params_m" in rows[0].paper:
        header += ["params (M) reproduced", "params (M) paper"]
    if "fps" in rows[0].paper:
        header += ["fps paper"]
    header += ["status", "server file", "note"]
    cells = []
    for r in results:
        line = [r.row.id, *r.row.labels.values()] + (["yes" if r.row.pretrained else "no"]
                                                     if show_pretrained else [])
        for m in metrics:
            ours = r.values.get(m) if r.status != "not run" else None
            paper = r.row.paper[m]
            line += [fmt(ours, csv=csv), fmt(paper, csv=csv)]
            if with_diff:
                line += [fmt(_diff(ours, paper), csv=csv, signed=True)]
        if show_blind:
            line += [fmt(r.blind, csv=csv)]
        if "params_m" in r.row.paper:
            line += [fmt(r.params_m, 2, csv=csv), fmt(r.row.paper["params_m"], csv=csv)]
        if "fps" in r.row.paper:
            line += [fmt(r.row.paper["fps"], csv=csv)]
        status = r.status if r.status == "not run" and not r.detail else f"{r.status} ({r.detail})"
        line += [status, r.submission, r.row.note]
        cells.append(line)
    return header, cells


def header_lines(table: str, scale_name: str, scale: dict[str, Any],
                 results: list[RowResult]) -> list[str]:
    hardware = sorted({r.hardware for r in results if r.hardware}) or ["no run at this scale"]
    evals = sorted({r.row.eval for r in results})
    lines = [f"scale: {scale_name}: {scale['description'].strip()}",
             f"hardware: {'; '.join(hardware)}"]
    lines += [f"evaluation: {EVAL_NOTES[e]}" for e in evals]
    if any("params_m" in r.row.paper for r in results):
        lines.append("params: learnable parameters plus BatchNorm statistics, VOC head (20 "
                     "classes; COCO rows 80), the way the paper counts a saved model")
    diff = ("diff = reproduced - paper; " if comparable(scale) else
            "no difference to the paper: this scale's numbers are not comparable to it; ")
    lines.append(f"values in percent; {diff}NAN = training diverged; empty reproduced value = "
                 "not run (see status); empty paper value = not recovered from the paper")
    if any(r.blind is not None for r in results):
        lines.append("image-blind: the same split scored with per-class mean training boxes (and "
                     "the whole image) in every image, a prediction that never looks at the "
                     "pixels; a row that learned to detect beats it")
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: str, *, head: list[str], header: list[str], cells: list[list[str]],
                smoke: bool) -> str:
    out = [f"# {TITLES.get(table, table)}", ""]
    if smoke:
        out += ["**Smoke scale: numbers are not comparable to the paper.**", ""]
    out += [f"- {line}" for line in head] + [""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(_md_cell(c) for c in line) + " |" for line in cells]
    return "\n".join(out) + "\n"


def to_csv(header: list[str], cells: list[list[str]]) -> str:
    """A plain CSV: the header row, then one line per row (its notes go to the sidecar)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(cells)
    return buf.getvalue()


def csv_meta(table: str, *, scale_name: str, scale: dict[str, Any], head: list[str],
             params: str | Path, scale_file: str | Path, prov: dict[str, Any]) -> dict[str, Any]:
    """The CSV's sidecar: the scale, the lines the Markdown states on top (`head`), the inputs
    and the provenance of the report."""
    return {"table": table, "title": TITLES.get(table, table),
            "scale": {"name": scale_name, "description": scale["description"].strip(),
                      "smoke": scale["smoke"]},
            "notes": head, "params": str(params), "scale_file": str(scale_file),
            "provenance": prov}


def write_table_report(params: str | Path, *, scale_file: str | Path, scale_name: str,
                       runs: dict[str, str | Path], skips: dict[str, str], out_md: str | Path,
                       out_csv: str | Path, out_json: str | Path | None = None,
                       baselines: dict[str, str | Path] | None = None) -> list[RowResult]:
    """`runs`: row id -> its run folder; `skips`: row id -> why it did not run. Every row of the
    table is in exactly one of them. Writes `out_md`, `out_csv` and its `meta_path` sidecar,
    and `out_json` when given."""
    from ..errors import ConfigError
    from ..provenance import provenance

    rows = load_table(params)
    ids = {r.id for r in rows}
    for option, given in (("--run", runs), ("--skip", skips), ("--baseline", baselines or {})):
        unknown = sorted(set(given) - ids)
        if unknown:
            raise ConfigError(params, option, f"rows {unknown} are not in this table")
    missing = sorted(ids - set(runs) - set(skips))
    if missing:
        raise ConfigError(params, "--run", f"rows {missing} have neither a run folder nor a reason "
                                           "for not running")
    scale = load_yaml(scale_file)
    table = Path(params).stem
    found = collect(rows, runs, skips, baselines)
    head = header_lines(table, scale_name, scale, found)
    header, cells = table_columns(found, comparable(scale))
    write_text(out_md, to_markdown(table, head=head, header=header, cells=cells,
                                   smoke=scale["smoke"]))
    write_text(out_csv, to_csv(*table_columns(found, comparable(scale), csv=True)))
    prov = provenance()
    write_json(meta_path(out_csv), csv_meta(table, scale_name=scale_name, scale=scale, head=head,
                                            params=params, scale_file=scale_file,
                                            prov=prov))
    if out_json is not None:
        write_json(out_json, record(table, scale_name=scale_name, found=found, runs=runs,
                                    prov=prov))
    return found


def record(table: str, *, scale_name: str, found: list[RowResult], runs: dict[str, str | Path],
           prov: dict[str, Any]) -> dict[str, Any]:
    def number(v: float | None) -> float | str | None:
        return "NaN" if v is not None and math.isnan(v) else v

    return {
        "table": table, "scale": scale_name,
        "rows": [{"row": r.row.id, "status": r.status, "detail": r.detail,
                  "run": str(runs[r.row.id]) if r.row.id in runs else None,
                  "reproduced": {m: number(v) for m, v in r.values.items()},
                  "paper": {m: number(v) for m, v in r.row.paper.items()},
                  "image_blind": r.blind,
                  "hardware": r.hardware} for r in found],
        "provenance": prov,
    }
