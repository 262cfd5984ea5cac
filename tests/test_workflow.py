"""The Snakemake workflow: planned jobs per scale (through Snakemake's API), lint, config errors,
and one real run of the default scale (marked slow) in a copy of the workflow."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

from scratchdet.errors import ConfigError
from scratchdet.paper_tables import load_table
from scratchdet.reports.tables import fmt

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "profiles", "workflow", "config", "params", "benchmarks")
TABLES = {p.stem: load_table(p) for p in sorted((ROOT / "params").glob("*.tsv"))}
ROWS = [r for rows in TABLES.values() for r in rows]


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    """A copy of the workflow (not the working tree, whose results/ and reports/ stay untouched)."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def plan(workdir: Path, *targets: str, **config) -> list[str]:
    """Output files of every job a dry run would execute (Snakemake's API, no network)."""
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            snakefile=workdir / "Snakefile",
            workdir=workdir,
            config_settings=ConfigSettings(config=config),
            resource_settings=ResourceSettings(cores=2),
        )
        updated: list[str] = []
        wf.dag(DAGSettings(targets=set(targets))).execute_workflow(
            executor="dryrun", updated_files=updated
        )
    return updated


def rules_of(workdir: Path, **config) -> dict[str, str | None]:
    """Rule name -> docstring, as the workflow defines them for `config`."""
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            snakefile=workdir / "Snakefile",
            workdir=workdir,
            config_settings=ConfigSettings(config=config),
            resource_settings=ResourceSettings(cores=2),
        )
        return {rule.name: rule.docstring for rule in wf._workflow.rules}


def train_jobs(files: list[str]) -> list[str]:
    """table/row of each planned training job."""
    return sorted(
        "/".join(Path(f).parts[-5:-3]) for f in files if f.endswith("train/model_final.pt")
    )


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("planning tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _snakemake(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- planning -----------------------------------------------------------------------------------


def test_default_scale_plans_every_row_but_the_pretrained_ones(workdir):
    planned = train_jobs(plan(workdir))
    assert planned == sorted(r.key for r in ROWS if not r.pretrained)
    assert len(planned) == 50  # 59 rows, 9 of them fine-tune ImageNet weights


def test_paper_scale_plans_one_training_job_per_row(workdir, no_network):
    planned = train_jobs(plan(workdir, scale="paper"))
    # every row, the ImageNet and COCO -> VOC ones included, except DSOD's DS/64-12-16-1
    # ImageNet row, whose weights were never published
    assert planned == sorted(r.key for r in ROWS if not r.unpublished)
    assert len(planned) == len(ROWS) - 1


def test_paper_scale_plans_the_downloads_and_server_files_offline(workdir, no_network):
    files = plan(workdir, scale="paper")
    downloads = yaml.safe_load((workdir / "config/downloads.yaml").read_text())["downloads"]
    assert sorted(Path(f).name for f in files if "/downloads/" in f) == sorted(downloads)
    names = Counter(Path(f).name for f in files)
    assert names["voc2012_test_submission.tar.gz"] >= 2  # DSOD Table 5, ScratchDet Table 3
    assert sum(n.startswith("detections_test-dev2017_") for n in names) >= 2  # both COCO tables
    assert "dets_test-dev2017.json" in names and "dets_val2017.json" in names
    pretrained = [r.key for r in ROWS if r.pretrained and not r.unpublished]
    assert set(pretrained) <= set(train_jobs(files))
    # planning read nothing from the internet and wrote nothing
    assert not (workdir / "data").exists() and not (workdir / "results").exists()


def test_datasets_the_lab_has_are_linked_not_downloaded(workdir, no_network, tmp_path):
    """config existing_data: the archives it names get no download or extraction job, but a
    local link job; the downloads themselves are local rules (compute nodes lack internet)."""
    lab = tmp_path / "lab_datasets"
    (lab / "VOCdevkit" / "VOC2007").mkdir(parents=True)
    existing = {a: str(lab) for a in ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar")}
    files = plan(workdir, scale="paper", existing_data=existing)
    names = {Path(f).name for f in files}
    assert not names & set(existing)  # no download of them
    assert {f"{a}.done" for a in existing} <= names  # their link jobs
    assert "VOCtrainval_11-May-2012.tar" in names  # the others still download
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            snakefile=workdir / "Snakefile",
            workdir=workdir,
            resource_settings=ResourceSettings(cores=2),
        )
        local = set(wf._workflow._localrules)
    assert {"download", "imagenet_weights", "existing_data"} <= local


def test_the_main_job_writes_the_page_a_reader_lands_on(workdir):
    assert "reports/default/index.html" in plan(workdir)


def test_a_subset_of_tables_can_be_planned(workdir):
    planned = train_jobs(plan(workdir, tables=["scratchdet_table3"]))
    assert planned == [
        "scratchdet_table3/scratchdet300_voc07",
        "scratchdet_table3/scratchdet300_voc12",
    ]


def test_a_tables_report_file_plans_that_table_only(workdir):
    files = plan(workdir, "reports/default/dsod_table3.md")
    rows = TABLES["dsod_table3"]
    # its rows, and the run one of them is fine-tuned from (DSOD Table 6's COCO run)
    assert train_jobs(files) == sorted(
        {r.key for r in rows} | {r.init_from for r in rows if r.init_from}
    )
    assert {Path(f).name for f in files if f.startswith("reports/")} == {
        "dsod_table3.md",
        "dsod_table3.csv",
        "dsod_table3.csv.meta.json",
    }
    # the same jobs as selecting the table in the config (plus the all rule and the page)
    selected = plan(workdir, tables=["dsod_table3"])
    assert train_jobs(selected) == train_jobs(files)
    assert {Path(f).name for f in selected if f.startswith("reports/")} == {
        "dsod_table3.md",
        "dsod_table3.csv",
        "dsod_table3.csv.meta.json",
        "index.html",
    }
    files = plan(workdir, "reports/default/scratchdet_table5.md")
    assert train_jobs(files) == [
        "scratchdet_table4/scratchdet300_coco",
        "scratchdet_table5/scratchdet300_coco_voc07",
        "scratchdet_table5/scratchdet300_coco_voc12",
    ]


def test_the_rule_list_is_the_same_at_every_scale_and_every_rule_says_what_it_does(workdir):
    default, paper = rules_of(workdir), rules_of(workdir, scale="paper")
    assert sorted(default) == sorted(paper)
    assert {"synth_dataset", "download", "imagenet_weights", "train", "table_report"} <= set(paper)
    undocumented = [name for name, doc in default.items() if not (doc or "").strip()]
    assert undocumented == []


def test_paper_scale_fetches_imagenet_weights_in_jobs_of_their_own(workdir, no_network):
    files = plan(workdir, scale="paper")
    weights = sorted(Path(f).name for f in files if "/hub/checkpoints/" in f)
    assert weights and all(f.endswith(".pth") for f in weights)
    assert all(f.startswith("data/torch/hub/checkpoints/") for f in files if f.endswith(".pth"))


# --- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, key, message",
    [
        ({"scale": "huge"}, "scale", "must be one of default, proof, paper, got 'huge'"),
        ({"colour": "red"}, "colour", "unknown key; allowed keys here: scale, tables"),
        ({"showcase": ["dsod_table4"]}, "showcase[0]", "must match"),
    ],
)
def test_a_wrong_config_key_or_value_is_a_clear_error(workdir, config, key, message):
    with pytest.raises(ConfigError) as err:
        plan(workdir, **config)
    assert err.value.key == key and message in err.value.problem, str(err.value)
    assert "\n" not in str(err.value)


