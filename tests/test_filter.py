from __future__ import annotations

import numpy as np
import pandas as pd

from synthloom.filters.tabular import RULES, filter_table


def test_each_rule_counts_what_it_removes(mixed_table, mixed_schema) -> None:
    train = mixed_table
    good = train.iloc[[0, 1]].copy()
    good.loc[:, "income"] = [41.234, 55.5]  # not copies of training rows
    rows = pd.concat(
        [
            good,  # kept
            good.iloc[[0]],  # duplicate of the first kept row
            good.iloc[[0]].assign(age="abc"),  # type error
            good.iloc[[0]].assign(age=np.nan, income=43.0),  # age never missing in training
            good.iloc[[0]].assign(home="castle", income=44.0),  # unseen category
            good.iloc[[0]].assign(income=1e6),  # far outside the training range
            train.iloc[[5]],  # exact training copy
        ],
        ignore_index=True,
    )
    result = filter_table(rows, mixed_schema, train, drop_training_copies=True)
    assert result.removed == {
        "type_errors": 1,
        "incomplete": 1,
        "out_of_domain_categories": 1,
        "out_of_range_numbers": 1,
        "duplicates": 1,
        "training_copies": 1,
    }
    assert len(result.kept) == 2
    assert result.rows_in == len(rows)
    assert set(result.removed) == set(RULES)


def test_rules_can_be_switched_off(mixed_table, mixed_schema) -> None:
    rows = pd.concat([mixed_table.iloc[[0]]] * 3, ignore_index=True).assign(income=1e6)
    result = filter_table(
        rows, mixed_schema, mixed_table, numeric_range_widening=None, drop_duplicates=False
    )
    assert len(result.kept) == 3
    assert sum(result.removed.values()) == 0


def test_nullable_column_keeps_missing_values(mixed_table, mixed_schema) -> None:
    rows = mixed_table.iloc[[3]].assign(income=np.nan, age=30.0)
    assert len(filter_table(rows, mixed_schema, mixed_table).kept) == 1


def test_widening_margin(mixed_table, mixed_schema) -> None:
    col = mixed_schema.column("age")  # 18..79, range 61
    inside = mixed_table.iloc[[0]].assign(age=79 + 6.0)  # within 10% (6.1)
    outside = mixed_table.iloc[[1]].assign(age=79 + 7.0)
    result = filter_table(pd.concat([inside, outside]), mixed_schema, mixed_table)
    assert col.maximum == 79.0
    assert result.removed["out_of_range_numbers"] == 1
