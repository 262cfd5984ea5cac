"""The workflow's Snakemake config (config/config.yaml + config/downloads.yaml + any --config
key=value) as a typed struct, validated where the plan loads it (``workflow.plan.Plan.load``).

It replaces ``workflow/schemas/config.schema.yaml``: the same keys and constraints, checked by the
project's one validation mechanism (``scratchdet.validation``), so a bad value is one line naming
the key (``config: scale: must be one of default, proof, paper, got 'huge'``) instead of a
jsonschema dump.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from scratchdet.paper_tables import NAME, ROW_REF
from scratchdet.validation import Config, convert

__all__ = ["Download", "WorkflowConfig", "check_workflow_config"]

RowRef = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^{ROW_REF}$",
        description='a table row, "table/row" (file name in params/ without .tsv, then its row id)',
    ),
]
Folder = Annotated[str, msgspec.Meta(min_length=1)]
TableName = Annotated[str, msgspec.Meta(pattern=f"^{NAME}$")]


class Download(Config):
    """Where to get one archive and how to verify it (config/downloads.yaml)."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    md5: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")] | None = None
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")] | None = None
    size_mb: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Approximate archive size in MB, summed by the preflight."""
    manual: str | None = None
    """Why it cannot be fetched anonymously and where to put it instead."""

    def __post_init__(self) -> None:
        if self.md5 is None and self.sha256 is None and self.manual is None:
            raise ValueError("needs md5, sha256 or manual")


class WorkflowConfig(Config):
    """The keys of the Snakemake config."""

    scale: Literal["default", "proof", "paper"]
    """config/scales/<scale>.yaml; default = smoke scale, proof = proof of learning on the CPU,
    paper = the papers' recipes."""
    tables: list[TableName]
    """Params tables to run (empty = all, or those of the scale's rows)."""
    data_dir: Folder
    results_dir: Folder
    reports_dir: Folder
    showcase: list[RowRef]
    """Runs that get precision-recall curves and a detection grid."""
    figure1: Annotated[list[RowRef], msgspec.Meta(min_length=1)]
    """Runs drawn in ScratchDet Figure 1 (loss, gradient norm, its fluctuation)."""
    downloads: dict[str, Download]
    """Archive file name -> where to get it and how to verify it."""
    existing_data: dict[str, Folder] = msgspec.field(default_factory=dict)
    """Archive file name -> a folder that already holds its extracted contents (the one with
    VOCdevkit/ for a VOC archive; with train2017/, annotations/, ... for COCO): the workflow links
    it instead of downloading and extracting, copying nothing."""


def check_workflow_config(config: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """``config`` itself once it is a valid workflow config; ConfigError naming the key if not."""
    convert(config, WorkflowConfig, path=where)
    return config
