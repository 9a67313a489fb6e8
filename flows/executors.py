"""`run.executor`: which Prefect task runner a pipeline flow gets, and so where shards run.

- local (default): Prefect's thread-pool runner; shards run one after another in this
  process.
- dask: prefect-dask's DaskTaskRunner; `run.address` connects to an existing scheduler
  (`tcp://host:8786`), otherwise a local cluster of `run.workers` processes (one thread
  each) is started for the run and stopped after it.
- ray: prefect-ray's RayTaskRunner (`pip install "synthloom[ray]"`); `run.address` is an
  existing cluster (`ray://host:10001` or `auto`), otherwise a local Ray instance.

Workers report task runs to the same Prefect API as the flow: a server's PREFECT_API_URL,
or, with Prefect's ephemeral API, the URL of the temporary server this process started.
Stage tasks themselves run in the flow's process; only shard tasks go to the cluster.
"""

from __future__ import annotations

import os
from typing import Any

from synthloom.errors import ConfigError


def prefect_api_url() -> str:
    """The Prefect API this process reports to (starting the ephemeral server if needed)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return PREFECT_API_URL.value()
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the same instance Prefect's client uses
    server.start()
    return server.api_url


def task_runner_for(run: dict[str, Any]) -> Any | None:
    """The task runner for a config's `run` section; None keeps the flow's default."""
    executor = run.get("executor", "local")
    workers = run.get("workers") or os.cpu_count() or 1
    address = run.get("address")
    if executor == "local":
        return None
    worker_env = {"PREFECT_API_URL": prefect_api_url()}
    if executor == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
                "env": worker_env,
            }
        )
    if executor == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise ConfigError(
                "run.executor=ray needs the Ray task runner, which is not installed. Fix: "
                'pip install "synthloom[ray]" (prefect-ray and ray), or set run.executor: '
                "local or dask."
            ) from None
        init_kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env}}
        if not address:
            init_kwargs["num_cpus"] = workers
        return RayTaskRunner(address=address, init_kwargs=init_kwargs)
    raise ConfigError(f"run.executor={executor!r} is not known. Fix: use local, dask or ray.")


def with_executor(flow: Any, config: dict[str, Any]) -> Any:
    """`flow` with the task runner that `config['run']` asks for."""
    runner = task_runner_for(config.get("run") or {})
    return flow if runner is None else flow.with_options(task_runner=runner)
