"""One pipeline run in this process, as `synthloom run`, `resume`, `rerun` and `scaling` run it.

`execute_run` refuses a bad data source before Prefect starts, points Prefect at the data
dir, runs the method's flow (flows/registry.py) on the configured executor with signals
handled, and prints the stage table and the headline metrics (HEADLINE_METRICS) from
summary.json. The command line passes `before_flow` to draw its progress bar
(cli/progress_bar.py) once Prefect's loggers exist.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthloom.errors import SynthloomError
from synthloom.metrics.headline import HEADLINE_METRICS


def execute_run(
    config: dict[str, Any],
    run_id: str,
    data_dir: Path,
    *,
    before_flow: Callable[[], object] | None = None,
) -> int:
    """Run the pipeline `config` (a validated config dumped to JSON) as run `run_id` under
    `data_dir`, printing where it writes and, at the end, its stage table and key metrics.
    `before_flow` is called once Prefect is imported, right before the flow starts.
    Returns the exit code: 0 finished, the error's exit code when a stage failed
    (summary.json says which); on SIGTERM or SIGINT the process exits (flows/signals.py)."""
    from flows.environment import configure_runtime, reap_orphaned_servers
    from synthloom.ingest.sources import source_files

    # Refused before Prefect starts: a data.source directory that is no dataset is not walked.
    source_files(config["data"]["source"], config["data"].get("format"))
    data_dir = configure_runtime(data_dir)
    for pid in reap_orphaned_servers():
        print(f"synthloom: stopped an orphaned Prefect server (pid {pid}) of a killed run")
    run_dir = data_dir / "runs" / run_id
    print(
        f"synthloom: run {run_id}\n  artifacts: {run_dir}\n  summary:   {run_dir / 'summary.json'}",
        flush=True,
    )
    from flows.signals import exit_after_signal, stop_on_signals
    from synthloom.runlock import run_lock

    # One process per run: a second `synthloom run` of the same run id is refused.
    with run_lock(run_dir, run_id), stop_on_signals(run_id, run_dir):
        try:
            code = _run_flow(config, run_id, data_dir, run_dir, before_flow)
        except BaseException as exc:
            exit_after_signal(exc, run_id, run_dir)  # SIGTERM/SIGINT: record, stop, exit now
            raise
        exit_after_signal(None, run_id, run_dir)  # a signal Prefect turned into a failure
        return code


def _run_flow(
    config: dict[str, Any],
    run_id: str,
    data_dir: Path,
    run_dir: Path,
    before_flow: Callable[[], object] | None,
) -> int:
    from flows.environment import console_logs_to_current_stderr, quiet_user_error_tracebacks
    from flows.executors import with_executor
    from flows.registry import flow_for
    from flows.signals import kill_temporary_server_at_exit

    pipeline = flow_for(config["method"]["name"])  # imports Prefect: after configure_runtime
    pipeline = with_executor(pipeline, config)  # run.executor: local, dask or ray
    quiet_user_error_tracebacks()
    console_logs_to_current_stderr()
    if before_flow is not None:
        before_flow()

    try:
        summary = pipeline(config=config, run_id=run_id, data_dir=str(data_dir))
    except SynthloomError as err:
        kill_temporary_server_at_exit()
        print_summary(run_dir)
        print(
            f"\nsynthloom: run {run_id} FAILED. {err}\n  summary: {run_dir / 'summary.json'}\n"
            f"  resume:  synthloom resume {run_id}",
            file=sys.stderr,
        )
        return err.exit_code
    kill_temporary_server_at_exit()
    print_summary(run_dir)
    print(f"\nsynthloom: run {run_id} {summary['status']}. Artifacts in {run_dir}")
    return 0


def print_summary(run_dir: Path) -> None:
    """The stage table (name, status, cached, seconds, rows in and out; the name column as
    wide as the longest stage name) and the headline metrics of a run's summary.json."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return
    summary = json.loads(path.read_text(encoding="utf-8"))
    # the widest stage name (SynthLLM's sample_combinations) keeps a space before its status
    name_width = max([16, *(len(s["name"]) + 2 for s in summary["stages"])])
    print(
        f"\n{'stage':<{name_width}}{'status':<11}{'cached':<8}{'seconds':>9}{'rows_in':>9}"
        f"{'rows_out':>10}"
    )
    for s in summary["stages"]:
        seconds = "" if s["seconds"] is None else f"{s['seconds']:.1f}"
        rows_in = "" if s["rows_in"] is None else s["rows_in"]
        rows_out = "" if s["rows_out"] is None else s["rows_out"]
        print(
            f"{s['name']:<{name_width}}{s['status']:<11}{str(s['cached']).lower():<8}{seconds:>9}"
            f"{rows_in!s:>9}{rows_out!s:>10}"
        )
    shown = {
        k: summary["metrics"][k] for k in HEADLINE_METRICS if summary["metrics"].get(k) is not None
    }
    if shown:
        print("\nmetrics:")
        width = max(28, *(len(key) + 2 for key in shown))
        for key, value in shown.items():
            shown_value = f"{value:.4f}" if isinstance(value, float) else value
            print(f"  {key:<{width}}{shown_value}")
    if summary.get("mlflow_run_id"):
        print(f"\nMLflow run: {summary['mlflow_run_id']}")
