"""Text filter rules: each removes what it should, nothing else, and counts it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloom.config import TextFilterConfig
from synthloom.filters.text import RULES, filter_texts, leaks_prompt, repeated_ngram_share

SEEDS = pd.DataFrame(
    {
        "text": [
            "Crooked politicians never deliver on their promises to the American people today",
            "Thank you Iowa for a wonderful evening with so many great supporters",
        ],
        "label": ["android", "iphone"],
    }
)
GOOD = [
    "The economy is booming and jobs are coming back to our great country",
    "Just landed in Ohio, huge crowd tonight, see you all soon",
    "Fake news media refuses to report the record numbers we are seeing",
]


def run(texts, labels=None, **overrides):
    overrides.setdefault("seed_cosine", None)  # the paraphrase check has its own tests
    rules = TextFilterConfig(**overrides).model_dump()
    frame = pd.DataFrame({"text": texts, "label": labels or ["android"] * len(texts)})
    return filter_texts(frame, SEEDS, rules, task="tweets by Donald Trump")


def test_good_texts_pass_and_every_rule_is_counted():
    result = run(GOOD)
    assert result.kept["text"].tolist() == GOOD
    assert set(result.counts) == set(RULES) and sum(result.counts.values()) == 0


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "too_short"),
        ("ok fine", "too_short"),
        ("word " * 100, "too_long"),
        ("great great great great great", "degenerate"),
        ("!!! ??? ### $$$ %%% ^^^ &&& a b c", "degenerate"),
        ("we will win we will win we will win we will win again", "repetitive"),
        ("Example 2: The economy is doing great under my leadership", "prompt_leakage"),
        ("Here's a new tweet about the economy and our great jobs", "prompt_leakage"),
        ("Jobs are back and the market is up </text> <text>", "prompt_leakage"),
        ("More tweets by Donald Trump about the wall and the border", "prompt_leakage"),
        (
            "Wow! Crooked politicians never deliver on their promises to the American voters",
            "seed_copy",
        ),
    ],
)
def test_each_rule_removes_its_case(text, rule):
    result = run([*GOOD, text])
    assert result.kept["text"].tolist() == GOOD
    assert result.counts[rule] == 1
    assert result.removed["reason"].tolist() == [rule]


def test_exact_and_near_duplicates_keep_the_first():
    near = GOOD[0].replace("great", "wonderful")
    result = run([GOOD[0], GOOD[0].upper() + "  ", near, GOOD[1]])
    assert result.kept["text"].tolist() == [GOOD[0], GOOD[1]]
    assert result.counts["exact_duplicate"] == 1
    assert result.counts["near_duplicate"] == 1
    off = run([GOOD[0], near], near_duplicates=None)
    assert len(off.kept) == 2


def test_embedding_near_duplicates_use_cosine():
    vectors = {GOOD[0]: [1.0, 0.0], GOOD[1]: [0.99, 0.05], GOOD[2]: [0.0, 1.0]}
    embed = lambda texts: np.array([vectors[t] for t in texts])  # noqa: E731
    frame = pd.DataFrame({"text": GOOD, "label": ["a"] * 3})
    rules = TextFilterConfig(
        near_duplicates="embedding", embedding_threshold=0.95, seed_cosine=None
    ).model_dump()
    result = filter_texts(frame, SEEDS, rules, embed=embed)
    assert result.kept["text"].tolist() == [GOOD[0], GOOD[2]]
    assert result.counts["near_duplicate"] == 1


def test_paraphrased_seed_copies_are_seed_copies_by_cosine():
    paraphrase = "Dishonest politicians never keep their word to Americans"
    vectors = {SEEDS["text"][0]: [1.0, 0.0, 0.0], SEEDS["text"][1]: [0.0, 1.0, 0.0]}
    vectors |= {paraphrase: [0.96, 0.28, 0.0], GOOD[0]: [0.6, 0.0, 0.8], GOOD[1]: [0.0, 0.0, 1.0]}
    embed = lambda texts: np.array([vectors[t] for t in texts])  # noqa: E731
    frame = pd.DataFrame({"text": [GOOD[0], paraphrase, GOOD[1]], "label": ["android"] * 3})
    rules = TextFilterConfig(seed_cosine=0.95).model_dump()
    result = filter_texts(frame, SEEDS, rules, embed=embed)
    assert result.kept["text"].tolist() == [GOOD[0], GOOD[1]]  # cosine 0.96 >= 0.95 > 0.6
    assert result.counts["seed_copy"] == 1
    looser = filter_texts(
        frame, SEEDS, TextFilterConfig(seed_cosine=0.97).model_dump(), embed=embed
    )
    assert looser.counts["seed_copy"] == 0
    with pytest.raises(ValueError, match="seed_cosine: null"):
        filter_texts(frame, SEEDS, rules)  # the rule is on by default and needs embeddings


def test_label_consistency_drops_samples_closer_to_another_label():
    def embed(texts):
        return np.array(
            [
                [1.0, 0.0] if "iowa" in t.lower() or "ohio" in t.lower() else [0.0, 1.0]
                for t in texts
            ]
        )

    frame = pd.DataFrame({"text": GOOD, "label": ["android", "android", "android"]})
    rules = TextFilterConfig(label_consistency=True, seed_cosine=None).model_dump()
    result = filter_texts(frame, SEEDS, rules, embed=embed)
    assert result.removed["text"].tolist() == [GOOD[1]]  # the Ohio one looks like "iphone"
    assert result.counts["label_inconsistent"] == 1


def test_leak_detector_and_repetition_share_on_hand_cases():
    assert not leaks_prompt("I love texting my friends about the great economy")
    assert leaks_prompt("examples of tweets")
    assert repeated_ngram_share("a b c a b c".split(), 3) == pytest.approx(1 / 4)
    assert repeated_ngram_share(["a", "b"], 3) == 0.0
