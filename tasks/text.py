"""Labelled-text stage tasks: ingest_text -> generate_text -> filter_text -> evaluate_text.

Each wraps core functions (`synthloom.text_splits`, the generator named by `method.name`,
`synthloom.filters.text`, `synthloom.metrics.text` / `student`) with Parquet in and out.
Frames have columns `text` and `label`; the generated frame adds provenance columns
(`method`, `model`, `sample_index`, `info`: the sample's JSON provenance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthloom.artifacts import atomic_write_json, read_table, write_table
from synthloom.errors import StageError
from synthloom.ingest.sources import load_source
from synthloom.methods.text.runner import filter_samples, run_generator, text_model_box
from synthloom.metrics.text_evaluation import evaluate_text_sets, sample_texts_table
from synthloom.models.device import resolve_device
from synthloom.models.encoder import encode_texts, load_encoder
from synthloom.plots import plot_embedding_projection
from synthloom.runs import model_cache_dir
from synthloom.text_splits import SPLITS, text_splits_for
from tasks.runtime import StageOutput, StageRun, stage, stage_progress

PROGRESS_SECONDS = 15.0  # at most one generation progress line this often (and the last)


@stage("ingest", config="data")
def ingest_text(
    run: StageRun,
    data: dict[str, Any],
    seed: int,
    source_id: str,
) -> StageOutput:
    """Load the source; write seeds / test / real_train Parquet (columns text, label)."""
    raw = load_source(data["source"], data.get("format"), hf_split=data.get("hf_split", "train"))
    if data.get("max_rows") and len(raw) > data["max_rows"]:
        raw = raw.sample(n=data["max_rows"], random_state=seed).reset_index(drop=True)
    splits = text_splits_for(raw, data, seed=seed)
    files = {}
    for name in SPLITS:
        frame = getattr(splits, name)
        write_table(frame, run.out / f"{name}.parquet")
        files[name] = (f"{name}.parquet", len(frame))
    labels = sorted(splits.seeds["label"].unique())
    run.log.info(
        "labelled text from %s: %d labels (%s); seeds %d, test %d, real train %d",
        data["source"],
        len(labels),
        ", ".join(labels),
        len(splits.seeds),
        len(splits.test),
        len(splits.real_train),
    )
    return StageOutput(
        files=files,
        rows_in=len(raw),
        rows_out=len(splits.seeds),
        info={"labels": labels, **{f"n_{k}": files[k][1] for k in SPLITS}},
    )


@stage("generate", config=("generate", "method", "label_descriptions"))
def generate_text(
    run: StageRun,
    generate: dict[str, Any],
    method: dict[str, Any],
    seed: int,
    device: str,
    seed_files: dict[str, dict[str, Any]],
    model_cache: str,
    encoder: str,
    label_descriptions: dict[str, str] | None = None,
) -> StageOutput:
    """`generate.num_rows` labelled samples from the seeds (and the labels' descriptions)
    -> samples.parquet."""
    seeds = read_table(seed_files["seeds"]["path"])[0]
    models = text_model_box(device, model_cache, encoder, method.get("decoder_dtype", "auto"))
    progress = stage_progress(
        "generate", generate["num_rows"], "samples", min_interval=PROGRESS_SECONDS
    )
    progress.update(0)  # the rate counts from here
    models.progress = progress
    frame, stats = run_generator(
        method, seeds, generate["num_rows"], models, seed, label_descriptions
    )
    if len(frame) == 0:
        raise StageError(
            f"generate made 0 of {generate['num_rows']} samples: every text the model "
            f"returned was empty or dropped ({stats['counts']}). Fix: check that "
            f"method.model loads and answers its prompts (run with run.device=cpu to "
            f"compare), and raise method.max_new_tokens if the texts are cut short."
        )
    write_table(frame, run.out / "samples.parquet")
    atomic_write_json(stats, run.out / "generation.json")
    m = stats["metrics"]
    run.log.info(
        "%s: %d samples in %.1f s (%.2f samples/s, %d forward passes, weights %s); "
        "%.1f%% of continuations unfinished; dropped %s",
        method["name"],
        len(frame),
        m["seconds"],
        m["samples_per_second"],
        m["forward_passes"],
        stats.get("decoder_dtypes"),
        100 * m["unfinished_share"],
        stats["counts"],
    )
    return StageOutput(
        files={"samples": ("samples.parquet", len(frame)), "stats": ("generation.json", None)},
        rows_in=len(seeds),
        rows_out=len(frame),
        metrics=m,
        counts={f"generate_{k}": v for k, v in stats["counts"].items()},
    )


@stage(
    "filter",
    config=(
        "rules",
        "task_description",
        "encoder",
        "scorer_model",
        "scorer_dtype",
        "label_descriptions",
    ),
)
def filter_text(
    run: StageRun,
    rules: dict[str, Any],
    task_description: str | None,
    device: str,
    encoder: str,
    generated_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
    scorer_model: str | None = None,
    model_cache: str | None = None,
    label_descriptions: dict[str, str] | None = None,
    scorer_dtype: str = "auto",
) -> StageOutput:
    """Apply the text filter rules -> kept.parquet, removed.parquet (with a reason column).
    The label-margin rule scores with `scorer_model` (the generator's causal LM, its weights
    in `scorer_dtype`: the method's `decoder_dtype`) or a classifier on the seeds
    (`rules.label_margin_score`)."""
    margin_rule = rules.get("label_margin_keep") is not None
    samples = read_table(generated_files["samples"]["path"])[0]
    seeds = read_table(seed_files["seeds"]["path"])[0]
    embed = None
    if (
        rules.get("near_duplicates") == "embedding"
        or rules.get("seed_cosine")
        or rules.get("label_consistency")
        or (margin_rule and rules.get("label_margin_score") == "seed_classifier")
    ):
        model = load_encoder(encoder, device=resolve_device(device))
        embed = lambda texts: encode_texts(*model, texts)  # noqa: E731
    result = filter_samples(
        samples,
        seeds,
        rules,
        models=text_model_box(device, model_cache or str(model_cache_dir()), encoder, scorer_dtype),
        scorer_model=scorer_model,
        task=task_description,
        label_descriptions=label_descriptions,
        embed=embed,
        progress=lambda total: stage_progress("filter: label margins", total, "scores", 15.0),
    )
    write_table(result.kept, run.out / "kept.parquet")
    write_table(result.removed, run.out / "removed.parquet")
    n = len(samples)
    rate = lambda rule: result.counts[rule] / n if n else float("nan")  # noqa: E731
    run.log.info("text filter kept %d of %d; removed %s", len(result.kept), n, result.counts)
    return StageOutput(
        files={
            "synthetic": ("kept.parquet", len(result.kept)),
            "removed": ("removed.parquet", len(result.removed)),
        },
        rows_in=n,
        rows_out=len(result.kept),
        metrics={
            "kept_rate": len(result.kept) / n if n else float("nan"),
            "prompt_leakage_rate": rate("prompt_leakage"),
            "seed_copy_rate": rate("seed_copy"),
        },
        counts={f"removed_{k}": v for k, v in result.counts.items()},
    )


@stage("evaluate", config=("evaluate", "task_description"))
def evaluate_text(
    run: StageRun,
    evaluate: dict[str, Any],
    task_description: str | None,
    seed: int,
    device: str,
    filtered_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Diversity, fidelity and student metrics -> metrics.json, sample_texts.csv, embeddings.png."""
    synthetic = read_table(filtered_files["synthetic"]["path"])[0]
    cap = evaluate.get("max_rows", 5000)
    if len(synthetic) > cap:
        synthetic = synthetic.sample(n=cap, random_state=seed).reset_index(drop=True)
    real = {k: read_table(seed_files[k]["path"])[0] for k in SPLITS}
    encoder = load_encoder(evaluate["encoder"], device=resolve_device(device))
    metrics, emb = evaluate_text_sets(
        synthetic, real, encoder, evaluate, seed=seed, task_description=task_description
    )
    atomic_write_json(metrics, run.out / "metrics.json")
    files: dict[str, tuple[str, int | None]] = {"metrics": ("metrics.json", None)}
    table = sample_texts_table(synthetic, evaluate.get("examples_per_label", 5), seed)
    table.to_csv(run.out / "sample_texts.csv", index=False)
    files["sample_texts"] = ("sample_texts.csv", len(table))
    if evaluate.get("plots", True):
        plot_embedding_projection(
            np.concatenate([emb["test"], emb["real_train"]]),
            real["test"]["label"].astype(str).tolist()
            + real["real_train"]["label"].astype(str).tolist(),
            emb["synthetic"],
            synthetic["label"].astype(str).tolist(),
            run.out / "embeddings.png",
        )
        files["embeddings"] = ("embeddings.png", None)
    run.log.info(
        "student accuracy on the real test split: synthetic %.3f, seeds %.3f, "
        "seeds+synthetic %.3f, real train %.3f",
        *(
            metrics.get(f"student_{k}_accuracy", float("nan"))
            for k in ("synthetic", "seeds", "seeds_plus_synthetic", "real_train")
        ),
    )
    return StageOutput(
        files=files, rows_in=len(synthetic), rows_out=len(synthetic), metrics=metrics
    )
