"""RunRecorder: runs stage tasks for a flow and keeps `runs/<run_id>/summary.json` current.

summary.json = {run_id, status, config_hash, artifact_dir, mlflow_run_id, stages: [{name,
status, cached, seconds, rows_in, rows_out, attempts, rerun, cpu_seconds, peak_rss_mb,
stage_peak_rss_mb, gpu_peak_mb, ...}], metrics, error, rerun, estimates}; `estimates` holds
the disk estimate checked before generation (`check_output_fits`). A run stopped by a signal
ends `cancelled`: `signal` names it, `error` says where, the interrupted stage is `cancelled`. It is rewritten atomically
after every stage, so a killed run still shows how far it got.

Operations every flow gets from the config's `run` section (issue 7): Prefect task retries
with exponential backoff per stage (`run.retries`, `run.retry_delay_seconds`; user errors
are not retried), `run.rerun_from` (set by `synthloom rerun`: that stage and every later
one ignore their cache, upstream stages are reused) and `run.fail_attempts` (an injected
failure that only the first N attempts hit).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from synthloom.artifacts import atomic_write_json
from synthloom.budget import (
    check_output_fits,
    disk_full_error,
    disk_full_message,
    estimate_output,
    parquet_bytes_per_row,
)
from synthloom.errors import ConfigError, StageError, SynthloomError
from synthloom.methods.registry import STAGES
from synthloom.stopping import RunInterrupted, stop_signal
from tasks.runtime import interruption_signal, retry_options, set_fault_budget

SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.json"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunRecorder:
    """Owns one run directory: its config copy, its Prefect result store, its summary."""

    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        config: dict[str, Any],
        config_hash: str,
        fail_at_stage: str | None = None,
        stages: tuple[str, ...] = STAGES,
    ) -> None:
        self.run_dir = run_dir
        self._started = time.perf_counter()
        self.cancelled_by: str | None = None
        self.results_dir = run_dir / ".prefect-results"
        self.fail_at_stage = fail_at_stage
        self.stages = tuple(stages)
        ops = config.get("run") or {}
        self.retries: dict[str, int] = dict(ops.get("retries") or {})
        self.retry_delay_seconds = float(ops.get("retry_delay_seconds", 10.0))
        self.fail_attempts = int(ops.get("fail_attempts") or 0)
        rerun_from = ops.get("rerun_from")
        self.forced: tuple[str, ...] = (
            self.stages[self.stages.index(rerun_from) :] if rerun_from in self.stages else ()
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        # The stored config is what `resume` continues: a rerun's forcing is not repeated.
        stored = {**config, "run": {**ops, "rerun_from": None}} if "run" in config else config
        atomic_write_json(stored, run_dir / CONFIG_NAME)
        previous = load_summary(run_dir)
        self.summary: dict[str, Any] = {
            "run_id": run_id,
            "status": "running",
            "config_hash": config_hash,
            "artifact_dir": str(run_dir),
            "mlflow_run_id": (previous or {}).get("mlflow_run_id"),
            "started": _now(),
            "finished": None,
            "attempt": (previous or {}).get("attempt", 0) + 1,
            "stages": [
                {
                    "name": s,
                    "status": "pending",
                    "cached": False,
                    "seconds": None,
                    "rows_in": None,
                    "rows_out": None,
                    "attempts": 0,
                    "rerun": s in self.forced,
                }
                for s in stages
            ],
            "metrics": {},
            "counts": {},
            "error": None,
            "rerun": {"from": rerun_from, "stages": list(self.forced)} if self.forced else None,
        }
        self._write()

    def stage_dir(self, name: str) -> str:
        return str(self.run_dir / name)

    def run(self, name: str, task: Any, **kwargs: Any) -> dict[str, Any]:
        """Run one stage task (cached when its inputs are unchanged) and record the outcome.

        Raises StageError when the task failed; the summary names the stage and the reason."""
        received = stop_signal()
        if received is not None:  # stopping: start nothing new
            self.cancel(None, received.name)
            raise RunInterrupted(received)
        record = self._record(name)
        record.update(status="running", attempts=1)
        self._write()
        inject = self.fail_at_stage == name
        if inject:
            set_fault_budget(self.stage_dir(name), self.fail_attempts)

        def count_retry(error: BaseException | None) -> None:
            record["attempts"] += 1
            record["last_retry_error"] = f"{type(error).__name__}: {error}"
            self._write()

        options = retry_options(name, self.retries, self.retry_delay_seconds, count_retry)
        if name in self.forced:
            options["refresh_cache"] = True  # recompute and overwrite the cache record
        start = time.perf_counter()
        try:
            state = task.with_options(result_storage=self.results_dir, **options)(
                **kwargs,
                stage_dir=self.stage_dir(name),
                inject_failure=inject,
                return_state=True,
            )
        except BaseException as exc:
            received = interruption_signal(exc)
            if received is not None:
                record["seconds"] = round(time.perf_counter() - start, 3)
                self.cancel(name, received.name)
            raise
        record["seconds"] = round(time.perf_counter() - start, 3)
        if not state.is_completed():
            error = state.result(raise_on_failure=False)
            received = interruption_signal(error if isinstance(error, BaseException) else None)
            if received is not None:  # the failure is the signal, however Prefect put it
                self.cancel(name, received.name)
                cause = error if isinstance(error, BaseException) else None
                raise RunInterrupted(received) from cause
            message = str(error) if isinstance(error, BaseException) else str(state.message)
            full = disk_full_error(error if isinstance(error, BaseException) else None)
            if full is not None:
                message = disk_full_message(name, self.run_dir, full, self.summary["run_id"])
                error = StageError(message)
            record.update(status="failed", error=message)
            self.summary["error"] = {
                "stage": name,
                "message": message,
                "type": type(error).__name__,
            }
            self._write()
            if isinstance(error, SynthloomError):
                raise error  # a user-fixable error keeps its own message and exit code
            raise StageError(f"Stage {name!r} failed: {type(error).__name__}: {message}")
        manifest = state.result()
        cached = state.name == "Cached"
        info = manifest.get("info") or {}
        record.update(
            status="completed",
            cached=cached,
            attempts=0 if cached else record["attempts"],
            stage_peak_rss_mb=manifest.get("stage_peak_rss_mb"),
            gpu_peak_mb=manifest.get("gpu_peak_mb"),
            **{k: info[k] for k in ("shards", "shards_computed", "shards_reused") if k in info},
            rows_in=manifest["rows_in"],
            rows_out=manifest["rows_out"],
            compute_seconds=manifest["seconds"],
            cpu_seconds=manifest["cpu_seconds"],
            peak_rss_mb=manifest["peak_rss_mb"],
            counts=manifest["counts"],
            dir=manifest["dir"],
        )
        prefix = "" if name == "evaluate" else f"{name}_"
        self.summary["metrics"].update({prefix + k: v for k, v in manifest["metrics"].items()})
        self.summary["counts"].update(manifest["counts"])
        self._write()
        return manifest

    def check_output_fits(self, stage: str, seed: dict[str, Any], num_rows: int) -> None:
        """Before `stage` starts: refuse `num_rows` rows that would not fit on this run's disk
        (`synthloom.budget`; bytes per row from the seed manifest's train split). The estimate
        is kept in summary["estimates"][stage]; a refusal marks the stage `refused`."""
        per_row = parquet_bytes_per_row(seed["files"]["train"]["path"])
        estimate = estimate_output(num_rows, per_row, self.run_dir)
        self.summary.setdefault("estimates", {})[stage] = estimate.to_dict()
        try:
            check_output_fits(estimate)
        except ConfigError as err:
            self._record(stage).update(status="refused", error=str(err))
            self.summary["error"] = {"stage": stage, "message": str(err), "type": "ConfigError"}
            raise
        finally:
            self._write()

    def skip(self, name: str, reason: str) -> None:
        self._record(name).update(status="skipped", reason=reason)
        self._write()

    def cancel(self, stage: str | None, signal_name: str) -> None:
        """Record that `signal_name` stopped the run (during `stage`, marked `cancelled`)."""
        self.cancelled_by = signal_name
        _mark_cancelled(self.summary, signal_name, stage)
        self._write()

    def finish(self, status: str) -> dict[str, Any]:
        """End the summary with `status`; a run stopped by a signal ends `cancelled`."""
        if self.cancelled_by is not None:
            status = "cancelled"
        self.summary["status"] = status
        self.summary["finished"] = _now()
        self.summary["wall_seconds"] = round(time.perf_counter() - self._started, 3)
        self._write()
        return self.summary

    def set_mlflow_run(self, run_id: str | None) -> None:
        self.summary["mlflow_run_id"] = run_id
        self._write()

    def _record(self, name: str) -> dict[str, Any]:
        return next(s for s in self.summary["stages"] if s["name"] == name)

    def _write(self) -> None:
        atomic_write_json(self.summary, self.run_dir / SUMMARY_NAME)


def _mark_cancelled(summary: dict[str, Any], signal_name: str, stage: str | None) -> None:
    """Status `cancelled`, the error naming the signal, the interrupted stage `cancelled`."""
    running = [s for s in summary["stages"] if s["status"] == "running"]
    stage = stage or (running[0]["name"] if running else None)
    where = f" during stage {stage!r}" if stage else ""
    message = (
        f"cancelled by {signal_name}{where}; finished stages and generation shards are kept. "
        f"Fix: `synthloom resume {summary['run_id']}` continues from there."
    )
    for record in summary["stages"]:
        if record["status"] == "running" or record["name"] == stage:
            record.update(status="cancelled", error=message)
    summary["status"] = "cancelled"
    summary["error"] = {"stage": stage, "message": message, "type": "Cancelled"}
    summary["signal"] = signal_name


def record_cancellation(run_dir: Path, signal_name: str) -> dict[str, Any] | None:
    """Make `run_dir`'s summary.json say `signal_name` cancelled the run, whatever the flow
    managed to write (a signal between stages, or before the recorder existed)."""
    summary = load_summary(run_dir)
    if summary is None:
        return None
    if summary.get("status") != "cancelled" or summary.get("signal") != signal_name:
        _mark_cancelled(summary, signal_name, (summary.get("error") or {}).get("stage"))
        summary["finished"] = summary.get("finished") or _now()
        atomic_write_json(summary, run_dir / SUMMARY_NAME)
    return summary


def load_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SUMMARY_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
