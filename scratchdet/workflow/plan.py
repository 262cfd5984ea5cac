"""What one invocation of the workflow plans: the validated config, the scale and the params rows,
as the folders, rows and run folders its rules use (workflow/rules/common.smk).

`Plan` is made of three parts: `PlanFolders` (where the scale's data, results, reports and logs
go), the plan itself (which rows run, each row's run config and run folder, its dataset files) and
`RuleOptions` (scratchdet.workflow.rule_options: the rules' command-line arguments). The Snakemake
files only wire these to rules; everything decided here is unit-tested
(tests/test_workflow_plan.py). Planning reads no network and, at the default scale, imports no
torch; at a scale that runs ImageNet-pretrained rows it asks torchvision which weight files those
rows need (`imagenet_weights`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from scratchdet.errors import ConfigError
from scratchdet.paper_tables import Row, load_table
from scratchdet.run_folder import RunPaths, config_digest
from scratchdet.workflow.datasets import (
    SPLIT_ARCHIVES,
    SPLITS,
    dataset_dir,
    split_file,
    synth_folder,
    synth_options,
)
from scratchdet.workflow.rule_options import RuleOptions
from scratchdet.workflow.run_configs import (
    check_references,
    check_row,
    check_scale,
    run_config,
    skip_reason,
)
from scratchdet.workflow.scales import load_scale
from scratchdet.workflow.servers import submission_file
from scratchdet.workflow.snakemake_config import check_workflow_config

__all__ = ["Plan", "PlanFolders"]


class PlanFolders:
    """The folders of one invocation, from its config and scale (the `Plan` this is a base of)."""

    config: dict[str, Any]
    scale: dict[str, Any]

    @property
    def scale_name(self) -> str:
        return self.config["scale"]

    @property
    def data(self) -> str:
        return self.config["data_dir"]

    @property
    def dataset(self) -> str:
        return str(dataset_dir(self.scale, self.data))

    @property
    def results(self) -> str:
        return f"{self.config['results_dir']}/{self.scale_name}"

    @property
    def reports(self) -> str:
        return f"{self.config['reports_dir']}/{self.scale_name}"

    @property
    def logs(self) -> str:
        return f"{self.results}/logs"

    @property
    def job_times(self) -> str:
        """Snakemake's per-job timing files (its `benchmark:` directive; the speed benchmarks
        are `scratchdet benchmark`'s, in benchmarks/)."""
        return f"{self.results}/job_times"

    @property
    def torch_home(self) -> str:
        """TORCH_HOME of the training jobs: the ImageNet weights are fetched into it by their own
        jobs, so a training job on a compute node never reaches the internet."""
        return str(Path(self.data, "torch"))

    @property
    def run_pattern(self) -> RunPaths:
        """The run-folder layout with the wildcards {table}, {row} and {digest}."""
        return RunPaths.wildcards(self.results)


