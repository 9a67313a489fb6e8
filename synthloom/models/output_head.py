"""A causal LM split into its body and its output head, for logits over a few tokens only.

A decoder-only model computes logits = h W^T (+ b), where h (B, H) is the body's final
hidden state and W (V, H) the output embedding. When a decoding step can only pick among
U << V tokens (schema-constrained decoding: a digit, a category, the next key), the logits
of the other V - U tokens are thrown away, so computing them is waste: on SmolLM2-135M the
head (V = 49,152, H = 576: 28M of 135M parameters) is a fifth of the forward pass, and a
softmax over 49k entries per row is most of the sampling cost. `SplitHead.logits(h, ids)`
computes h W[ids]^T (+ b[ids]) for the (U,) token ids alone.

`split_output_head(model)` returns the split, or None where the model's logits are not a
plain linear map of the body's last hidden state (a logit scale or soft-capping, as some
architectures apply): it checks `model(...).logits` against `body(...)` + head on a short
probe input once per model (cached on the model object) and keeps the split only when they
agree, so callers can always fall back to the full forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

_CACHE_ATTRIBUTE = "_synthloom_split_head"


@dataclass(frozen=True)
class SplitHead:
    """`body(inputs_embeds=..., ...)` -> last_hidden_state (B, T, H); `weight` (V, H) and
    `bias` (V,) or None of the output head."""

    body: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None

    def logits(self, hidden: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H) hidden states -> (B, U) logits of tokens `ids` (U,), or (B, V) for None."""
        weight = self.weight if ids is None else self.weight.index_select(0, ids)
        bias = self.bias if (self.bias is None or ids is None) else self.bias.index_select(0, ids)
        out = hidden @ weight.T
        return out if bias is None else out + bias


def split_output_head(model: PreTrainedModel) -> SplitHead | None:
    """The body / head split of `model`, or None when logits are not `head(body(x))`."""
    if hasattr(model, _CACHE_ATTRIBUTE):
        return getattr(model, _CACHE_ATTRIBUTE)
    split = _probe(model)
    setattr(model, _CACHE_ATTRIBUTE, split)  # a plain attribute: not a parameter or buffer
    return split


def _probe(model: PreTrainedModel) -> SplitHead | None:
    head = model.get_output_embeddings()
    try:
        body = model.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if not isinstance(head, nn.Linear) or body is None or body is model:
        return None
    split = SplitHead(body, head.weight, head.bias)
    embed = model.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, 3, embed.shape[1], generator=generator) * embed.float().std()
    probe = probe.to(embed.device, embed.dtype)
    with torch.inference_mode():
        try:
            full = model(inputs_embeds=probe, use_cache=False).logits[:, -1].float()
            hidden = body(inputs_embeds=probe, use_cache=False).last_hidden_state[:, -1]
        except (TypeError, AttributeError):
            return None
        mine = split.logits(hidden).float()
    tolerance = 1e-4 if embed.dtype == torch.float32 else 2e-2
    scale = full.abs().max().clamp_min(1.0)
    if mine.shape != full.shape or bool(((mine - full).abs().max() / scale) > tolerance):
        return None
    return split
