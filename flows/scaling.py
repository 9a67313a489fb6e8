"""The scaling study flow: one cached stage per curve, then the fit, then MLflow.

    curve_<label> (each run's synthetic set) [-> curve_real] -> fit -> track

Composition only (the work is in tasks/scaling.py). `runs` maps each curve label to a
finished run id (the CLI runs the `config` curves first). The study lives in
<data_dir>/scaling/<study_id>/ with the same summary.json layout as a pipeline run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.frame import log_safely, recorded_run
from synthloom.config import TrackingConfig
from synthloom.scaling.config import REAL_LABEL, ScalingConfig, study_hash
from tasks.recorder import RunRecorder
from tasks.runtime import file_refs
from tasks.scaling import fit_curves, measure_curve, run_inputs, same_test_split
from tracking.client import default_tracking_uri
from tracking.scaling import log_scaling_study

MIN_REAL_SIZES = 4


def study_stages(cfg: ScalingConfig) -> tuple[str, ...]:
    labels = [c.label for c in cfg.curves] + ([REAL_LABEL] if cfg.real_curve else [])
    return (*(f"curve_{label}" for label in labels), "fit")


@flow(name="scaling-study", flow_run_name="{study_id}", validate_parameters=False)
def scaling_study(
    config: dict[str, Any], study_id: str, data_dir: str, runs: dict[str, str]
) -> dict[str, Any]:
    cfg = ScalingConfig.model_validate(config)
    logger = get_run_logger()
    recorder = RunRecorder(
        Path(data_dir) / "scaling" / study_id,
        study_id,
        config,
        study_hash(cfg),
        stages=study_stages(cfg),
    )
    sizes, seeds = cfg.size_list(), list(cfg.seeds)
    student = {"mle_grid": cfg.mle_grid, "encoder": cfg.encoder}

    def track(summary: dict[str, Any]) -> None:
        if cfg.tracking.enabled and summary["status"] == "completed":
            _track(recorder, summary, config, cfg.tracking, data_dir)

    with recorded_run(recorder, track) as finished:
        inputs = {c.label: run_inputs(data_dir, runs[c.label], c.label) for c in cfg.curves}
        same_test_split(inputs)
        curve_files: dict[str, dict[str, Any]] = {}
        for label, found in inputs.items():
            manifest = recorder.run(
                f"curve_{label}",
                measure_curve,
                label=label,
                rows_file=found["synthetic"],
                test_file=found["test"],
                sizes=sizes,
                seeds=seeds,
                student=student,
                device=cfg.run.device,
            )
            curve_files[label] = file_refs(manifest)["points"]
        if cfg.real_curve:
            first = next(iter(inputs.values()))
            real_rows = _rows_of(first["train"]["path"])
            if sum(1 for s in sizes if s <= real_rows) >= MIN_REAL_SIZES:
                manifest = recorder.run(
                    f"curve_{REAL_LABEL}",
                    measure_curve,
                    label=REAL_LABEL,
                    rows_file=first["train"],
                    test_file=first["test"],
                    sizes=sizes,
                    seeds=seeds,
                    student=student,
                    device=cfg.run.device,
                )
                curve_files[REAL_LABEL] = file_refs(manifest)["points"]
            else:
                reason = (
                    f"the real train split has {real_rows} rows: fewer than {MIN_REAL_SIZES} "
                    f"of the sizes {sizes} fit in it"
                )
                logger.warning("real-data curve skipped: %s", reason)
                recorder.skip(f"curve_{REAL_LABEL}", reason)
        fitted = recorder.run(
            "fit",
            fit_curves,
            curve_files=curve_files,
            fit={
                "rel_tol": cfg.rel_tol,
                "restarts": cfg.restarts,
                "extrapolate_factor": cfg.extrapolate_factor,
            },
            title=f"{study_id}: error vs training-set size",
        )
        recorder.summary["runs"] = runs
        recorder.summary["fit_dir"] = fitted["dir"]
    return finished.summary


def _rows_of(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _track(
    recorder: RunRecorder,
    summary: dict[str, Any],
    config: dict[str, Any],
    tracking: TrackingConfig,
    data_dir: str,
) -> None:
    """Log the study to MLflow (`log_safely`: a failure never loses its artifacts)."""
    uri = tracking.uri or default_tracking_uri(data_dir)
    log_safely(
        recorder,
        summary,
        uri,
        lambda: log_scaling_study(
            summary,
            config,
            summary["fit_dir"],
            uri=uri,
            experiment=tracking.experiment,
            data_dir=data_dir,
        ),
    )
