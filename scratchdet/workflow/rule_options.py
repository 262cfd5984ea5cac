"""The command-line arguments of the workflow's rules that one plan gives them: the report rules'
--run/--skip/--baseline/--curve options, the baselines to score, the downloads and ImageNet
weights to fetch.

`RuleOptions` is a part of `scratchdet.workflow.plan.Plan` (its base class): it reads the plan's
rows, run folders and dataset files and turns them into the strings and file lists the rules
(workflow/rules/*.smk) pass on. Importing it does not import torch; asking for the ImageNet
weights of a pretrained row asks torchvision.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from scratchdet.paper_tables import Row
from scratchdet.workflow.datasets import download_options, extracted_dir, voc_split_sources

if TYPE_CHECKING:
    from scratchdet.workflow.plan import Plan

__all__ = ["RuleOptions", "figure1_label", "figure1_title", "repeated_option"]


def repeated_option(option: str, pairs: Iterable[tuple[str, str]]) -> str:
    """`--run 'a=b' --run 'c d=e'`: one shell-quoted KEY=VALUE per pair."""
    return " ".join(f"{option} {shlex.quote(f'{key}={value}')}" for key, value in pairs)


def figure1_label(row: Row) -> str:
    """A run's legend entry in ScratchDet Figure 1: its row id and the paper's mAP, if known."""
    paper = row.paper.get("map")
    if paper is None:
        return row.id
    from scratchdet.reports.tables import fmt  # the reports' number format (NAN for a diverged run)

    return f"{row.id} (paper {fmt(paper)} mAP)"


def figure1_title(scale_name: str) -> str:
    """The figure's title; the scale's own note goes under it (reports/figures.heading)."""
    return f"ScratchDet Figure 1, {scale_name} scale"


class RuleOptions:
    """The rules' arguments, computed from the `Plan` this class is a base of."""

    # --- data ------------------------------------------------------------------------------------

    def voc_split_options(self: Plan, name: str) -> str:
        """`scratchdet data voc` options that merge the devkit splits of data/voc/<name>.json."""
        return " ".join(
            f"--voc-dir {shlex.quote(extracted_dir(self.data, archive, 'VOCdevkit', year))} "
            f"--split {image_set}"
            for archive, year, image_set in voc_split_sources()[name]
        )

    def download_options(self: Plan, archive: str) -> str:
        return download_options(self.config["downloads"][archive])

    # --- image-blind baselines and learning curves ---------------------------------------------

    def baseline_name(self: Plan, row: Row) -> str:
        """The image-blind baseline a row is read against: its training split's boxes, scored on
        its test split with its metric (one file for every row that shares the three)."""
        train, gt = self.split_file(row.train_data), self.local_gt(row)
        return f"{Path(train).stem}__{Path(gt).stem}__{row.metric}"

    @functools.cached_property
    def baseline_jobs(self: Plan) -> dict[str, dict[str, str]]:
        """Baseline name -> its training split, test split and metric, for every running row."""
        jobs = {}
        for key in self.run_keys:
            row = self.rows[key]
            jobs[self.baseline_name(row)] = {
                "train": self.split_file(row.train_data),
                "gt": self.local_gt(row),
                "metric": row.metric,
            }
        return jobs

    def baseline_file(self: Plan, key: str) -> str:
        return f"{self.results}/baselines/{self.baseline_name(self.rows[key])}.json"

    def baseline_options(self: Plan, table: str) -> str:
        """--baseline ROW=FILE for each row of `table` that runs at this scale."""
        return repeated_option(
            "--baseline", ((self.rows[k].id, self.baseline_file(k)) for k in self.table_runs(table))
        )

    def curve_options(self: Plan, kind: str) -> str:
        """--curve LABEL=CSV (kind "plain") or --precise-bn-curve (kind "precise_bn") per run."""
        attr, option = (
            ("learning_curve", "--curve")
            if kind == "plain"
            else ("learning_curve_precise_bn", "--precise-bn-curve")
        )
        return repeated_option(option, ((k, getattr(self.paths(k), attr)) for k in self.run_keys))

    # --- ImageNet weights ----------------------------------------------------------------------

    @functools.cached_property
    def imagenet_weights(self: Plan) -> dict[str, str]:
        """File name -> URL of torchvision's ImageNet weights that the running rows fine-tune."""
        files: dict[str, str] = {}
        for key in self.run_keys:
            files.update(self.weights_of(self.rows[key]))
        return files

    def weights_of(self: Plan, row: Row) -> dict[str, str]:
        if not row.pretrained or row.unpublished:
            return {}
        from scratchdet.models.pretrained import (  # torch: only when needed
            imagenet_weights,
            weights_file,
        )

        weights = imagenet_weights(row.model)
        return {} if weights is None else {weights_file(weights): weights.url}

    def weight_files(self: Plan, row: Row) -> list[str]:
        """The weight files a row's training job reads from `torch_home`."""
        return [
            str(Path(self.torch_home, "hub", "checkpoints", name)) for name in self.weights_of(row)
        ]

    # --- the report rules ------------------------------------------------------------------------

    def run_options(self: Plan, table: str) -> str:
        """--run ROW=FOLDER for each row of `table` that runs at this scale."""
        return repeated_option(
            "--run", ((self.rows[k].id, self.paths(k).root) for k in self.table_runs(table))
        )

    def skip_options(self: Plan, table: str) -> str:
        """--skip ROW=REASON for each row of `table` that does not run at this scale."""
        return repeated_option(
            "--skip",
            (
                (self.rows[k].id, why)
                for k, why in self.skipped.items()
                if self.rows[k].table == table
            ),
        )

    def figure1_options(self: Plan) -> str:
        """--run LABEL=TRAIN_DIR for each run of ScratchDet Figure 1."""
        return repeated_option(
            "--run", ((figure1_label(self.rows[k]), self.paths(k).train_dir) for k in self.figure1)
        )
