"""The workflow's Snakemake config is checked by scratchdet.workflow.snakemake_config (one line per
problem, naming the key), as the shipped config/config.yaml + config/downloads.yaml pass."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from scratchdet.errors import ConfigError
from scratchdet.workflow.snakemake_config import check_workflow_config
from scratchdet.yaml_io import load_yaml

ROOT = Path(__file__).resolve().parent.parent


def shipped() -> dict:
    return load_yaml(ROOT / "config/config.yaml") | load_yaml(ROOT / "config/downloads.yaml")


def test_the_shipped_config_is_valid_and_returned_unchanged():
    config = shipped()
    assert check_workflow_config(copy.deepcopy(config)) == config


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"scale": "huge"}, "scale", "must be one of default, proof, paper, got 'huge'"),
        ({"figure1": []}, "figure1", "at least one"),
        ({"tables": ["Bad-Name"]}, "tables[0]", "must match"),
        ({"data_dir": ""}, "data_dir", "must not be empty"),
        (
            {"existing_data": {"train2017.zip": 3}},
            "existing_data.train2017.zip",
            "expected a string",
        ),
    ],
)
def test_a_bad_value_names_its_key(change, key, words):
    with pytest.raises(ConfigError) as err:
        check_workflow_config(shipped() | change)
    assert err.value.key == key and words in err.value.problem, str(err.value)
    assert str(err.value).startswith("config: ") and "\n" not in str(err.value)


def test_a_download_needs_a_checksum_or_a_manual_note_naming_the_archive():
    config = shipped()
    archive = sorted(config["downloads"])[-1]
    config["downloads"][archive] = {"url": "https://example.org/a.tar"}
    with pytest.raises(ConfigError) as err:
        check_workflow_config(config)
    assert err.value.key == f"downloads.{archive}" and "md5, sha256 or manual" in err.value.problem
    config["downloads"][archive] = {"url": "https://example.org/a.tar", "md5": "zz"}
    with pytest.raises(ConfigError, match=rf"downloads\.{archive}\.md5: must match"):
        check_workflow_config(config)
