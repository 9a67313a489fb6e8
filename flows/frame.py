"""The frame every pipeline flow runs its stages in: `with pipeline_run(...) as run:`.

On entry: the config validated (`run.cfg`, and `run.config` its JSON dump with defaults
filled in), and a `RunRecorder` for `<data_dir>/runs/<run_id>/` (`run.recorder`). The body
runs the flow's stages through the recorder. On exit, whatever happened: the run's
summary.json is finished ("completed" when the body returned, "failed" or "cancelled" when
it raised), the run is logged to MLflow when `tracking.enabled` (a tracking failure is a
warning, never a lost run), and the summary is published on the flow run's Artifacts tab.
The flow returns `run.summary`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from flows.run_artifacts import publish_run_artifacts
from synthloom.config import PipelineConfig, config_hash
from synthloom.methods.registry import stages_for
from synthloom.runs import model_cache_dir
from tasks.recorder import RunRecorder
from tracking.client import default_tracking_uri
from tracking.pipeline import end_status, log_pipeline_run

# Called with (MLflow run id, tracking URI) after the shared logging: a flow's own artifacts.
ExtraLogging = Callable[[str, str], None]


@dataclass
class PipelineRun:
    """What a flow's body gets from `pipeline_run`."""

    cfg: PipelineConfig
    config: dict[str, Any]  # cfg as JSON, defaults filled in: what stages receive
    recorder: RunRecorder
    data_dir: str
    extra_logging: list[ExtraLogging] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # set on exit

    @property
    def model_cache(self) -> str:
        """Where pretrained models are converted and cached (synthloom.runs.model_cache_dir)."""
        return str(model_cache_dir(self.data_dir))


@dataclass
class Finished:
    """What `recorded_run` hands its body: the summary, set on exit."""

    summary: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def recorded_run(
    recorder: RunRecorder, track: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[Finished]:
    """The frame of any recorded run (a pipeline run, a scaling study): on exit the summary
    is finished ("completed" when the body returned, else "failed" or "cancelled"), handed to
    `track` (None: not tracked), and published on the flow run's Artifacts tab."""
    finished = Finished()
    status = "failed"
    try:
        yield finished
        status = "completed"
    finally:
        finished.summary = recorder.finish(status)
        if track is not None:
            track(finished.summary)
        publish_run_artifacts(finished.summary)


def log_safely(
    recorder: RunRecorder,
    summary: dict[str, Any],
    uri: str,
    log: Callable[[], str],
    extra_logging: Iterable[ExtraLogging] = (),
) -> None:
    """`log()` (returns the MLflow run id), then the run id into the summary, `extra_logging`
    and the MLflow run's end status; a tracking failure is a warning naming where the
    artifacts are, never a failed run."""
    try:
        mlflow_run_id = log()
        recorder.set_mlflow_run(mlflow_run_id)
        for log_extra in extra_logging:
            log_extra(mlflow_run_id, uri)
        end_status(mlflow_run_id, uri, summary["status"])
    except Exception as exc:  # noqa: BLE001 - tracking must not fail a finished run
        get_run_logger().warning(
            "MLflow tracking failed (%s: %s); artifacts are intact in %s",
            type(exc).__name__,
            exc,
            recorder.run_dir,
        )


@contextlib.contextmanager
def pipeline_run(config: dict[str, Any], run_id: str, data_dir: str) -> Iterator[PipelineRun]:
    """The frame of one pipeline run (module docstring)."""
    cfg = PipelineConfig.model_validate(config)
    config = cfg.model_dump(mode="json")
    recorder = RunRecorder(
        Path(data_dir) / "runs" / run_id,
        run_id,
        config,
        config_hash(cfg),
        fail_at_stage=cfg.run.fail_at_stage,
        stages=stages_for(cfg.method.name),
    )
    run = PipelineRun(cfg, config, recorder, data_dir)

    def track(summary: dict[str, Any]) -> None:
        run.summary = summary
        if cfg.tracking.enabled:
            track_pipeline_run(run)

    with recorded_run(recorder, track):  # track() sets run.summary on any exit
        yield run


def track_pipeline_run(run: PipelineRun) -> None:
    """Log to MLflow (`log_safely`). A run cancelled by a signal is not logged (the process
    is leaving within seconds); its resume logs it."""
    summary, cfg = run.summary, run.cfg
    if summary["status"] == "cancelled":
        get_run_logger().warning("MLflow not updated: %s", summary["error"]["message"])
        return
    uri = cfg.tracking.uri or default_tracking_uri(run.data_dir)
    log_safely(
        run.recorder,
        summary,
        uri,
        lambda: log_pipeline_run(
            summary,
            run.config,
            uri=uri,
            experiment=cfg.tracking.experiment,
            data_dir=run.data_dir,
        ),
        run.extra_logging,
    )
