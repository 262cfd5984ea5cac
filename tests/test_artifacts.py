"""Which folders `scratchdet artifacts push` versions (the DVC round trip itself is in
test_dvc_roundtrip.py)."""

from __future__ import annotations

import pytest

from scratchdet.artifacts import finished_rows, push
from scratchdet.errors import ScratchdetError
from scratchdet.io import write_json


def test_only_run_folders_whose_training_ended_are_pushed(tmp_path):
    done = tmp_path / "dsod_table6/dsod300_coco/0123456789"
    write_json(done / "train/status.json", {"status": "finished", "step": 2})
    (tmp_path / "dsod_table5/dsod300_07pp12/abcdef0123/train").mkdir(parents=True)  # still running
    write_json(tmp_path / "tables/dsod_table6.json", {})
    assert finished_rows(tmp_path) == [done]


def test_nothing_to_push_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(ScratchdetError, match=f"{tmp_path}: no finished training row"):
        push(tmp_path, None)
