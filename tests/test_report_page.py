"""The page a reader lands on (`reports/<scale>/index.html`): the tables' reproduced numbers and
the figures, rendered in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROOF = ROOT / "reports/proof"
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)


def _dump_dom(page: Path, profile: Path) -> str:
    """The DOM after load, as headless Chromium renders the page."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_page_shows_the_tables_and_figures_in_a_browser(tmp_path):
    page = tmp_path / "index.html"
    note = "proof scale: a few rows trained from scratch"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet",
            "report",
            "page",
            "--reports",
            str(PROOF),
            "--title",
            "proof scale",
            "--note",
            note,
            "--out",
            str(page),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = sorted((PROOF / "figures").rglob("*.png"))
    assert f"the tables and {len(figures)} figures" in done.stdout
    if CHROMIUM is None:
        pytest.skip("no chromium to render the page (.ci/run installs it)")
    dom = _dump_dom(page, tmp_path / "profile")
    # every figure decoded by the browser (counted by the page's script after load)
    assert re.search(r'<body[^>]*data-figures-shown="(\d+)"', dom).group(1) == str(len(figures))
    assert note in dom
    for csv in sorted(PROOF.glob("*.csv")):  # each table's reproduced numbers, as cells
        df = pd.read_csv(csv).set_index("row")
        for row, value in df["mAP reproduced"].dropna().items():
            assert re.search(
                rf"<td>{re.escape(row)}</td>(?:(?!</tr>).)*<td class=\"num\">{value:.1f}</td>", dom
            ), (csv.name, row)
    dsod = pd.read_csv(PROOF / "dsod_table3.csv").set_index("row")["mAP reproduced"]
    assert f'<td class="num">{dsod["ds32-12-16-0.5_3blocks"]:.1f}</td>' in dom  # a number shown


def test_a_folder_without_reports_is_refused(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchdet",
            "report",
            "page",
            "--reports",
            str(tmp_path),
            "--out",
            str(tmp_path / "index.html"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "no table (*.md) or figure" in done.stderr
