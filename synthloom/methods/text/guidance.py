"""Guided next-token scores for CorrSynth and K-class classifier-free guidance (pure tensors).

Every function maps one decoding step's log-probabilities to unnormalised guided scores
(log space); temperature and top-p are applied to the scores AFTERWARDS by the sampler
(`synthloom.samplers.token_sampling.sample_next_token`). A token masked as implausible gets
score -inf and can never be sampled.

Plausibility constraint (CorrSynth, arXiv 2411.08553; as in contrastive decoding), on the
sequence's OWN distribution, before guidance:
    keep w  iff  p(w | prompt_k, x_k) >= alpha * max_v p(v | prompt_k, x_k)
(alpha = 0 keeps every token; the argmax token is always kept).

CorrSynth guided score (reconstructed form, ../shared/METHODS.md), for sequence i with
label k(i) in a lockstep group of K labels x M sequences:
    s_i(w) = gamma * log p(w | prompt_i, x_i) - sum_{j != i} gamma_{i,j} * log p(w | prompt_j, x_j)
where every contrast term uses sequence j's OWN prompt and prefix (so one forward pass per
sequence per step suffices), and the M-CorrSynth weights are
    gamma_{i,j} = (gamma - delta) * c_{i,j} / sum_{j' live, j' != i} c_{i,j'}
    c_{i,j} = intra_weight if k(j) == k(i) (same label) else cross_weight,
summed over the sequences j still decoding (`live`), so sum_j gamma_{i,j} = gamma - delta.
A sequence with no live contrast (all others finished, or K = M = 1) scores
gamma * log p(w | prompt_i, x_i).

End passthrough (this project's addition; `end_passthrough`): where a sequence stops is
not a property of its label, yet every contrast above scores it: all prompts expect the
closing delimiter at about the same point, so its guided score is about delta * log p and
contrastive tokens outbid it (measured: 26 of 96 CorrSynth streams ran out of budget).
With E = end tokens (end-of-sequence and tokens containing a newline, which starts the
closing delimiter line) and p_E = sum_{e in E} p(e | prompt_i, x_i), the row's scores become
    s'(e) = log p(e | prompt_i, x_i)                         for e in E
    s'(w) = log(1 - p_E) + log_softmax_{v not in E}(s)(w)    otherwise,
i.e. the sequence ends with its own probability and guidance shapes only what it says;
a sequence already inside the delimiter (its text ends with a proper prefix of
"\n</text>") uses its own distribution for every token.

Repeat passthrough (ours; `repeat_passthrough` n of CorrSynth and CFG): the same rule with
E_i = the end tokens plus every token w that would repeat an n-gram of sequence i's own
generated tokens (`synthloom.samplers.ngram_block`). A sequence's own earlier words are
likely under its own prompt and prefix and unlikely under the others', so the contrast
rewards copying them, and copying runs into loops ("It's funny. It's funny. ..."); with
the passthrough a repeat is as likely as the model alone makes it, never more.

K-class CFG score for a sequence with label c and prefix x:
    s(w) = gamma * log p(w | c, x) - (gamma - 1) * log p(w | not c, x)
i.e. p(w|c)^gamma / p(w|not c)^(gamma-1); `mixture_log_probs` builds log p(w | not c, x) as
the mean of the probabilities under the other labels' prompts (see synthloom.methods.text.cfg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Log-probabilities are floored here before weighting, so -inf never meets a 0 weight.
LOG_PROB_FLOOR = -1e4


def plausible_tokens(log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """(R, V) bool, True where p(w) >= alpha * max_v p(v) in the row's own distribution."""
    assert 0.0 <= alpha <= 1.0, "alpha is a probability ratio in [0, 1]"
    if alpha <= 0.0:
        return torch.ones_like(log_probs, dtype=torch.bool)
    threshold = log_probs.amax(dim=-1, keepdim=True) + math.log(alpha)  # (R, 1)
    return log_probs >= threshold


