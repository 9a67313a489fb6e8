"""Next-token sampling for hand-written decoding loops: greedy, temperature, top-p.

`sample_next_token(logits, temperature, top_p, uniforms)` draws one token per row by
inverting the row's CDF at a uniform draw given by the caller, so a decoding loop can draw
all its uniforms up front and stay reproducible whatever rows it drops from the batch.
"""

from __future__ import annotations

import torch

# Top-p sampling first looks for the nucleus among this many most likely tokens.
NUCLEUS_CANDIDATES = 256


def sample_next_token(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor | None
) -> torch.Tensor:
    """One token per row from (B, V) logits: greedy at temperature 0, else temperature + top-p,
    inverting each row's CDF at its uniform draw `uniforms` (B,) in [0, 1)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    # Unnormalised probabilities exp((l - max) / T): (B, V), the largest is exactly 1. In place
    # on a fresh float32 copy (V-wide temporaries are the costly part of sampling on CPU).
    weights = logits.float() - logits.amax(dim=-1, keepdim=True)
    weights.mul_(1.0 / temperature).exp_()
    if top_p >= 1.0:
        return inverse_cdf_sample(weights, uniforms)
    # Nucleus: keep the smallest prefix of the sorted weights whose mass reaches top_p of the
    # total (the top token always stays). A full-vocabulary sort costs more than a forward
    # pass at batch 64, so sort only the top NUCLEUS_CANDIDATES when they hold the nucleus
    # of every row (the usual case at low temperature) and the whole row otherwise.
    threshold = top_p * weights.sum(dim=-1, keepdim=True)  # (B, 1)
    top, order = weights.topk(min(NUCLEUS_CANDIDATES, weights.shape[-1]), dim=-1)  # (B, C)
    cumulative = top.cumsum(dim=-1)
    if not bool((cumulative[:, -1:] >= threshold).all()):
        top, order = weights.sort(dim=-1, descending=True)  # (B, V) each
        cumulative = top.cumsum(dim=-1)
    outside = cumulative - top >= threshold
    choice = inverse_cdf_sample(top.masked_fill_(outside, 0.0), uniforms)  # (B,)
    return order.gather(-1, choice[:, None]).squeeze(-1)


def inverse_cdf_sample(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Index i of each row of (B, V) non-negative weights with probability w_i / sum(w),
    given one uniform draw in [0, 1) per row, `uniforms` (B,).

    The row's cumulative sum is inverted at the uniform: far cheaper on CPU than
    `torch.multinomial`, which draws an exponential variate for every one of the V entries.
    A zero-weight entry is never returned (the first cumulative value strictly above u).
    `weights` is overwritten (by its cumulative sum).
    """
    cdf = weights.cumsum_(dim=-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1)
    u = uniforms[:, None].to(total.dtype) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # keep u < total
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)
