"""Guided scores of CorrSynth and K-class CFG against hand-computed cases (pure tensors)."""

from __future__ import annotations

import math

import pytest
import torch

from synthloom.methods.text.guidance import (
    cfg_scores,
    corrsynth_scores,
    corrsynth_weights,
    end_passthrough,
    mixture_log_probs,
    plausible_tokens,
)
from synthloom.samplers.token_sampling import sample_next_token


def _logp(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).log()


def test_corrsynth_k2_m1_equals_hand_computed_score() -> None:
    # gamma 2, delta 1: each sequence is contrasted with the other at weight 2 - 1 = 1.
    log_p = _logp([0.5, 0.3, 0.2], [0.2, 0.3, 0.5])
    scores = corrsynth_scores(
        log_p, [0, 1], gamma=2.0, delta=1.0, intra_weight=0.5, cross_weight=1.0, alpha=0.0
    )
    expected = torch.tensor(
        [
            [2 * math.log(0.5) - math.log(0.2), 2 * math.log(0.3) - math.log(0.3),
             2 * math.log(0.2) - math.log(0.5)],
            [2 * math.log(0.2) - math.log(0.5), 2 * math.log(0.3) - math.log(0.3),
             2 * math.log(0.5) - math.log(0.2)],
        ]
    )  # fmt: skip
    torch.testing.assert_close(scores, expected.float(), rtol=0, atol=1e-5)


def test_m_corrsynth_weights_split_intra_and_cross_by_hand() -> None:
    # K=3 labels x M=2; gamma - delta = 0.5; row 0: one intra (raw 0.5) and four cross
    # (raw 1 each) contrasts, raw total 4.5 -> intra 0.5 * 0.5/4.5 = 1/18, cross 0.5/4.5 = 1/9.
    weights = corrsynth_weights(
        [0, 0, 1, 1, 2, 2], gamma=1.0, delta=0.5, intra_weight=0.5, cross_weight=1.0
    )
    assert weights[0, 0] == 0 and weights[3, 3] == 0
    assert weights[0, 1] == pytest.approx(1 / 18)
    assert weights[0, 2:].tolist() == pytest.approx([1 / 9] * 4)
    assert weights[3, 2] == pytest.approx(1 / 18) and weights[3, 0] == pytest.approx(1 / 9)
    assert weights.sum(dim=1).tolist() == pytest.approx([0.5] * 6)


def test_m_corrsynth_score_k3_m2_equals_hand_computed() -> None:
    probs = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.6, 0.2],
             [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]  # fmt: skip
    log_p = _logp(*probs)
    scores = corrsynth_scores(
        log_p, [0, 0, 1, 1, 2, 2], gamma=1.0, delta=0.5, intra_weight=0.5, cross_weight=1.0,
        alpha=0.0,
    )  # fmt: skip
    # sequence 0, token 1: log .2 - (1/18) log .3 - (1/9)(log .8 + log .6 + log .1 + log .3)
    hand = math.log(0.2) - math.log(0.3) / 18 - sum(map(math.log, [0.8, 0.6, 0.1, 0.3])) / 9
    assert float(scores[0, 1]) == pytest.approx(hand, abs=1e-5)
    # sequence 5, token 2: log .4 - (1/18) log .8 - (1/9)(log .1 + log .1 + log .1 + log .2)
    hand = math.log(0.4) - math.log(0.8) / 18 - sum(map(math.log, [0.1, 0.1, 0.1, 0.2])) / 9
    assert float(scores[5, 2]) == pytest.approx(hand, abs=1e-5)


def test_finished_sequences_leave_the_contrast_and_weights_renormalise() -> None:
    live = torch.tensor([True, False, True, True])
    weights = corrsynth_weights(
        [0, 0, 1, 1], gamma=2.0, delta=0.5, intra_weight=1.0, cross_weight=1.0, live=live
    )
    assert weights[:, 1].abs().sum() == 0  # the finished sequence is nobody's contrast
    assert weights[0, 2:].tolist() == pytest.approx([0.75, 0.75])  # 1.5 over two live
    # row 2's live contrasts: 0 (cross) and 3 (intra), equal raw weights -> 0.75 each
    assert weights[2, 0] == pytest.approx(0.75) and weights[2, 3] == pytest.approx(0.75)
    alone = corrsynth_weights([0], gamma=2.0, delta=0.5, intra_weight=1.0, cross_weight=1.0)
    assert alone.tolist() == [[0.0]]  # no contrast: the score is gamma * log p


def test_plausibility_is_applied_to_the_own_distribution_before_guidance() -> None:
    # Token 2 is implausible for sequence 0 (0.05 < 0.1 * 0.6) but its contrast is so
    # unlikely under sequence 1 that, unmasked, it would be the guided argmax.
    log_p = _logp([0.6, 0.35, 0.05], [0.5, 0.4999, 0.0001])
    kw = dict(gamma=2.0, delta=1.0, intra_weight=1.0, cross_weight=1.0)
    unmasked = corrsynth_scores(log_p, [0, 1], alpha=0.0, **kw)
    assert int(unmasked[0].argmax()) == 2
    masked = corrsynth_scores(log_p, [0, 1], alpha=0.1, **kw)
    assert masked[0, 2] == float("-inf") and int(masked[0].argmax()) == 0
    torch.testing.assert_close(masked[0, :2], unmasked[0, :2])


