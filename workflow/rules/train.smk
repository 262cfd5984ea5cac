# One training job per params row that runs at this scale, in results/<scale>/<table>/<row>/<digest>/
# (the digest of its run config: scratchdet.workflow.plan.Plan.paths; the layout is
# scratchdet.run_folder.RunPaths, whose wildcard form RUN gives the patterns below). Every
# input from here to the metrics is ancient(): a changed config is a new folder, so no decision
# hangs on file times, which `dvc pull` does not restore. A job that does run still reruns the
# jobs that use its output.


rule run_config:
    """Write the row's run config, planned and validated by the workflow, as run.yaml in the
    folder named after its digest (a folder of another config is refused)."""
    output:
        config=str(RUN.run_config),
    params:
        # A Snakemake param (so a rerun trigger), not a shell argument: the default profile
        # prints every shell line, and this is the whole config.
        config=lambda w: PLAN.run_config_json(f"{w.table}/{w.row}", w.digest),
    log:
        run_file(LOGS, "run_config"),
    benchmark:
        run_file(JOB_TIMES, "run_config", ".tsv")
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    script:
        "../scripts/run_config.py"


rule train:
    """Train the row's detector (resumes an interrupted run; a diverged run is a result)."""
    input:
        config=ancient(str(rules.run_config.output.config)),
        data=lambda w: ancient(PLAN.split_file(row_of(w).train_data)),
        init=lambda w: [ancient(f) for f in PLAN.init_checkpoint(row_of(w))],
        weights=lambda w: [ancient(f) for f in PLAN.weight_files(row_of(w))],
    output:
        model=str(RUN.model),
        status=str(RUN.status),
    params:
        run_dir=str(RUN.train_dir),
        torch_home=PLAN.torch_home,
    log:
        run_file(LOGS, "train"),
    benchmark:
        run_file(JOB_TIMES, "train", ".tsv")
    threads: PLAN.resource("train", "threads")
    resources:
        gpu=PLAN.resource("train", "gpu"),
        mem_mb=PLAN.resource("train", "mem_mb"),
        runtime=PLAN.resource("train", "runtime"),
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "TORCH_HOME={params.torch_home} OMP_NUM_THREADS={threads}"
        " scratchdet -v train --config {input.config} --restart-stale"
        " --out {params.run_dir} --gpus {resources.gpu} > {log} 2>&1"
