"""SynthLLM's own stage tasks (synthloom.concepts): Parquet in, Parquet out, cached.

extract_concepts -> build_graph -> sample_combinations -> generate_samples, and
evaluate_samples (the labelled-text metrics of tasks.text plus concept coverage). Ingest and
filter are the labelled-text tasks (tasks.text.ingest_text / filter_text); the samples keep
their `level`, `concepts` and `documents` columns through the filter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloom.artifacts import atomic_write_json
from synthloom.concepts.combine import Combination, coverage
from synthloom.concepts.generate import SeedDocuments
from synthloom.concepts.graph import (
    build_concept_graph,
    graph_from_tables,
    graph_stats,
    graph_to_tables,
    plot_degree_distribution,
    write_graphml,
)
from synthloom.concepts.runner import combine_for_labels, extract_seed_concepts, write_samples
from synthloom.methods.text.runner import text_model_box
from synthloom.text_splits import SPLITS
from tasks.runtime import StageOutput, StageRun, stage


@stage("extract_concepts", config="method")
def extract_concepts(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    seed_files: dict[str, dict[str, Any]],
    model_cache: str,
) -> StageOutput:
    """concepts.parquet: the seed documents with a `concepts` list column."""
    seeds = pd.read_parquet(seed_files["seeds"]["path"])
    texts = seeds["text"].astype(str).tolist()
    result = extract_seed_concepts(
        texts,
        method,
        text_model_box(device, model_cache, decoder_dtype=method["decoder_dtype"]).causal_lm,
        seed,
    )
    seeds["concepts"] = result.concepts
    seeds.to_parquet(run.out / "concepts.parquet", index=False)
    with_concepts = sum(1 for c in result.concepts if c)
    run.log.info(
        "%s extraction: %d of %d documents have concepts; %s",
        method["extractor"],
        with_concepts,
        len(texts),
        result.counts,
    )
    return StageOutput(
        files={"concepts": ("concepts.parquet", len(seeds))},
        rows_in=len(seeds),
        rows_out=with_concepts,
        metrics={
            "documents_with_concepts": with_concepts / len(texts) if texts else 0.0,
            "mean_concepts": float(np.mean([len(c) for c in result.concepts])) if texts else 0.0,
        },
        counts={f"extract_{k}": v for k, v in result.counts.items()},
    )


@stage("build_graph", config=())
def build_graph(
    run: StageRun,
    concept_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """nodes.parquet, edges.parquet, graph.graphml, graph_stats.json, degree_distribution.png."""
    docs = pd.read_parquet(concept_files["concepts"]["path"])
    graph = build_concept_graph([list(c) for c in docs["concepts"]])
    nodes, edges = graph_to_tables(graph)
    nodes.to_parquet(run.out / "nodes.parquet", index=False)
    edges.to_parquet(run.out / "edges.parquet", index=False)
    write_graphml(graph, run.out / "graph.graphml")
    stats = graph_stats(graph)
    atomic_write_json(stats, run.out / "graph_stats.json")
    plot_degree_distribution(graph, run.out / "degree_distribution.png")
    run.log.info(
        "concept graph: %d nodes, %d edges, %d components; top %s",
        stats["nodes"],
        stats["edges"],
        stats["components"],
        stats["top_concepts"][:5],
    )
    return StageOutput(
        files={
            "nodes": ("nodes.parquet", len(nodes)),
            "edges": ("edges.parquet", len(edges)),
            "graphml": ("graph.graphml", None),
            "stats": ("graph_stats.json", None),
            "degree_plot": ("degree_distribution.png", None),
        },
        rows_in=len(docs),
        rows_out=len(nodes),
        metrics={k: v for k, v in stats.items() if k != "top_concepts"},
    )


def _seed_documents(
    path: str, descriptions: dict[str, str] | None = None
) -> tuple[pd.DataFrame, SeedDocuments]:
    docs = pd.read_parquet(path)
    concepts = [list(c) for c in docs["concepts"]]
    seeds = SeedDocuments(
        docs["text"].astype(str).tolist(),
        docs["label"].astype(str).tolist(),
        concepts,
        dict(descriptions or {}),
    )
    return docs, seeds


@stage("sample_combinations", config=("method", "num_rows"))
def sample_combinations_stage(
    run: StageRun,
    method: dict[str, Any],
    num_rows: int,
    seed: int,
    concept_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """combinations.parquet (label, level, concepts, documents): `num_rows` draws spread evenly
    over the labels, each label's draws from a graph of that label's documents only, or of
    all the documents with `method.concept_source: all`."""
    _, seeds = _seed_documents(concept_files["concepts"]["path"])
    draw = combine_for_labels(seeds.concepts, seeds.labels, num_rows, method, seed)
    counts = draw.counts
    rows = [
        {
            "label": c.label,
            "level": c.level,
            "concepts": list(c.concepts),
            "documents": list(c.documents),
        }
        for c in draw.combinations
    ]
    frame = pd.DataFrame(rows, columns=["label", "level", "concepts", "documents"])
    frame.to_parquet(run.out / "combinations.parquet", index=False)
    return StageOutput(
        files={"combinations": ("combinations.parquet", len(frame))},
        rows_in=num_rows,
        rows_out=len(frame),
        counts={f"combinations_{k}": v for k, v in counts.items()},
    )


def _combinations(frame: pd.DataFrame) -> list[Combination]:
    return [
        Combination(tuple(r.concepts), int(r.level), tuple(int(d) for d in r.documents), r.label)
        for r in frame.itertuples(index=False)
    ]


@stage("generate", config=("method", "label_descriptions"))
def generate_samples(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    concept_files: dict[str, dict[str, Any]],
    combination_files: dict[str, dict[str, Any]],
    model_cache: str,
    label_descriptions: dict[str, str] | None = None,
) -> StageOutput:
    """samples.parquet (text, label, level, concepts, documents): one sample per combination;
    a labelled prompt says what its label means when `label_descriptions` describes it."""
    import time

    _, seeds = _seed_documents(concept_files["concepts"]["path"], label_descriptions)
    combos = _combinations(pd.read_parquet(combination_files["combinations"]["path"]))
    models = text_model_box(device, model_cache, decoder_dtype=method["decoder_dtype"])
    model, tokenizer = models.causal_lm(method["model"])
    start = time.perf_counter()
    result = write_samples(combos, seeds, model, tokenizer, method, seed)
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(result.rows, columns=["text", "label", "level", "concepts", "documents"])
    frame.to_parquet(run.out / "samples.parquet", index=False)
    run.log.info(
        "generated %d samples from %d combinations in %.1f s (%s weights)",
        len(frame),
        len(combos),
        seconds,
        str(model.dtype).removeprefix("torch."),
    )
    return StageOutput(
        files={"samples": ("samples.parquet", len(frame))},
        rows_in=len(combos),
        rows_out=len(frame),
        metrics={
            "tokens_per_second": result.generated_tokens / seconds if seconds else 0.0,
            "generated_tokens": float(result.generated_tokens),
            "forward_passes": float(result.forward_passes),
        },
        counts={f"generate_{k}": v for k, v in result.counts.items()},
    )


@stage("evaluate", config=("evaluate", "task_description"))
def evaluate_samples(
    run: StageRun,
    evaluate: dict[str, Any],
    task_description: str | None,
    seed: int,
    device: str,
    filtered_files: dict[str, dict[str, Any]],
    combination_files: dict[str, dict[str, Any]],
    graph_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """The labelled-text metrics (synthloom.metrics.text_evaluation.evaluate_text_sets: students on the real test
    split, diversity, fidelity) plus concept coverage: the share of graph nodes and edges
    used by the sampled combinations (`sampled_*`) and by the kept samples, and the kept
    samples per level."""
    from synthloom.metrics.text_evaluation import evaluate_text_sets
    from synthloom.models.device import resolve_device
    from synthloom.models.encoder import load_encoder

    kept = pd.read_parquet(filtered_files["synthetic"]["path"])
    combos = _combinations(pd.read_parquet(combination_files["combinations"]["path"]))
    graph = graph_from_tables(
        pd.read_parquet(graph_files["nodes"]["path"]),
        pd.read_parquet(graph_files["edges"]["path"]),
    )
    metrics: dict[str, Any] = {f"sampled_{k}": v for k, v in coverage(combos, graph).items()}
    metrics |= coverage(_combinations(kept), graph)
    for level in (1, 2, 3):
        metrics[f"kept_level{level}"] = float((kept["level"] == level).sum())
    real = {k: pd.read_parquet(seed_files[k]["path"]) for k in SPLITS}
    if len(kept):
        encoder = load_encoder(evaluate["encoder"], device=resolve_device(device))
        text_metrics, _ = evaluate_text_sets(
            kept, real, encoder, evaluate, seed=seed, task_description=task_description
        )
        metrics |= text_metrics
    atomic_write_json(metrics, run.out / "metrics.json")
    kept.head(50).to_csv(run.out / "sample_rows.csv", index=False)
    scalar = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return StageOutput(
        files={
            "metrics": ("metrics.json", None),
            "sample_rows": ("sample_rows.csv", min(50, len(kept))),
        },
        rows_in=len(kept),
        rows_out=len(kept),
        metrics=scalar,
    )
