"""The tabular pipeline: ingest -> fit -> generate -> filter -> evaluate, then track.

DiffLM fits in three stages (serialize -> train_vae -> train_diffusion), generates by
decoding and then diagnoses where it loses (reconstruction). Composition only: every
stage is a cached task in `tasks/`; rerunning the same run id reuses completed stages and
continues from the first unfinished one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.run_artifacts import publish_run_artifacts
from synthloom.config import PipelineConfig, config_hash
from synthloom.errors import StageError
from synthloom.methods.registry import stages_for
from synthloom.runs import model_cache_dir
from tasks.evaluate import evaluate_synthetic
from tasks.filter import filter_rows
from tasks.fit import fit_generator
from tasks.generate import generate_rows
from tasks.ingest import ingest_seed, source_fingerprint
from tasks.recorder import RunRecorder
from tasks.runtime import file_refs
from tracking.client import default_tracking_uri
from tracking.pipeline import end_status, log_pipeline_run


@flow(name="tabular-pipeline", flow_run_name="{run_id}", validate_parameters=False)
def tabular_pipeline(config: dict[str, Any], run_id: str, data_dir: str) -> dict[str, Any]:
    cfg = PipelineConfig.model_validate(config)
    recorder = RunRecorder(
        Path(data_dir) / "runs" / run_id,
        run_id,
        config,
        config_hash(cfg),
        fail_at_stage=cfg.run.fail_at_stage,
        stages=stages_for(cfg.method.name),
    )
    status = "failed"
    try:
        seed = recorder.run(
            "ingest",
            ingest_seed,
            data=config["data"],
            seed=cfg.run.seed,
            source_id=source_fingerprint(cfg.data.source),
        )
        recorder.check_output_fits("generate", seed, cfg.generate.num_rows)
        if cfg.method.name == "difflm":
            generated = _difflm_stages(recorder, config, cfg, seed, data_dir)
        else:
            model = recorder.run(
                "fit",
                fit_generator,
                method=config["method"],
                seed=cfg.run.seed,
                device=cfg.run.device,
                seed_files=file_refs(seed),
            )
            generated = recorder.run(
                "generate",
                generate_rows,
                generate=config["generate"],
                method_name=cfg.method.name,
                seed=cfg.run.seed,
                model_files=file_refs(model),
                seed_files=file_refs(seed),
            )
        kept = recorder.run(
            "filter",
            filter_rows,
            rules=config["filter"],
            generated_files=file_refs(generated),
            seed_files=file_refs(seed),
        )
        if cfg.evaluate.enabled:
            recorder.run(
                "evaluate",
                evaluate_synthetic,
                evaluate=config["evaluate"],
                filtered_files=file_refs(kept),
                seed_files=file_refs(seed),
            )
        else:
            recorder.skip("evaluate", "evaluate.enabled is false")
        status = "completed"
    finally:
        summary = recorder.finish(status)
        if cfg.tracking.enabled:
            track_pipeline_run(recorder, summary, config, cfg, data_dir)
        publish_run_artifacts(summary)
    return summary


def _difflm_stages(
    recorder: RunRecorder,
    config: dict[str, Any],
    cfg: PipelineConfig,
    seed: dict[str, Any],
    data_dir: str,
) -> dict[str, Any]:
    """serialize -> train_vae -> train_diffusion -> generate (DiffLM, arXiv 2411.03250), then
    the reconstruction diagnostic; returns the generate stage's outputs."""
    # imported here: DiffLM's stages load transformers, which no other tabular method needs
    from tasks.difflm import (
        generate_records,
        reconstruction_stage,
        serialize_records,
        train_diffusion_stage,
        train_vae_stage,
    )

    method, run = config["method"], cfg.run
    model_cache = str(model_cache_dir(data_dir))
    records = recorder.run(
        "serialize", serialize_records, method=method, seed_files=file_refs(seed)
    )
    vae = recorder.run(
        "train_vae",
        train_vae_stage,
        method=method,
        seed=run.seed,
        device=run.device,
        record_files=file_refs(records),
        model_cache=model_cache,
    )
    diffusion = recorder.run(
        "train_diffusion",
        train_diffusion_stage,
        method=method,
        seed=run.seed,
        device=run.device,
        vae_files=file_refs(vae),
    )
    generated = recorder.run(
        "generate",
        generate_records,
        generate=config["generate"],
        method=method,
        seed=run.seed,
        device=run.device,
        vae_files=file_refs(vae),
        diffusion_files=file_refs(diffusion),
        seed_files=file_refs(seed),
        model_cache=model_cache,
    )
    if cfg.method.reconstruction_records:
        recorder.run(
            "reconstruction",
            reconstruction_stage,
            method=method,
            mle={"grid": cfg.evaluate.mle_grid, "seeds": cfg.evaluate.mle_seeds},
            seed=run.seed,
            device=run.device,
            record_files=file_refs(records),
            vae_files=file_refs(vae),
            diffusion_files=file_refs(diffusion),
            generated_files=file_refs(generated),
            seed_files=file_refs(seed),
            model_cache=model_cache,
        )
    else:
        recorder.skip("reconstruction", "method.reconstruction_records is 0")
    return generated


def track_pipeline_run(
    recorder: RunRecorder,
    summary: dict[str, Any],
    config: dict[str, Any],
    cfg: PipelineConfig,
    data_dir: str,
) -> None:
    """Log to MLflow; a tracking failure is reported but never loses the run's artifacts.

    A run cancelled by a signal is not logged (the process is leaving within seconds); its
    resume logs it."""
    if summary["status"] == "cancelled":
        get_run_logger().warning("MLflow not updated: %s", summary["error"]["message"])
        return
    uri = cfg.tracking.uri or default_tracking_uri(data_dir)
    try:
        run_id = log_pipeline_run(
            summary, config, uri=uri, experiment=cfg.tracking.experiment, data_dir=data_dir
        )
        recorder.set_mlflow_run(run_id)
        end_status(run_id, uri, summary["status"])
    except Exception as exc:  # noqa: BLE001 - tracking must not fail a finished run
        get_run_logger().warning(
            "MLflow tracking failed (%s: %s); artifacts are intact in %s",
            type(exc).__name__,
            exc,
            recorder.run_dir,
        )


__all__ = ["StageError", "tabular_pipeline"]
