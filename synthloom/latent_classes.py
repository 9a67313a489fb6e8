"""Latent classes: the values a class-conditional latent diffusion is conditioned on.

A class is one joint value of a table's class columns: the target (a categorical or boolean
column), and with conditioning "target_and_binary" also the two-valued columns, taken in
schema order while the joint values seen in training stay at most `limit` (so a table of
many flags does not give each row a class of its own). "target_and_related" takes only the
two-valued columns b related to the target on the training rows, by Cramer's V
    V(target, b) = sqrt(chi2 / n) >= RELATED_V   (chi2 of their contingency table, n rows;
                                                  b has two values, so min(r, c) - 1 = 1),
so a flag unrelated to the label does not split each label's rows into thinner classes.
Without a categorical or boolean target, "target_and_binary" takes the two-valued columns
alone (TabSyn's classes on a regression table); the other two conditionings give no classes.
Only the joint values seen in the training rows are classes; a column with a missing value
in the frame given is never a class column (a class fixes its column's value, and a forced
value is never null; TabSyn passes its codec's categories, where a gap is a category of its
own that decodes back to a gap).

Sampling lays out n classes in the training balance by largest remainders
(`largest_remainders`): class c gets floor(n p_c), and the rows left over go to the largest
remainders n p_c - floor(n p_c), ties to the earlier class. Exact counts of one column's
values (`generate.conditions`) split each value's count over the classes holding it, in
their training proportions, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthloom.errors import DataError
from synthloom.schema import ColumnKind, TableSchema

CLASS_LIMIT = 64  # target_and_binary: joint values the diffusion learns at most
RELATED_V = 0.1  # target_and_related: the least Cramer's V of a joined two-valued column
CONDITIONINGS = ("target", "target_and_binary", "target_and_related")


def cramers_v(a: pd.Series, b: pd.Series) -> float:
    """Cramer's V of two columns' values (as strings): sqrt(chi2 / (n (min(r, c) - 1))),
    chi2 without continuity correction; 0 where either column holds a single value."""
    from scipy.stats.contingency import association

    table = pd.crosstab(a.astype(str), b.astype(str)).to_numpy()
    if min(table.shape) < 2:
        return 0.0
    return float(association(table, method="cramer", correction=False))


def largest_remainders(counts: np.ndarray, n: int) -> np.ndarray:
    """n split in proportion to `counts` (int64, summing to n): floors, then one more to
    the largest remainders (ties to the earlier index)."""
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: n - int(quota.sum())]] += 1
    return quota


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """`labels` (one class index per row) in an order drawn from `seed`."""
    return np.random.default_rng([seed, 104729]).permutation(labels)


def balanced_labels(counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n class indices in the balance of `counts` (`largest_remainders`), shuffled by `seed`."""
    quota = largest_remainders(np.asarray(counts, dtype=np.float64), n)
    return shuffled_labels(np.repeat(np.arange(len(quota)), quota), seed)


def counts_per_shard(counts: np.ndarray, sizes: list[int]) -> list[list[int]]:
    """Rows per class for each shard of `sizes` rows, the classes laid out one after the
    other (class 0's rows fill the first shards, then class 1's, ...): a shard holds one
    class, or two where a class ends, so it decodes in one or two batches rather than one
    per class. Each class's counts add up to counts[c]; sum(counts) must equal sum(sizes)."""
    if int(np.sum(counts)) != sum(sizes):
        raise ValueError(f"class counts sum to {int(np.sum(counts))}, shards to {sum(sizes)}")
    left = [int(c) for c in counts]
    shards, c = [], 0
    for size in sizes:
        row = [0] * len(left)
        while size > 0:
            while left[c] == 0:
                c += 1
            take = min(size, left[c])
            row[c] += take
            left[c] -= take
            size -= take
        shards.append(row)
    return shards


