"""What a run logs while it trains, as a user meets it through `scratchdet train`: per-row times
in metrics.csv, the held-out split scored every `train.eval_every` steps, TensorBoard events."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY_DSOD = {"name": "dsod300_smallest", "stem_channels": 16, "bottleneck": 16, "growth": 8}


def _train(tmp_path: Path, splits: dict, name: str, **train) -> subprocess.CompletedProcess:
    cfg = {
        "seed": 3,
        "model": TINY_DSOD,
        "data": {
            "train": str(splits["trainval"]),
            "test": str(splits.get("test", "")),
            "num_workers": 0,
            "augment": "none",
        },
        "train": {
            "batch_size": 2,
            "lr": 0.01,
            "max_steps": 6,
            "log_every": 4,
            "checkpoint_every": 6,
            "device": "cpu",
            **train,
        },
    }
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet",
            "train",
            "--config",
            str(tmp_path / f"{name}.yaml"),
            "--out",
            str(tmp_path / name),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_run_logs_times_per_row_and_scores_the_held_out_split(tmp_path, synth_splits):
    events = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    done = _train(tmp_path, synth_splits, "run", eval_every=3, tensorboard=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    rows = _rows(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(6))
    times = [float(r["time_s"]) for r in rows]
    assert all(b > a for a, b in itertools.pairwise(times))  # a clock, not a repeated window value
    for r in rows:
        assert float(r["step_s"]) > 0
        assert float(r["images_per_s"]) == pytest.approx(2 / float(r["step_s"]))
    # the reads at steps 3 (the evaluation), 4 (log_every) and 6 close the windows: 3 + 1 + 2
    windows = [r["window_images_per_s"] for r in rows]
    assert windows[0] == windows[1] == windows[2] and windows[4] == windows[5]
    assert len({r["step_s"] for r in rows}) > 1
    held_out = _rows(run / "eval.csv")
    assert [int(r["step"]) for r in held_out] == [3, 6]
    assert all(0.0 <= float(r["map"]) <= 1.0 and float(r["image_blind"]) >= 0 for r in held_out)
    assert "eval: step 3: voc07 mAP" in done.stderr and "(image-blind" in done.stderr
    assert not list(run.glob(".eval*"))  # the temporary model and detections are gone
    [folder] = {p.parent for p in (run / "tensorboard").glob("events.out.tfevents.*")}
    acc = events.EventAccumulator(str(folder))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in (
        "train/loss",
        "train/loc_loss",
        "train/conf_loss",
        "train/lr",
        "train/grad_norm",
        "train/images_per_s",
        "eval/mAP",
    ):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Scalars("eval/mAP")] == [3, 6]
    assert acc.Scalars("eval/mAP")[0].value == pytest.approx(float(held_out[0]["map"]))


def test_held_out_evaluation_is_refused_before_training_when_it_cannot_run(tmp_path, synth_splits):
    no_test = _train(tmp_path, {"trainval": synth_splits["trainval"]}, "a", eval_every=3)
    assert no_test.returncode == 2 and "train.eval_every: needs data.test" in no_test.stderr
    other = json.loads(Path(synth_splits["test"]).read_text())
    other["categories"] = other["categories"][:-1]
    dropped = {c["id"] for c in json.loads(Path(synth_splits["test"]).read_text())["categories"]}
    dropped -= {c["id"] for c in other["categories"]}
    other["annotations"] = [a for a in other["annotations"] if a["category_id"] not in dropped]
    info = other["info"]
    info["image_dir"] = str(Path(synth_splits["test"]).parent / info["image_dir"])
    (tmp_path / "other.json").write_text(json.dumps(other))
    mismatch = _train(
        tmp_path, {**synth_splits, "test": tmp_path / "other.json"}, "b", eval_every=3
    )
    assert mismatch.returncode == 2 and "differ from the training set's" in mismatch.stderr
    assert "--like" in mismatch.stderr
    assert not list((tmp_path / "b").glob("checkpoints/*"))


def test_eval_prints_the_ap_of_every_class_like_the_devkit(tmp_path, synth_splits):
    gt = json.loads(Path(synth_splits["test"]).read_text())
    first = gt["categories"][0]["id"]
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
        if a["category_id"] != first
    ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet",
            "eval",
            "--gt",
            str(synth_splits["test"]),
            "--dets",
            str(tmp_path / "dets.json"),
            "--out",
            str(tmp_path / "m.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    per_class = json.loads((tmp_path / "m.json").read_text())["per_class"]
    assert lines[: len(names)] == [f"AP for {n} = {per_class[n]:.4f}" for n in names]
    assert lines[0] == f"AP for {names[0]} = 0.0000" and any("= 1.0000" in x for x in lines)
    assert lines[-1].endswith(
        f"voc07 mAP = {json.loads((tmp_path / 'm.json').read_text())['map']:.4f}"
    )
