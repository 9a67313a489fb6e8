"""How a latent z reaches a frozen causal LM: the one interface VAE training and decoding share.

DiffLM (arXiv 2411.03250, section 3) and its ablations inject z in one of three ways:
- soft prompt: `prefix_embeds` (B, k, H), k vectors placed before the BOS token;
- KV memory: `past_key_values`, per layer a (key, value) pair of shape
  (B, n_kv_heads, k, head_dim) that every position attends to, as if k tokens preceded BOS;
- input embedding: `embed_offset` (B, H), added to the embedding of every token.
Exactly one field is set. `prefix_length` is the number of positions the injection occupies
(k for soft prompt and KV memory, 0 for input embedding): attention masks and position ids
of the record tokens start after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INJECTION_MODES = ("soft_prompt", "kv_memory", "input_embedding")


@dataclass
class Injection:
    prefix_embeds: torch.Tensor | None = None
    past_key_values: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None
    embed_offset: torch.Tensor | None = None

    def __post_init__(self) -> None:
        set_fields = [
            f
            for f in (self.prefix_embeds, self.past_key_values, self.embed_offset)
            if f is not None
        ]
        assert len(set_fields) == 1, "exactly one injection field must be set"

    @property
    def batch_size(self) -> int:
        if self.prefix_embeds is not None:
            return self.prefix_embeds.shape[0]
        if self.embed_offset is not None:
            return self.embed_offset.shape[0]
        return self.past_key_values[0][0].shape[0]

    @property
    def prefix_length(self) -> int:
        if self.prefix_embeds is not None:
            return self.prefix_embeds.shape[1]
        if self.past_key_values is not None:
            return self.past_key_values[0][0].shape[2]
        return 0

    def select(self, index: torch.Tensor) -> Injection:
        """The injection for a subset of the batch (rows `index`)."""
        if self.prefix_embeds is not None:
            return Injection(prefix_embeds=self.prefix_embeds[index])
        if self.embed_offset is not None:
            return Injection(embed_offset=self.embed_offset[index])
        return Injection(
            past_key_values=tuple((k[index], v[index]) for k, v in self.past_key_values)
        )
