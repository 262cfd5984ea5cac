# Datasets in the internal annotation format (docs/ARCHITECTURE.md). The rules are the same at
# every scale; the scale's dataset decides which of them its runs need:
#   synth:    a synthetic VOCdevkit generated locally (default and proof scales, no network), in a
#             folder named after its recipe (sizes, seed and object knobs:
#             scratchdet.workflow.datasets.synth_folder).
#   official: VOC 2007/2012 and COCO 2017 from their official sites, checksummed, then converted.
# Inputs are ancient(): data restored by `dvc pull` (new file times) is not prepared again.
# Evaluation-server test sets (VOC 2012 test, COCO test-dev) have no labels: they become image
# lists that detection runs over, for the upload files. ImageNet weights are fetched here too.


rule synth_dataset:
    """Generate the scale's synthetic VOCdevkit (its recipe names the folder)."""
    output:
        directory(f"{DATA}/synth/{SYNTH_NAME}/VOCdevkit/VOCSYNTH"),
    params:
        root=lambda w, output: str(Path(output[0]).parents[1]),
        recipe=PLAN.synth_options,
    log:
        f"{LOGS}/data/synth_{SYNTH_NAME}.log",
    benchmark:
        f"{JOB_TIMES}/data/synth_{SYNTH_NAME}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data synth --out {params.root} {params.recipe} > {log} 2>&1"


rule synth_split:
    """Convert one split of the synthetic VOCdevkit to the internal annotation format."""
    input:
        ancient(f"{DATA}/synth/{{name}}/VOCdevkit/VOCSYNTH"),
    output:
        f"{DATA}/synth/{{name}}/{{split}}.json",
    wildcard_constraints:
        name=r"[^/]+",
        split="trainval|test",
    log:
        f"{LOGS}/data/synth_{{name}}_{{split}}.log",
    benchmark:
        f"{JOB_TIMES}/data/synth_{{name}}_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data voc --voc-dir {input} --split {wildcards.split} --out {output}"
        " > {log} 2>&1"


# Downloads need the internet, which a cluster's compute nodes often lack: they run as local jobs
# on the machine running Snakemake (the login node under the Slurm profile).
localrules:
    download,
    imagenet_weights,
    existing_data,


