"""A run's learning curve: every snapshot it kept, detected and scored on one split.

``learning_curve(run, data)`` runs ``scratchdet detect`` on each ``checkpoints/step_*.pt`` of the
run
(``train.keep_checkpoints`` decides how many stay; ``checkpoint_every`` how far apart) and on
``model_final.pt``, scores each with the split's metric, and returns one row per step with the
training loss around that step (the mean of the ``metrics.csv`` rows since the previous point).
Next to it, the image-blind baselines of the split (``evaluation/baselines.py``), so the curve is
always read against what a prediction that never looks at the pixels scores.

The CSV is written atomically and its provenance (run, split, metric, PreciseBN, code, packages,
hardware) goes in a sidecar ``<csv>.meta.json``.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path
from typing import Any

from scratchdet.config import DetectConfig
from scratchdet.engine.checkpoint import list_snapshots
from scratchdet.engine.detect import detect
from scratchdet.engine.training_log import TrainingLog
from scratchdet.errors import DataError
from scratchdet.evaluation import evaluate
from scratchdet.evaluation.baselines import score_baselines
from scratchdet.io import meta_path, read_json, write_json, write_text
from scratchdet.provenance import provenance
from scratchdet.run_folder import RunStatus, TrainFolder

__all__ = ["COLUMNS", "blind_scores", "learning_curve"]

COLUMNS = ("step", "map", "loss", "checkpoint")


def blind_scores(train: str | Path, test: str | Path, metric: str = "voc07") -> dict[str, float]:
    """The image-blind baselines' mAP on ``test`` (predictions from ``train``'s boxes), by kind."""
    return {
        kind: result["map"] for kind, (result, _) in score_baselines(train, test, metric).items()
    }


def _mean_loss(rows: list[dict[str, str]], after: int, upto: int) -> float:
    losses = [float(r["loss"]) for r in rows if after < int(r["step"]) + 1 <= upto]
    finite = [v for v in losses if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def learning_curve(
    run: str | Path,
    data: str | Path,
    out_csv: str | Path,
    *,
    metric: str = "voc07",
    detect_cfg: DetectConfig | None = None,
    device: str = "auto",
    num_workers: int = 0,
) -> list[dict[str, Any]]:
    """Score every snapshot of ``run`` (and its final model) on ``data``; write ``out_csv``."""
    run = Path(run)
    points = [(step, path) for step, path in list_snapshots(run)]
    files = TrainFolder(run)
    final = files.model
    status = RunStatus.read_if_present(files.status)
    if final.exists() and status is not None and (not points or points[-1][0] < status.steps_done):
        points.append((status.steps_done, final))
    if not points:
        raise DataError(
            run,
            "no snapshot and no model_final.pt: train the run first (and keep "
            "snapshots with train.keep_checkpoints)",
        )
    log_rows = TrainingLog(files.training_log).read()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scratchdet-curve-") as tmp:
        dets = Path(tmp) / "dets.json"
        previous = 0
        for step, path in points:
            detect(path, data, dets, detect_cfg, device=device, num_workers=num_workers)
            score = evaluate(data, dets, metric)["map"]
            rows.append(
                {
                    "step": step,
                    "map": score,
                    "loss": _mean_loss(log_rows, previous, step),
                    "checkpoint": path.relative_to(run).as_posix(),
                }
            )
            previous = step
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_csv, text.getvalue())
    train = (
        read_json(files.provenance)["config"]["data"]["train"]
        if files.provenance.exists()
        else None
    )
    meta = {
        "run": str(run),
        "data": str(data),
        "metric": metric,
        "precise_bn": (detect_cfg or DetectConfig()).precise_bn,
        "blind": blind_scores(train, data, metric) if train else None,
        "blind_train_split": train,
        "provenance": provenance(),
    }
    write_json(meta_path(out_csv), meta)
    return rows
