"""Progress on stderr: lines in a log (train, detect, eval, download), a bar on a terminal.

The commands run for real (a tiny DSOD, the synthetic split, a local HTTP server); their stderr is
not a terminal here, as in a Snakemake job log, so they write lines.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scratchdet.cli import main
from scratchdet.engine.checkpoint import snapshot_path
from scratchdet.engine.training_log import TrainingLog
from scratchdet.evaluation.coco import coco_eval, summary_lines
from scratchdet.progress import ENV, Progress
from tests.test_eval_coco import random_case
from tests.test_workflow_download import MD5, PAYLOAD, server  # noqa: F401 (a fixture)

TINY_DSOD = {"name": "dsod300_smallest", "stem_channels": 16, "bottleneck": 16, "growth": 8}
LINE = re.compile(
    r"^train: step (\d+)/4 \(\d+%\), [\d.]+ (?:step/s|s/step), elapsed [\d:]+, "
    r"ETA [\d:]+, loss (\S+), lr (\S+)$",
    re.MULTILINE,
)


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_splits) -> dict:
    """Four steps, read every two: the config, the run and what train wrote to stderr."""
    tmp = tmp_path_factory.mktemp("progress")
    config = tmp / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 0,
                "model": TINY_DSOD,
                "data": {"train": str(synth_splits["trainval"]), "num_workers": 0},
                "train": {
                    "batch_size": 2,
                    "lr": 0.01,
                    "max_steps": 4,
                    "log_every": 2,
                    "checkpoint_every": 2,
                    "deterministic": True,
                },
                "detect": {"batch_size": 2},
            }
        )
    )
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.delenv(ENV, raising=False)
        assert main(["train", "--config", str(config), "--out", str(tmp / "run")]) == 0
    return {"config": config, "run": tmp / "run", "err": err.getvalue()}


def test_training_writes_a_line_per_read_with_the_loss_it_read(trained):
    lines = LINE.findall(trained["err"])
    assert [int(step) for step, _, _ in lines] == [2, 4], trained["err"]
    rows = TrainingLog(trained["run"] / "metrics.csv").read()
    for (step, loss, lr), read in zip(lines, (rows[0:2], rows[2:4])):
        mean = sum(float(r["loss"]) for r in read) / 2
        assert loss == f"{mean:.4g}", f"step {step}: the mean loss of the rows read there"
        assert lr == f"{float(read[-1]['lr']):.4g}"


def test_a_resumed_run_counts_from_its_snapshot(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    for done in (snapshot_path(run, 4), run / "model_final.pt", run / "status.json"):
        done.unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["train", "--config", str(trained["config"]), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert [int(step) for step, _, _ in LINE.findall(err)] == [4], err  # steps 3 and 4 only


def test_detect_and_coco_eval_count_images_and_eval_prints_the_summary(
    trained, synth_splits, tmp_path, capsys
):
    dets, metrics = tmp_path / "dets.json", tmp_path / "metrics.json"
    capsys.readouterr()
    assert (
        main(
            [
                "detect",
                "--checkpoint",
                str(trained["run"] / "model_final.pt"),
                "--config",
                str(trained["config"]),
                "--data",
                str(synth_splits["test"]),
                "--out",
                str(dets),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    counts = re.findall(r"^detect: image (\d+)/8 \(\d+%\), .*ETA [\d:]+$", err, re.MULTILINE)
    assert counts == ["2", "4", "6", "8"], err  # one line per batch of 2 (every 5%, at least 1)

    assert (
        main(
            [
                "eval",
                "--gt",
                str(synth_splits["test"]),
                "--dets",
                str(dets),
                "--metric",
                "coco",
                "--out",
                str(metrics),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert re.search(r"^eval coco: image 8/8 \(100%\), ", err, re.MULTILINE), err
    lines = out.splitlines()
    assert lines[0].startswith(
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = "
    ), out
    assert len(lines) == 13 and lines[-1].startswith(f"{metrics}: coco mAP = "), out


def test_the_summary_is_the_one_pycocotools_prints():
    gt, dets = random_case(3)
    printed = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(printed):
        ev.summarize()
    assert (
        summary_lines(coco_eval(gt, dets, backend="pycocotools")["stats"])
        == printed.getvalue().splitlines()
    )


def test_a_download_logs_bytes_total_and_rate_into_its_job_log(server, tmp_path):  # noqa: F811
    """As the workflow's download rule runs it: stdout and stderr into the job's log file."""
    exe = shutil.which("scratchdet", path=str(Path(sys.executable).parent))
    assert exe, "the scratchdet console script is installed next to the interpreter"
    dest, log = tmp_path / "a.bin", tmp_path / "download.log"
    subprocess.run(
        f"{exe} data download --url {server} --md5 {MD5} --out {dest} > {log} 2>&1",
        shell=True,
        check=True,
    )
    assert dest.read_bytes() == PAYLOAD
    text = log.read_text()
    assert re.search(
        r"^download a\.bin: 1\.0 MiB/1\.0 MiB \(100%\), [\d.]+ [KMG]?i?B/s, ", text, re.MULTILINE
    ), text
    assert text.splitlines()[-1] == str(dest)  # the result line stays last


def test_lines_count_from_the_initial_units_and_end_with_the_last_count():
    out = io.StringIO()
    with Progress("job", 10, unit="item", initial=3, every=4, stream=out) as p:
        p.set(loss=1.23456)
        for _ in range(5):
            p.update()  # 4..8: a line at 4 and 8
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "job: item 4/10 (40%)",
        "job: item 8/10 (80%)",
    ]
    assert lines[-1].endswith(", loss 1.235")
    out = io.StringIO()
    with Progress("job", None, unit="item", every=4, stream=out) as p:
        p.update(6)  # unknown total: no percentage, no ETA; close writes the last count
        p.update()
    assert [line.split(",")[0] for line in out.getvalue().splitlines()] == [
        "job: item 6",
        "job: item 7",
    ]
    assert "ETA" not in out.getvalue()


def test_a_terminal_gets_a_bar_and_the_variable_silences_it(monkeypatch):
    leader, follower = os.openpty()  # a terminal that does not know its width
    with open(follower, "w") as tty:
        with Progress("job", 4, unit="item", stream=tty) as p:
            p.set(loss=1.5)
            p.update(4)
        tty.flush()
        drawn = b""
        while select.select([leader], [], [], 0.5)[0]:
            drawn += os.read(leader, 4096)
    os.close(leader)
    text = drawn.decode()
    assert "\r" in text and "| 4/4 [" in text and "loss=1.5" in text, text
    assert "job: item" not in text  # no log line
    monkeypatch.setenv(ENV, "0")
    out = io.StringIO()
    with Progress("job", 4, stream=out) as p:
        p.update(4)
    assert out.getvalue() == ""
