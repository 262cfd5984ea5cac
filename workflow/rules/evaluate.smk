# Detection on the test sets, local evaluation (VOC 2007 test / COCO val2017 / the synthetic test
# split) and the files the evaluation servers take (VOC 2012 test, COCO test-dev). Inputs are
# ancient() for the reason given in train.smk.


rule detect:
    input:
        model=ancient(f"{RESULTS}/{{table}}/{{row}}/{{digest}}/train/model_final.pt"),
        config=ancient(f"{RESULTS}/{{table}}/{{row}}/{{digest}}/run.yaml"),
        data=lambda w: ancient(TEST_FILES[w.testset]),
    output:
        f"{RESULTS}/{{table}}/{{row}}/{{digest}}/dets_{{testset}}.json",
    params:
        workers=SCALE_CFG["detect_workers"],
    log:
        f"{LOGS}/{{table}}/{{row}}/{{digest}}/detect_{{testset}}.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/{{digest}}/detect_{{testset}}.tsv"
    threads: res("detect", "threads")
    resources:
        gpu=res("detect", "gpu"),
        mem_mb=res("detect", "mem_mb"),
        runtime=res("detect", "runtime"),
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} scratchdet detect --checkpoint {input.model}"
        " --data {input.data} --config {input.config} --workers {params.workers}"
        " --gpus {resources.gpu} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        gt=lambda w: ancient(local_gt(row_of(w))),
        dets=lambda w: ancient(paths_of(w).detections(local_gt(row_of(w)))),
        status=ancient(f"{RESULTS}/{{table}}/{{row}}/{{digest}}/train/status.json"),
    output:
        f"{RESULTS}/{{table}}/{{row}}/{{digest}}/metrics.json",
    params:
        metric=lambda w: wc.EVALS[row_of(w).eval][1],
    log:
        f"{LOGS}/{{table}}/{{row}}/{{digest}}/evaluate.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/{{digest}}/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} scratchdet eval --gt {input.gt} --dets {input.dets}"
        " --metric {params.metric} --status {input.status} --out {output} > {log} 2>&1"


rule voc_submission:
    input:
        data=ancient(split_file("voc12_test")),
        dets=lambda w: ancient(paths_of(w).detections(split_file("voc12_test"))),
    output:
        f"{RESULTS}/{{table}}/{{row}}/{{digest}}/voc2012_test_submission.tar.gz",
    params:
        comp=lambda w: voc_competition(row_of(w)),
    log:
        f"{LOGS}/{{table}}/{{row}}/{{digest}}/voc_submission.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/{{digest}}/voc_submission.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report voc-submission --data {input.data} --dets {input.dets}"
        " --comp {params.comp} --out {output} > {log} 2>&1"


rule coco_submission:
    input:
        data=ancient(split_file("coco_testdev")),
        dets=lambda w: ancient(paths_of(w).detections(split_file("coco_testdev"))),
    output:
        f"{RESULTS}/{{table}}/{{row}}/{{digest}}/detections_test-dev2017_{{alg}}_results.zip",
    log:
        f"{LOGS}/{{table}}/{{row}}/{{digest}}/coco_submission_{{alg}}.log",
    benchmark:
        f"{BENCH}/{{table}}/{{row}}/{{digest}}/coco_submission_{{alg}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report coco-submission --data {input.data} --dets {input.dets}"
        " --out {output} > {log} 2>&1"
