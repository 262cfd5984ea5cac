"""The learning-curve figure: mAP of each snapshot against the training step, with the training
loss and the image-blind baseline (``engine/learning_curve.py`` writes the CSV it reads)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ..errors import ConfigError, DataError
from ..io import meta_path, read_json, write_text
from ..run_folder import RunStatus, TrainFolder
from .figures import heading, integer_steps, save_png
from .tables import to_markdown

__all__ = ["draw_learning_curves", "learning_curve_figure", "learning_curve_table"]


def draw_learning_curves(curves: dict[str, str | Path], title: str = "", note: str = ""
                         ) -> plt.Figure:
    """One panel per run (``label -> curve CSV``): mAP (left axis) and loss (right axis) per
    step, the best image-blind baseline as a dashed line; ``note`` under the title (the scale's
    description)."""
    if not curves:
        raise ConfigError(None, "--curve", "no learning curve to draw")
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False,
                             layout="constrained")
    for ax, (label, path) in zip(axes[0], curves.items()):
        df, meta = _read_curve(path)
        metric = meta.get("metric", "mAP")
        ax.plot(df["step"], df["map"], "o-", color="tab:blue", label=f"{metric} mAP")
        blind = meta.get("blind") or {}
        if blind:
            best = max(blind, key=lambda k: blind[k])
            ax.axhline(blind[best], color="tab:gray", linestyle="--",
                       label=f"image-blind ({best}) {blind[best]:.3f}")
        ax.set_ylim(0, 1)
        ax.set_xlabel("training step")
        ax.set_ylabel("mAP", color="tab:blue")
        integer_steps(ax)
        loss_ax = ax.twinx()
        loss_ax.plot(df["step"], df["loss"], "s:", color="tab:red", label="training loss")
        loss_ax.set_ylabel("loss", color="tab:red")
        lines = ax.get_legend_handles_labels()
        more = loss_ax.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="center right")
        suffix = " (PreciseBN)" if meta.get("precise_bn") else ""
        status = _status(meta)
        if status.startswith(RunStatus.DIVERGED):
            suffix += f"\n{status.split(' (')[0]}"
        ax.set_title(f"{label}{suffix}", fontsize=9)
    heading(fig, title, note)
    return fig


def learning_curve_figure(curves: dict[str, str | Path], out: str | Path, title: str = "",
                          note: str = "") -> None:
    """`draw_learning_curves` written to `out`."""
    save_png(draw_learning_curves(curves, title, note), out)


def _read_curve(path: str | Path) -> tuple[pd.DataFrame, dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "learning curve CSV not found")
    meta = meta_path(path)
    return pd.read_csv(path), (read_json(meta) if meta.exists() else {})


def _status(meta: dict) -> str:
    """How the run ended, from its status.json: a diverged run's curve ends at its bad step."""
    if not meta.get("run"):
        return ""
    status = RunStatus.read_if_present(TrainFolder(Path(meta["run"])).status)
    return "" if status is None else status.summary


def learning_curve_table(curves: dict[str, str | Path], precise_bn: dict[str, str | Path],
                         out: str | Path, *, title: str = "", note: str = "") -> list[list[str]]:
    """Markdown: per run its last snapshot's step and mAP, the image-blind baseline, the margin,
    the best mAP along the curve and, for runs in ``precise_bn``, the last mAP with PreciseBN."""
    header = ["run", "status", "step", "mAP", "image-blind", "mAP - image-blind",
              "best mAP (step)"]
    if precise_bn:
        header += ["mAP with PreciseBN", "PreciseBN batches"]
    cells = []
    for label, path in curves.items():
        df, meta = _read_curve(path)
        last = df.iloc[-1]
        blind = max((meta.get("blind") or {"": float("nan")}).values())
        best = df.loc[df["map"].idxmax()] if df["map"].notna().any() else last
        line = [label, _status(meta), str(int(last["step"])), f"{100 * last['map']:.1f}",
                f"{100 * blind:.1f}", f"{100 * (last['map'] - blind):+.1f}",
                f"{100 * best['map']:.1f} ({int(best['step'])})"]
        if precise_bn:
            if label in precise_bn:
                pdf, pmeta = _read_curve(precise_bn[label])
                line += [f"{100 * pdf.iloc[-1]['map']:.1f}", str(pmeta.get("precise_bn", ""))]
            else:
                line += ["", ""]
        cells.append(line)
    head = ([note] if note else []) + [
        ("mAP in percent, on each run's test split, at the last kept snapshot (a diverged run's "
        "model detects nothing); image-blind: the best of the mean training box and the whole "
        "image, score 1, in every test image (it never looks at the pixels)")]
    write_text(out, to_markdown(title or "learning curves", head=head, header=header, cells=cells,
                                smoke=False))
    return cells
