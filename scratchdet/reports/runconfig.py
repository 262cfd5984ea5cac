"""Write a row's run config (the workflow's first job per row), validated before any training.

The workflow passes the whole config as JSON (Snakemake's params) and the file goes into the run
folder named after the config's digest, so a folder's config never changes after it is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import config_from_dict, dump_config
from ..errors import ConfigError
from ..io import write_text

__all__ = ["write_run_config"]


def write_run_config(config_json: str, out: str | Path) -> str:
    """Validate `config_json`, write it as YAML to `out`; return the YAML text."""
    try:
        raw = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(out, "<json>", f"malformed JSON: {exc}") from None
    cfg = config_from_dict(raw, out)  # model keys are checked by `scratchdet train` (needs torch)
    text = dump_config(cfg)
    write_text(out, text)
    return text