def test_a_malformed_params_row_is_rejected_at_planning(workdir):
    path = workdir / "params/scratchdet_table3.tsv"
    path.write_text(path.read_text().replace("\tvoc07\t", "\tvoc2007\t", 1))
    message = r"scratchdet_table3.tsv:2: eval: must be one of voc07, voc12, coco, got 'voc2007'"
    with pytest.raises(ConfigError, match=message):
        plan(workdir)


def test_a_typo_in_a_figure_row_names_the_table(workdir):
    with pytest.raises(ConfigError, match=r"not a row of params/dsod_table4.tsv"):
        plan(workdir, showcase=["dsod_table4/dsod301"])


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "{name: scratchdet300}",
            "{name: scratchdet300, bn_haed: true}",
            r"params/scratchdet_table3.tsv:2: model.bn_haed: unknown key",
        ),
        (
            "{name: scratchdet300}",
            "{name: scratchdet301}",
            r"params/scratchdet_table3.tsv:2: model.name: unknown model 'scratchdet301'",
        ),
        ("\t\t80.4", "\t{lr: fast}\t80.4", r"params/scratchdet_table3.tsv:2: train.lr: expected"),
        (
            "\t\t80.4",
            "\t{milestones: 40000}\t80.4",
            r"params/scratchdet_table3.tsv:2: train.milestones",
        ),
    ],
)
def test_a_bad_model_or_train_cell_fails_the_dry_run_naming_file_line_and_key(
    workdir, old, new, message
):
    path = workdir / "params/scratchdet_table3.tsv"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        plan(workdir)


