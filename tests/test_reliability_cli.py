"""Probes of the command line as a user meets it: each gives `scratchdet` something it cannot do
(an output folder that is full or read-only, Ctrl-C, a missing image read by a DataLoader worker,
a folder where a file belongs, a config that is not UTF-8, arguments out of range, ...) and asserts
exit status 2 (130 for Ctrl-C), one line on stderr naming the file or key, no traceback and no
half-written file. tests/reliability.py judges the answers (good / weak / traceback / silent).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.reliability import (
    CODE_INTERRUPTED,
    assert_good,
    mounted_tmpfs,
    no_leftovers,
    run_cli,
    start_cli,
    stop_group,
)
from tests.test_interruption import TINY_DSOD


def _config(folder: Path, train_json: Path, name: str = "run.yaml", **sections) -> Path:
    cfg = {
        "seed": 0,
        "model": TINY_DSOD,
        "data": {"train": str(train_json), "num_workers": 0},
        "train": {"batch_size": 2, "max_steps": 1, "checkpoint_every": 1, "device": "cpu"},
    }
    for section, values in sections.items():
        cfg[section] = cfg.get(section, {}) | values
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_splits) -> Path:
    """model_final.pt of a one-step tiny run."""
    tmp = tmp_path_factory.mktemp("trained")
    done = run_cli(
        "train", "--config", str(_config(tmp, synth_splits["trainval"])), "--out", str(tmp / "run")
    )
    assert done.returncode == 0, done.stderr
    return tmp / "run" / "model_final.pt"


@pytest.fixture(scope="module")
def detections(tmp_path_factory, trained, synth_splits) -> Path:
    out = tmp_path_factory.mktemp("dets") / "dets.json"
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(synth_splits["test"]),
        "--out",
        str(out),
        "--workers",
        "0",
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def readonly(tmp_path) -> Path:
    """A folder nothing can be written to: a read-only tmpfs as root (EROFS), else mode 0555."""
    where = tmp_path / "readonly"
    if os.geteuid() != 0:
        where.mkdir()
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    try:
        with mounted_tmpfs(where, "1m", read_only=True):
            yield where
    except OSError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def full(tmp_path) -> Path:
    """A 4 MiB tmpfs (root only): a checkpoint of the tiny model does not fit in it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where = tmp_path / "full"
    try:
        with mounted_tmpfs(where, "4m"):
            yield where
    except OSError as exc:
        pytest.skip(str(exc))


