"""`scratchdet config show`: every key of a run config, its default and a one-line help, as YAML
that the training command reads."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import yaml

from scratchdet.config import RunConfig, config_from_dict
from scratchdet.models.registry import resolve_config


def _show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scratchdet", "config", "show", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_config_show_prints_every_key_with_its_default_and_help():
    done = _show()
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    # the defaults, key for key: the printed file is the default run config
    assert config_from_dict(shown).to_dict() == RunConfig().to_dict() | {"model": shown["model"]}
    for section in ("data", "train", "loss", "detect"):
        assert set(shown[section]) == {
            f.name for f in msgspec.structs.fields(type(getattr(RunConfig(), section)))
        }, section
    name, opts = resolve_config(RunConfig().model)
    assert shown["model"] == {"name": name, **msgspec.structs.asdict(opts)}
    keyed = [line for line in done.stdout.splitlines() if not line.endswith(":")]
    missing = [line for line in keyed if " # " not in line]
    assert not missing, f"keys without help: {missing}"
    assert any(line.strip().startswith("lr: 0.001") and "learning rate" in line for line in keyed)


def test_config_show_for_a_named_model_and_an_unknown_one():
    done = _show("--model", "dsod300")
    assert done.returncode == 0, done.stderr
    model = yaml.safe_load(done.stdout)["model"]
    assert model["name"] == "dsod300" and model["growth"] == 48 and model["prediction"] == "dense"
    assert "growth: 48" in done.stdout and "growth rate of the dense blocks" in done.stdout
    bad = _show("--model", "nope")
    assert bad.returncode == 2 and "unknown model 'nope'" in bad.stderr
