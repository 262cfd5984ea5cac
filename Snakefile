# scratchdet: every table of DSOD (ICCV 2017) and ScratchDet (CVPR 2019), one training job per row.
#
#   snakemake --cores 2                          default (smoke) scale: synthetic data, CPU, minutes
#   snakemake --cores all --config scale=paper   the papers' recipes on VOC 2007+2012 and COCO 2017
#   snakemake --report reports/report.html       HTML report of the tables and figures
#
# Stages: workflow/rules/{data,train,evaluate,report}.smk. Rows: params/*.tsv. Scales:
# config/scales/*.yaml. Rules only call the `scratchdet` command line; results go to
# results/<scale>/<table>/<row>/, reports to reports/<scale>/.

configfile: "config/config.yaml"
configfile: "config/downloads.yaml"

report: "workflow/report/workflow.rst"


include: "workflow/common.smk"


rule all:
    input:
        tables=expand(f"{REPORTS}/{{table}}.{{ext}}", table=TABLES, ext=("md", "csv")),
        records=expand(f"{RESULTS}/tables/{{table}}.json", table=TABLES),
        figure1=[f"{REPORTS}/figures/scratchdet_figure1.png"] if FIGURE1 else [],
        showcase=expand(f"{REPORTS}/figures/{{key}}/{{kind}}.png", key=SHOWCASE,
                        kind=("pr_curves", "detections")),
    default_target: True


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
