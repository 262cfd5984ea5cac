"""Dataset and archive naming: which file a logical split is at a scale, which archives it comes
from, the synthetic dataset's folder, where an archive is extracted.

The workflow's data rules (workflow/rules/data.smk) and its plan (`scratchdet.workflow.plan`) name
every dataset file with these functions; a run config names its data files through them, so a
changed synthetic recipe is a new folder and new run digests. Importing this module does not
import torch.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

__all__ = [
    "SPLITS",
    "SPLIT_ARCHIVES",
    "SYNTH_FOLDER",
    "VOC_SOURCES",
    "dataset_dir",
    "download_options",
    "extracted_dir",
    "split_file",
    "synth_folder",
    "synth_options",
    "voc_split_sources",
]

# Logical split -> dataset file (under the dataset folder) for each kind of dataset. The
# synthetic dataset stands in for every split at the smoke scale.
SPLITS = {
    "synth": {
        "voc07+12": "trainval.json",
        "voc07++12": "trainval.json",
        "coco": "trainval.json",
        "voc07_test": "test.json",
        "voc12_test": "test.json",
        "coco_val": "test.json",
        "coco_testdev": "test.json",
    },
    "official": {
        "voc07+12": "voc/trainval_0712.json",
        "voc07++12": "voc/trainval_0712_test07.json",
        "coco": "coco/train2017.json",
        "voc07_test": "voc/test_07.json",
        "voc12_test": "voc/test_12.json",
        "coco_val": "coco/val2017.json",
        "coco_testdev": "coco/test-dev2017.json",
    },
}

SYNTH_FOLDER = "{trainval}trainval_{test}test_seed{seed}"
"""The synthetic dataset's folder under `<data>/synth/`, named after its recipe (`synth:`); the
optional object knobs add a suffix (`synth_folder`)."""


def synth_folder(synth: dict[str, Any]) -> str:
    """The folder name of a synthetic recipe: sizes and seed, then any object knobs, so that a
    changed recipe is a new folder (and new run digests)."""
    name = SYNTH_FOLDER.format(**synth)
    if "objects" in synth:
        name += "_obj{}-{}".format(*synth["objects"])
    if "object_size" in synth:
        name += "_size{}-{}".format(*synth["object_size"])
    if "classes" in synth:
        name += "_" + "-".join(synth["classes"])
    return name


def synth_options(synth: dict[str, Any]) -> str:
    """`scratchdet data synth` options of a synthetic recipe (besides --out)."""
    opts = [f"--trainval {synth['trainval']}", f"--test {synth['test']}", f"--seed {synth['seed']}"]
    if "objects" in synth:
        opts.append("--objects {} {}".format(*synth["objects"]))
    if "object_size" in synth:
        opts.append("--object-size {} {}".format(*synth["object_size"]))
    if "classes" in synth:
        opts.append("--classes " + " ".join(synth["classes"]))
    return " ".join(opts)


VOC_SOURCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    # logical split -> the (archive, VOC year, image set) it merges, from the extracted devkits
    "voc07+12": (
        ("VOCtrainval_06-Nov-2007.tar", "VOC2007", "trainval"),
        ("VOCtrainval_11-May-2012.tar", "VOC2012", "trainval"),
    ),
    "voc07++12": (
        ("VOCtrainval_06-Nov-2007.tar", "VOC2007", "trainval"),
        ("VOCtest_06-Nov-2007.tar", "VOC2007", "test"),
        ("VOCtrainval_11-May-2012.tar", "VOC2012", "trainval"),
    ),
    "voc07_test": (("VOCtest_06-Nov-2007.tar", "VOC2007", "test"),),
}
"""The labelled VOC splits; VOC 2012 test has no labels and becomes an image list instead."""


SPLIT_ARCHIVES: dict[str, tuple[str, ...]] = {
    # logical split of the official datasets -> the archives of config/downloads.yaml it needs
    **{split: tuple(dict.fromkeys(a for a, _, _ in parts)) for split, parts in VOC_SOURCES.items()},
    "voc12_test": ("VOC2012test.tar",),
    "coco": ("annotations_trainval2017.zip", "train2017.zip"),
    "coco_val": ("annotations_trainval2017.zip", "val2017.zip"),
    "coco_testdev": ("image_info_test2017.zip", "test2017.zip"),
}


def voc_split_sources() -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Dataset file stem under `<data>/voc/` (as `SPLITS["official"]` names it) -> its sources."""
    return {Path(SPLITS["official"][split]).stem: parts for split, parts in VOC_SOURCES.items()}


def extracted_dir(data_dir: str | Path, archive: str, *parts: str) -> str:
    """A path inside the folder that `archive` is extracted into (one folder per archive)."""
    return str(Path(data_dir, "extracted", archive.split(".")[0], *parts))


def download_options(entry: dict[str, Any]) -> str:
    """`scratchdet data download` options that verify an archive of config/downloads.yaml, or
    make the job stop and say how a person gets it (`manual`)."""
    opts = [f"--{k} {entry[k]}" for k in ("md5", "sha256") if k in entry]
    if "manual" in entry:
        opts.append(f"--manual {shlex.quote(entry['manual'])}")
    return " ".join(opts)


def dataset_dir(scale: dict[str, Any], data_dir: str | Path = "data") -> Path:
    """The data folder of a scale's dataset. A synthetic dataset's folder names its recipe, so
    that the run configs (and so their digests) change when the recipe does."""
    if scale["dataset"] != "synth":
        return Path(data_dir)
    return Path(data_dir) / "synth" / synth_folder(scale["synth"])


def split_file(scale: dict[str, Any], split: str, data_dir: str | Path = "data") -> str:
    return str(dataset_dir(scale, data_dir) / SPLITS[scale["dataset"]][split])
