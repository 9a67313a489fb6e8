"""Label descriptions in prompts, label margins (generator and seed classifier), the
label-margin filter rule, and the seed-draw splits of the text quality protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthloom.config import PipelineConfig, config_hash
from synthloom.errors import DataError
from synthloom.filters.text import filter_texts
from synthloom.methods.text.base import SeedSet
from synthloom.methods.text.label_margin import (
    generator_margin_scorer,
    label_log_likelihoods,
    label_margins,
    scoring_prompts,
    seed_classifier_margin_scorer,
)
from synthloom.methods.text.prompts import CLOSE, fewshot_prompt, token_budget
from synthloom.methods.text.sampling import encode_prompt
from synthloom.models.tiny import lively_tiny_causal_lm
from synthloom.text_splits import text_splits

NO_RULES = {
    "min_chars": None,
    "max_chars": None,
    "degenerate": False,
    "max_repeated_ngram_share": None,
    "prompt_leakage": False,
    "seed_ngram": None,
    "seed_cosine": None,
    "exact_duplicates": False,
    "near_duplicates": None,
}


@pytest.fixture(scope="module")
def lm():
    return lively_tiny_causal_lm(torch.float64)


def test_description_adds_one_line_and_no_description_keeps_the_old_prompt():
    plain = fewshot_prompt("numeric", ["How many?"], task="questions")
    assert plain == (
        '1 examples of questions, all with label "numeric".\n\n<text>\nHow many?\n</text>\n\n'
        "<text>\n"
    )
    described = fewshot_prompt(
        "numeric", ["How many?"], task="questions", description="the answer is a number."
    )
    assert described == plain.replace(
        '"numeric".\n\n', '"numeric".\nLabel "numeric" means: the answer is a number.\n\n'
    )


def test_cached_prefix_log_likelihoods_equal_a_full_forward(lm):
    model, tok = lm
    prompts = [
        fewshot_prompt("a", ["red apples", "green pears"], task="fruit"),
        fewshot_prompt("b", ["blue cars"], task="fruit", description="vehicles"),
    ]
    texts = ["red pears", "a very long blue car on the road", "x"]
    got = label_log_likelihoods(model, tok, texts, prompts, batch_size=2)
    close = tok("\n" + CLOSE, add_special_tokens=False).input_ids
    for n, text in enumerate(texts):
        for k, prompt in enumerate(prompts):
            prefix = encode_prompt(tok, prompt).tolist()
            cont = tok(text, add_special_tokens=False).input_ids + close
            ids = torch.tensor([prefix + cont])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
            want = sum(float(logp[len(prefix) - 1 + t, c]) for t, c in enumerate(cont))
            assert got[n, k] == pytest.approx(want, abs=1e-8)


def test_progress_hears_every_score_batch_by_batch(lm):
    model, tok = lm
    prompts = [fewshot_prompt(lab, ["red apples"], task="fruit") for lab in ("a", "b")]
    texts = ["red pears", "blue car", "x", "green"]
    totals, updates = [], []

    def progress(total):
        totals.append(total)
        return updates.append

    quiet = label_log_likelihoods(model, tok, texts, prompts, batch_size=3)
    heard = label_log_likelihoods(model, tok, texts, prompts, batch_size=3, progress=progress)
    assert np.array_equal(quiet, heard)
    assert totals == [8]  # 4 texts x 2 prompts, announced once
    assert updates == [3, 4, 7, 8]  # batches of 3 and 1 per prompt, cumulative


def test_margin_is_the_log_posterior_of_the_own_label():
    ll = np.array([[-1.0, -3.0], [-5.0, -2.0]])
    m = label_margins(ll, [0, 0])
    assert m[0] == pytest.approx(-np.log1p(np.exp(-2.0)))
    assert m[1] == pytest.approx(-3.0 - np.log1p(np.exp(-3.0)))
    assert np.all(m <= 0)


def test_generator_scorer_uses_each_labels_seeds_and_description(lm):
    model, tok = lm
    seeds = SeedSet(("s1", "s2", "t1"), ("a", "a", "b"), {"b": "the b label"})
    prompts = scoring_prompts({"a": ["s1", "s2"], "b": ["t1"]}, task="x", descriptions={"b": "d"})
    assert 'Label "b" means: d.' in prompts["b"] and "means" not in prompts["a"]
    score = generator_margin_scorer(model, tok, seeds, task="x")
    m = score(["s1 again", "t1 again"], ["a", "b"])
    assert m.shape == (2,) and np.all(m <= 0) and np.all(np.isfinite(m))


def test_seed_classifier_scorer_prefers_the_matching_label():
    seeds = SeedSet(("aa", "ab", "ba", "bb"), ("x", "x", "y", "y"))
    table = {"aa": [1, 0], "ab": [0.9, 0.1], "ba": [0, 1], "bb": [0.1, 0.9], "q": [1, 0.05]}
    score = seed_classifier_margin_scorer(seeds, lambda ts: np.array([table[t] for t in ts]))
    own, other = score(["q", "q"], ["x", "y"])
    assert own > np.log(0.5) > other


def test_filter_keeps_the_best_share_per_label_and_records_margins():
    samples = pd.DataFrame(
        {"text": [f"t{i}" for i in range(7)], "label": ["a"] * 4 + ["b"] * 3, "sample_index": 0}
    )
    margins = {"t0": -3.0, "t1": -0.1, "t2": -2.0, "t3": -0.5, "t4": -1.0, "t5": -0.2, "t6": -9}
    seen: list[list[str]] = []

    def scorer(texts, labels):
        seen.append(list(texts))
        return np.array([margins[t] for t in texts])

    rules = {**NO_RULES, "label_margin_keep": 0.5}
    result = filter_texts(samples, samples.iloc[:0], rules, label_margin=scorer)
    assert sorted(result.kept["text"]) == ["t1", "t3", "t4", "t5"]  # ceil(0.5*4)=2, ceil(1.5)=2
    assert result.counts["low_label_margin"] == 3
    assert list(result.kept["label_margin"]) == [margins[t] for t in result.kept["text"]]
    assert seen == [list(samples["text"])]
    with pytest.raises(ValueError, match="label_margin"):
        filter_texts(samples, samples.iloc[:0], rules)


def test_seed_draws_share_the_test_set_and_differ_in_seeds():
    raw = pd.DataFrame({"t": [f"text number {i}" for i in range(60)], "y": ["a", "b", "c"] * 20})
    kw = dict(source="mem", text_column="t", label_column="y", seeds_per_label=3)
    kw.update(test_per_label=5, real_train_per_label=4, seed=7)
    one, two = text_splits(raw, seed_draw=0, **kw), text_splits(raw, seed_draw=1, **kw)
    assert one.test.equals(two.test) and one.real_train.equals(two.real_train)
    assert set(one.seeds["text"]) != set(two.seeds["text"])
    for s in (one, two):
        used = [set(s.seeds["text"]), set(s.test["text"]), set(s.real_train["text"])]
        assert sum(map(len, used)) == len(set().union(*used)) == 3 * (3 + 5 + 4)
    with pytest.raises(DataError, match="seed_draw"):
        text_splits(raw, seed_draw=0, **{**kw, "test_per_label": 15})


def test_descriptions_validated_and_new_keys_at_default_keep_run_ids():
    base = {
        "data": {"source": "x.csv", "text_column": "t", "target": "y", "labels": ["a", "b"]},
        "method": {"name": "fewgen"},
        "generate": {"num_rows": 10},
    }
    cfg = PipelineConfig.model_validate(base)
    explicit = PipelineConfig.model_validate(
        {
            **base,
            "data": {**base["data"], "label_descriptions": {}, "seed_draw": None},
            "text_filter": {"label_margin_keep": None},
            "evaluate": {"student_c": "auto", "seed_share": 0.5},
        }
    )
    assert config_hash(cfg) == config_hash(explicit)
    described = {**base, "data": {**base["data"], "label_descriptions": {"a": "first"}}}
    assert config_hash(PipelineConfig.model_validate(described)) != config_hash(cfg)
    with pytest.raises(ValueError, match="label_descriptions"):
        PipelineConfig.model_validate(
            {**base, "data": {**base["data"], "label_descriptions": {"c": "?"}}}
        )


def test_auto_token_budget_follows_the_seed_lengths(lm):
    _, tok = lm
    short = ["a b", "c d e"] * 10
    longer = [" ".join(["word"] * 40)] * 20
    assert token_budget(tok, short, 64) == 64  # an int is used as it is
    auto_short, auto_long = token_budget(tok, short, "auto"), token_budget(tok, longer, "auto")
    assert auto_short == 16  # the floor
    n = len(tok(longer[0], add_special_tokens=False).input_ids)
    assert auto_long == int(np.ceil(1.5 * n)) + 8
