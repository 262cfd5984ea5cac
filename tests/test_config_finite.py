"""No NaN or infinity reaches a run (it would train to NaN weights and exit 0), and a run config
that is not a mapping is one clear error, with or without --set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scratchdet.cli import main
from scratchdet.config import config_from_dict, load_config
from scratchdet.errors import ConfigError


@pytest.mark.parametrize(
    "text, key",
    [
        ("train: {lr: .nan}", "train.lr"),
        ("train: {lr: .inf}", "train.lr"),
        ("train: {max_loss: -.inf}", "train.max_loss"),
        ("train: {momentum: .NaN}", "train.momentum"),
        ("loss: {loc_weight: .inf}", "loss.loc_weight"),
        ("detect: {conf_threshold: .nan}", "detect.conf_threshold"),
        ("model: {name: dsod300, growth_rate: .nan}", "model.growth_rate"),
        ("model: {name: dsod300, scales: [0.1, .inf]}", "model.scales[1]"),
    ],
)
def test_non_finite_numbers_are_refused_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "run.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and "finite" in err.value.problem
    assert str(path) in str(err.value)


def test_an_override_cannot_sneak_nan_in(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 0.01}\n")
    with pytest.raises(ConfigError, match=r"train.lr: must be a finite number"):
        load_config(path, {"train.lr": float("nan")})
    with pytest.raises(ConfigError, match="finite"):
        config_from_dict({"train": {"gamma": 10**400}})  # too large for a float


@pytest.mark.parametrize("text", ["- train\n- model\n", "42\n", "just a sentence\n"])
def test_a_config_that_is_not_a_mapping_is_one_line_even_with_set(tmp_path, capsys, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    argv = ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--set", "train.lr=0.1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "mapping" in err, err
    assert not (tmp_path / "run").exists()


def test_the_console_script_says_it_in_one_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- train\n- model\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet",
            "train",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "train.lr=0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_set_inside_a_scalar_section_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {"train.lr": 0.1})
    assert err.value.path == str(path) and err.value.key == "train.lr"
