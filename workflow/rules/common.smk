# Shared by every file in rules/ (the validated config, the scale and the params rows), planned by
# scratchdet.workflow.plan.Plan (tested Python). Planning reads no network and, at the default
# scale, imports no torch: a dry run stays fast.

import re
import sys
from pathlib import Path

from snakemake.utils import min_version

from scratchdet.paper_tables import ROW_ID
from scratchdet.run_folder import DIGEST_PATTERN
from scratchdet.workflow import datasets, servers
from scratchdet.workflow.plan import Plan
from scratchdet.workflow.preflight import preflight_report
from scratchdet.workflow.rule_options import figure1_title
from scratchdet.workflow.snakemake_config import check_workflow_config
from scratchdet.yaml_io import load_yaml

min_version("8.20")


# Snakemake's own YAML reader keeps the last of two equal keys: read each config file again with
# the project's, which refuses them.
for _file in getattr(workflow, "configfiles", None) or [
    "config/config.yaml",
    "config/downloads.yaml",
]:
    load_yaml(_file)
check_workflow_config(config)  # one line naming the key, before the scale is read

# The scale: its file over config/recipes.yaml, resolved and checked by Plan.load below.
SCALE_FILE = f"config/scales/{config['scale']}.yaml"

# The params tables (each row's cells: scratchdet.paper_tables.ParamsRow) and every row's model
# and train cells are checked here: a typo stops `snakemake -n`, naming the params file, the line
# and the key.
PLAN = Plan.load(config, SCALE_FILE)
SCALE_CFG = PLAN.scale
DATA = PLAN.data
RESULTS = PLAN.results
REPORTS = PLAN.reports
LOGS = PLAN.logs
JOB_TIMES = PLAN.job_times
RUN = PLAN.run_pattern  # the run-folder layout with the wildcards {table}, {row} and {digest}
# The synthetic dataset's folder at this scale ("" when the scale uses the official datasets).
SYNTH_NAME = PLAN.synth_name

if workflow.is_main_process:
    print(preflight_report(PLAN), end="", file=sys.stderr)


def row_of(wildcards):
    return PLAN.rows[f"{wildcards.table}/{wildcards.row}"]


def run_file(folder, job, suffix=".log"):
    """A per-run log or timing file of the job `job`, under `folder` (LOGS or JOB_TIMES)."""
    return str(RUN.job_file(folder, job, suffix))


def extract_markers(archives):
    """The files that say each archive is extracted."""
    return [ancient(f"{DATA}/extracted/{a}.done") for a in archives]


def detections(wildcards, split_file):
    """The detect job's output for this run on `split_file` (the row's current run unless the
    wildcards name a digest)."""
    key = f"{wildcards.table}/{wildcards.row}"
    run = {**PLAN.run_wildcards(key), **dict(wildcards.items())}
    return expand(rules.detect.output.dets, testset=Path(split_file).stem, **run)


def of_runs(pattern, keys):
    """A rule's output `pattern` (with the run wildcards) for each run `table/row` in `keys`."""
    return [expand(pattern, **PLAN.run_wildcards(key))[0] for key in keys]
