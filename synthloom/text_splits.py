"""Labelled-text seed data: a table with a text column and a label column -> seeds and real splits.

`text_splits(raw, ...)` keeps the rows with a non-empty text and a label (optionally only the
given labels), drops repeated texts, then per label and by seed: `seeds_per_label` seed texts
(what the generators see), `test_per_label` real test texts (the student's test split) and up
to `real_train_per_label` real training texts (the reference student; never shown to a
generator). The three sets are disjoint. Every frame has columns `text` and `label` (str).

With `seed_draw` set, the test and real-train texts depend on `seed` alone and the seeds are
drawn (by `seed_draw`) from the texts left after them: several seed draws are then measured
on the same test set, so their spread is the seeds' and a paired difference is meaningful.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthloom.errors import data_error

SPLITS = ("seeds", "test", "real_train")


@dataclass
class TextSplits:
    seeds: pd.DataFrame
    test: pd.DataFrame
    real_train: pd.DataFrame


def text_splits(
    raw: pd.DataFrame,
    *,
    source: str,
    text_column: str,
    label_column: str,
    labels: list[str] | None = None,
    seeds_per_label: int = 10,
    test_per_label: int | None = 200,
    real_train_per_label: int | None = 80,
    min_text_chars: int = 1,
    seed: int = 0,
    label_descriptions: Mapping[str, str] | None = None,
    seed_draw: int | None = None,
) -> TextSplits:
    """Split a labelled-text table (see the module doc). Raises DataError naming the source,
    the field and the fix when a column is missing, a label is unknown, or a label has too
    few texts for its seeds and at least one test text, or `label_descriptions` names a
    label the kept rows do not have."""
    table = text_table(raw, source, text_column, label_column, labels, min_text_chars)
    undescribed = sorted(set(label_descriptions or {}) - set(table["label"]))
    if undescribed:
        raise data_error(
            source,
            f"data.label_descriptions describes {undescribed}, which no kept row has.",
            f"describe labels of column {label_column!r}: "
            f"{_counts(table['label'].value_counts())}.",
            column=label_column,
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in SPLITS}
    counts = table["label"].value_counts()
    for label in sorted(counts.index):
        rows = table[table["label"] == label]
        if len(rows) < seeds_per_label + 1:
            raise data_error(
                source,
                f"label {label!r} has {len(rows)} usable texts; {seeds_per_label} seeds and at "
                "least one test text are needed.",
                f"lower data.seeds_per_label, drop the label with data.labels, or add texts "
                f"(label counts: {_counts(counts)}).",
                column=label_column,
            )
        order = rows.iloc[rng.permutation(len(rows))]
        if seed_draw is None:
            seeds, rest = order.iloc[:seeds_per_label], order.iloc[seeds_per_label:]
        else:  # test and real train fixed by `seed`, the seeds from the rows after them
            reserved = (test_per_label or 0) + (real_train_per_label or 0)
            if test_per_label is None or len(rows) < reserved + seeds_per_label:
                raise data_error(
                    source,
                    f"label {label!r} has {len(rows)} usable texts; data.seed_draw needs "
                    f"{seeds_per_label} seeds besides the test and real-train texts.",
                    "set data.test_per_label (and data.real_train_per_label) so that "
                    f"together with the seeds they fit in {len(rows)}, or unset data.seed_draw.",
                    column=label_column,
                )
            pool = order.iloc[reserved:]
            pick = np.random.default_rng([seed, seed_draw]).permutation(len(pool))
            seeds, rest = pool.iloc[pick[:seeds_per_label]], order.iloc[:reserved]
        # test first: it is what every student is measured on
        n_test = len(rest) if test_per_label is None else min(test_per_label, len(rest))
        test = rest.iloc[:n_test]
        train = rest.iloc[n_test:]
        if real_train_per_label is not None:
            train = train.iloc[:real_train_per_label]
        for name, frame in zip(SPLITS, (seeds, test, train), strict=True):
            parts[name].append(frame)
    return TextSplits(
        *(pd.concat(parts[name], ignore_index=True) for name in SPLITS),
    )


def text_splits_for(raw: pd.DataFrame, data: Mapping[str, Any], *, seed: int) -> TextSplits:
    """`text_splits` with the keys of a `data:` config section (DataConfig dumped to a dict:
    source, text_column, target, labels, seeds_per_label, test_per_label,
    real_train_per_label, min_text_chars, label_descriptions, seed_draw)."""
    return text_splits(
        raw,
        source=data["source"],
        text_column=data["text_column"],
        label_column=data["target"],
        labels=data.get("labels"),
        seeds_per_label=data.get("seeds_per_label", 10),
        test_per_label=data.get("test_per_label", 200),
        real_train_per_label=data.get("real_train_per_label", 80),
        min_text_chars=data.get("min_text_chars", 1),
        seed=seed,
        label_descriptions=data.get("label_descriptions"),
        seed_draw=data.get("seed_draw"),
    )


def text_table(
    raw: pd.DataFrame,
    source: str,
    text_column: str,
    label_column: str,
    labels: list[str] | None,
    min_text_chars: int,
) -> pd.DataFrame:
    """Columns text, label (str), stripped; empty/short texts, missing labels and repeated
    texts dropped; only `labels` kept when given."""
    for key, column in (("data.text_column", text_column), ("data.target", label_column)):
        if column not in raw.columns:
            close = difflib.get_close_matches(column, [str(c) for c in raw.columns], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise data_error(
                source,
                f"{key} names column {column!r}, which the data does not have.{hint}",
                f"set {key} to one of: {', '.join(map(str, raw.columns[:40]))}.",
            )
    table = pd.DataFrame(
        {"text": raw[text_column], "label": raw[label_column]}, index=range(len(raw))
    )
    table = table.dropna()
    table["text"] = table["text"].astype(str).str.strip()
    table["label"] = table["label"].astype(str).str.strip()
    table = table[(table["text"].str.len() >= max(min_text_chars, 1)) & (table["label"] != "")]
    table = table.drop_duplicates(subset="text").reset_index(drop=True)
    if labels is not None:
        present = set(table["label"])
        unknown = [lab for lab in labels if lab not in present]
        if unknown:
            raise data_error(
                source,
                f"data.labels lists {unknown}, which no row with a text has.",
                f"use labels of column {label_column!r}: {_counts(table['label'].value_counts())}.",
                column=label_column,
            )
        table = table[table["label"].isin(labels)].reset_index(drop=True)
    if table["label"].nunique() < 2:
        raise data_error(
            source,
            f"a labelled text set needs at least 2 labels; column {label_column!r} has "
            f"{table['label'].nunique()} among rows with a text.",
            "point data.target at the label column (data.text_column at the texts).",
            column=label_column,
        )
    return table


def _counts(counts: pd.Series, limit: int = 12) -> str:
    shown = ", ".join(f"{k!r}: {v}" for k, v in counts.head(limit).items())
    return shown + (f", ... ({len(counts) - limit} more)" if len(counts) > limit else "")
