# One training job per params row that runs at this scale, in results/<scale>/<table>/<row>/<digest>/
# (the digest of its run config; common.smk's key_paths). Every input of every rule from here to
# the metrics is ancient(): a changed config is a new folder, so no decision hangs on file times,
# which `dvc pull` does not restore. A job that does run still reruns the jobs that use its output.


rule run_config:
    output:
        f"{RESULTS}/{{table}}/{{row}}/{{digest}}/run.yaml",
    params:
        config=run_config_json,
    log:
        f"{LOGS}/{{table}}/{{row}}/{{digest}}/run_config.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/{{digest}}/run_config.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report run-config --json {params.config:q} --out {output} > {log} 2>&1"


rule train:
    input:
        config=ancient(f"{RESULTS}/{{table}}/{{row}}/{{digest}}/run.yaml"),
        data=lambda w: ancient(split_file(row_of(w).train_data)),
        init=lambda w: [ancient(f) for f in init_checkpoint(row_of(w))],
    output:
        model=f"{RESULTS}/{{table}}/{{row}}/{{digest}}/train/model_final.pt",
        status=f"{RESULTS}/{{table}}/{{row}}/{{digest}}/train/status.json",
    params:
        run_dir=lambda w, output: str(Path(output.model).parent),
    log:
        f"{LOGS}/{{table}}/{{row}}/{{digest}}/train.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/{{digest}}/train.tsv"
    threads: res("train", "threads")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} scratchdet -v train --config {input.config} --restart-stale"
        " --out {params.run_dir} --gpus {resources.gpu} > {log} 2>&1"

