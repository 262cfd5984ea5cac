# One training job per params row that runs at this scale (results/<scale>/<table>/<row>/).


rule run_config:
    output:
        f"{RESULTS}/{{table}}/{{row}}/run.yaml",
    params:
        config=run_config_json,
        train_dir=lambda w: str(paths_of(w).train_dir),
    log:
        f"{LOGS}/{{table}}/{{row}}/run_config.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/run_config.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report run-config --json {params.config:q}"
        " --train-dir {params.train_dir} --out {output} > {log} 2>&1"


rule train:
    # The data and the starting weights are ancient(): a regenerated data file or a restored
    # one (DVC gives it a new time) never retrains a row. A changed row config reruns
    # run_config (params trigger), whose new run.yaml retrains the row.
    input:
        config=f"{RESULTS}/{{table}}/{{row}}/run.yaml",
        data=lambda w: ancient(split_file(row_of(w).train_data)),
        init=lambda w: [ancient(f) for f in init_checkpoint(row_of(w))],
    output:
        model=f"{RESULTS}/{{table}}/{{row}}/train/model_final.pt",
        status=f"{RESULTS}/{{table}}/{{row}}/train/status.json",
    params:
        run_dir=lambda w, output: str(Path(output.model).parent),
    log:
        f"{LOGS}/{{table}}/{{row}}/train.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/train.tsv"
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