def test_plausible_tokens_threshold() -> None:
    log_p = _logp([0.6, 0.3, 0.1])
    assert plausible_tokens(log_p, 0.2).tolist() == [[True, True, False]]
    assert plausible_tokens(log_p, 0.6).tolist() == [[True, False, False]]
    assert plausible_tokens(log_p, 0.0).all()


def test_mixture_log_probs_is_the_log_of_mean_probability() -> None:
    per = _logp([0.2, 0.2, 0.6], [0.4, 0.4, 0.2])[None]  # (S=1, J=2, V=3)
    torch.testing.assert_close(mixture_log_probs(per), _logp([0.3, 0.3, 0.4]).float())


def test_k_class_cfg_equals_hand_computed_score() -> None:
    cond = _logp([0.5, 0.3, 0.2])
    neg = mixture_log_probs(_logp([0.2, 0.2, 0.6], [0.4, 0.4, 0.2])[None])
    scores = cfg_scores(cond, neg, gamma=1.5, alpha=0.0)
    hand = [1.5 * math.log(p) - 0.5 * math.log(q) for p, q in [(0.5, 0.3), (0.3, 0.3), (0.2, 0.4)]]
    assert scores[0].tolist() == pytest.approx(hand, abs=1e-5)
    plain = cfg_scores(cond, neg, gamma=1.0, alpha=0.0)
    torch.testing.assert_close(plain, cond.float())
    assert cfg_scores(cond, neg, gamma=1.5, alpha=0.7)[0].isinf().tolist() == [False, True, True]


def test_top_p_applies_to_guided_scores() -> None:
    # The raw argmax is token 0; guidance makes token 1 the top; a tiny nucleus keeps only
    # the guided top, so sampling after guidance returns 1 for any uniform draw.
    log_p = _logp([0.5, 0.45, 0.05], [0.9, 0.05, 0.05])
    scores = corrsynth_scores(
        log_p, [0, 1], gamma=2.0, delta=1.0, intra_weight=1.0, cross_weight=1.0, alpha=0.0
    )
    assert int(log_p[0].argmax()) == 0 and int(scores[0].argmax()) == 1
    for u in (0.0, 0.5, 0.999):
        token = sample_next_token(scores, 1.0, 1e-6, torch.tensor([u, u]))
        assert int(token[0]) == 1


def test_end_passthrough_keeps_end_tokens_at_their_own_probability() -> None:
    own = torch.tensor([[0.4, 0.3, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4]]).log()
    guided = torch.tensor([[0.0, 1.0, 2.0, -50.0], [3.0, 0.0, 0.0, 0.0]])
    end = torch.tensor([False, False, False, True])
    out = end_passthrough(guided, own, end, inside=torch.tensor([False, True]))
    probs = out.softmax(dim=-1)
    # row 0: the end token keeps p = 0.2; the rest share 0.8 in the guided proportions
    assert probs[0, 3].item() == pytest.approx(0.2, abs=1e-6)
    rest = torch.tensor([0.0, 1.0, 2.0]).softmax(dim=0) * 0.8
    assert torch.allclose(probs[0, :3], rest, atol=1e-6)
    # row 1 is inside the delimiter: its own distribution, unguided
    assert torch.allclose(probs[1], own[1].exp(), atol=1e-6)


def test_a_per_row_passthrough_mask_keeps_each_row_s_own_tokens() -> None:
    # the repeat passthrough: row 0 passes token 1 through (a repeat of its own), row 1 none
    own = torch.tensor([[0.4, 0.3, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4]]).log()
    guided = torch.tensor([[0.0, 6.0, 2.0, 0.0], [0.0, 6.0, 2.0, 0.0]])
    mask = torch.tensor([[False, True, False, False], [False, False, False, False]])
    probs = end_passthrough(guided, own, mask, inside=torch.zeros(2, dtype=torch.bool))
    probs = probs.softmax(dim=-1)
    assert probs[0, 1].item() == pytest.approx(0.3, abs=1e-6)  # as likely as unguided
    rest = torch.tensor([0.0, 2.0, 0.0]).softmax(dim=0) * 0.7
    assert torch.allclose(probs[0, [0, 2, 3]], rest, atol=1e-6)
    assert torch.allclose(probs[1], guided[1].softmax(dim=0), atol=1e-6)  # all guided
    # guidance that is the model itself: the passthrough changes nothing
    same = end_passthrough(own, own, mask, inside=torch.zeros(2, dtype=torch.bool))
    assert torch.allclose(same, own, atol=1e-6)


def test_end_passthrough_with_every_token_an_end_token_is_plain_sampling() -> None:
    own = torch.randn(3, 7).log_softmax(dim=-1)
    guided = torch.randn(3, 7) * 5
    out = end_passthrough(guided, own, torch.ones(7, dtype=torch.bool), torch.zeros(3, dtype=bool))
    assert torch.allclose(out, own)
