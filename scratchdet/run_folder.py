"""A run folder's layout, the digest that names it, and how its training ended (status.json).

Training (`engine/train.py`, `engine/checkpoint.py`), detection, evaluation, the learning curves,
the reports, the DVC tracking and the workflow's rules all find a run's files here, so a file
name of a run folder is spelled in this module only. The names on disk never change: the shipped
DVC remote holds run folders written with them. Importing this module does not import torch.

A run's folder is named after the digest of its run config (`<table>/<row>/<digest>/`): a changed
config is a new folder, so Snakemake retrains it because its outputs are missing, never because of
file times or its own metadata. That is what lets results restored by `dvc pull` (new file times,
no `.snakemake/`) be reused, and a row whose config changed since be retrained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar

from scratchdet.errors import DataError
from scratchdet.io import read_json, write_json

__all__ = [
    "DIGEST_LENGTH",
    "DIGEST_PATTERN",
    "RUN_FILES",
    "RUN_WILDCARDS",
    "RunPaths",
    "RunStatus",
    "TrainFolder",
    "config_digest",
]

DIGEST_LENGTH = 10
DIGEST_PATTERN = f"[0-9a-f]{{{DIGEST_LENGTH}}}"


def config_digest(config: dict[str, Any]) -> str:
    """Short content hash of a run config (key order and formatting do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


@dataclasses.dataclass(frozen=True)
class TrainFolder:
    """The folder `scratchdet train --out` writes: its files besides the snapshots
    (`checkpoints/`, engine/checkpoint.py) and the lock (`.run.lock`, engine/run_lock.py)."""

    root: Path

    @property
    def model(self) -> Path:
        """The trained weights (engine/checkpoint.trained_model_record), written at the end."""
        return self.root / "model_final.pt"

    @property
    def status(self) -> Path:
        """How the run ended (`RunStatus`), written last: its presence means the run ended."""
        return self.root / "status.json"

    @property
    def training_log(self) -> Path:
        """The per-step training log, metrics.csv (engine/training_log.py)."""
        return self.root / "metrics.csv"

    @property
    def config(self) -> Path:
        """The run config as trained (what `train --continue-from` starts from)."""
        return self.root / "config.yaml"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the folder besides its snapshots (written through atomic_path)."""
        return (self.model, self.status, self.training_log, self.config, self.provenance)


RUN_FILES = tuple(p.name for p in TrainFolder(Path()).files)
"""The file names of a training folder besides its snapshots."""

RUN_WILDCARDS = ("{table}", "{row}", "{digest}")
"""The Snakemake wildcards of a run folder, `<results>/<scale>/{table}/{row}/{digest}`."""


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where every file of one row's run lives: `<results>/<scale>/<table>/<row>/<digest>/...`.

    `RunPaths.of(...)` gives one run's files; `RunPaths.wildcards(results)` gives the same layout
    with Snakemake wildcards, which the rules use as their `output:` patterns.
    """

    root: Path
    pattern: bool = False
    """True for the wildcard form: names derived from the row become wildcards too."""

    @classmethod
    def of(cls, results: str | Path, table: str, row: str, digest: str) -> RunPaths:
        return cls(Path(results) / table / row / digest)

    @classmethod
    def wildcards(cls, results: str | Path) -> RunPaths:
        """The layout as patterns with the wildcards `{table}`, `{row}` and `{digest}`."""
        return cls(Path(results).joinpath(*RUN_WILDCARDS), pattern=True)

    @property
    def run_config(self) -> Path:
        return self.root / "run.yaml"

    @property
    def train(self) -> TrainFolder:
        return TrainFolder(self.train_dir)

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.train.model

    @property
    def status(self) -> Path:
        return self.train.status

    @property
    def provenance(self) -> Path:
        return self.train.provenance

    @property
    def metrics(self) -> Path:
        """The evaluation result of the row's detections (`scratchdet eval --out`)."""
        return self.root / "metrics.json"

    def learning_curve_file(self, variant: str) -> Path:
        """A learning curve of the run: ``variant`` "" (mAP of every kept snapshot on the row's
        test split, `scratchdet curve`) or "_precise_bn" (the BatchNorm statistics re-estimated
        first, PreciseBN); ``"{variant}"`` in a pattern."""
        return self.root / f"learning_curve{variant}.csv"

    @property
    def learning_curve(self) -> Path:
        return self.learning_curve_file("")

    @property
    def learning_curve_precise_bn(self) -> Path:
        return self.learning_curve_file("_precise_bn")

    def detections(self, split_file: str | Path) -> Path:
        """Detections on a dataset file, named after its stem (`"{testset}"` in a pattern)."""
        return self.root / f"dets_{Path(split_file).stem}.json"

    @property
    def voc_submission(self) -> Path:
        return self.root / "voc2012_test_submission.tar.gz"

    @property
    def coco_submission(self) -> Path:
        # The server reads the algorithm name between underscores: letters and digits only.
        alg = "{alg}" if self.pattern else re.sub(r"[^A-Za-z0-9]", "", self.root.parent.name)
        return self.root / f"detections_test-dev2017_{alg}_results.zip"

    def server_file(self, server_split: str | None) -> Path | None:
        """The evaluation-server upload file for a server split (None: scored locally only)."""
        return {"voc12_test": self.voc_submission, "coco_testdev": self.coco_submission}.get(
            server_split or ""
        )

    def job_file(self, folder: str | Path, job: str, suffix: str = ".log") -> Path:
        """A per-job file kept outside the run folder (a log, a benchmark), in `folder` under
        the same `<table>/<row>/<digest>` as the run."""
        return Path(folder).joinpath(*self.root.parts[-3:], f"{job}{suffix}")


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """How a training run ended, as its `status.json` holds it (written last by engine/train.py):
    finished after `step` steps, or diverged at the step `step` for `reason`. A diverged run is a
    result, not a crash: detection writes no boxes and evaluation reads NaN, as the papers print."""

    FINISHED: ClassVar[str] = "finished"
    DIVERGED: ClassVar[str] = "diverged"

    status: str
    step: int
    reason: str | None = None

    @property
    def diverged(self) -> bool:
        return self.status == self.DIVERGED

    @property
    def steps_done(self) -> int:
        """Optimizer steps taken: a finished run's step, a diverged one's bad step plus one."""
        return self.step + self.diverged

    @property
    def detail(self) -> str:
        """One phrase for a report: `at step N: reason` or `N steps`."""
        return f"at step {self.step}: {self.reason}" if self.diverged else f"{self.step} steps"

    @property
    def summary(self) -> str:
        """`diverged at step N (reason)` or the status word."""
        return f"diverged at step {self.step} ({self.reason})" if self.diverged else self.status

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "step": self.step, "reason": self.reason}

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> RunStatus:
        """A status.json; a DataError names the file when it is not one."""
        data = read_json(path)
        if not isinstance(data, dict):
            raise DataError(path, "not a run status (expected a JSON object with status, step)")
        status, step = data.get("status"), data.get("step")
        if status not in (cls.FINISHED, cls.DIVERGED):
            raise DataError(
                path, f"status {status!r} is neither {cls.FINISHED!r} nor {cls.DIVERGED!r}"
            )
        if not isinstance(step, int) or isinstance(step, bool):
            raise DataError(path, f"step {step!r} is not a whole number")
        reason = data.get("reason")
        return cls(status, step, None if reason is None else str(reason))

    @classmethod
    def read_if_present(cls, path: str | Path) -> RunStatus | None:
        """The status of a run that ended; None while it has not (no status.json yet)."""
        return cls.read(path) if Path(path).is_file() else None
