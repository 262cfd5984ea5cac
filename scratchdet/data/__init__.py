"""Datasets: readers (VOC, COCO, synthetic) into one COCO-style annotation format, a torch Dataset
over it, and a checker that counts every fault. See docs/ARCHITECTURE.md for the format."""

from .annotations import (
    class_names,
    image_dir,
    label_maps,
    load_annotations,
    merge_annotations,
    save_annotations,
    validate_annotations,
)
from .check import check_dataset, format_report
from .coco import read_coco
from .dataset import DetectionDataset, collate, read_image
from .synth import SYNTH_CLASSES, make_synthetic_voc
from .voc import VOC_CLASSES, read_voc, read_voc_files, read_voc_many

__all__ = [
    "SYNTH_CLASSES", "VOC_CLASSES", "DetectionDataset", "check_dataset", "class_names", "collate",
    "format_report", "image_dir", "label_maps", "load_annotations", "make_synthetic_voc",
    "merge_annotations", "read_coco", "read_image", "read_voc", "read_voc_files", "read_voc_many",
    "save_annotations", "validate_annotations",
]
