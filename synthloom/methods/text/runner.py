"""Run a labelled-text generator outside any pipeline: the models it loads, its seeds, and
its samples as a frame. The generate stage (tasks/text.py) and the benchmarks call these.

`run_generator(method, seeds, n, models, seed)` builds the generator named by
`method["name"]`, generates `n` samples from the seeds frame (columns text, label) and
returns (frame, stats): the frame has columns text, label, method, model, sample_index and
info (the sample's JSON provenance); stats holds "metrics" (samples, seconds,
samples_per_second, forward passes, prompt and generated tokens, tokens_per_second, the
generator's own metrics and `unfinished_share`), "counts" (what the generator dropped, by
reason) and
"decoder_dtypes" (the loaded causal LMs' weight dtypes, by name).
`filter_samples` applies the text filter's rules to such a frame, with the label-margin
rule's scorer built from the same models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloom.filters.text import TextFilterResult, filter_texts
from synthloom.methods.text import build_text_generator
from synthloom.methods.text.base import ModelBox, SeedSet
from synthloom.methods.text.label_margin import label_margin_scorer
from synthloom.models.causal_lm import load_causal_lm
from synthloom.models.device import frozen_model_dtype, resolve_device, set_seed
from synthloom.models.encoder import DEFAULT_ENCODER, load_encoder


def text_model_box(
    device: str, model_cache: str, encoder: str = DEFAULT_ENCODER, decoder_dtype: str = "auto"
) -> ModelBox:
    """The real models, loaded on first use: causal LMs by name, with their weights in
    `decoder_dtype` (a method's `decoder_dtype` key, resolved by `frozen_model_dtype`), and
    the sentence encoder."""
    resolved = resolve_device(device)
    dtype = frozen_model_dtype(decoder_dtype, resolved)
    return ModelBox(
        load_causal_lm=lambda name: load_causal_lm(
            name, device=resolved, dtype=dtype, cache_dir=Path(model_cache)
        ),
        load_encoder=lambda: load_encoder(encoder, device=resolved),
    )


def generator_model(method: dict[str, Any]) -> str | None:
    """The causal LM a text method generates with (`model`, or BARE's `base_model`): the
    samples' `model` column and the label-margin rule's scorer."""
    return method.get("model") or method.get("base_model")


def seed_set(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> SeedSet:
    """The seeds frame (columns text, label) and the labels' descriptions as a SeedSet."""
    return SeedSet(
        tuple(frame["text"].astype(str)), tuple(frame["label"].astype(str)), descriptions or {}
    )


def unfinished_share(counts: dict[str, int], metrics: dict[str, float]) -> float:
    """Continuations that ran to the token budget (every count named "unfinished" or
    "*_unfinished": BARE's drafts and refinements too) over the continuations decoded
    (`metrics["sampled"]`: a SynAlign candidate pool, CorrSynth's and CFG's streams, BARE's
    drafts and refinements, SynthLLM's combinations; `metrics["samples"]` where a generator
    does not record it); 0 when nothing was decoded."""
    unfinished = sum(n for reason, n in counts.items() if reason.endswith("unfinished"))
    sampled = metrics.get("sampled", metrics["samples"])
    return unfinished / sampled if sampled else 0.0


def run_generator(
    method: dict[str, Any],
    seeds: pd.DataFrame,
    num_samples: int,
    models: ModelBox,
    seed: int,
    label_descriptions: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the generator named by `method["name"]`; (samples frame, stats dict).
    `synthllm` (not a TextGenerator: concepts, a graph, combinations) runs through
    `synthloom.concepts.runner.run_synthllm`, with the same outputs."""
    set_seed(seed)
    if method["name"] == "synthllm":
        from synthloom.concepts.runner import run_synthllm

        frame, stats = run_synthllm(
            method, seeds, num_samples, models.causal_lm, seed, label_descriptions
        )
        stats["metrics"]["unfinished_share"] = unfinished_share(stats["counts"], stats["metrics"])
        return frame, {**stats, "decoder_dtypes": models.loaded_dtypes()}
    generator = build_text_generator(method)
    start = time.perf_counter()
    seed_texts = seed_set(seeds, label_descriptions)
    batch = generator.generate(seed_texts, num_samples, models=models, seed=seed)
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(
        {
            "text": [s.text for s in batch.samples],
            "label": [s.label for s in batch.samples],
            "method": method["name"],
            "model": str(generator_model(method) or ""),
            "sample_index": range(len(batch.samples)),
            "info": [json.dumps(s.info, default=str, ensure_ascii=False) for s in batch.samples],
        }
    )
    stats = batch.stats
    metrics = {
        "samples": float(len(frame)),
        "seconds": seconds,
        "samples_per_second": len(frame) / seconds if seconds > 0 else float("nan"),
        "forward_passes": float(stats.forward_passes),
        "prompt_tokens": float(stats.prompt_tokens),
        "generated_tokens": float(stats.generated_tokens),
        "tokens_per_second": stats.generated_tokens / seconds if seconds > 0 else float("nan"),
        **{k: float(v) for k, v in stats.metrics.items()},
    }
    metrics["unfinished_share"] = unfinished_share(stats.counts, metrics)
    return frame, {
        "metrics": metrics,
        "counts": dict(stats.counts),
        "decoder_dtypes": models.loaded_dtypes(),
    }


def filter_samples(
    samples: pd.DataFrame,
    seeds: pd.DataFrame,
    rules: dict[str, Any],
    *,
    models: ModelBox,
    scorer_model: str | None,
    task: str | None,
    label_descriptions: dict[str, str] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    progress: Callable[[int], Any] | None = None,
) -> TextFilterResult:
    """`filter_texts(samples, seeds, rules)` as a text run applies it: `task` (the method's
    task description) for the leakage rule, and the label-margin rule (when on) scored by
    the causal LM `scorer_model` (the generator's own) from `models` under per-label
    prompts of the seeds and `label_descriptions`, or by a classifier on the seeds'
    embeddings (`embed`); `progress(total)` hears the margin scores."""
    scorer = label_margin_scorer(
        rules,
        seed_set(seeds, label_descriptions),
        models=models,
        scorer_model=scorer_model,
        task=task,
        embed=embed,
        progress=progress,
    )
    return filter_texts(samples, seeds, rules, task=task, embed=embed, label_margin=scorer)
