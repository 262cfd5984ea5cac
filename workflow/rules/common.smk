# Shared by the workflow files in rules/: the validated config, the scale, the params tables and
# the paths. Planning needs no network and imports no torch (a dry run stays fast).

import functools
import json
import re
import shlex
from pathlib import Path

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from scratchdet import workflow_config as wc
from scratchdet.reports.tables import fmt

min_version("8.20")

validate(config, "../schemas/config.schema.yaml")

SCALE = config["scale"]
SCALE_FILE = f"config/scales/{SCALE}.yaml"
with open(SCALE_FILE) as _fh:
    SCALE_CFG = yaml.safe_load(_fh)
validate(SCALE_CFG, "../schemas/scale.schema.yaml")

DATA = config["data_dir"]
DATASET = str(wc.dataset_dir(SCALE_CFG, DATA))
RESULTS = f"{config['results_dir']}/{SCALE}"
REPORTS = f"{config['reports_dir']}/{SCALE}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# --- the paper tables -----------------------------------------------------------------------------

_table_names = config["tables"] or sorted(p.stem for p in Path("params").glob("*.tsv"))
TABLES = {}
for _name in _table_names:
    _path = Path("params") / f"{_name}.tsv"
    if not _path.exists():
        raise ValueError(f"config tables: {_name!r} has no file {_path}")
    validate(pd.read_csv(_path, sep="\t", dtype=str, keep_default_na=False),
             "../schemas/params.schema.yaml")
    TABLES[_name] = wc.load_table(_path)
wc.check_references(TABLES, SCALE_CFG)
ROWS = {r.key: r for rows in TABLES.values() for r in rows}
SKIPPED = {k: why for k, r in ROWS.items() if (why := wc.skip_reason(r, TABLES, SCALE_CFG))}
RUN_KEYS = [k for k in ROWS if k not in SKIPPED]


def _check_refs(name, refs):
    """The refs of `name` that run: a ref into an unloaded table is dropped, a typo is an error."""
    for ref in refs:
        if ref.split("/")[0] in TABLES and ref not in ROWS:
            raise ValueError(f"config {name}: {ref!r} is not a row of params/{ref.split('/')[0]}.tsv")
    return [ref for ref in refs if ref in ROWS and ref not in SKIPPED]


SHOWCASE = _check_refs("showcase", config["showcase"])
FIGURE1 = _check_refs("figure1", config["figure1"])


def row_of(wildcards):
    return ROWS[f"{wildcards.table}/{wildcards.row}"]


@functools.cache
def row_config(key):
    """The whole run config of a row. Its digest names the row's folder (key_paths)."""
    row = ROWS[key]
    init = init_checkpoint(row)
    return wc.run_config(row, SCALE_CFG, DATA, init[0] if init else None)


def key_paths(key):
    """A row's files, in the folder named after its run config's digest: a changed config (of
    the row, its recipe, its scale, its dataset or the run it starts from) is a new folder, so it
    retrains because its outputs are missing. No file time or .snakemake/ record is involved,
    which is what makes results restored by `dvc pull` reusable (every input below is ancient)."""
    table, row = key.split("/")
    return wc.RunPaths.of(RESULTS, table, row, wc.config_digest(row_config(key)))


def paths_of(wildcards):
    return key_paths(f"{wildcards.table}/{wildcards.row}")


def split_file(split):
    return wc.split_file(SCALE_CFG, split, DATA)


def res(kind, key):
    """A resource of a job kind (train, detect, eval) at this scale."""
    return SCALE_CFG["resources"][kind].get(key, 0)


def run_config_json(wildcards):
    """The row's run config for the folder asked for; a folder of another config is refused."""
    key = f"{wildcards.table}/{wildcards.row}"
    current = paths_of(wildcards).root.name
    if wildcards.digest != current:
        raise WorkflowError(f"{RESULTS}/{key}/{wildcards.digest} is not the folder of the row's "
                            f"current run config ({current}); ask for the reports, not old folders")
    return json.dumps(row_config(key), sort_keys=True)


# Every file a split name can stand for, by file stem (detections are named after it).
TEST_FILES = {Path(split_file(s)).stem: split_file(s)
              for s in ("voc07_test", "voc12_test", "coco_val", "coco_testdev")}


wildcard_constraints:
    table="|".join(TABLES),
    row=r"[A-Za-z0-9][A-Za-z0-9._+-]*",
    testset="|".join(TEST_FILES),
    digest=wc.DIGEST_PATTERN,


# --- official datasets ----------------------------------------------------------------------------

def download_checks(archive):
    """Command-line options that make the download verify (or ask for) `archive`."""
    entry = config["downloads"][archive]
    opts = [f"--{k} {entry[k]}" for k in ("md5", "sha256") if k in entry]
    if "manual" in entry:
        opts.append(f"--manual {shlex.quote(entry['manual'])}")
    return " ".join(opts)


def extracted(archive, *parts):
    """A path inside the folder that `archive` is extracted into (one folder per archive)."""
    return str(Path(DATA, "extracted", archive.split(".")[0], *parts))


# internal-format file (data/voc/<name>.json) -> the (archive, VOC year, split list) it merges
VOC_SPLITS = {
    "trainval_0712": [("VOCtrainval_06-Nov-2007.tar", "VOC2007", "trainval"),
                      ("VOCtrainval_11-May-2012.tar", "VOC2012", "trainval")],
    "trainval_0712_test07": [("VOCtrainval_06-Nov-2007.tar", "VOC2007", "trainval"),
                             ("VOCtest_06-Nov-2007.tar", "VOC2007", "test"),
                             ("VOCtrainval_11-May-2012.tar", "VOC2012", "trainval")],
    "test_07": [("VOCtest_06-Nov-2007.tar", "VOC2007", "test")],
}


def init_checkpoint(row):
    """The final weights a row starts from ([] for none)."""
    return [str(key_paths(row.init_from).model)] if row.init_from else []


def local_gt(row):
    """The labelled split a row is scored on here (VOC 2007 test for VOC 2012 rows)."""
    return split_file(wc.EVALS[row.eval][0])


def voc_competition(row):
    """VOC's comp3 = trained on VOC data only; comp4 = any other data (ImageNet, COCO) too."""
    return "comp4" if row.pretrained or row.init_from else "comp3"


def submissions(key):
    """The evaluation-server upload files of a row ([] when it is scored locally only)."""
    path = wc.submission_file(ROWS[key], key_paths(key))
    return [str(path)] if path else []


def run_keys(table):
    """The rows of `table` that run at this scale."""
    return [k for k in RUN_KEYS if k.startswith(f"{table}/")]


def figure1_label(key):
    row = ROWS[key]
    paper = row.paper.get("map")
    return row.id if paper is None else f"{row.id} (paper {fmt(paper)} mAP)"


def run_options(table):
    """--run ROW=FOLDER for each row of `table` that runs at this scale."""
    return " ".join(f"--run {shlex.quote(f'{ROWS[k].id}={key_paths(k).root}')}"
                    for k in run_keys(table))


def skip_options(table):
    """--skip ROW=REASON for each row of `table` that does not run at this scale."""
    return " ".join(f"--skip {shlex.quote(f'{ROWS[k].id}={why}')}"
                    for k, why in SKIPPED.items() if ROWS[k].table == table)
