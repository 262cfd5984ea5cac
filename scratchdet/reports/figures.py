"""PNG figures: ScratchDet Figure 1 (training curves), precision-recall curves, detection grids.

Each `draw_*` function returns the matplotlib Figure (to inspect or restyle); the function of the
same figure without the prefix writes it as a PNG. Every figure takes the scale's `note` (its
`description` in config/scales/, as the tables state it) and prints it under the title. Matplotlib
runs headless (Agg); every PNG is written through `scratchdet.io.atomic_path`.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..errors import DataError
from ..io import atomic_path, read_json
from ..run_folder import TrainFolder
from .precision_recall import precision_recall

__all__ = [
    "GT_COLOUR",
    "detection_grid",
    "draw_detection_grid",
    "draw_figure1",
    "draw_pr_curves",
    "figure1",
    "fluctuation",
    "heading",
    "integer_steps",
    "pr_figure",
    "read_metrics",
    "save_png",
]


def save_png(fig: plt.Figure, out: str | Path) -> None:
    """Write `fig` as a PNG (atomically) and close it."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def heading(fig: plt.Figure, title: str, note: str = "") -> None:
    """The figure's title, with `note` (the scale's description) wrapped to its width below it."""
    width = max(40, int(11 * fig.get_figwidth()))  # characters of the title font per line
    lines = [t for t in (title, textwrap.fill(note.strip(), width, break_on_hyphens=False)) if t]
    if lines:
        fig.suptitle("\n".join(lines))


def integer_steps(ax: plt.Axes) -> None:
    """Label the x axis (training steps) with whole numbers only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.csv (one row per optimizer step); inf becomes NaN so plots show gaps."""
    path = TrainFolder(Path(run_dir)).training_log
    if not path.exists():
        raise DataError(path, "no metrics.csv: was the run trained?")
    df = pd.read_csv(path)
    for col in ("step", "loss", "grad_norm"):
        if col not in df:
            raise DataError(path, f"missing column {col!r}")
    return df.replace([np.inf, -np.inf], np.nan)


def fluctuation(grad_norm: pd.Series, window: int) -> pd.Series:
    """Fluctuation of the gradient norm: its standard deviation over the last `window` steps."""
    return grad_norm.rolling(window, min_periods=1).std(ddof=0)


