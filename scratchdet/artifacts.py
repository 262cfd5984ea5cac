"""Version datasets and trained rows with DVC: one .dvc file per training run, one for the data.

`scratchdet artifacts push` tracks the prepared data directory (data.dvc) and every finished run
folder (results/<scale>/<table>/<row>/<digest>.dvc: one per row and run config, so one row can be
pulled alone with `dvc pull -R results/<scale>/<table>/<row>`) and the scale's image-blind
baselines (results/<scale>/baselines.dvc), then pushes them to the DVC
remote. Commit the .dvc files afterwards; `dvc pull` in another clone restores them, and the
workflow reuses them because a run folder is named after its config (workflow_config.RunPaths).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import ScratchdetError


def finished_rows(results: Path) -> list[Path]:
    """Run folders (<table>/<row>/<digest>) whose training ended, finished or diverged."""
    return sorted(p.parent.parent for p in results.glob("*/*/*/train/status.json"))


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
    # The image-blind baselines of the scale (derived from the data alone) travel with the rows,
    # so a restored clone regenerates its reports without recomputing them.
    baselines = [results / "baselines"] if (results / "baselines").is_dir() else []
    targets = ([data] if data is not None else []) + rows + baselines
    _dvc("add", *(str(t) for t in targets), cwd=repo)
    dvc_files = [t.with_name(t.name + ".dvc") for t in targets]
    _dvc("push", *(["-r", remote] if remote else []), *(str(f) for f in dvc_files), cwd=repo)
    return dvc_files
