"""Run ids and the data directory: what a pipeline run is called and where its state lives.

A run id is `<name>-<config hash[:10]>`, so the same config continues the same run. The data
directory (holding runs/, prefect/, mlflow/, models/) is the command line's value, else the
config's run.data_dir, else $SYNTHLOOM_DATA_DIR, else ./data. A stored run is
`<data_dir>/runs/<run_id>/` with its config.json and summary.json. Plain Python: no Prefect or
MLflow, so every command, flow and script resolves runs the same way.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from synthloom.config import PipelineConfig, config_hash
from synthloom.errors import ConfigError

__all__ = [
    "checked_run_id",
    "default_data_dir",
    "model_cache_dir",
    "resolve_data_dir",
    "run_id_for",
    "stored_run",
    "summary_stages",
]


def default_data_dir() -> Path:
    """$SYNTHLOOM_DATA_DIR, or ./data (relative to the working directory)."""
    return Path(os.environ.get("SYNTHLOOM_DATA_DIR", "data"))


def model_cache_dir(data_dir: str | Path | None = None) -> Path:
    """Where converted built-in models live: $SYNTHLOOM_MODEL_CACHE, else
    `<data_dir>/models` (`default_data_dir()` when no data dir is given)."""
    cache = os.environ.get("SYNTHLOOM_MODEL_CACHE")
    if cache:
        return Path(cache)
    return Path(data_dir if data_dir is not None else default_data_dir()) / "models"


def resolve_data_dir(cli_value: str | None, config: PipelineConfig | None = None) -> Path:
    """The data directory: `cli_value` if given, else `config.run.data_dir` if set, else
    `default_data_dir()`. Not resolved to an absolute path (configure_runtime does that)."""
    if cli_value:
        return Path(cli_value)
    if config is not None and config.run.data_dir:
        return Path(config.run.data_dir)
    return default_data_dir()


_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def checked_run_id(run_id: str) -> str:
    """`run_id` when it can only name a directory directly under runs/ (letters, digits,
    `_`, `.`, `-`; not starting with `.` or `-`); else a ConfigError with the fix."""
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"Run id {run_id!r} is not allowed: a run id names one directory under "
            "<data dir>/runs/, so it may hold only letters, digits, '_', '.' and '-' and may "
            "not start with '.' or '-'. Fix: pass an id like 'credit-trial-1'."
        )
    return run_id


def run_id_for(config: PipelineConfig, fresh: bool = False, given: str | None = None) -> str:
    """`given` or `<name>-<config hash[:10]>`: the same id continues the same run (finished
    stages are reused); --fresh appends the time, so it starts a new run even with --run-id.
    The name's other characters become '-' and leading dots and dashes go, so a computed id
    always passes `checked_run_id` (a name like `../x` stays under runs/ and can be resumed)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.run.name or "run")
    name = name.strip("-").lstrip(".-") or "run"
    run_id = checked_run_id(given) if given else f"{name}-{config_hash(config)[:10]}"
    return run_id + time.strftime("-%Y%m%dT%H%M%S") if fresh else run_id


def stored_run(run_id: str, data_dir: Path, verb: str) -> tuple[Path, dict[str, Any]]:
    """The run directory and stored config.json of `run_id` under `data_dir`; a ConfigError
    ("Cannot <verb> ...") listing the last ten stored runs when it has none."""
    run_dir = data_dir / "runs" / checked_run_id(run_id)
    stored = run_dir / "config.json"
    if not stored.is_file():
        runs = sorted(
            p.name for p in (data_dir / "runs").glob("*") if (p / "config.json").is_file()
        )
        listed = ", ".join(runs[-10:]) or "none"
        raise ConfigError(
            f"Cannot {verb} {run_id!r}: {stored} does not exist. Runs under "
            f"{data_dir / 'runs'}: {listed}. Fix: pass one of those ids, or --data-dir where "
            "the run lives."
        )
    return run_dir, json.loads(stored.read_text(encoding="utf-8"))


def summary_stages(run_dir: Path) -> tuple[str, ...]:
    """The stage names a run's summary.json lists, in order (empty when there is none)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return ()
    return tuple(s["name"] for s in json.loads(path.read_text(encoding="utf-8"))["stages"])
