"""`generate.conditions` cut into shards: each shard's exact counts, summing to the request.

The values of one column are laid out in one deterministic sequence in which value v with
count c_v sits at positions (k + 1/2) / c_v, k = 0..c_v - 1 (ties broken by value order),
and shard i takes the next `sizes[i]` entries. So every shard holds each value in about its
overall share, the shards' counts add up to the requested counts exactly, and the split
depends only on the counts and the shard sizes (the same on any executor).
"""

from __future__ import annotations

from collections import Counter


def shard_conditions(
    conditions: dict[str, dict[str, int]], sizes: list[int]
) -> list[dict[str, dict[str, int]]]:
    """One `{column: {value: count}}` per shard; each column's counts must sum to sum(sizes)."""
    per_shard: list[dict[str, dict[str, int]]] = [{} for _ in sizes]
    for column, counts in conditions.items():
        if sum(counts.values()) != sum(sizes):
            raise ValueError(
                f"conditions on {column!r} sum to {sum(counts.values())}, shards to {sum(sizes)}"
            )
        order = sorted(
            ((k + 0.5) / n, rank, value)
            for rank, (value, n) in enumerate(counts.items())
            for k in range(n)
        )
        sequence = [value for _, _, value in order]
        start = 0
        for i, size in enumerate(sizes):
            taken = Counter(sequence[start : start + size])
            per_shard[i][column] = {value: taken.get(value, 0) for value in counts}
            start += size
    return per_shard
