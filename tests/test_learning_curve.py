"""A run's snapshots become a learning curve: mAP per step beside the image-blind baseline."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scratchdet.cli import main
from scratchdet.config import config_from_dict
from scratchdet.engine.learning_curve import blind_scores, learning_curve
from scratchdet.engine.train import train
from scratchdet.io import meta_path, read_json, write_json
from scratchdet.reports.learning_curve import (
    draw_learning_curves,
    learning_curve_figure,
    learning_curve_table,
)
from tests.test_interruption import TINY_DSOD


@pytest.mark.slow
def test_every_kept_snapshot_is_scored(tmp_path, synth_splits):
    cfg = config_from_dict(
        {
            "seed": 0,
            "model": TINY_DSOD,
            "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
            "train": {
                "batch_size": 2,
                "max_steps": 6,
                "checkpoint_every": 2,
                "keep_checkpoints": 10,
                "log_every": 2,
            },
        }
    )
    run = tmp_path / "run"
    assert train(cfg, run)["status"] == "finished"
    out = tmp_path / "curve.csv"
    rows = learning_curve(run, synth_splits["test"], out, device="cpu")
    assert [r["step"] for r in rows] == [2, 4, 6]  # snapshots 2 and 4, then model_final.pt
    assert rows[-1]["checkpoint"] == "model_final.pt"
    df = pd.read_csv(out)  # a plain CSV
    assert list(df["step"]) == [2, 4, 6]
    assert df["map"].between(0, 1).all() and df["loss"].map(math.isfinite).all()
    meta = read_json(str(out) + ".meta.json")
    assert meta["blind"] == blind_scores(synth_splits["trainval"], synth_splits["test"])
    assert meta["metric"] == "voc07" and meta["provenance"]["code"]
    png = tmp_path / "curve.png"
    learning_curve_figure({"tiny": out}, png, title="tiny", note="smoke")
    assert png.stat().st_size > 1000

    # The same through the command line, with PreciseBN, and the report that compares the two.
    precise = tmp_path / "curve_precise_bn.csv"
    assert (
        main(
            [
                "curve",
                "--run",
                str(run),
                "--data",
                str(synth_splits["test"]),
                "--out",
                str(precise),
                "--precise-bn",
                "2",
                "--device",
                "cpu",
                "--figure",
                str(tmp_path / "precise.png"),
            ]
        )
        == 0
    )
    assert read_json(str(precise) + ".meta.json")["precise_bn"] == 2
    assert list(pd.read_csv(precise)["step"]) == [2, 4, 6]
    md, fig = tmp_path / "curves.md", tmp_path / "curves.png"
    assert (
        main(
            [
                "report",
                "learning-curves",
                "--curve",
                f"tiny={out}",
                "--precise-bn-curve",
                f"tiny={precise}",
                "--out-md",
                str(md),
                "--out-png",
                str(fig),
            ]
        )
        == 0
    )
    table = md.read_text()
    assert "| tiny | finished | 6 |" in table and "mAP with PreciseBN" in table
    assert fig.stat().st_size > 1000


def test_a_run_without_snapshots_is_an_error(tmp_path, synth_splits):
    from scratchdet.errors import DataError

    with pytest.raises(DataError, match="no snapshot"):
        learning_curve(tmp_path, synth_splits["test"], tmp_path / "c.csv")


def test_curve_reports_read_the_csv_and_its_sidecar(tmp_path):
    """The table and the figure take the baseline from <csv>.meta.json; the figure prints the
    scale's note and whole training steps."""
    import matplotlib.pyplot as plt

    curve = tmp_path / "curve.csv"
    pd.DataFrame(
        {
            "step": [1, 2, 3],
            "map": [0.1, 0.4, 0.3],
            "loss": [3.0, 2.0, 1.0],
            "checkpoint": ["a", "b", "model_final.pt"],
        }
    ).to_csv(curve, index=False)
    write_json(meta_path(curve), {"metric": "voc07", "blind": {"mean_box": 0.05, "whole": 0.02}})
    cells = learning_curve_table(
        {"run": curve}, {}, tmp_path / "c.md", title="curves", note="smoke note"
    )
    assert cells == [["run", "", "3", "30.0", "5.0", "+25.0", "40.0 (2)"]]
    assert "- smoke note" in (tmp_path / "c.md").read_text()
    fig = draw_learning_curves({"run": curve}, "curves", "smoke note")
    fig.canvas.draw()
    assert fig.texts[0].get_text() == "curves\nsmoke note"
    ax = fig.axes[0]
    assert "image-blind (mean_box) 0.050" in [t.get_text() for t in ax.get_legend().texts]
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.isdigit() for t in ticks), ticks
    plt.close(fig)
