# Reports in reports/<scale>/: per paper table a Markdown and a plain CSV file (reproduced,
# paper, difference) with the CSV's notes in <table>.csv.meta.json, ScratchDet Figure 1,
# precision-recall curves and detection grids of the showcase runs; index.html shows them all,
# rendered, on one page (where a reader lands). `snakemake --report` collects everything marked
# report() into one HTML file too, but opens on its rule graph with the tables as links.

from scratchdet.io import meta_path

# The scale's description (config/scales/<scale>.yaml), as the tables state it: under every
# figure's title, and on the HTML report's landing page, whose text (report/workflow.rst) Snakemake
# renders with the config only.
SCALE_NOTE = SCALE_CFG["description"].strip()
config["scale_description"] = SCALE_NOTE


rule table_report:
    """One paper table: reproduced and paper values side by side, with every row's status."""
    input:
        params="params/{table}.tsv",
        scale=SCALE_FILE,
        metrics=lambda w: of_runs(rules.evaluate.output.metrics, PLAN.table_runs(w.table)),
        submissions=lambda w: [f for k in PLAN.table_runs(w.table) for f in PLAN.submissions(k)],
        baselines=lambda w: sorted({PLAN.baseline_file(k) for k in PLAN.table_runs(w.table)}),
    output:
        md=report(
            f"{REPORTS}/{{table}}.md",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "Markdown"},
        ),
        csv=report(
            f"{REPORTS}/{{table}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "CSV"},
        ),
        meta=report(
            str(meta_path(f"{REPORTS}/{{table}}.csv")),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "CSV notes (JSON)"},
        ),
        # The values, run folders and provenance behind the table, kept with the results. Like
        # the reports it is not in git: a clone has neither, so asking for either plans the
        # table's jobs (a file already there is "up to date" to Snakemake).
        record=f"{RESULTS}/tables/{{table}}.json",
    params:
        runs=lambda w: PLAN.run_options(w.table),
        skips=lambda w: PLAN.skip_options(w.table),
        baselines=lambda w: PLAN.baseline_options(w.table),
        scale_name=PLAN.scale_name,
    log:
        f"{LOGS}/report/{{table}}.log",
    benchmark:
        f"{JOB_TIMES}/report/{{table}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report table --params {input.params} --scale {input.scale}"
        " --scale-name {params.scale_name} {params.runs} {params.skips} {params.baselines}"
        " --out-md {output.md} --out-csv {output.csv} --out-json {output.record} > {log} 2>&1"


rule figure1:
    """ScratchDet Figure 1: training loss, gradient L2 norm and its fluctuation of the runs that
    config/config.yaml names."""
    input:
        of_runs(rules.train.output.status, PLAN.figure1),
    output:
        report(
            f"{REPORTS}/figures/scratchdet_figure1.png",
            caption="../report/figure1.rst",
            category="Figures",
            labels={"figure": "ScratchDet Figure 1"},
        ),
    params:
        runs=PLAN.figure1_options(),
        title=figure1_title(PLAN.scale_name),
        note=SCALE_NOTE,
    log:
        f"{LOGS}/report/figure1.log",
    benchmark:
        f"{JOB_TIMES}/report/figure1.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report figure1 {params.runs} --title {params.title:q}"
        " --note {params.note:q} --out {output} > {log} 2>&1"


rule pr_curves:
    """Per-class precision-recall curves of a showcase run."""
    input:
        gt=lambda w: PLAN.local_gt(row_of(w)),
        dets=lambda w: detections(w, PLAN.local_gt(row_of(w))),
    output:
        report(
            f"{REPORTS}/figures/{{table}}/{{row}}/pr_curves.png",
            caption="../report/pr_curves.rst",
            category="Figures",
            labels={"figure": "precision-recall", "run": "{table}/{row}"},
        ),
    params:
        title="{table}/{row}",
        note=SCALE_NOTE,
    log:
        f"{LOGS}/report/{{table}}/{{row}}/pr_curves.log",
    benchmark:
        f"{JOB_TIMES}/report/{{table}}/{{row}}/pr_curves.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report pr-curves --gt {input.gt} --dets {input.dets}"
        " --title {params.title} --note {params.note:q} --out {output} > {log} 2>&1"


rule detection_grid:
    """A grid of test images with the detections of a showcase run."""
    input:
        gt=lambda w: PLAN.local_gt(row_of(w)),
        dets=lambda w: detections(w, PLAN.local_gt(row_of(w))),
    output:
        report(
            f"{REPORTS}/figures/{{table}}/{{row}}/detections.png",
            caption="../report/detections.rst",
            category="Figures",
            labels={"figure": "detections", "run": "{table}/{row}"},
        ),
    params:
        title="{table}/{row}",
        note=SCALE_NOTE,
    log:
        f"{LOGS}/report/{{table}}/{{row}}/detections.log",
    benchmark:
        f"{JOB_TIMES}/report/{{table}}/{{row}}/detections.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report detections --gt {input.gt} --dets {input.dets}"
        " --title {params.title} --note {params.note:q} --out {output} > {log} 2>&1"


rule learning_curves:
    """Learning curves of every run of the scale next to its image-blind baseline, as a figure
    and a table (with the PreciseBN comparison when the scale asks for it)."""
    input:
        curves=of_runs(str(RUN.learning_curve), PLAN.run_keys),
        precise_bn=(
            of_runs(str(RUN.learning_curve_precise_bn), PLAN.run_keys)
            if PLAN.precise_bn_check
            else []
        ),
    output:
        md=report(
            f"{REPORTS}/learning_curves.md",
            caption="../report/learning_curves.rst",
            category="Learning",
            labels={"figure": "learning curves", "format": "Markdown"},
        ),
        png=report(
            f"{REPORTS}/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Learning",
            labels={"figure": "learning curves", "format": "PNG"},
        ),
    params:
        curves=PLAN.curve_options("plain"),
        precise_bn=PLAN.curve_options("precise_bn") if PLAN.precise_bn_check else "",
        title=f"learning curves, {PLAN.scale_name} scale",
        note=SCALE_NOTE,
    log:
        f"{LOGS}/report/learning_curves.log",
    benchmark:
        f"{JOB_TIMES}/report/learning_curves.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report learning-curves {params.curves} {params.precise_bn}"
        " --title {params.title:q} --note {params.note:q}"
        " --out-md {output.md} --out-png {output.png} > {log} 2>&1"


rule report_page:
    """The page a reader lands on: every table and figure of the scale, rendered, with the
    scale's note (one self-contained HTML file)."""
    input:
        tables=expand(rules.table_report.output.md, table=PLAN.selected),
        figure1=rules.figure1.output if PLAN.figure1 else [],
        learning=rules.learning_curves.output if PLAN.learning_curves else [],
        showcase=[
            f"{REPORTS}/figures/{key}/{kind}.png"
            for key in PLAN.showcase
            for kind in ("pr_curves", "detections")
        ],
    output:
        report(
            f"{REPORTS}/index.html",
            caption="../report/page.rst",
            category="Start here",
            labels={"page": "every table and figure"},
        ),
    params:
        reports=lambda w, output: str(Path(output[0]).parent),
        title=f"scratchdet: DSOD and ScratchDet reproduced, {PLAN.scale_name} scale",
        note=SCALE_NOTE,
    log:
        f"{LOGS}/report/page.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet report page --reports {params.reports} --title {params.title:q}"
        " --note {params.note:q} --out {output} > {log} 2>&1"