def corrsynth_weights(
    labels: Sequence[int] | torch.Tensor,
    *,
    gamma: float,
    delta: float,
    intra_weight: float,
    cross_weight: float,
    live: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R, R) contrast weights gamma_{i,j} of R sequences with integer `labels` (R,).

    Row i holds the weights of sequence i's contrasts: 0 on the diagonal and for sequences
    that are not `live` (bool (R,), default all), otherwise c_{i,j} (intra_weight for the
    same label, cross_weight for another) normalised to sum to gamma - delta. A row with no
    live contrast of positive weight is all zeros.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    n = labels.shape[0]
    live = torch.ones(n, dtype=torch.bool) if live is None else live.to("cpu", torch.bool)
    same = labels[:, None] == labels[None, :]  # (R, R)
    raw = torch.where(
        same, torch.tensor(float(intra_weight)), torch.tensor(float(cross_weight))
    ).to(torch.float64)
    raw.fill_diagonal_(0.0)
    raw *= live[None, :].to(raw.dtype)  # finished sequences contribute nothing
    total = raw.sum(dim=1, keepdim=True)  # (R, 1)
    weights = torch.where(total > 0, raw / total.clamp_min(1e-300), torch.zeros_like(raw))
    return (gamma - delta) * weights


def corrsynth_scores(
    log_probs: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    *,
    gamma: float,
    delta: float,
    intra_weight: float,
    cross_weight: float,
    alpha: float,
) -> torch.Tensor:
    """CorrSynth guided scores (R, V) of R live sequences from their log-probs (R, V).

    Row i of `log_probs` is log p(. | prompt_i, x_i), one decoding step of sequence i; all
    R rows are the live members of one lockstep group (finished sequences are left out by
    the caller). Formula in the module docstring:
        s = gamma * L - W @ L,  W = corrsynth_weights(labels, ...),
    then tokens implausible under the row's own distribution (alpha) are set to -inf.
    """
    keep = plausible_tokens(log_probs, alpha)
    floored = log_probs.float().clamp_min(LOG_PROB_FLOOR)
    weights = corrsynth_weights(
        labels, gamma=gamma, delta=delta, intra_weight=intra_weight, cross_weight=cross_weight
    ).to(floored)
    scores = gamma * floored - weights @ floored  # (R, V)
    return scores.masked_fill_(~keep, float("-inf"))


def mixture_log_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """log of the mean probability over dimension 1: (S, J, V) -> (S, V).

    log p_mix(w) = logsumexp_j log p_j(w) - log J (an equal-weight mixture of J prompts).
    """
    return torch.logsumexp(log_probs.float(), dim=1) - math.log(log_probs.shape[1])


def cfg_scores(
    cond_log_probs: torch.Tensor, neg_log_probs: torch.Tensor, *, gamma: float, alpha: float
) -> torch.Tensor:
    """K-class CFG scores (S, V): gamma * log p(w|c, x) - (gamma - 1) * log p(w|not c, x),
    implausible tokens under p(.|c, x) (alpha) set to -inf. gamma = 1 is plain sampling."""
    keep = plausible_tokens(cond_log_probs, alpha)
    cond = cond_log_probs.float().clamp_min(LOG_PROB_FLOOR)
    neg = neg_log_probs.float().clamp_min(LOG_PROB_FLOOR)
    scores = gamma * cond - (gamma - 1.0) * neg
    return scores.masked_fill_(~keep, float("-inf"))


def end_passthrough(
    scores: torch.Tensor, own_log_probs: torch.Tensor, end_mask: torch.Tensor, inside: torch.Tensor
) -> torch.Tensor:
    """Scores (S, V) with end tokens at their own log-probs (module docstring).

    scores: guided (S, V); own_log_probs: log p(. | prompt_s, x_s) (S, V); end_mask: (V,)
    bool, True on end tokens, or (S, V), per row (the repeat passthrough adds a row's
    repeats); inside: (S,) bool, rows that take `own_log_probs` whole."""
    own = own_log_probs.float()
    end = end_mask.to(scores.device)
    end = end[None, :] if end.dim() == 1 else end  # (1 or S, V)
    p_end = own.masked_fill(~end, float("-inf")).logsumexp(dim=-1, keepdim=True).exp()
    rest = scores.float().masked_fill(end, float("-inf"))
    has_rest = torch.isfinite(rest).any(dim=-1, keepdim=True)  # (S, 1)
    rest = torch.where(has_rest, rest.log_softmax(dim=-1), rest)
    rest = rest + torch.log1p(-p_end.clamp(max=1.0 - 1e-6))
    mixed = torch.where(end, own, rest)
    return torch.where(inside.to(scores.device)[:, None], own, mixed)


__all__ = [
    "LOG_PROB_FLOOR",
    "cfg_scores",
    "corrsynth_scores",
    "end_passthrough",
    "corrsynth_weights",
    "mixture_log_probs",
    "plausible_tokens",
]