rule existing_data:
    """A dataset the lab already has (config `existing_data`: archive -> its extracted folder),
    linked where the archive would have been extracted: no download, no copy."""
    output:
        f"{DATA}/extracted/{{archive}}.done",
    params:
        into=lambda w: datasets.extracted_dir(DATA, w.archive),
        source=lambda w: Path(config["existing_data"][w.archive]).absolute(),
    wildcard_constraints:
        archive="|".join(re.escape(a) for a in config.get("existing_data") or {}) or "(?!x)x",
    log:
        f"{LOGS}/data/existing_{{archive}}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "(test -d {params.source} || {{ echo '{params.source}: no such folder"
        " (config existing_data, {wildcards.archive})'; exit 1; }}"
        " && mkdir -p $(dirname {params.into}) && ln -sfn {params.source} {params.into}"
        " && touch {output}) > {log} 2>&1"


ruleorder: existing_data > extract


rule download:
    """Download an official archive, resumable, verified against its checksum (a `manual` one
    stops and says how a person gets it)."""
    output:
        f"{DATA}/downloads/{{archive}}",
    params:
        url=lambda w: config["downloads"][w.archive]["url"],
        verify=lambda w: PLAN.download_options(w.archive),
    wildcard_constraints:
        archive="|".join(re.escape(a) for a in config["downloads"]),
    log:
        f"{LOGS}/data/download_{{archive}}.log",
    benchmark:
        f"{JOB_TIMES}/data/download_{{archive}}.tsv"
    retries: 2
    threads: 1
    resources:
        mem_mb=500,
        runtime=1440,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data download --url {params.url} {params.verify} --out {output} > {log} 2>&1"


rule extract:
    """Extract an archive into its own folder, refusing members that would escape it."""
    input:
        ancient(str(rules.download.output[0])),
    output:
        f"{DATA}/extracted/{{archive}}.done",
    params:
        into=lambda w: datasets.extracted_dir(DATA, w.archive),
    log:
        f"{LOGS}/data/extract_{{archive}}.log",
    benchmark:
        f"{JOB_TIMES}/data/extract_{{archive}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data extract --archive {input} --into {params.into}"
        " --marker {output} > {log} 2>&1"


rule voc_split:
    """Merge labelled VOC devkit splits (e.g. VOC 2007 + 2012 trainval) into one dataset file."""
    input:
        lambda w: extract_markers(PLAN.archives_of(f"{DATA}/voc/{w.name}.json")),
    output:
        f"{DATA}/voc/{{name}}.json",
    params:
        parts=lambda w: PLAN.voc_split_options(w.name),
    wildcard_constraints:
        name="|".join(datasets.voc_split_sources()),
    log:
        f"{LOGS}/data/voc_{{name}}.log",
    benchmark:
        f"{JOB_TIMES}/data/voc_{{name}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data voc {params.parts} --out {output} > {log} 2>&1"


rule voc12_test_list:
    """The VOC 2012 test images (no public labels) as an image list to detect on."""
    input:
        extract_markers(PLAN.archives_of(PLAN.official_file("voc12_test"))),
    output:
        PLAN.official_file("voc12_test"),
    params:
        voc_dir=datasets.extracted_dir(DATA, "VOC2012test.tar", "VOCdevkit", "VOC2012"),
    log:
        f"{LOGS}/data/voc12_test_list.log",
    benchmark:
        f"{JOB_TIMES}/data/voc12_test_list.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data test-list voc --voc-dir {params.voc_dir}"
        " --split test --out {output} > {log} 2>&1"


rule coco_split:
    """Convert a labelled COCO 2017 split (train or val) to the internal annotation format."""
    input:
        lambda w: extract_markers(PLAN.archives_of(f"{DATA}/coco/{w.split}.json")),
    output:
        f"{DATA}/coco/{{split}}.json",
    params:
        ann=lambda w: datasets.extracted_dir(
            DATA, "annotations_trainval2017.zip", "annotations", f"instances_{w.split}.json"
        ),
        images=lambda w: datasets.extracted_dir(DATA, f"{w.split}.zip", w.split),
    wildcard_constraints:
        split="train2017|val2017",
    log:
        f"{LOGS}/data/coco_{{split}}.log",
    benchmark:
        f"{JOB_TIMES}/data/coco_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data coco --ann {params.ann} --images {params.images} --out {output}"
        " > {log} 2>&1"


rule coco_testdev_list:
    """The COCO test-dev images (no public labels) as an image list to detect on."""
    input:
        extract_markers(PLAN.archives_of(PLAN.official_file("coco_testdev"))),
    output:
        PLAN.official_file("coco_testdev"),
    params:
        info=datasets.extracted_dir(
            DATA, "image_info_test2017.zip", "annotations", "image_info_test-dev2017.json"
        ),
        images=datasets.extracted_dir(DATA, "test2017.zip", "test2017"),
    log:
        f"{LOGS}/data/coco_testdev_list.log",
    benchmark:
        f"{JOB_TIMES}/data/coco_testdev_list.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "scratchdet data test-list coco --image-info {params.info}"
        " --images {params.images} --out {output} > {log} 2>&1"


rule imagenet_weights:
    """Fetch torchvision's ImageNet weights for the rows that fine-tune them, verified against the
    SHA-256 prefix in the file name, into the TORCH_HOME of the training jobs (which never
    download)."""
    output:
        f"{PLAN.torch_home}/hub/checkpoints/{{weights}}",
    params:
        url=lambda w: PLAN.imagenet_weights[w.weights],
    wildcard_constraints:
        weights=r"[A-Za-z0-9._-]+\.pth",
    log:
        f"{LOGS}/data/imagenet_weights_{{weights}}.log",
    benchmark:
        f"{JOB_TIMES}/data/imagenet_weights_{{weights}}.tsv"
    retries: 2
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
        gpu=0,
    conda:
        "../envs/scratchdet.yaml"
    shell:
        "python -m scratchdet.models.pretrained --url {params.url} --out {output} > {log} 2>&1"
