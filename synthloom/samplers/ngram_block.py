"""No-repeat n-gram rule for hand-written decoding loops (`no_repeat_ngram` of the text methods).

With n > 0, a row may not sample a token that would repeat an n-gram of its OWN generated
tokens (the prompt does not count, so the closing delimiter that every example in a
few-shot prompt ends with stays allowed):

    banned(x_1..x_t) = { w : (x_{t-n+2}, ..., x_t, w) = (x_{i}, ..., x_{i+n-1}) for some i }

i.e. every token that followed an earlier occurrence of the row's last n - 1 tokens.
n = 0 bans nothing (the papers' decoding); n = 1 bans every token already generated.
This is the rule of Hugging Face's `no_repeat_ngram_size`, applied to generated tokens
only. A 135M model's continuations that never close are mostly loops ("I think it's a
romance with elves. I think it's a romance with elves. ..."); the rule stops a loop at its
second pass, so the row goes on to something else or to its end.

State is kept per row key and extended incrementally, so a step costs O(rows), not
O(rows x length).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

__all__ = ["NgramBlock"]


class NgramBlock:
    """The n-grams each row has generated, and the tokens they ban next (module docstring)."""

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"no_repeat_ngram must be >= 0 (0 = off), got {n}")
        self.n = int(n)
        self._next: dict[Hashable, dict[tuple[int, ...], set[int]]] = {}
        self._registered: dict[Hashable, int] = {}

    def banned(self, key: Hashable, ids: Sequence[int]) -> set[int]:
        """Tokens row `key` may not sample after its generated tokens `ids` (which only ever
        grow between calls for the same key)."""
        n = self.n
        if n == 0 or len(ids) < n - 1:
            return set()
        table = self._next.setdefault(key, {})
        done = self._registered.get(key, 0)  # n-grams ending before index `done` are in
        for end in range(max(done, n - 1), len(ids)):  # the n-gram ids[end-n+1 .. end]
            prefix = tuple(ids[end - n + 1 : end])
            table.setdefault(prefix, set()).add(int(ids[end]))
        self._registered[key] = len(ids)
        return table.get(tuple(ids[len(ids) - n + 1 :]) if n > 1 else (), set())

    def masked(
        self, scores: torch.Tensor, keys: Sequence[Hashable], ids: Sequence[Sequence[int]]
    ) -> torch.Tensor:
        """`scores` (R, V) with -inf at each banned token w of row keys[r] (a new tensor when
        anything is banned, else `scores` itself). A row with nothing but banned tokens
        left keeps its scores."""
        if self.n == 0:
            return scores
        rows: list[int] = []
        tokens: list[int] = []
        for r, (key, row_ids) in enumerate(zip(keys, ids, strict=True)):
            ban = self.banned(key, row_ids)
            rows += [r] * len(ban)
            tokens += sorted(ban)
        if not rows:
            return scores
        out = scores.clone()
        index = (
            torch.tensor(rows, dtype=torch.long, device=scores.device),
            torch.tensor(tokens, dtype=torch.long, device=scores.device),
        )
        out.index_put_(index, torch.tensor(float("-inf"), dtype=out.dtype, device=out.device))
        dead = ~torch.isfinite(out).any(dim=-1)  # (R,)
        if bool(dead.any()):
            out[dead] = scores[dead]
        return out
