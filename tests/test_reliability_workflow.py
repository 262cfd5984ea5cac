"""Probes of the workflow's inputs as a user edits them: a params table with a row that has more
tab-separated cells than its header stops the dry run with one line naming the file and the line,
not pandas' tokenizer error (which names neither)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scratchdet.errors import ConfigError
from scratchdet.paper_tables import load_table
from tests.reliability import judge

ROOT = Path(__file__).resolve().parent.parent


def _extra_cell(folder: Path) -> Path:
    path = folder / "params" / "scratchdet_table3.tsv"
    lines = path.read_text().split("\n")
    lines[2] += "\tan extra cell"
    path.write_text("\n".join(lines))
    return path


def test_an_extra_cell_in_a_params_row_names_the_file_and_line(tmp_path):
    shutil.copytree(ROOT / "params", tmp_path / "params")
    path = _extra_cell(tmp_path)
    with pytest.raises(ConfigError, match=rf"{path}:3: <row>: .*1 more tab-separated cell"):
        load_table(path)


@pytest.mark.slow
def test_the_dry_run_stops_on_an_extra_cell_in_one_line(tmp_path):
    for name in ("workflow", "config", "params"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    _extra_cell(tmp_path)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "params/scratchdet_table3.tsv:3: <row>" in out, out[-3000:]
    assert "Error tokenizing data" not in out, out[-3000:]
    assert judge(done.returncode, "", ()) != "traceback"
