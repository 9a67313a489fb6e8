"""The flow `prefect.yaml` deploys to a work pool: run a pipeline config file by its path.

`config_pipeline(config_path, overrides, data_dir, run_id)` reads and validates the YAML
at run time (relative paths are relative to the worker's working directory, the
repository root that `prefect deploy` records), then runs the method's flow
(`flows.registry.flow_for`) as a subflow with exactly the parameters `synthloom run CONFIG
--set ...` would pass. A deployment therefore names a config file instead of embedding a
copy of it, and an edited config is picked up by the next scheduled run. `synthloom serve`
(cli/serve.py) serves the method's flow directly with the config validated at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow


def resolve_config_run(
    config_path: str,
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The flow's keyword arguments for a config file, as `synthloom run` resolves them:
    {config: validated config, run_id: `<name>-<config hash>` unless given, data_dir: the
    argument, run.data_dir, SYNTHLOOM_DATA_DIR or ./data}. Bad configs raise ConfigError
    naming file and key."""
    from synthloom.config import load_config
    from synthloom.runs import resolve_data_dir, run_id_for

    config = load_config(config_path, list(overrides or []))
    return {
        "config": config.model_dump(mode="json"),
        "run_id": run_id or run_id_for(config),
        "data_dir": str(Path(resolve_data_dir(data_dir, config)).resolve()),
    }


@flow(name="synthloom-config", flow_run_name="{config_path}")
def config_pipeline(
    config_path: str,
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run the pipeline config at `config_path` (with `--set`-style overrides) as a subflow
    of its method's flow (`flows.registry.flow_for`); returns the run's summary."""
    from flows.executors import with_executor
    from flows.registry import flow_for

    parameters = resolve_config_run(config_path, overrides, data_dir, run_id)
    pipeline = flow_for(parameters["config"]["method"]["name"])
    return with_executor(pipeline, parameters["config"])(**parameters)  # run.executor


__all__ = ["config_pipeline", "resolve_config_run"]
