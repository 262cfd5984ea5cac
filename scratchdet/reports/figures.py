"""PNG figures: ScratchDet Figure 1 (training curves), precision-recall curves, detection grids.

Matplotlib runs headless (Agg); every PNG is written through `scratchdet.io.atomic_path`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import atomic_path, read_json
from .precision_recall import precision_recall


def _save(fig: plt.Figure, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.csv (one row per optimizer step); inf becomes NaN so plots show gaps."""
    path = Path(run_dir) / "metrics.csv"
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


def figure1(runs: dict[str, str | Path], out: str | Path, window: int | None = None,
            title: str = "ScratchDet Figure 1") -> int:
    """ScratchDet Figure 1: (a) loss, (b) gradient L2 norm, (c) its fluctuation, per run.

    `window` defaults to 2% of the longest run (at least 2 steps); returns the window used.
    """
    frames = {label: read_metrics(d) for label, d in runs.items()}
    longest = max(len(df) for df in frames.values())
    window = window or max(2, math.ceil(0.02 * longest))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, df in frames.items():
        axes[0].plot(df["step"], df["loss"], label=label)
        axes[1].plot(df["step"], df["grad_norm"], label=label)
        axes[2].plot(df["step"], fluctuation(df["grad_norm"], window), label=label)
    panels = ("(a) training loss", "(b) L2 norm of gradient",
              f"(c) fluctuation of the L2 norm (std over {window} steps)")
    for ax, panel in zip(axes, panels):
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, out)
    return window


def pr_figure(gt: str | Path, dets: str | Path, out: str | Path, title: str = "") -> dict:
    """One precision-recall panel per class (VOC rules); returns {class: AP (VOC07)}."""
    curves = precision_recall(gt, dets)
    n = len(curves)
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.8 * rows), squeeze=False)
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
    fig.suptitle(title or "precision-recall", y=1.0 + 0.08 / rows)
    _save(fig, out)
    return aps


def detection_grid(gt: str | Path, dets: str | Path, out: str | Path, title: str = "",
                   num_images: int = 6, min_score: float = 0.3, max_per_image: int = 10) -> int:
    """The first `num_images` test images with ground truth (white) and detections (coloured)."""
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
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.5 * rows), squeeze=False)
    for ax, img in zip(axes.flat, images):
        pixels = read_image(Path(ds["info"]["image_dir"]) / img["file_name"])
        gt_boxes = torch.as_tensor(truth[img["id"]].boxes, dtype=torch.float32).reshape(-1, 4) \
            if img["id"] in truth else torch.zeros(0, 4)
        pixels = draw_bounding_boxes(pixels, gt_boxes, colors="white", width=1)
        kept = sorted((d for d in by_image.get(img["id"], []) if d["score"] >= min_score),
                      key=lambda d: -d["score"])[:max_per_image]
        if kept:  # clipped for display: an untrained model's boxes can leave the image
            xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in kept)])
            xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, img["width"] - 1)
            xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, img["height"] - 1)
            pixels = draw_bounding_boxes(
                pixels, xyxy, labels=[f"{names[d['category_id']]} {d['score']:.2f}" for d in kept],
                colors=[colours[d["category_id"]] for d in kept], width=3)
        ax.imshow(pixels.permute(1, 2, 0).numpy())
        ax.set_title(f"{img['file_name']}: {len(kept)} detections >= {min_score}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title or "detections")
    _save(fig, out)
    return len(images)
