"""Shared fixtures: a small synthetic VOC dataset, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchdet.data.annotations import save_annotations
from scratchdet.data.synth import make_synthetic_voc
from scratchdet.data.voc import read_voc


@pytest.fixture(scope="session")
def synth_splits(tmp_path_factory) -> dict[str, Path]:
    """A 24-image synthetic VOCdevkit converted to trainval.json and test.json."""
    root = tmp_path_factory.mktemp("synth")
    voc_dir = make_synthetic_voc(root, n_trainval=16, n_test=8, seed=0)
    out = {}
    for split in ("trainval", "test"):
        out[split] = root / f"{split}.json"
        save_annotations(read_voc(voc_dir, split), out[split])
    out["voc_dir"] = voc_dir
    return out
