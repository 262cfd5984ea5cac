"""What a researcher watches while a run trains, besides metrics.csv: TensorBoard event files
(`train.tensorboard`) and the held-out split scored every `train.eval_every` steps.

TensorBoard events go to `<run>/tensorboard/` through `torch.utils.tensorboard`, which needs the
`tensorboard` package (`pip install tensorboard`, or the `tensorboard` extra); a run config that
asks for events without it is refused before training, naming the package. Scalars, at the number
of steps done: train/loss, train/loc_loss, train/conf_loss, train/lr, train/grad_norm,
train/images_per_s (per step) and train/window_images_per_s, and eval/mAP.

The held-out evaluation is the learning curve's (`learning_curve.py`) while the run goes: the
current weights are written as a trained-model file (`.eval_model.tmp.pt`, never a result), run
through `scratchdet detect` on `data.test` and scored with VOC07 mAP, beside the split's
image-blind baseline; each point is a row of `<run>/eval.csv` (step, map, image_blind) and a line
on stderr. Only the first process evaluates; the others wait for it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from scratchdet.config import RunConfig
from scratchdet.errors import ConfigError, DataError

__all__ = ["EVAL_COLUMNS", "TrainMonitor", "check_monitor_config"]

EVAL_COLUMNS = ("step", "map", "image_blind")
TRAIN_SCALARS = (
    "loss",
    "loc_loss",
    "conf_loss",
    "lr",
    "grad_norm",
    "images_per_s",
    "window_images_per_s",
)


def check_monitor_config(cfg: RunConfig, class_names: list[str]) -> None:
    """Refuse, before any step, what would fail later: events without the package, a held-out
    evaluation without a split or with other classes than the training set's."""
    t = cfg.train
    if t.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                None, "train.tensorboard", "needs the tensorboard package: pip install tensorboard"
            ) from None
    if t.eval_every:
        if not cfg.data.test:
            raise ConfigError(
                None, "train.eval_every", "needs data.test, the held-out split to score"
            )
        from scratchdet.data.annotations import class_names as names_of
        from scratchdet.data.annotations import load_annotations

        theirs = names_of(load_annotations(cfg.data.test, resolve_image_dir=False))
        if theirs != list(class_names):
            raise DataError(
                cfg.data.test,
                f"classes {theirs} differ from the training set's "
                f"{list(class_names)} (convert it with `scratchdet "
                "data voc --like TRAIN.json`)",
            )


class TrainMonitor:
    """Event files and held-out scoring of one run (`enabled`: this process writes files)."""

    def __init__(self, cfg: RunConfig, out: Path, enabled: bool):
        self.cfg, self.out, self.enabled = cfg, Path(out), enabled
        self.writer: Any = None
        if enabled and cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        self._blind: float | None = None

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        """The metrics.csv rows of one read, as scalars at their number of steps done."""
        if self.writer is None:
            return
        for row in rows:
            for name in TRAIN_SCALARS:
                value = row.get(name)
                if value is not None and math.isfinite(float(value)):
                    self.writer.add_scalar(f"train/{name}", float(value), int(row["step"]) + 1)
        self.writer.flush()

    def due(self, step: int) -> bool:
        every = self.cfg.train.eval_every
        return bool(every) and step % every == 0

    def evaluate(self, step: int, record: dict[str, Any], device: Any) -> float | None:
        """Score the weights in `record` (a trained-model record) on data.test; None on the
        processes that do not write."""
        if not self.enabled:
            return None
        import sys

        from scratchdet.engine.checkpoint import save_checkpoint
        from scratchdet.engine.detect import detect
        from scratchdet.engine.learning_curve import blind_scores
        from scratchdet.evaluation import evaluate
        from scratchdet.io import atomic_path

        model_file, dets = self.out / ".eval_model.tmp.pt", self.out / ".eval_dets.tmp.json"
        try:
            save_checkpoint(record, model_file)
            detect(
                model_file,
                self.cfg.data.test,
                dets,
                self.cfg.detect,
                device=str(device),
                num_workers=0,
            )
            score = float(evaluate(self.cfg.data.test, dets, "voc07")["map"])
        finally:
            model_file.unlink(missing_ok=True)
            dets.unlink(missing_ok=True)
        if self._blind is None:
            self._blind = max(blind_scores(self.cfg.data.train, self.cfg.data.test).values())
        path = self.out / "eval.csv"
        rows = [r for r in _read(path) if int(r["step"]) < step]  # a resumed run redoes these
        rows.append({"step": step, "map": score, "image_blind": self._blind})
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, EVAL_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        if self.writer is not None:
            self.writer.add_scalar("eval/mAP", score, step)
            self.writer.add_scalar("eval/image_blind", self._blind, step)
            self.writer.flush()
        print(
            f"eval: step {step}: voc07 mAP {score:.4f} on {self.cfg.data.test} "
            f"(image-blind {self._blind:.4f})",
            file=sys.stderr,
            flush=True,
        )
        return score

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