def test_the_dry_run_is_short_and_states_what_a_paper_run_needs(workdir):
    """`snakemake -n` as a user types it (with the default profile, which prints shell lines):
    no run config on any line; at the paper scale the preflight comes first."""
    done = _snakemake("-n", cwd=workdir, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Using workflow specific profile profiles/default" in out
    assert '"max_steps"' not in out and "--json" not in out
    assert "Preflight" not in out  # the smoke scale needs nothing from anyone
    done = _snakemake("-n", "--quiet", "rules", "--config", "scale=paper", cwd=workdir, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    preflight = done.stderr[done.stderr.index("Preflight, paper scale") :]
    assert "data/downloads/VOC2012test.tar: the VOC 2012 test images are only given" in preflight
    assert "ImageNet weights: 2 file(s)" in preflight and "vgg16-397923af.pth" in preflight
    # only CPU speed numbers are committed: no invented estimate, but what to run instead
    assert "GPU-hours: no estimate. No GPU training benchmark is committed" in preflight
    assert "train_cpu.json (CPU" in preflight
    assert "scratchdet benchmark train --device cuda --models" in preflight
    assert len(out.splitlines()) < 100


def test_the_dry_run_says_to_restore_what_the_shipped_remote_holds(workdir):
    """A fresh clone has the default scale's .dvc files and no run folders: the dry run's first
    line says that `dvc pull` restores the rows it would otherwise train."""
    shutil.copytree(ROOT / "results/default", workdir / "results/default")
    done = _snakemake("-n", "--quiet", "rules", cwd=workdir, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    [line] = [x for x in out.splitlines() if x.startswith("Restore first")]
    assert "50 of the 50 runs" in line and "'shipped'" in line and "`dvc pull`" in line


def test_a_run_folder_of_another_config_is_refused(workdir):
    done = _snakemake(
        "-n",
        "results/default/dsod_table6/dsod300_coco/0000000000/run.yaml",
        cwd=workdir,
        timeout=300,
    )
    assert done.returncode != 0
    assert (
        "0000000000 is not the folder of the row's current run config" in done.stdout + done.stderr
    )


# --- lint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["default", "paper"])
def test_lint_is_clean(workdir, scale):
    done = _snakemake("--lint", "--config", f"scale={scale}", cwd=workdir, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr
    assert "Lints for" not in done.stdout + done.stderr


def test_snakefmt_is_clean():
    """The workflow files are formatted as `snakefmt Snakefile workflow/` leaves them (its
    settings are in pyproject.toml)."""
    done = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the default scale, for real ---------------------------------------------------------------


@pytest.mark.slow
def test_default_scale_runs_and_reports_every_table(workdir):
    # A cap against a hang, not a speed check: about 10 minutes on 2 idle cores, much more on a
    # shared machine.
    done = _snakemake("--cores", "2", cwd=workdir, timeout=3600)
    assert done.returncode == 0, done.stderr[-5000:]
    reports = workdir / "reports/default"
    for table, rows in TABLES.items():
        text = (reports / f"{table}.md").read_text()
        assert "Smoke scale: numbers are not comparable to the paper" in text
        assert "hardware: CPU" in text
        df = pd.read_csv(reports / f"{table}.csv", dtype=str, keep_default_na=False)
        assert list(df["row"]) == [r.id for r in rows]
        assert not any(c.endswith(" diff") for c in df.columns)  # smoke: nothing to compare
        metric = "mAP" if "map" in rows[0].paper else "AP"
        for r, (_, line) in zip(rows, df.iterrows()):
            assert line[f"{metric} paper"] == fmt(
                r.paper["map" if metric == "mAP" else "AP"], csv=True
            )
            if r.pretrained:
                assert line["status"].startswith("not run (needs ImageNet weights")
            else:
                value = line[f"{metric} reproduced"]
                assert value == "NaN" or 0.0 <= float(value) <= 100.0
                assert line["status"].startswith(("finished", "diverged"))
                assert (value == "NaN") == line["status"].startswith("diverged")
    # Divergence is a result: SSD without BatchNorm at lr 0.05 diverges here as in the paper,
    # its row reads NAN, and the workflow went on to finish every other row and report.
    table1 = pd.read_csv(
        reports / "scratchdet_table1.csv", dtype=str, keep_default_na=False
    ).set_index("row")
    assert table1.loc["scratch_bn-none_lr0.05", "mAP reproduced"] == "NaN"
    assert table1.loc["scratch_bn-none_lr0.05", "status"].startswith("diverged")
    figures = reports / "figures"
    pngs = [figures / "scratchdet_figure1.png"] + [
        figures / key / f"{kind}.png"
        for key in ("dsod_table4/dsod300", "scratchdet_table3/scratchdet300_voc07")
        for kind in ("pr_curves", "detections")
    ]
    for png in pngs:
        assert png.read_bytes().startswith(b"\x89PNG"), png
    page = (reports / "index.html").read_text()  # the page a reader lands on
    assert "Smoke scale: numbers are not comparable to the paper" in page
    assert page.count("<figure>") >= len(pngs) and "<h2>DSOD Table 3" in page
    [tar_path] = (workdir / "results/default/scratchdet_table3/scratchdet300_voc12").glob(
        "*/voc2012_test_submission.tar.gz"
    )  # in the run folder named after the config digest
    with tarfile.open(tar_path) as tf:
        assert all(n.startswith("results/VOC2012/Main/comp3_det_test_") for n in tf.getnames())

    again = _snakemake("-n", "--cores", "2", cwd=workdir, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr  # no spurious reruns

    html = _snakemake("--report", "report.html", cwd=workdir, timeout=300)
    assert html.returncode == 0, html.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 100_000

    # Editing one row retrains that row only (Snakemake sees its run config change).
    path = workdir / "params/scratchdet_table1.tsv"
    path.write_text(path.read_text().replace("{lr: 0.01}", "{lr: 0.02}", 1))
    assert train_jobs(plan(workdir)) == ["scratchdet_table1/scratch_bn-none_lr0.01"]