@dataclass(frozen=True)
class LatentClasses:
    """`columns` (the class columns, target first), `values` (one tuple of those columns'
    values per class, as strings) and `counts` (training rows per class)."""

    columns: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    counts: tuple[int, ...]

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        schema: TableSchema,
        conditioning: str = "target",
        limit: int = CLASS_LIMIT,
    ) -> tuple[LatentClasses, np.ndarray] | None:
        """(classes, each training row's class index) for `frame` (the training rows), or
        None where no column qualifies: no categorical or boolean target without missing
        values (with "target_and_binary": nor a two-valued column). `conditioning`: "target",
        "target_and_binary" or "target_and_related" (module docstring)."""
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; use one of {CONDITIONINGS}")
        target = schema.target
        has_target = target is not None and _class_column(frame, schema, target)
        if not has_target and conditioning != "target_and_binary":
            return None
        columns = [target] if has_target else []
        for col in schema.columns if conditioning != "target" else ():
            if col.name in columns or not _class_column(frame, schema, col.name):
                continue
            if frame[col.name].astype(str).nunique() != 2:
                continue
            if conditioning == "target_and_related":
                if cramers_v(frame[target], frame[col.name]) < RELATED_V:
                    continue
            joint = frame[[*columns, col.name]].astype(str).drop_duplicates()
            if len(joint) <= limit:
                columns.append(col.name)
        if not columns:
            return None
        text = frame[columns].astype(str)
        keys = list(text.itertuples(index=False, name=None))
        values = sorted(set(keys))
        index = {v: i for i, v in enumerate(values)}
        labels = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
        counts = np.bincount(labels, minlength=len(values))
        classes = cls(tuple(columns), tuple(values), tuple(int(c) for c in counts))
        return classes, labels

    def __len__(self) -> int:
        return len(self.values)

    def balanced(self, n: int) -> np.ndarray:
        """How many of n rows each class gets, in the training balance (largest remainders)."""
        return largest_remainders(np.asarray(self.counts, dtype=np.float64), n)

    def quotas_for(self, column: str, wanted: dict[str, int]) -> np.ndarray:
        """Rows per class such that `column` takes value v exactly wanted[v] times: each
        value's count split over the classes holding it in their training proportions.
        `column` must be one of `columns`; DataError for a value no training row holds."""
        position = self.columns.index(column)
        counts = np.asarray(self.counts, dtype=np.float64)
        quota = np.zeros(len(self), dtype=np.int64)
        for value, n in wanted.items():
            if n <= 0:
                continue
            holders = np.array([i for i, v in enumerate(self.values) if v[position] == value])
            if len(holders) == 0:
                raise DataError(
                    f"generate.conditions.{column}: value {value!r} never occurs in the "
                    "training rows, so the latent diffusion has no class for it. Fix: ask "
                    "for values the training split holds."
                )
            weights = counts[holders] if counts[holders].sum() > 0 else np.ones(len(holders))
            quota[holders] += largest_remainders(weights, n)  # (a class of a model saved
            # before unseen values were dropped may have no training row)
        return quota

    def describe(self, counts: Any = None) -> str:
        """ "value|value n, ..." per class, with `counts` (default: the training counts)."""
        counts = self.counts if counts is None else counts
        return ", ".join(
            f"{'|'.join(v)} {int(n)}" for v, n in zip(self.values, counts, strict=True)
        )

    def assignment(self, index: int) -> dict[str, str]:
        """{column: value} of class `index`."""
        return dict(zip(self.columns, self.values[index], strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "values": [list(v) for v in self.values],
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentClasses:
        return cls(
            tuple(d["columns"]),
            tuple(tuple(v) for v in d["values"]),
            tuple(int(c) for c in d["counts"]),
        )


def _class_column(frame: pd.DataFrame, schema: TableSchema, name: str) -> bool:
    """A categorical or boolean column of `frame` with no missing value there."""
    kind = schema.column(name).kind
    if kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) or name not in frame:
        return False
    return bool(frame[name].notna().all())
