"""Writes the disk refuses, in-process and without root (the CLI probes mount tmpfs as root):
each is a DataError naming the output and what to do, and no temporary file is left."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from scratchdet.engine.checkpoint import save_checkpoint
from scratchdet.engine.training_log import TrainingLog
from scratchdet.errors import ConfigError, DataError
from scratchdet.io import write_json


def _refuse(code: int):
    def write(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return write


def test_a_full_disk_under_torch_save_names_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _refuse(errno.ENOSPC))
    path = tmp_path / "run" / "checkpoints" / "step_00000001.pt"
    with pytest.raises(DataError, match="the disk is full") as caught:
        save_checkpoint({"step": 1}, path)
    assert caught.value.path == str(path)
    assert list(path.parent.iterdir()) == [], "the temporary file is removed"


def test_a_real_short_write_is_enospc_not_unexpected_pos(tmp_path, monkeypatch):
    """torch writes through our Python file: an OSError of its write reaches atomic_path."""
    real_open = open

    class Full:  # the disk fills after the first 1000 bytes (as a real full disk does)
        def __init__(self, fh):
            self.fh, self.room = fh, 1000

        def write(self, data):
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def full_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Full(fh) if "w" in mode and str(file).endswith(".tmp") else fh

    monkeypatch.setattr("builtins.open", full_open)
    path = tmp_path / "model_final.pt"
    with pytest.raises(DataError, match=f"{path}: cannot write: the disk is full"):
        save_checkpoint({"model": {"w": torch.zeros(1000)}}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "code, named, words",
    [
        (errno.EROFS, "folder", "read-only file system"),
        (errno.EACCES, "folder", "permission denied"),
        (errno.EDQUOT, "file", "quota"),
    ],
)
def test_a_refused_write_names_the_file_or_its_folder(tmp_path, monkeypatch, code, named, words):
    monkeypatch.setattr(os, "replace", _refuse(code))
    out = tmp_path / "eval.json"
    with pytest.raises(DataError, match=words) as caught:
        write_json(out, {"map": 0.5})
    assert caught.value.path == str(out if named == "file" else tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_full_disk_while_logging_metrics(tmp_path, monkeypatch):
    log = TrainingLog(tmp_path / "metrics.csv")
    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda f, mode="r", *a, **k: (
            _refuse(errno.ENOSPC)() if "a" in mode else real_open(f, mode, *a, **k)
        ),
    )
    with pytest.raises(DataError, match=f"{tmp_path / 'metrics.csv'}: cannot write: the disk"):
        log.append(
            dict.fromkeys(
                (
                    "step",
                    "lr",
                    "loss",
                    "loc_loss",
                    "conf_loss",
                    "grad_norm",
                    "num_pos",
                    "images_per_s",
                    "elapsed_s",
                ),
                1,
            )
        )


def test_an_error_of_a_dataloader_worker_comes_back_as_itself():
    """torch re-raises a worker's error as `type(traceback text)`: the one-line message stays."""
    from torch.utils.data import DataLoader, Dataset

    class Missing(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DataError("/data/000002.jpg", "image file not found")

    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(Missing(), num_workers=1)))
    assert str(caught.value) == "/data/000002.jpg: image file not found"
    assert caught.value.path == "/data/000002.jpg"
    assert caught.value.problem == "image file not found"
    text = (
        "Traceback (most recent call last):\n  ...\nscratchdet.errors.ConfigError: a.yaml: k: bad\n"
    )
    assert str(ConfigError(text)) == "a.yaml: k: bad"


def test_the_folder_deleted_while_a_file_is_written(tmp_path):
    import shutil

    from scratchdet.io import atomic_path

    out = tmp_path / "run" / "status.json"
    deleted = "was deleted while status.json was being written"
    with pytest.raises(DataError, match=deleted), atomic_path(out) as tmp:
        tmp.write_text("{}")
        shutil.rmtree(tmp_path / "run")
    assert not (tmp_path / "run").exists(), "nothing recreated the folder"
