"""Shared fixtures: a small synthetic VOC dataset, made once per test session."""

from __future__ import annotations

import os
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


def pytest_configure(config):
    """Under pytest-xdist each worker computes with one thread: two workers (and the jobs of a
    workflow test) share two cores, and torch's OpenMP threads spin-wait against each other
    when there are more of them than cores (an augmented learning test took 8x longer)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"  # the commands the tests start
        import torch

        torch.set_num_threads(1)


# The slowest tests first: with `pytest -n 2` (pyproject's addopts) the two workers then end
# together instead of one running the default-scale workflow alone at the end. Seconds measured
# in a CI run with two workers (pytest --durations); only the order depends on them.
LONGEST_FIRST = {
    "test_default_scale_runs_and_reports_every_table": 770,
    "test_learns_to_look_with_augmentation": 170,
    "test_memorises_four_images_from_scratch": 130,
    "test_default_scale_subset_runs_through_the_slurm_profile": 130,
    "test_a_fresh_clone_pulls_results_instead_of_retraining": 100,
}


def pytest_collection_modifyitems(config, items):
    def cost(item) -> int:
        return LONGEST_FIRST.get(getattr(item, "originalname", item.name), 0)

    items.sort(key=lambda item: -cost(item))  # stable: the rest keeps its order
