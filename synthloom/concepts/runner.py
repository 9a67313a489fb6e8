"""SynthLLM in one call, outside the pipeline: seeds -> concepts -> combinations -> samples.

`run_synthllm(method, seeds, n, load_lm, seed, label_descriptions)` does what the SynthLLM
flow's extract_concepts, sample_combinations and generate stages do (tasks/synthllm.py), with
the same core functions, and returns `(frame, stats)` in the shape of
`synthloom.methods.text.runner.run_generator` (which calls it for `method.name: synthllm`),
so the text benchmarks measure SynthLLM beside the other text generators. The frame's `info`
holds each sample's level, concepts and source documents; stats["metrics"]["sampled"] is the
number of combinations drawn (one prompt each).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from synthloom.concepts.combine import sample_label_combinations
from synthloom.concepts.extract import extract_concepts_llm, extract_keyphrases, llm_completer
from synthloom.concepts.generate import SeedDocuments, generate_from_combinations

LoadLM = Callable[[str], tuple[Any, Any]]  # model name -> (model, tokenizer)


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
    limit = method["max_concepts_per_document"]
    if method["extractor"] == "llm":
        model, tokenizer = load_lm(method["model"])
        complete = llm_completer(
            model,
            tokenizer,
            temperature=method["extraction_temperature"],
            max_new_tokens=method["extraction_max_new_tokens"],
            seed=seed,
        )
        extraction = extract_concepts_llm(
            texts, complete, max_concepts=limit, max_retries=method["extraction_retries"]
        )
    else:
        extraction = extract_keyphrases(
            texts, max_concepts=limit, min_df=method["keyphrase_min_df"]
        )
    mix = method["level_mix"]
    draw = sample_label_combinations(
        extraction.concepts,
        labels,
        num_samples,
        rng=np.random.default_rng(seed),
        level_mix={1: mix["level1"], 2: mix["level2"], 3: mix["level3"]},
        min_concepts=method["min_concepts"],
        max_concepts=method["max_concepts"],
        max_walks=method["max_walks"],
    )
    model, tokenizer = load_lm(method["model"])
    result = generate_from_combinations(
        draw.combinations,
        SeedDocuments(texts, labels, extraction.concepts, dict(label_descriptions or {})),
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
    )
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
