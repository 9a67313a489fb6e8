"""Text diversity / fidelity metrics on hand-computable cases; the student on separable data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthloom.metrics.student import (
    choose_student_c,
    fast_student_scores,
    finetuned_student_scores,
    mixed_set_weights,
    student_scores_from_predictions,
)
from synthloom.metrics.text import (
    diversity_metrics,
    fidelity_metrics,
    mean_pairwise_cosine,
    self_bleu,
    vendi_score,
)
from synthloom.metrics.text_evaluation import label_agreement, nearest_seed_label_share
from synthloom.models.tiny import tiny_encoder


def test_distinct_n_on_hand_examples():
    # tokens: [a b a] [b a]: 1-grams 5 total, 2 distinct; 2-grams (a b)(b a)(b a): 3 total, 2 distinct
    m = diversity_metrics(["a b a", "B a"])
    assert m["distinct_1"] == pytest.approx(2 / 5)
    assert m["distinct_2"] == pytest.approx(2 / 3)
    assert m["distinct_3"] == pytest.approx(1.0)  # one 3-gram
    assert m["mean_words"] == pytest.approx(2.5)


def test_self_bleu_is_high_for_copies_and_low_for_disjoint_texts():
    same = ["the cat sat on the mat today"] * 3
    disjoint = ["alpha beta gamma delta", "one two three four", "red green blue yellow"]
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(disjoint) < 0.05
    assert math.isnan(self_bleu(["only one"]))


def test_vendi_and_pairwise_cosine_on_identical_and_orthogonal_rows():
    identical = np.tile([[1.0, 2.0, 0.0]], (5, 1))
    orthogonal = np.eye(4)
    assert vendi_score(identical) == pytest.approx(1.0)
    assert vendi_score(orthogonal) == pytest.approx(4.0)
    assert mean_pairwise_cosine(identical) == pytest.approx(1.0)
    assert mean_pairwise_cosine(orthogonal) == pytest.approx(0.0)
    two_groups = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert vendi_score(two_groups) == pytest.approx(2.0)
    # pairs: 2 of cosine 1, 4 of cosine 0
    assert mean_pairwise_cosine(two_groups) == pytest.approx(2 / 6)


def test_mmd_is_zero_for_the_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 8))
    same = fidelity_metrics(real, real, mauve=False)["mmd2_to_real"]
    near = fidelity_metrics(real + 0.1, real, mauve=False)["mmd2_to_real"]
    far = fidelity_metrics(real + 2.0, real, mauve=False)["mmd2_to_real"]
    assert same == pytest.approx(0.0, abs=1e-12)
    assert 0 < near < far


def blobs(n_per: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = {"a": [3.0, 0.0, 0.0], "b": [0.0, 3.0, 0.0], "c": [0.0, 0.0, 3.0]}
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, 3)) for c in centres.values()])
    return x, [lab for lab in centres for _ in range(n_per)]


def test_fast_student_beats_chance_on_separable_embeddings():
    train, y_train = blobs(10, 0)
    test, y_test = blobs(50, 1)
    scores = fast_student_scores(train, y_train, test, y_test)
    assert scores["accuracy"] > 0.8 and scores["macro_f1"] > 0.8
    shuffled = np.random.default_rng(2).permutation(y_train).tolist()
    assert fast_student_scores(train, shuffled, test, y_test)["accuracy"] < scores["accuracy"]


def test_student_edge_cases():
    test, y_test = blobs(5, 1)
    one_label = fast_student_scores(test[:3], ["a"] * 3, test, y_test)
    assert one_label["accuracy"] == pytest.approx(1 / 3)
    assert math.isnan(fast_student_scores(np.zeros((0, 3)), [], test, y_test)["accuracy"])
    # an unseen test label scores F1 0 in the macro average
    scores = student_scores_from_predictions(["a", "b"], ["a", "a"])
    assert scores["accuracy"] == 0.5 and scores["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_student_c_is_chosen_on_the_given_rows_by_cross_validation():
    train, y_train = blobs(10, 0)
    x, y = train[4:], y_train[4:]  # 6 a, 10 b, 10 c: a penalty this strong predicts the
    # majority everywhere (the intercept is not penalised), so CV accuracy rejects it
    assert choose_student_c(x, y, grid=(0.001, 1.0, 30.0)) in (1.0, 30.0)
    assert choose_student_c(x, y, grid=(0.001,)) == 0.001
    constant = np.ones((30, 3))  # every row alike: every C ties, the smallest wins
    assert choose_student_c(constant, y_train, grid=(100.0, 0.01, 3.0)) == 0.01
    assert choose_student_c(train[:3], ["a", "b", "b"]) == 1.0  # a label with one row


def test_mixed_set_weights_give_the_seeds_their_share_with_mean_one():
    w = mixed_set_weights(10, 490, 0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[:10].sum() == pytest.approx(w[10:].sum())
    w = mixed_set_weights(10, 90, 0.8)
    assert w[:10].sum() / w.sum() == pytest.approx(0.8)
    assert np.array_equal(mixed_set_weights(10, 90, None), np.ones(100))
    assert np.array_equal(mixed_set_weights(10, 0, 0.5), np.ones(10))
    w = mixed_set_weights(2, 3, 0.5, synthetic_confidence=np.array([0.1, 0.2, 0.3]))
    assert w.mean() == pytest.approx(1.0) and w[:2].sum() == pytest.approx(w[2:].sum())
    assert w[2:] / w[2] == pytest.approx([1.0, 2.0, 3.0])  # in proportion to the confidence
    assert mixed_set_weights(0, 3, None, np.array([1.0, 1.0, 4.0])) == pytest.approx(
        [0.5, 0.5, 2.0]
    )


def test_seed_weight_pulls_the_student_toward_the_seeds():
    seeds, y_seeds = blobs(10, 0)
    test, y_test = blobs(50, 1)
    wrong = np.random.default_rng(4).normal(0, 1, size=(300, 3)) + [3.0, 0, 0]  # all near a
    x = np.concatenate([seeds, wrong])
    y = y_seeds + ["b"] * 300  # synthetic rows that carry the wrong label
    plain = fast_student_scores(x, y, test, y_test, sample_weight=mixed_set_weights(30, 300, None))
    weighted = fast_student_scores(
        x, y, test, y_test, sample_weight=mixed_set_weights(30, 300, 0.9)
    )
    assert weighted["accuracy"] > plain["accuracy"] + 0.1


KEYWORDS = {"fox": ["fox", "quick", "brown", "jumps"], "dog": ["dog", "lazy", "sleeps", "barks"]}
FILLER = ["the", "a", "is", "very", "today", "over", "there", "and"]


def keyword_texts(n_per_label: int, seed: int) -> tuple[list[str], list[str]]:
    """Four-word texts: two of the label's keywords and two shared filler words, shuffled."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in KEYWORDS.items():
        for _ in range(n_per_label):
            words_of_text = [*rng.choice(words, 2, replace=False), *rng.choice(FILLER, 2)]
            texts.append(" ".join(rng.permutation(words_of_text)))
            labels.append(label)
    return texts, labels


