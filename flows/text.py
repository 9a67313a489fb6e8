"""The labelled-text pipeline: ingest -> generate -> filter -> evaluate, then track.

Every text method (kind text in synthloom/methods/registry.py: FewGen, CFG, CorrSynth, BARE,
SynAlign) runs through this flow; only the generate stage differs (the generator named by
`method.name`). Composition only: every stage is a cached task in `tasks/text.py`; rerunning
the same run id reuses completed stages and continues from the first unfinished one.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.frame import pipeline_run
from synthloom.methods.text.runner import generator_model
from tasks.ingest import source_fingerprint
from tasks.runtime import file_refs
from tasks.text import evaluate_text, filter_text, generate_text, ingest_text


@flow(name="text-pipeline", flow_run_name="{run_id}", validate_parameters=False)
def text_pipeline(config: dict[str, Any], run_id: str, data_dir: str) -> dict[str, Any]:
    with pipeline_run(config, run_id, data_dir) as run:
        cfg, config, recorder = run.cfg, run.config, run.recorder
        task_description = config["method"].get("task")
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
            model_cache=run.model_cache,
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
            scorer_model=generator_model(config["method"]),
            scorer_dtype=config["method"]["decoder_dtype"],
            model_cache=run.model_cache,
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
    return run.summary
