"""The labelled-text pipeline: ingest -> generate -> filter -> evaluate, then track.

Every text method (kind text in synthloom/methods/registry.py: FewGen, CFG, CorrSynth, BARE,
SynAlign) runs through this flow; only the generate stage differs (the generator named by
`method.name`). Composition only: every stage is a cached task in `tasks/text.py`; rerunning
the same run id reuses completed stages and continues from the first unfinished one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.run_artifacts import publish_run_artifacts
from flows.tabular import track_pipeline_run  # one MLflow logging path for every flow
from synthloom.config import PipelineConfig, config_hash
from synthloom.methods.registry import stages_for
from synthloom.runs import model_cache_dir
from tasks.ingest import source_fingerprint
from tasks.recorder import RunRecorder
from tasks.runtime import file_refs
from tasks.text import evaluate_text, filter_text, generate_text, ingest_text


@flow(name="text-pipeline", flow_run_name="{run_id}", validate_parameters=False)
def text_pipeline(config: dict[str, Any], run_id: str, data_dir: str) -> dict[str, Any]:
    cfg = PipelineConfig.model_validate(config)
    config = cfg.model_dump(mode="json")  # defaults filled in (evaluate.suite: text)
    recorder = RunRecorder(
        Path(data_dir) / "runs" / run_id,
        run_id,
        config,
        config_hash(cfg),
        fail_at_stage=cfg.run.fail_at_stage,
        stages=stages_for(cfg.method.name),
    )
    task_description = config["method"].get("task")
    status = "failed"
    try:
        seeds = recorder.run(
            "ingest",
            ingest_text,
            data=config["data"],
            seed=cfg.run.seed,
            source_id=source_fingerprint(cfg.data.source),
        )
        generated = recorder.run(
            "generate",
            generate_text,
            generate=config["generate"],
            method=config["method"],
            seed=cfg.run.seed,
            device=cfg.run.device,
            seed_files=file_refs(seeds),
            model_cache=str(model_cache_dir(data_dir)),
            encoder=cfg.evaluate.encoder,
            label_descriptions=cfg.data.label_descriptions,
        )
        kept = recorder.run(
            "filter",
            filter_text,
            rules=config["text_filter"],
            task_description=task_description,
            device=cfg.run.device,
            encoder=cfg.evaluate.encoder,
            generated_files=file_refs(generated),
            seed_files=file_refs(seeds),
            scorer_model=config["method"].get("model") or config["method"].get("base_model"),
            model_cache=str(model_cache_dir(data_dir)),
            label_descriptions=cfg.data.label_descriptions,
        )
        if cfg.evaluate.enabled:
            recorder.run(
                "evaluate",
                evaluate_text,
                evaluate=config["evaluate"],
                task_description=task_description,
                seed=cfg.run.seed,
                device=cfg.run.device,
                filtered_files=file_refs(kept),
                seed_files=file_refs(seeds),
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


__all__ = ["text_pipeline"]
