"""`generate.conditions`: checked against the schema (`check_conditions`) and cut into
shards (`shard_conditions`): each shard's exact counts, summing to the request.

The values of one column are laid out in one deterministic sequence in which value v with
count c_v sits at positions (k + 1/2) / c_v, k = 0..c_v - 1 (ties broken by value order),
and shard i takes the next `sizes[i]` entries. So every shard holds each value in about its
overall share, the shards' counts add up to the requested counts exactly, and the split
depends only on the counts and the shard sizes (the same on any executor).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from synthloom.errors import DataError
from synthloom.schema import ColumnKind, TableSchema


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


def check_conditions(
    conditions: dict[str, dict[Any, int]], schema: TableSchema, num_rows: int
) -> tuple[str, dict[Any, int]]:
    """The one conditioned column and its quotas, checked: a categorical or boolean column of
    the schema, known values, counts >= 0 summing to `num_rows`; else `DataError` with the fix."""
    if len(conditions) != 1:
        raise DataError(
            f"generate.conditions names {len(conditions)} columns ({sorted(conditions)}); "
            "a run conditions on exactly one. Fix: keep one column, e.g. the target."
        )
    ((column, quotas),) = conditions.items()
    if column not in schema.names:
        raise DataError(
            f"generate.conditions.{column}: no such column. Fix: use one of {schema.names}."
        )
    col = schema.column(column)
    if col.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        raise DataError(
            f"generate.conditions.{column}: a {col.kind.value} column; exact counts need a "
            "categorical or boolean column. Fix: condition on a categorical column."
        )
    known = set(col.categories or ())
    unknown = [str(v) for v in quotas if str(v) not in known]
    if unknown:
        raise DataError(
            f"generate.conditions.{column}: unknown value(s) {unknown}. Fix: use the "
            f"training values {sorted(known)}."
        )
    if any(int(n) < 0 for n in quotas.values()) or sum(int(n) for n in quotas.values()) != num_rows:
        raise DataError(
            f"generate.conditions.{column}: counts {dict(quotas)} must be >= 0 and sum to the "
            f"rows requested ({num_rows}). Fix: make them add up to generate.num_rows."
        )
    return column, quotas
