"""The per-step training log: a CSV that a resumed run continues without duplicating rows."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from ..io import write_text, writing

__all__ = ["COLUMNS", "MetricsLog"]

COLUMNS = ("step", "lr", "loss", "loc_loss", "conf_loss", "grad_norm", "num_pos", "images_per_s",
           "elapsed_s")


class MetricsLog:
    """Appends one row per optimizer step; `truncate(step)` drops rows a resumed run will redo."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def truncate(self, last_step: int) -> None:
        """Keep rows with step < last_step (rewritten atomically), i.e. those the checkpoint covers."""
        rows = [r for r in self.read() if int(r["step"]) < last_step]
        lines = [",".join(COLUMNS)] + [",".join(str(r[c]) for c in COLUMNS) for r in rows]
        write_text(self.path, "\n".join(lines) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with writing(self.path), open(self.path, "a", newline="") as fh:  # a full disk: named
            if new:
                fh.write(",".join(COLUMNS) + "\n")
            fh.write(",".join(_fmt(row[c]) for c in COLUMNS) + "\n")
            fh.flush()

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            # A row cut short by a kill has fewer fields; it is dropped and redone.
            return [r for r in csv.DictReader(fh) if None not in r.values() and len(r) == len(COLUMNS)]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)
