"""Snakemake script of the rule run_config: write the run config that the workflow planned.

The config arrives as `snakemake.params.config` (JSON) rather than on a shell line, which the
default profile prints for every job of a dry run. It goes through `scratchdet workflow run-config`
in-process, so the file is validated and written exactly as that command does it.
"""

import sys
from contextlib import redirect_stderr, redirect_stdout

from scratchdet.cli import main

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with open(snakemake.log[0], "w") as log, redirect_stdout(log), redirect_stderr(log):
    code = main(
        [
            "workflow",
            "run-config",
            "--json",
            snakemake.params.config,
            "--out",
            snakemake.output.config,
        ]
    )
sys.exit(code)
