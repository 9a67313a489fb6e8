"""SynthLLM's steps from its method config, and all of them in one call.

`extract_seed_concepts`, `combine_for_labels` and `write_samples` each run one step with the
settings of a `method:` section (SynthLLMConfig dumped to a dict); the flow's
extract_concepts, sample_combinations and generate stages (tasks/synthllm.py) call them.
`run_synthllm(method, seeds, n, load_lm, seed, label_descriptions)` runs the three in a row,
outside the pipeline, and returns `(frame, stats)` in the shape of
`synthloom.methods.text.runner.run_generator` (which calls it for `method.name: synthllm`),
so the text benchmarks measure SynthLLM beside the other text generators. The frame's `info`
holds each sample's level, concepts and source documents; stats["metrics"]["sampled"] is the
number of combinations drawn (one prompt each).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthloom.concepts.combine import Combination, CombinationDraw, sample_label_combinations
from synthloom.concepts.extract import (
    Extraction,
    extract_concepts_llm,
    extract_keyphrases,
    llm_completer,
)
from synthloom.concepts.generate import ConceptSamples, SeedDocuments, generate_from_combinations

LoadLM = Callable[[str], tuple[Any, Any]]  # model name -> (model, tokenizer)


def extract_seed_concepts(
    texts: Sequence[str], method: dict[str, Any], load_lm: LoadLM, seed: int
) -> Extraction:
    """Concepts of each text by `method["extractor"]`: TF-IDF keyphrases, or the LLM's JSON
    lists (retried, then dropped; both counted)."""
    limit = method["max_concepts_per_document"]
    if method["extractor"] != "llm":
        return extract_keyphrases(texts, max_concepts=limit, min_df=method["keyphrase_min_df"])
    model, tokenizer = load_lm(method["model"])
    complete = llm_completer(
        model,
        tokenizer,
        temperature=method["extraction_temperature"],
        max_new_tokens=method["extraction_max_new_tokens"],
        seed=seed,
    )
    return extract_concepts_llm(
        texts, complete, max_concepts=limit, max_retries=method["extraction_retries"]
    )


def combine_for_labels(
    concepts: Sequence[Sequence[str]],
    labels: Sequence[str],
    num: int,
    method: dict[str, Any],
    seed: int,
) -> CombinationDraw:
    """`sample_label_combinations` with the method's level mix and concept counts."""
    mix = method["level_mix"]
    return sample_label_combinations(
        concepts,
        labels,
        num,
        rng=np.random.default_rng(seed),
        level_mix={1: mix["level1"], 2: mix["level2"], 3: mix["level3"]},
        min_concepts=method["min_concepts"],
        max_concepts=method["max_concepts"],
        max_walks=method["max_walks"],
        shared_concepts=method["concept_source"] == "all",
    )


def write_samples(
    combinations: Sequence[Combination],
    seeds: SeedDocuments,
    model: Any,
    tokenizer: Any,
    method: dict[str, Any],
    seed: int,
) -> ConceptSamples:
    """`generate_from_combinations` with the method's prompt and decoding settings."""
    return generate_from_combinations(
        combinations,
        seeds,
        model,
        tokenizer,
        output=method["output"],
        task=method["task"],
        num_examples=method["num_examples"],
        temperature=method["temperature"],
        top_p=method["top_p"],
        max_new_tokens=method["max_new_tokens"],
        batch_size=method["batch_size"],
        seed=seed,
        seed_openers=method["seed_openers"],
        no_repeat_ngram=method["no_repeat_ngram"],
        paragraph_stop=method["paragraph_stop"],
        closing_ramp=method["closing_ramp"],
    )


def run_synthllm(
    method: dict[str, Any],
    seeds: pd.DataFrame,
    num_samples: int,
    load_lm: LoadLM,
    seed: int,
    label_descriptions: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`num_samples` combinations of the seeds' concepts, one sample each (module docstring)."""
    texts, labels = seeds["text"].astype(str).tolist(), seeds["label"].astype(str).tolist()
    start = time.perf_counter()
    extraction = extract_seed_concepts(texts, method, load_lm, seed)
    draw = combine_for_labels(extraction.concepts, labels, num_samples, method, seed)
    model, tokenizer = load_lm(method["model"])
    documents = SeedDocuments(texts, labels, extraction.concepts, dict(label_descriptions or {}))
    result = write_samples(draw.combinations, documents, model, tokenizer, method, seed)
    seconds = time.perf_counter() - start
    rows = result.rows
    frame = pd.DataFrame(
        {
            "text": [r["text"] for r in rows],
            "label": [r["label"] for r in rows],
            "method": "synthllm",
            "model": str(method["model"]),
            "sample_index": range(len(rows)),
            "info": [
                json.dumps(
                    {k: r[k] for k in ("level", "concepts", "documents")}, ensure_ascii=False
                )
                for r in rows
            ],
        }
    )
    metrics = {
        "samples": float(len(frame)),
        "sampled": float(len(draw.combinations)),
        "seconds": seconds,
        "samples_per_second": len(frame) / seconds if seconds > 0 else float("nan"),
        "forward_passes": float(result.forward_passes),
        "prompt_tokens": float(result.prompt_tokens),
        "generated_tokens": float(result.generated_tokens),
        "tokens_per_second": result.generated_tokens / seconds if seconds > 0 else float("nan"),
    }
    counts = {**draw.counts, **extraction.counts, **result.counts}
    return frame, {"metrics": metrics, "counts": counts}
