"""The seed data as every tabular stage sees it: load `data.source`, type it, split it.

`seed_splits(data, seed)` is the ingest stage's computation without Prefect: the rows are
loaded (`synthloom.ingest.load_source`), validated and typed with an inferred schema
(`prepare_seed_table`), then split by `seed` into train / validation / test and the DCR
pair (`synthloom.splits.split_table`). `data` is the `data:` section of a pipeline config
as a dict; the same dict and seed always give the same splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from synthloom.ingest.inference import prepare_seed_table
from synthloom.ingest.sources import load_source
from synthloom.schema import TableSchema
from synthloom.splits import Splits, split_table


@dataclass(frozen=True)
class SeedSplits:
    """The loaded rows (`raw_rows` before cleaning), the typed table, its schema, the splits."""

    raw_rows: int
    table: pd.DataFrame
    schema: TableSchema
    splits: Splits


def seed_splits(data: Mapping[str, Any], seed: int) -> SeedSplits:
    """Load, type and split `data.source` as the ingest stage does (see the module docstring)."""
    raw = load_source(data["source"], data.get("format"), hf_split=data.get("hf_split", "train"))
    table, schema = prepare_seed_table(
        raw,
        source=data["source"],
        target=data.get("target"),
        drop_columns=data.get("drop_columns") or [],
        column_types=data.get("column_types") or {},
        max_categories=data.get("max_categories"),
        max_rows=data.get("max_rows"),
        seed=seed,
    )
    splits = split_table(
        table,
        schema,
        seed=seed,
        validation=data.get("validation_fraction", 0.1),
        test=data.get("test_fraction", 0.2),
    )
    return SeedSplits(raw_rows=len(raw), table=table, schema=schema, splits=splits)
