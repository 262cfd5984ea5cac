"""Write a row's run config (the workflow's first job per row) and retire a stale run folder.

The workflow passes the whole config as JSON (Snakemake's params), so the job that writes it
reruns exactly when the row, its recipe or its scale changed. A run folder trained with another
config cannot be resumed (`scratchdet train` refuses it), so it is removed here, with a log line:
the new config replaces the old results, as any rerun in Snakemake does.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from ..config import config_from_dict, dump_config
from ..errors import ConfigError
from ..io import write_text

log = logging.getLogger(__name__)


def write_run_config(config_json: str, out: str | Path, train_dir: str | Path | None = None) -> str:
    """Validate `config_json`, write it as YAML to `out`; return the YAML text."""
    try:
        raw = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(out, "<json>", f"malformed JSON: {exc}") from None
    cfg = config_from_dict(raw, out)  # model keys are checked by `scratchdet train` (needs torch)
    text = dump_config(cfg)
    if train_dir is not None:
        _retire_stale_run(Path(train_dir), cfg.to_dict())
    write_text(out, text)
    return text


def _retire_stale_run(train_dir: Path, config: dict) -> None:
    previous = train_dir / "config.yaml"
    if not previous.exists():
        return
    if yaml.safe_load(previous.read_text()) == config:
        return
    log.warning("%s was trained with another config; removing it so the row retrains", train_dir)
    shutil.rmtree(train_dir)
