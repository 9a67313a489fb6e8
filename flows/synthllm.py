"""The SynthLLM pipeline (arXiv 2503.19551): concepts -> graph -> combinations -> samples.

    ingest -> extract_concepts -> build_graph -> sample_combinations -> generate -> filter
    -> evaluate, then MLflow (graph size, degree-distribution plot, components, top concepts,
    concept coverage)

Composition only: every stage is a cached task in tasks/synthllm.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow

from flows.frame import pipeline_run
from tasks.ingest import source_fingerprint
from tasks.runtime import file_refs
from tasks.synthllm import (
    build_graph,
    evaluate_samples,
    extract_concepts,
    generate_samples,
    sample_combinations_stage,
)
from tasks.text import filter_text, ingest_text


@flow(name="synthllm-pipeline", flow_run_name="{run_id}", validate_parameters=False)
def synthllm_pipeline(config: dict[str, Any], run_id: str, data_dir: str) -> dict[str, Any]:
    with pipeline_run(config, run_id, data_dir) as frame:
        cfg, config, recorder = frame.cfg, frame.config, frame.recorder
        frame.extra_logging.append(
            lambda mlflow_run_id, uri: _log_graph(
                mlflow_run_id, uri, recorder.run_dir / "build_graph"
            )
        )
        method, run, model_cache = config["method"], cfg.run, frame.model_cache
        seed = recorder.run(
            "ingest",
            ingest_text,
            data=config["data"],
            seed=run.seed,
            source_id=source_fingerprint(cfg.data.source),
        )
        concepts = recorder.run(
            "extract_concepts",
            extract_concepts,
            method=method,
            seed=run.seed,
            device=run.device,
            seed_files=file_refs(seed),
            model_cache=model_cache,
        )
        graph = recorder.run("build_graph", build_graph, concept_files=file_refs(concepts))
        combos = recorder.run(
            "sample_combinations",
            sample_combinations_stage,
            method=method,
            num_rows=cfg.generate.num_rows,
            seed=run.seed,
            concept_files=file_refs(concepts),
        )
        generated = recorder.run(
            "generate",
            generate_samples,
            method=method,
            seed=run.seed,
            device=run.device,
            concept_files=file_refs(concepts),
            combination_files=file_refs(combos),
            model_cache=model_cache,
            label_descriptions=cfg.data.label_descriptions,
        )
        kept = recorder.run(
            "filter",
            filter_text,
            rules=config["text_filter"],
            task_description=cfg.method.task,
            device=run.device,
            encoder=cfg.evaluate.encoder,
            generated_files=file_refs(generated),
            seed_files=file_refs(seed),
            scorer_model=cfg.method.model,
            scorer_dtype=cfg.method.decoder_dtype,
            model_cache=model_cache,
            label_descriptions=cfg.data.label_descriptions,
        )
        if cfg.evaluate.enabled:
            recorder.run(
                "evaluate",
                evaluate_samples,
                evaluate=config["evaluate"],
                task_description=cfg.method.task,
                seed=run.seed,
                device=run.device,
                filtered_files=file_refs(kept),
                combination_files=file_refs(combos),
                graph_files=file_refs(graph),
                seed_files=file_refs(seed),
            )
        else:
            recorder.skip("evaluate", "evaluate.enabled is false")
        stats = json.loads(Path(file_refs(graph)["stats"]["path"]).read_text(encoding="utf-8"))
        recorder.summary["top_concepts"] = stats["top_concepts"]
    return frame.summary


def _log_graph(mlflow_run_id: str, uri: str, graph_dir: Path) -> None:
    """degree_distribution.png, graph_stats.json (top concepts) and the GraphML file."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.tracking.MlflowClient()
    for name in ("degree_distribution.png", "graph_stats.json", "graph.graphml"):
        if (graph_dir / name).is_file():
            client.log_artifact(mlflow_run_id, str(graph_dir / name), artifact_path="concept_graph")
    stats_path = graph_dir / "graph_stats.json"
    if stats_path.is_file():
        top = json.loads(stats_path.read_text(encoding="utf-8"))["top_concepts"][:10]
        client.set_tag(
            mlflow_run_id, "top_concepts", ", ".join(f"{c} ({n})" for c, n in top)[:4900]
        )