def _fill(folder: Path) -> None:
    """Leave no free byte in `folder`'s filesystem."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


# --- an output folder that is read-only or full -------------------------------------------------


def test_train_into_a_read_only_folder(readonly, synth_splits, tmp_path):
    config = _config(tmp_path, synth_splits["trainval"])
    done = run_cli("train", "--config", str(config), "--out", str(readonly / "run"))
    line = assert_good("train read-only out", done, done.stderr, str(readonly))
    assert "read-only" in line or "permission" in line.lower(), line


def test_detect_into_a_read_only_folder(readonly, trained, synth_splits):
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(synth_splits["test"]),
        "--out",
        str(readonly / "dets.json"),
        "--workers",
        "0",
    )
    assert_good("detect read-only out", done, done.stderr, str(readonly))


def test_eval_into_a_read_only_folder(readonly, detections, synth_splits):
    done = run_cli(
        "eval",
        "--gt",
        str(synth_splits["test"]),
        "--dets",
        str(detections),
        "--out",
        str(readonly / "eval.json"),
    )
    assert_good("eval read-only out", done, done.stderr, str(readonly))


@pytest.mark.slow
def test_train_onto_a_full_disk(full, synth_splits, tmp_path):
    config = _config(tmp_path, synth_splits["trainval"])
    done = run_cli("train", "--config", str(config), "--out", str(full / "run"))
    line = assert_good("train full disk", done, done.stderr, str(full / "run"))
    assert "disk is full" in line or "no space" in line.lower(), line
    assert no_leftovers(full) == [], "an interrupted write left its temporary file"


def test_detect_onto_a_full_disk(full, trained, synth_splits):
    _fill(full)
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(synth_splits["test"]),
        "--out",
        str(full / "dets.json"),
        "--workers",
        "0",
    )
    line = assert_good("detect full disk", done, done.stderr, str(full / "dets.json"))
    assert "disk is full" in line, line
    assert not (full / "dets.json").exists() and no_leftovers(full) == []


def test_eval_onto_a_full_disk(full, detections, synth_splits):
    _fill(full)
    done = run_cli(
        "eval",
        "--gt",
        str(synth_splits["test"]),
        "--dets",
        str(detections),
        "--out",
        str(full / "eval.json"),
    )
    line = assert_good("eval full disk", done, done.stderr, str(full / "eval.json"))
    assert "disk is full" in line, line
    assert not (full / "eval.json").exists() and no_leftovers(full) == []


def test_an_output_path_that_is_a_folder(tmp_path, trained, synth_splits):
    (tmp_path / "dets.json").mkdir()
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(synth_splits["test"]),
        "--out",
        str(tmp_path / "dets.json"),
        "--workers",
        "0",
    )
    assert_good("detect --out is a folder", done, done.stderr, str(tmp_path / "dets.json"))
    assert no_leftovers(tmp_path) == []


def test_a_run_folder_that_is_a_file(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"])
    (tmp_path / "run").write_text("not a folder")
    done = run_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_good("train --out is a file", done, done.stderr, str(tmp_path / "run"))


# --- Ctrl-C --------------------------------------------------------------------------------------


def _interrupt(proc, when) -> str:
    """Wait until `when()` holds (the process still running), then Ctrl-C its process group."""
    try:
        deadline = time.monotonic() + 120
        while not when():
            if proc.poll() is not None:
                pytest.fail(f"the command ended before the interrupt: {proc.communicate()}")
            assert time.monotonic() < deadline, "the point of the interrupt never came"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        return err
    finally:
        stop_group(proc)


def _after(seconds: float):
    start = time.monotonic()
    return lambda: time.monotonic() - start > seconds


def test_ctrl_c_while_train_starts(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"], train={"max_steps": 50})
    proc = start_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    err = _interrupt(proc, _after(1.0))  # importing torch, reading the config
    line = assert_good("train Ctrl-C at start-up", proc, err, expected=CODE_INTERRUPTED)
    assert "interrupted" in line, line
    assert no_leftovers(tmp_path) == []


def test_ctrl_c_while_train_builds_its_model(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"], train={"max_steps": 50})
    run = tmp_path / "run"
    proc = start_cli("train", "--config", str(config), "--out", str(run))
    err = _interrupt(proc, lambda: (run / ".run.lock").exists())  # inside train(), before step 1
    line = assert_good("train Ctrl-C in train()", proc, err, str(run), expected=CODE_INTERRUPTED)
    assert "interrupted" in line, line
    assert no_leftovers(tmp_path) == [] and not (run / "model_final.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_ctrl_c_while_train_steps(tmp_path, synth_splits, workers):
    """In the loop a Ctrl-C saves a snapshot first (its DataLoader workers, which get the signal
    too, must not die under the step that still needs them)."""
    config = _config(
        tmp_path, synth_splits["trainval"], data={"num_workers": workers}, train={"max_steps": 50}
    )
    run = tmp_path / "run"
    proc = start_cli("train", "--config", str(config), "--out", str(run))
    err = _interrupt(proc, lambda: (run / "checkpoints").is_dir())
    line = assert_good(
        f"train Ctrl-C in the loop, {workers} workers",
        proc,
        err,
        str(run),
        expected=CODE_INTERRUPTED,
    )
    assert "interrupted" in line and "snapshot saved" in line, line
    assert no_leftovers(tmp_path) == [] and not (run / "model_final.pt").exists()


def test_ctrl_c_during_detect(tmp_path, trained, synth_splits):
    out = tmp_path / "dets.json"
    proc = start_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(synth_splits["trainval"]),
        "--out",
        str(out),
        "--workers",
        "1",
    )
    lock = tmp_path / ".dets.json.lock"
    err = _interrupt(proc, lambda: lock.exists())
    line = assert_good("detect Ctrl-C", proc, err, expected=CODE_INTERRUPTED)
    assert "interrupted" in line, line
    assert not out.exists() and no_leftovers(tmp_path) == []


def test_ctrl_c_during_eval(tmp_path):
    """A case long enough to interrupt: eval no longer imports torch, so the synthetic test
    split's score is done in a fraction of a second; COCO on 1,000 generated images takes
    several seconds."""
    from scratchdet.benchmark.eval import make_case

    gt, dets = make_case(tmp_path / "case", 1000)
    out = tmp_path / "eval.json"
    proc = start_cli(
        "eval", "--gt", str(gt), "--dets", str(dets), "--metric", "coco", "--out", str(out)
    )
    err = _interrupt(proc, _after(1.5))
    line = assert_good("eval Ctrl-C", proc, err, expected=CODE_INTERRUPTED)
    assert "interrupted" in line, line
    assert not out.exists() and no_leftovers(tmp_path) == []


# --- data read by DataLoader workers ------------------------------------------------------------


@pytest.fixture
def one_image_missing(tmp_path, synth_splits) -> tuple[Path, Path, Path]:
    """Copies of both splits whose images live in tmp_path; one training and one test image gone."""
    images = tmp_path / "images"
    shutil.copytree(Path(synth_splits["voc_dir"]) / "JPEGImages", images)
    out = []
    for split in ("trainval", "test"):
        ds = json.loads(Path(synth_splits[split]).read_text())
        ds["info"]["image_dir"] = str(images)
        path = tmp_path / f"{split}.json"
        path.write_text(json.dumps(ds))
        missing = images / ds["images"][1]["file_name"]
        missing.unlink()
        out.append(path)
    return out[0], out[1], missing


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_train_meets_a_missing_image(tmp_path, one_image_missing, workers):
    train_json, _, _ = one_image_missing
    config = _config(
        tmp_path,
        train_json,
        data={"num_workers": workers},
        train={"max_steps": 8, "checkpoint_every": 100},
    )
    done = run_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    ds = json.loads(train_json.read_text())
    missing = str(Path(ds["info"]["image_dir"]) / ds["images"][1]["file_name"])
    assert_good(f"train missing image, {workers} workers", done, done.stderr, missing)


@pytest.mark.parametrize("workers", [0, 1])
def test_detect_meets_a_missing_image(tmp_path, trained, one_image_missing, workers):
    _, test_json, _ = one_image_missing
    ds = json.loads(test_json.read_text())
    missing = str(Path(ds["info"]["image_dir"]) / ds["images"][1]["file_name"])
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(test_json),
        "--out",
        str(tmp_path / "dets.json"),
        "--workers",
        str(workers),
    )
    assert_good(f"detect missing image, {workers} workers", done, done.stderr, missing)
    assert not (tmp_path / "dets.json").exists()


# --- inputs that cannot be used ------------------------------------------------------------------


def _no_images(tmp_path: Path, synth_splits) -> Path:
    ds = json.loads(Path(synth_splits["test"]).read_text())
    ds["info"]["image_dir"] = str(Path(synth_splits["test"]).parent / ds["info"]["image_dir"])
    ds["images"], ds["annotations"] = [], []
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(ds))
    return path


def test_train_on_an_annotation_file_with_no_images(tmp_path, synth_splits):
    empty = _no_images(tmp_path, synth_splits)
    done = run_cli(
        "train", "--config", str(_config(tmp_path, empty)), "--out", str(tmp_path / "run")
    )
    assert_good("train no images", done, done.stderr, str(empty))
    assert not (tmp_path / "run").exists()


def test_detect_on_an_annotation_file_with_no_images(tmp_path, trained, synth_splits):
    empty = _no_images(tmp_path, synth_splits)
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(empty),
        "--out",
        str(tmp_path / "dets.json"),
        "--workers",
        "0",
    )
    assert_good("detect no images", done, done.stderr, str(empty))
    assert not (tmp_path / "dets.json").exists()


@pytest.mark.parametrize("device", ["cuda:x", "gpu", "cuda:-1", "meta"])
def test_detect_with_a_device_string_torch_does_not_know(tmp_path, trained, synth_splits, device):
    done = run_cli(
        "detect",
        "--checkpoint",
        str(trained),
        "--data",
        str(synth_splits["test"]),
        "--out",
        str(tmp_path / "dets.json"),
        "--device",
        device,
    )
    assert_good(f"detect --device {device}", done, done.stderr, "--device", device)


def test_train_with_a_device_string_torch_does_not_know(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"], train={"device": "cuda:x"})
    done = run_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_good("train train.device cuda:x", done, done.stderr, str(config), "train.device")


def test_a_folder_as_the_config(tmp_path):
    (tmp_path / "configs").mkdir()
    done = run_cli("train", "--config", str(tmp_path / "configs"), "--out", str(tmp_path / "run"))
    assert_good("train --config folder", done, done.stderr, str(tmp_path / "configs"))


def test_a_folder_as_the_training_split(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["voc_dir"])
    done = run_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_good("train data.train folder", done, done.stderr, str(synth_splits["voc_dir"]))


@pytest.mark.parametrize("option", ["--data", "--checkpoint"])
def test_detect_given_a_folder_for_a_file(tmp_path, trained, synth_splits, option):
    given = {"--data": str(synth_splits["test"]), "--checkpoint": str(trained)}
    given[option] = str(tmp_path)
    done = run_cli(
        "detect",
        *[x for kv in given.items() for x in kv],
        "--out",
        str(tmp_path / "dets.json"),
        "--workers",
        "0",
    )
    assert_good(f"detect {option} folder", done, done.stderr, str(tmp_path))


def test_eval_given_a_folder_for_the_ground_truth(tmp_path, detections):
    done = run_cli(
        "eval",
        "--gt",
        str(tmp_path),
        "--dets",
        str(detections),
        "--out",
        str(tmp_path / "eval.json"),
    )
    assert_good("eval --gt folder", done, done.stderr, str(tmp_path))


def test_a_config_that_is_not_utf8(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"])
    config.write_bytes(b"# r\xe9glages (Latin-1)\n" + config.read_bytes())
    done = run_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    line = assert_good("train config not UTF-8", done, done.stderr, str(config))
    assert "UTF-8" in line, line
    done = run_cli(
        "detect",
        "--config",
        str(config),
        "--checkpoint",
        "x.pt",
        "--data",
        "x.json",
        "--out",
        str(tmp_path / "dets.json"),
    )
    assert_good("detect config not UTF-8", done, done.stderr, str(config))


@pytest.mark.parametrize(
    "args, option",
    [
        (["--trainval", "-1"], "--trainval"),
        (["--test", "0"], "--test"),
        (["--objects", "5", "1"], "--objects"),
        (["--object-size", "0.9", "0.1"], "--object-size"),
        (["--classes", "box", "hexagon"], "--classes"),
    ],
)
def test_data_synth_with_arguments_it_cannot_satisfy(tmp_path, args, option):
    done = run_cli("data", "synth", "--out", str(tmp_path / "synth"), *args)
    assert_good(f"data synth {' '.join(args)}", done, done.stderr, option)
    assert not (tmp_path / "synth").exists()


@pytest.mark.parametrize(
    "command, option",
    [
        (["detect", "--checkpoint", "m.pt", "--data", "t.json", "--out", "d.json"], "--workers"),
        (["curve", "--run", "run", "--data", "t.json", "--out", "c.csv"], "--workers"),
        (["detect", "--checkpoint", "m.pt", "--data", "t.json", "--out", "d.json"], "--precise-bn"),
        (["train", "--config", "c.yaml", "--out", "run"], "--nproc"),
        (["train", "--config", "c.yaml", "--out", "run"], "--gpus"),
    ],
)
def test_a_negative_count_on_the_command_line(tmp_path, command, option):
    done = run_cli(*command, option, "-1", cwd=tmp_path)
    assert_good(f"{command[0]} {option} -1", done, done.stderr, option)
    assert os.listdir(tmp_path) == []


def test_an_image_size_the_model_cannot_take(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"], data={"image_size": 200})
    done = run_cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_good("train data.image_size 200", done, done.stderr, str(config), "data.image_size")


@pytest.mark.slow
def test_the_run_folder_deleted_while_training(tmp_path, synth_splits):
    config = _config(tmp_path, synth_splits["trainval"], train={"max_steps": 40})
    run = tmp_path / "run"
    proc = start_cli("train", "--config", str(config), "--out", str(run))
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints").is_dir():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no snapshot appeared"
            time.sleep(0.05)
        shutil.rmtree(run)
        _, err = proc.communicate(timeout=180)
    finally:
        stop_group(proc)
    line = assert_good("train run folder deleted", proc, err, str(run))
    assert "deleted" in line, line
    assert not run.exists(), "nothing is written into a folder the user removed"
