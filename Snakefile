# scratchdet: every table of DSOD (ICCV 2017) and ScratchDet (CVPR 2019), one training job per row.
#
#   dvc pull && snakemake --cores 2              restore the shipped results, write every table
#   snakemake --cores 2                          default (smoke) scale: synthetic data, CPU, minutes
#   snakemake --cores all --config scale=paper   the papers' recipes on VOC 2007+2012 and COCO 2017
#   snakemake --cores 2 reports/default/dsod_table3.md      one table (or --config tables=[...])
#   reports/<scale>/index.html                   every table and figure, rendered, on one page
#
# The stages, one file of rules each (workflow/rules/; shared names: common.smk):
#   data.smk      datasets into data/ (synthetic, or VOC/COCO downloaded with checksums),
#                 their split lists, the ImageNet weights a fine-tuned row starts from
#   train.smk     a row's run config, then its training -> results/<scale>/<table>/<row>/<digest>/
#   evaluate.smk  detections and metrics per run, image-blind baselines, learning curves,
#                 evaluation-server files (VOC 2012 test, COCO test-dev)
#   report.smk    tables (md, csv, record), figures and the page -> reports/<scale>/
# Rules only call the `scratchdet` command line. Config and scales: config/ (config/README.md);
# the workflow's own notes: workflow/README.md. Data and results are versioned with DVC
# (data.dvc, results/<scale>/**.dvc).


configfile: "config/config.yaml"
configfile: "config/downloads.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    table="|".join(PLAN.tables),
    row=ROW_ID,
    testset="|".join(PLAN.test_files),
    digest=DIGEST_PATTERN,


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    """Every selected table's report and record, ScratchDet Figure 1 and the showcase figures."""
    input:
        tables=expand(rules.table_report.output.md, table=PLAN.selected),
        csv=expand(rules.table_report.output.csv, table=PLAN.selected),
        records=expand(rules.table_report.output.record, table=PLAN.selected),
        figure1=rules.figure1.output if PLAN.figure1 else [],
        learning=rules.learning_curves.output if PLAN.learning_curves else [],
        showcase=[
            f"{REPORTS}/figures/{key}/{kind}.png"
            for key in PLAN.showcase
            for kind in ("pr_curves", "detections")
        ],
        page=f"{REPORTS}/index.html",
    default_target: True
