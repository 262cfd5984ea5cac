"""What the Snakemake workflow decides, as tested Python: datasets, run configs, the plan of one
invocation, evaluation-server files and the preflight.

The `.smk` files only connect commands to files; everything they decide comes from here:
`datasets` (dataset files, archives, the synthetic dataset's folder), `run_configs` (a params row
+ a scale -> its run config, skip reasons, checks), `servers` (evaluation-server upload files),
`plan` (`Plan`: one invocation's rows, folders and rule arguments, with `rule_options`), and
`preflight` (what a run needs from a person, its GPU-hours). A run folder's layout is
`scratchdet.run_folder`'s, the paper tables `scratchdet.paper_tables`'.
"""

__all__ = []  # the modules are imported by name
