"""Version datasets and trained rows with DVC: one .dvc file per training row, one for the data.

`scratchdet artifacts push` tracks the prepared data directory (data.dvc) and every finished row
folder (results/<scale>/<table>/<row>.dvc, so one row can be pulled alone), then pushes them to
the DVC remote. Commit the .dvc files afterwards; `dvc pull` in another clone restores them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import ScratchdetError


def finished_rows(results: Path) -> list[Path]:
    """Row folders (<table>/<row>) whose training ended, finished or diverged."""
    return sorted(p.parent.parent for p in results.glob("*/*/train/status.json"))


def _dvc(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ScratchdetError(f"dvc {' '.join(args[:2])} failed: {proc.stderr.strip() or proc.stdout}")


def push(results: Path, data: Path | None, repo: Path = Path("."), remote: str | None = None
         ) -> list[Path]:
    """`dvc add` the data folder and each finished row, `dvc push` them; returns the .dvc files."""
    rows = finished_rows(results)
    if not rows:
        raise ScratchdetError(f"{results}: no finished training row to push")
    targets = ([data] if data is not None else []) + rows
    _dvc("add", *(str(t) for t in targets), cwd=repo)
    dvc_files = [t.with_name(t.name + ".dvc") for t in targets]
    _dvc("push", *(["-r", remote] if remote else []), *(str(f) for f in dvc_files), cwd=repo)
    return dvc_files