def draw_figure1(runs: dict[str, str | Path], window: int | None = None,
                 title: str = "ScratchDet Figure 1", note: str = "") -> tuple[plt.Figure, int]:
    """ScratchDet Figure 1: (a) loss, (b) gradient L2 norm, (c) its fluctuation, per run.

    `window` defaults to 2% of the longest run (at least 2 steps); returns the figure and the
    window used.
    """
    frames = {label: read_metrics(d) for label, d in runs.items()}
    longest = max(len(df) for df in frames.values())
    window = window or max(2, math.ceil(0.02 * longest))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    for label, df in frames.items():
        axes[0].plot(df["step"], df["loss"], label=label)
        axes[1].plot(df["step"], df["grad_norm"], label=label)
        axes[2].plot(df["step"], fluctuation(df["grad_norm"], window), label=label)
    panels = ("(a) training loss", "(b) L2 norm of gradient",
              f"(c) fluctuation of the L2 norm (std over {window} steps)")
    for ax, panel in zip(axes, panels):
        ax.set_title(panel)
        ax.set_xlabel("step")
        integer_steps(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    heading(fig, title, note)
    return fig, window


def figure1(runs: dict[str, str | Path], out: str | Path, *, window: int | None = None,
            title: str = "ScratchDet Figure 1", note: str = "") -> int:
    """`draw_figure1` written to `out`; returns the fluctuation window used."""
    fig, window = draw_figure1(runs, window, title, note)
    save_png(fig, out)
    return window


def draw_pr_curves(gt: str | Path, dets: str | Path, title: str = "", note: str = ""
                   ) -> tuple[plt.Figure, dict[str, float]]:
    """One precision-recall panel per class (VOC rules); returns the figure and
    {class: AP (VOC07)}."""
    curves = precision_recall(gt, dets)
    n = len(curves)
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.8 * rows), squeeze=False,
                             layout="constrained")
    aps = {}
    for ax, (name, c) in zip(axes.flat, curves.items()):
        aps[name] = c.ap
        ax.plot(c.recall, c.precision, drawstyle="steps-post")
        ax.set_title(f"{name}: AP {100 * c.ap:.1f}" if not math.isnan(c.ap) else f"{name}: no boxes",
                     fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    heading(fig, title or "precision-recall", note)
    return fig, aps


def pr_figure(gt: str | Path, dets: str | Path, out: str | Path, *, title: str = "",
              note: str = "") -> dict[str, float]:
    """`draw_pr_curves` written to `out`; returns {class: AP (VOC07)}."""
    fig, aps = draw_pr_curves(gt, dets, title, note)
    save_png(fig, out)
    return aps


GT_COLOUR = "white"
"""Ground-truth boxes are drawn thin in this colour, detections thick in their class's colour."""


def draw_detection_grid(gt: str | Path, dets: str | Path, *, title: str = "", num_images: int = 6,
                        min_score: float = 0.3, max_per_image: int = 10, note: str = ""
                        ) -> tuple[plt.Figure, int]:
    """The first `num_images` test images with ground truth (white) and the detections scoring at
    least `min_score` (coloured by class, labelled with class and score), and a legend saying so;
    returns the figure and the number of images."""
    import torch
    from torchvision.utils import draw_bounding_boxes

    from ..data.annotations import boxes_by_image, load_annotations
    from ..data.dataset import read_image

    ds = load_annotations(gt)
    names = {c["id"]: c["name"] for c in ds["categories"]}
    palette = plt.get_cmap("tab20")
    colours = {cid: tuple(int(255 * v) for v in palette(i % 20)[:3])
               for i, cid in enumerate(sorted(names))}
    truth = boxes_by_image(ds)
    by_image: dict[int, list[dict]] = {}
    for d in read_json(dets):
        by_image.setdefault(d["image_id"], []).append(d)
    images = sorted(ds["images"], key=lambda im: im["id"])[:num_images]
    cols = min(3, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.5 * rows), squeeze=False,
                             layout="constrained")
    shown: set[int] = set()  # classes with a drawn detection, for the legend
    for ax, img in zip(axes.flat, images):
        pixels = read_image(Path(ds["info"]["image_dir"]) / img["file_name"])
        gt_boxes = torch.as_tensor(truth[img["id"]].boxes, dtype=torch.float32).reshape(-1, 4) \
            if img["id"] in truth else torch.zeros(0, 4)
        pixels = draw_bounding_boxes(pixels, gt_boxes, colors=GT_COLOUR, width=1)
        kept = sorted((d for d in by_image.get(img["id"], []) if d["score"] >= min_score),
                      key=lambda d: -d["score"])[:max_per_image]
        if kept:  # clipped for display: an untrained model's boxes can leave the image
            xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in kept)])
            xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, img["width"] - 1)
            xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, img["height"] - 1)
            pixels = draw_bounding_boxes(
                pixels, xyxy, labels=[f"{names[d['category_id']]} {d['score']:.2f}" for d in kept],
                colors=[colours[d["category_id"]] for d in kept], width=3)
            shown.update(d["category_id"] for d in kept)
        ax.imshow(pixels.permute(1, 2, 0).numpy())
        ax.set_title(f"{img['file_name']}: {len(kept)} detections >= {min_score:g}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    handles = [Patch(facecolor="none", edgecolor=GT_COLOUR, linewidth=1, label="ground truth")]
    handles += [Patch(facecolor="none", edgecolor=np.array(colours[cid]) / 255, linewidth=3,
                      label=names[cid]) for cid in sorted(shown)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
               fontsize=8, facecolor="0.6", framealpha=1.0,  # grey, so white boxes show
               title=f"boxes: ground truth (white) and detections with score >= {min_score:g}, "
                     "coloured by class, labelled class and score", title_fontsize=8)
    heading(fig, title or "detections", note)
    return fig, len(images)


def detection_grid(gt: str | Path, dets: str | Path, out: str | Path, *, title: str = "",
                   num_images: int = 6, min_score: float = 0.3, max_per_image: int = 10,
                   note: str = "") -> int:
    """`draw_detection_grid` written to `out`; returns the number of images."""
    fig, n = draw_detection_grid(gt, dets, title=title, num_images=num_images, min_score=min_score,
                                 max_per_image=max_per_image, note=note)
    save_png(fig, out)
    return n