@dataclasses.dataclass(eq=False)
class Plan(PlanFolders, RuleOptions):
    """The rows of the selected tables at one scale, with every path and argument of their jobs."""

    config: dict[str, Any]
    """The Snakemake config (config/config.yaml, validated against its schema)."""
    scale: dict[str, Any]
    """config/scales/<scale>.yaml, validated against its schema."""
    tables: dict[str, list[Row]]
    """Every loaded table: the selected ones and those a selected row is fine-tuned from."""
    scale_file: str = ""
    selected: list[str] = dataclasses.field(default_factory=list)
    """The tables to report (config `tables`, or all of params/)."""

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        scale_file: str | Path | None = None,
        params_dir: str | Path = "params",
    ) -> Plan:
        """Read the scale and the selected params tables (with any table a selected row is
        fine-tuned from) and check them all: recipes, references between rows, every row's model
        and train cells. Errors name the file, line and key."""
        check_workflow_config(config)  # the Snakemake config's keys and values
        scale_file = Path(scale_file or Path("config", "scales", f"{config['scale']}.yaml"))
        scale = load_scale(scale_file)
        # No table named: all of params/, or those of the rows the scale trains (scale `rows`).
        selected = config["tables"] or (
            sorted({ref.split("/")[0] for ref in scale["rows"]})
            if "rows" in scale
            else sorted(p.stem for p in Path(params_dir).glob("*.tsv"))
        )
        tables: dict[str, list[Row]] = {}
        wanted = list(selected)
        while wanted:
            name = wanted.pop(0)
            if name in tables:
                continue
            path = Path(params_dir) / f"{name}.tsv"
            if not path.exists():
                if name in selected:
                    raise ConfigError("config", "tables", f"{name!r} has no file {path}")
                continue  # a row's init_from names it: check_references says which row
            tables[name] = load_table(path)
            wanted += [r.init_from.split("/")[0] for r in tables[name] if r.init_from]
        plan = cls(config, scale, tables, str(scale_file), list(selected))
        plan.check()
        return plan

    def check(self) -> None:
        check_references(self.tables, self.scale)
        check_scale(self.scale, self.scale_file, self.rows)
        for row in self.rows.values():
            check_row(row, self.scale)
        _ = self.showcase, self.figure1

    # --- rows -----------------------------------------------------------------------------------

    @functools.cached_property
    def rows(self) -> dict[str, Row]:
        return {r.key: r for rows in self.tables.values() for r in rows}

    @functools.cached_property
    def skipped(self) -> dict[str, str]:
        """table/row -> why it does not run at this scale."""
        return {
            k: why for k, r in self.rows.items() if (why := skip_reason(r, self.tables, self.scale))
        }

    @functools.cached_property
    def run_keys(self) -> list[str]:
        return [k for k in self.rows if k not in self.skipped]

    def table_runs(self, table: str) -> list[str]:
        """The rows of `table` that run at this scale."""
        return [k for k in self.run_keys if self.rows[k].table == table]

    def _refs(self, name: str) -> list[str]:
        """The refs of `name` (the scale's list, else the config's) that run: a ref into an
        unloaded table is dropped, a typo is an error."""
        refs = self.scale.get(name, self.config[name])  # a scale may choose its own
        for ref in refs:
            if ref.split("/")[0] in self.tables and ref not in self.rows:
                raise ConfigError(
                    "config", name, f"{ref!r} is not a row of params/{ref.split('/')[0]}.tsv"
                )
        return [
            ref for ref in refs if ref.split("/")[0] in self.selected and ref not in self.skipped
        ]

    @functools.cached_property
    def showcase(self) -> list[str]:
        return self._refs("showcase")

    @functools.cached_property
    def figure1(self) -> list[str]:
        return self._refs("figure1")

    # --- one row's run --------------------------------------------------------------------------

    @functools.cache  # noqa: B019 (one Plan per invocation, kept for the whole run)
    def row_config(self, key: str) -> dict[str, Any]:
        """The whole run config of a row. Its digest names the row's folder (`paths`)."""
        row = self.rows[key]
        init = self.init_checkpoint(row)
        return run_config(row, self.scale, self.data, init[0] if init else None)

    def paths(self, key: str) -> RunPaths:
        """A row's files, in the folder named after its run config's digest: a changed config (of
        the row, its recipe, its scale, its dataset or the run it starts from) is a new folder,
        so it retrains because its outputs are missing. No file time or .snakemake/ record is
        involved, which is what makes results restored by `dvc pull` reusable."""
        table, row = key.split("/")
        return RunPaths.of(self.results, table, row, config_digest(self.row_config(key)))

    def run_config_json(self, key: str, digest: str) -> str:
        """The row's run config for the folder asked for; a folder of another config is refused."""
        current = self.paths(key).root.name
        if digest != current:
            raise ValueError(
                f"{self.results}/{key}/{digest} is not the folder of the row's "
                f"current run config ({current}); ask for the reports, not old "
                "folders"
            )
        return json.dumps(self.row_config(key), sort_keys=True)

    def init_checkpoint(self, row: Row) -> list[str]:
        """The final weights a row starts from ([] for none)."""
        return [str(self.paths(row.init_from).model)] if row.init_from else []

    def run_wildcards(self, key: str) -> dict[str, str]:
        """The values of the wildcards {table}, {row} and {digest} for a row's run."""
        table, row = key.split("/")
        return {"table": table, "row": row, "digest": self.paths(key).root.name}

    def submissions(self, key: str) -> list[str]:
        """The evaluation-server upload files of a row ([] when it is scored locally only)."""
        path = submission_file(self.rows[key], self.paths(key))
        return [str(path)] if path else []

    def resource(self, kind: str, key: str) -> int:
        """A resource of a job kind (train, detect, eval) at this scale."""
        return self.scale["resources"][kind].get(key, 0)

    # --- dataset files --------------------------------------------------------------------------

    def split_file(self, split: str) -> str:
        """The dataset file of a logical split at this scale (the synthetic one stands in for
        every split at the default scale)."""
        return split_file(self.scale, split, self.data)

    def official_file(self, split: str) -> str:
        """The file of a logical split of the official datasets, whatever the scale."""
        return str(Path(self.data, SPLITS["official"][split]))

    def archives_of(self, dataset_file: str) -> tuple[str, ...]:
        """The archives an official dataset file (as `official_file` names it) is made from."""
        split = next(s for s in SPLITS["official"] if self.official_file(s) == dataset_file)
        return SPLIT_ARCHIVES[split]

    def local_gt(self, row: Row) -> str:
        """The labelled split a row is scored on here (VOC 2007 test for VOC 2012 rows)."""
        return self.split_file(row.gt_split)

    @property
    def test_files(self) -> dict[str, str]:
        """Every file a test split can stand for, by file stem (detections are named after it)."""
        return {
            Path(self.split_file(s)).stem: self.split_file(s)
            for s in ("voc07_test", "voc12_test", "coco_val", "coco_testdev")
        }

    @property
    def synth_name(self) -> str:
        """The folder of this scale's synthetic dataset under data/synth (named after its recipe);
        "unused" at the scales on the official datasets, whose plans never ask for it."""
        return synth_folder(self.scale["synth"]) if self.scale["dataset"] == "synth" else "unused"

    @property
    def synth_options(self) -> str:
        """`scratchdet data synth` options of this scale's recipe (besides --out)."""
        return synth_options(self.scale["synth"]) if self.scale["dataset"] == "synth" else ""

    # --- what the scale asks for besides the tables --------------------------------------------

    @property
    def learning_curves(self) -> bool:
        """Whether this scale scores every kept snapshot of its runs (scale `learning_curves`)."""
        return bool(self.scale.get("learning_curves", False))

    @property
    def precise_bn_check(self) -> int:
        """Training batches of the PreciseBN comparison curve (0: none; scale
        `precise_bn_check`)."""
        return int(self.scale.get("precise_bn_check", 0))
