# Detection on the test sets, local evaluation (VOC 2007 test / COCO val2017 / the synthetic test
# split) and the files the evaluation servers take (VOC 2012 test, COCO test-dev). Inputs are
# ancient() for the reason given in train.smk.


rule detect:
    """Run the trained detector over a test split, writing COCO-format detections."""
    input:
        model=ancient(str(rules.train.output.model)),
        config=ancient(str(rules.run_config.output.config)),
        data=lambda w: ancient(PLAN.test_files[w.testset]),
    output:
        dets=str(RUN.detections("{testset}")),
    params:
        workers=SCALE_CFG["detect_workers"],
    log:
        run_file(LOGS, "detect_{testset}"),
    benchmark:
        run_file(JOB_TIMES, "detect_{testset}", ".tsv")
    threads: PLAN.resource("detect", "threads")
    resources:
        gpu=PLAN.resource("detect", "gpu"),
        mem_mb=PLAN.resource("detect", "mem_mb"),
        runtime=PLAN.resource("detect", "runtime"),
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} scratchdet detect --checkpoint {input.model}"
        " --data {input.data} --config {input.config} --workers {params.workers}"
        " --gpus {resources.gpu} --out {output} > {log} 2>&1"


rule evaluate:
    """Score the row's detections on its labelled test split (VOC07/VOC12 mAP or COCO AP)."""
    input:
        gt=lambda w: ancient(PLAN.local_gt(row_of(w))),
        dets=lambda w: ancient(detections(w, PLAN.local_gt(row_of(w)))),
        status=ancient(str(rules.train.output.status)),
    output:
        metrics=str(RUN.metrics),
    params:
        metric=lambda w: row_of(w).metric,
    log:
        run_file(LOGS, "evaluate"),
    benchmark:
        run_file(JOB_TIMES, "evaluate", ".tsv")
    threads: 1
    resources:
        mem_mb=PLAN.resource("eval", "mem_mb"),
        runtime=PLAN.resource("eval", "runtime"),
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} scratchdet eval --gt {input.gt} --dets {input.dets}"
        " --metric {params.metric} --status {input.status} --out {output} > {log} 2>&1"


rule baseline:
    """The image-blind baseline of a training and test split: per class the mean training box
    (and the whole image) in every test image, scored like the rows trained on that split."""
    input:
        train=lambda w: ancient(PLAN.baseline_jobs[w.name]["train"]),
        gt=lambda w: ancient(PLAN.baseline_jobs[w.name]["gt"]),
    output:
        f"{RESULTS}/baselines/{{name}}.json",
    params:
        metric=lambda w: PLAN.baseline_jobs[w.name]["metric"],
    log:
        f"{LOGS}/baselines/{{name}}.log",
    benchmark:
        f"{JOB_TIMES}/baselines/{{name}}.tsv"
    threads: 1
    resources:
        mem_mb=PLAN.resource("eval", "mem_mb"),
        runtime=PLAN.resource("eval", "runtime"),
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet eval --baseline image-blind --train {input.train} --gt {input.gt}"
        " --metric {params.metric} --out {output} > {log} 2>&1"


rule learning_curve:
    """Every kept snapshot of a run, detected and scored on its test split (scales with
    `learning_curves: true`); the _precise_bn curve re-estimates the BatchNorm statistics from
    `precise_bn_check` training batches before each detection."""
    input:
        status=ancient(str(rules.train.output.status)),
        config=ancient(str(rules.run_config.output.config)),
        gt=lambda w: ancient(PLAN.local_gt(row_of(w))),
    output:
        str(RUN.learning_curve_file("{variant}")),
    wildcard_constraints:
        variant="|_precise_bn",
    params:
        train_dir=lambda w, input: str(Path(input.status).parent),
        precise_bn=lambda w: f"--precise-bn {PLAN.precise_bn_check}" if w.variant else "",
        workers=SCALE_CFG["detect_workers"],
    log:
        run_file(LOGS, "learning_curve{variant}"),
    benchmark:
        run_file(JOB_TIMES, "learning_curve{variant}", ".tsv")
    threads: PLAN.resource("detect", "threads")
    resources:
        gpu=PLAN.resource("detect", "gpu"),
        mem_mb=PLAN.resource("detect", "mem_mb"),
        runtime=PLAN.resource("detect", "runtime"),
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} scratchdet curve --run {params.train_dir} --data {input.gt}"
        " --config {input.config} {params.precise_bn} --workers {params.workers}"
        " --out {output} > {log} 2>&1"


rule voc_submission:
    """The VOC 2012 test upload file of the evaluation server (comp3: VOC data only, comp4:
    ImageNet or COCO too)."""
    input:
        data=ancient(PLAN.split_file("voc12_test")),
        dets=lambda w: ancient(detections(w, PLAN.split_file("voc12_test"))),
    output:
        str(RUN.voc_submission),
    params:
        comp=lambda w: servers.voc_competition(row_of(w)),
    log:
        run_file(LOGS, "voc_submission"),
    benchmark:
        run_file(JOB_TIMES, "voc_submission", ".tsv")
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
    """The COCO test-dev upload file of the evaluation server."""
    input:
        data=ancient(PLAN.split_file("coco_testdev")),
        dets=lambda w: ancient(detections(w, PLAN.split_file("coco_testdev"))),
    output:
        str(RUN.coco_submission),
    log:
        run_file(LOGS, "coco_submission_{alg}"),
    benchmark:
        run_file(JOB_TIMES, "coco_submission_{alg}", ".tsv")
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
