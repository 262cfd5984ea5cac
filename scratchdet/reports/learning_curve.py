"""The learning-curve figure: mAP of each snapshot against the training step, with the training
loss and the image-blind baseline (``engine/learning_curve.py`` writes the CSV it reads)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..errors import DataError
from ..io import atomic_path, read_json

__all__ = ["learning_curve_figure"]


def learning_curve_figure(curves: dict[str, str | Path], out: str | Path, title: str = "",
                          note: str = "") -> None:
    """One panel per run (``label -> curve CSV``): mAP (left axis) and loss (right axis) per
    step, the best image-blind baseline as a dashed line; ``note`` under the title (e.g. the
    scale's warning)."""
    if not curves:
        raise DataError(out, "no learning curve to draw")
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (label, path) in zip(axes[0], curves.items()):
        path = Path(path)
        if not path.exists():
            raise DataError(path, "learning curve CSV not found")
        df = pd.read_csv(path)
        meta_path = Path(str(path) + ".meta.json")
        meta = read_json(meta_path) if meta_path.exists() else {}
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        loss_ax = ax.twinx()
        loss_ax.plot(df["step"], df["loss"], "s:", color="tab:red", label="training loss")
        loss_ax.set_ylabel("loss", color="tab:red")
        lines = ax.get_legend_handles_labels()
        more = loss_ax.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="center right")
        suffix = " (PreciseBN)" if meta.get("precise_bn") else ""
        ax.set_title(f"{label}{suffix}", fontsize=9)
    if title or note:
        fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
