# Datasets in the internal annotation format (docs/ARCHITECTURE.md).
#   synth:    a synthetic VOCdevkit generated locally (default scale, no network), in a folder
#             named after its recipe (size and seed).
#   official: VOC 2007/2012 and COCO 2017 from their official sites, checksummed, then converted.
# Inputs are ancient(): data restored by `dvc pull` (new file times) is not prepared again.
# Evaluation-server test sets (VOC 2012 test, COCO test-dev) have no labels: they become image
# lists that detection runs over, for the upload files.

if SCALE_CFG["dataset"] == "synth":

    rule synth_dataset:
        output:
            directory(f"{DATASET}/VOCdevkit/VOCSYNTH"),
        params:
            root=lambda w, output: str(Path(output[0]).parents[1]),
            trainval=SCALE_CFG["synth"]["trainval"],
            test=SCALE_CFG["synth"]["test"],
            seed=SCALE_CFG["synth"]["seed"],
        log:
            f"{LOGS}/data/synth_dataset.log",
        benchmark:
            f"{BENCH}/data/synth_dataset.tsv"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
            gpu=0,
        conda:
            "../envs/scratchdet.yaml"
        shell:
            "scratchdet data synth --out {params.root} --trainval {params.trainval}"
            " --test {params.test} --seed {params.seed} > {log} 2>&1"

    rule synth_split:
        input:
            ancient(f"{DATASET}/VOCdevkit/VOCSYNTH"),
        output:
            f"{DATASET}/{{split}}.json",
        wildcard_constraints:
            split="trainval|test",
        log:
            f"{LOGS}/data/synth_{{split}}.log",
        benchmark:
            f"{BENCH}/data/synth_{{split}}.tsv"
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

else:

    rule download:
        output:
            f"{DATA}/downloads/{{archive}}",
        params:
            url=lambda w: config["downloads"][w.archive]["url"],
            verify=lambda w: download_checks(w.archive),
        wildcard_constraints:
            archive="|".join(re.escape(a) for a in config["downloads"]),
        log:
            f"{LOGS}/data/download_{{archive}}.log",
        benchmark:
            f"{BENCH}/data/download_{{archive}}.tsv"
        retries: 2
        threads: 1
        resources:
            mem_mb=500,
            runtime=1440,
            gpu=0,
        conda:
            "../envs/scratchdet.yaml"
        shell:
            "scratchdet data download --url {params.url} {params.verify}"
            " --out {output} > {log} 2>&1"

    rule extract:
        input:
            ancient(f"{DATA}/downloads/{{archive}}"),
        output:
            f"{DATA}/extracted/{{archive}}.done",
        params:
            into=lambda w: extracted(w.archive),
        log:
            f"{LOGS}/data/extract_{{archive}}.log",
        benchmark:
            f"{BENCH}/data/extract_{{archive}}.tsv"
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
        input:
            lambda w: [ancient(f"{DATA}/extracted/{archive}.done")
                       for archive, _, _ in VOC_SPLITS[w.name]],
        output:
            f"{DATA}/voc/{{name}}.json",
        params:
            parts=lambda w: " ".join(f"--voc-dir {extracted(archive, 'VOCdevkit', year)} --split {split}"
                                     for archive, year, split in VOC_SPLITS[w.name]),
        wildcard_constraints:
            name="|".join(VOC_SPLITS),
        log:
            f"{LOGS}/data/voc_{{name}}.log",
        benchmark:
            f"{BENCH}/data/voc_{{name}}.tsv"
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
        input:
            ancient(f"{DATA}/extracted/VOC2012test.tar.done"),
        output:
            f"{DATA}/voc/test_12.json",
        params:
            voc_dir=extracted("VOC2012test.tar", "VOCdevkit", "VOC2012"),
        log:
            f"{LOGS}/data/voc12_test_list.log",
        benchmark:
            f"{BENCH}/data/voc12_test_list.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
            gpu=0,
        conda:
            "../envs/scratchdet.yaml"
        shell:
            "scratchdet report test-list voc --voc-dir {params.voc_dir}"
            " --split test --out {output} > {log} 2>&1"

    rule coco_split:
        input:
            ancient(f"{DATA}/extracted/annotations_trainval2017.zip.done"),
            ancient(f"{DATA}/extracted/{{split}}.zip.done"),
        output:
            f"{DATA}/coco/{{split}}.json",
        params:
            ann=lambda w: extracted("annotations_trainval2017.zip", "annotations",
                                    f"instances_{w.split}.json"),
            images=lambda w: extracted(f"{w.split}.zip", w.split),
        wildcard_constraints:
            split="train2017|val2017",
        log:
            f"{LOGS}/data/coco_{{split}}.log",
        benchmark:
            f"{BENCH}/data/coco_{{split}}.tsv"
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
        input:
            ancient(f"{DATA}/extracted/image_info_test2017.zip.done"),
            ancient(f"{DATA}/extracted/test2017.zip.done"),
        output:
            f"{DATA}/coco/test-dev2017.json",
        params:
            info=extracted("image_info_test2017.zip", "annotations", "image_info_test-dev2017.json"),
            images=extracted("test2017.zip", "test2017"),
        log:
            f"{LOGS}/data/coco_testdev_list.log",
        benchmark:
            f"{BENCH}/data/coco_testdev_list.tsv"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
            gpu=0,
        conda:
            "../envs/scratchdet.yaml"
        shell:
            "scratchdet report test-list coco --image-info {params.info}"
            " --images {params.images} --out {output} > {log} 2>&1"
