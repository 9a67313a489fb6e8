"""A KV cache for hand-written decoding loops: buffers allocated once, written in place.

Shared by the DiffLM decoder (`synthloom.methods.difflm.decode`) and the text samplers
(`synthloom.methods.text.sampling`): every row of a batch advances one position per step, so
the cache needs no padding bookkeeping of its own; `select_rows` drops finished rows or
copies one prefilled row to many (shared-prefix sampling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.modeling_outputs import CausalLMOutputWithPast

# The name under which a model takes its KV cache and returns it: transformers 5.2x renamed
# the forward argument and the output field `past_key_values` to `cache`. A cache passed
# under the other name is swallowed by `**kwargs` and silently ignored, so every call site
# goes through `cache_kwargs` / `output_cache`.
CACHE_KEY = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def cache_kwargs(cache: Cache) -> dict[str, Cache]:
    """`model(..., **cache_kwargs(kv))`: pass `kv` under the installed transformers' name."""
    return {CACHE_KEY: cache}


def output_cache(output: object) -> Cache:
    """The KV cache that a forward pass with `use_cache=True` returned."""
    return getattr(output, CACHE_KEY)


class PreallocatedKVCache(Cache):
    """A KV cache whose per-layer buffers (B, n_kv_heads, max_len, head_dim) are allocated once.

    `update` writes the new keys/values in place and returns views of the filled prefix
    (B, n_kv_heads, length, head_dim), so attention never sees unfilled slots and needs no
    mask, and no step copies the cache the way concatenation does. `select_rows` keeps a
    subset of the batch (one copy of the filled slots; used to drop finished rows).
    Built on transformers' `Cache` / `CacheLayerMixin` (5.x), so `model(...)` accepts it as
    its cache (`cache_kwargs`).
    """

    def __init__(self, num_layers: int, max_len: int) -> None:
        super().__init__(layers=[_PreallocatedLayer(max_len) for _ in range(num_layers)])

    @classmethod
    def from_memory(
        cls, memory: Sequence[tuple[torch.Tensor, torch.Tensor]], max_len: int
    ) -> PreallocatedKVCache:
        """A cache seeded with per-layer (key, value) memory of shape (B, n_kv, k, head_dim)."""
        cache = cls(len(memory), max_len)
        for layer, (key, value) in zip(cache.layers, memory, strict=True):
            layer.update(key, value)
        return cache

    def select_rows(self, index: torch.Tensor) -> None:
        """Keep only batch rows `index` (1-D long tensor), in that order."""
        for layer in self.layers:
            layer.select_rows(index)


class _PreallocatedLayer(CacheLayerMixin):
    """One layer of `PreallocatedKVCache`: a fixed buffer and a fill length."""

    is_sliding = False

    def __init__(self, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.length = 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, head_dim = key_states.shape
        shape = (batch, heads, self.max_len, head_dim)
        kw = {"dtype": key_states.dtype, "device": key_states.device}
        self.key_buffer = torch.empty(shape, **kw)
        self.value_buffer = torch.empty(shape[:-1] + (value_states.shape[-1],), **kw)
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        assert self.length + new <= self.max_len, "KV cache budget exceeded"
        self.key_buffer[:, :, self.length : self.length + new] = key_states
        self.value_buffer[:, :, self.length : self.length + new] = value_states
        self.length += new
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]
        return self.keys, self.values

    def select_rows(self, index: torch.Tensor) -> None:
        """Keep rows `index`: new buffers, filled slots gathered straight into them (one pass)."""
        if not self.is_initialized:
            return
        filled = slice(0, self.length)
        for name in ("key_buffer", "value_buffer"):
            old = getattr(self, name)
            new = old.new_empty((len(index), *old.shape[1:]))
            torch.index_select(old[:, :, filled], 0, index, out=new[:, :, filled])
            setattr(self, name, new)
        self.keys = self.key_buffer[:, :, filled]
        self.values = self.value_buffer[:, :, filled]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_len