def test_finetuned_student_learns_a_keyword_task():
    """Fine-tuning beats the untrained student by a wide margin, whatever the seed.

    Not an exact score on four test texts, as this test once asserted: on so few texts one
    flip is 0.25, and which texts flip depends on the seed (4 of seeds 0-11 scored 0.75
    there). It also failed by chance while the tiny encoder's tokenizer was trained, because
    each build learned a different vocabulary (see `synthloom.models.tiny`). On 40 held-out
    texts seeds 0-5 all score 0.9 at 1, 2 or 4 threads, the untrained student at most 0.55.
    """
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    encoder = tiny_encoder()
    before = [p.detach().clone() for p in encoder[0].parameters()]
    train, labels = keyword_texts(16, seed=0)
    test, test_labels = keyword_texts(20, seed=1)
    assert not set(train) & set(test)

    def student(seed: int, epochs: int = 6) -> dict[str, float]:
        return finetuned_student_scores(
            encoder, train, labels, test, test_labels, epochs=epochs, learning_rate=3e-3,
            seed=seed,
        )  # fmt: skip

    for seed in (0, 1, 2):
        trained, untrained = student(seed)["accuracy"], student(seed, epochs=0)["accuracy"]
        assert trained >= 0.8 and trained >= untrained + 0.25, (seed, trained, untrained)
    scores = student(0)
    # seeded inside (dropout included) and the global RNG is left as it was
    state = torch.random.get_rng_state()
    assert student(0) == scores
    assert torch.equal(torch.random.get_rng_state(), state)
    # a caller's bf16 autocast does not leak into the fine-tuning (it used to: 0.5-0.75)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = student(0)
    assert inside == scores
    # the caller's encoder is untouched (a copy was trained)
    for p, q in zip(encoder[0].parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_label_agreement_counts_samples_the_real_train_student_assigns_to_their_label():
    real, y_real = blobs(20, 0)
    synthetic, y_syn = blobs(4, 5)
    wrong = ["b" if y == "a" else y for y in y_syn]  # every "a" sample labelled "b"
    emb = {"real_train": real, "synthetic": synthetic}
    right = label_agreement(emb, {"real_train": y_real, "synthetic": y_syn}, c=1.0, seed=0)
    flipped = label_agreement(emb, {"real_train": y_real, "synthetic": wrong}, c=1.0, seed=0)
    assert right["synthetic_label_agreement"] > 0.9
    assert flipped["synthetic_label_agreement_b"] < right["synthetic_label_agreement_b"]
    assert flipped["synthetic_label_agreement"] < right["synthetic_label_agreement"] - 0.25
    assert "synthetic_label_agreement_a" not in flipped
    assert label_agreement(emb, {"real_train": ["a"] * 60, "synthetic": y_syn}, c=1, seed=0) == {}


def test_nearest_seed_label_share_on_hand_placed_points():
    # two seeds per label on the axes: "a" near x, "b" near y
    seeds = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    seed_labels = ["a", "a", "b", "b"]
    # synthetic: three of four sit by a seed of their own label; the test texts: one of two
    synthetic = np.array([[2.0, 0.0], [3.0, 0.5], [0.0, 5.0], [4.0, 0.2]])
    test = np.array([[1.0, 0.0], [1.0, 0.2]])
    emb = {"seeds": seeds, "synthetic": synthetic, "test": test}
    labels = {"seeds": seed_labels, "synthetic": ["a", "a", "b", "b"], "test": ["a", "b"]}
    out = nearest_seed_label_share(emb, labels)
    assert out == {
        "synthetic_nearest_seed_label_share": pytest.approx(0.75),
        "test_nearest_seed_label_share": pytest.approx(0.5),
    }
    assert nearest_seed_label_share(emb, {**labels, "seeds": ["a"] * 4}) == {}
    assert "synthetic_nearest_seed_label_share" not in nearest_seed_label_share(
        {**emb, "synthetic": np.zeros((0, 2))}, {**labels, "synthetic": []}
    )
