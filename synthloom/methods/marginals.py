"""Independent-marginals BASELINE: each column sampled alone from its training marginal.

It matches every one-column distribution and, by construction, destroys every relation
between columns (pair trends, the target's dependence on features). Use it as the floor
a real method must beat.
- numeric / datetime: inverse-CDF sampling, u ~ U(0, 1), x = interp(u, q_grid, quantiles),
  rounded when the column holds whole numbers;
- categorical / boolean: categories drawn with their training frequencies;
- text: training values drawn with replacement (so every text is a copy: a baseline);
- missing values: each column is null with its training missing rate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synthloom.schema import ColumnKind, TableSchema

MODEL_FILE = "marginals.json"


class IndependentMarginals:
    """Baseline generator; `quantiles` is the size of the grid kept per numeric column."""

    name: ClassVar[str] = "marginals"

    def __init__(self, quantiles: int = 1001) -> None:
        assert quantiles >= 2
        self.quantiles = quantiles
        self.schema: TableSchema | None = None
        self.columns: dict[str, dict[str, Any]] = {}

    def fit(
        self, train: pd.DataFrame, schema: TableSchema, *, seed: int = 0
    ) -> IndependentMarginals:
        """Store each column's missing rate and marginal (quantiles or category shares)."""
        if len(train) == 0:
            raise ValueError("cannot fit marginals on an empty table")
        self.schema = schema
        grid = np.linspace(0.0, 1.0, self.quantiles)
        for col in schema.columns:
            values = train[col.name]
            present = values.dropna()
            entry: dict[str, Any] = {"missing_rate": float(values.isna().mean())}
            if len(present) == 0:
                entry["kind"] = "empty"
            elif col.kind is ColumnKind.NUMERIC:
                entry["kind"] = "quantiles"
                entry["values"] = np.quantile(present.to_numpy(float), grid).tolist()
            elif col.kind is ColumnKind.DATETIME:
                entry["kind"] = "quantiles"
                as_ns = pd.to_datetime(present).astype("int64").to_numpy(float)
                entry["values"] = np.quantile(as_ns, grid).tolist()
            elif col.kind is ColumnKind.TEXT:
                entry["kind"] = "values"
                entry["values"] = present.astype(str).tolist()
            else:
                shares = present.astype(str).value_counts(normalize=True).sort_index()
                entry["kind"] = "categories"
                entry["values"] = shares.index.tolist()
                entry["probs"] = shares.to_numpy(float).tolist()
            self.columns[col.name] = entry
        return self

    def sample(self, num_rows: int, *, seed: int = 0) -> pd.DataFrame:
        """Draw `num_rows` rows; columns independent of each other."""
        assert self.schema is not None, "fit or load the generator first"
        rng = np.random.default_rng(seed)
        out: dict[str, Any] = {}
        for col in self.schema.columns:
            entry = self.columns[col.name]
            missing = rng.random(num_rows) < entry["missing_rate"]
            out[col.name] = _draw_column(col.kind, col.integer, entry, missing, rng)
        self.last_attempts = num_rows
        return pd.DataFrame(out, columns=self.schema.names)

    def save(self, directory: Path) -> None:
        assert self.schema is not None
        payload = {
            "quantiles": self.quantiles,
            "schema": self.schema.to_dict(),
            "columns": self.columns,
        }
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / MODEL_FILE).write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> IndependentMarginals:
        payload = json.loads((Path(directory) / MODEL_FILE).read_text(encoding="utf-8"))
        model = cls(quantiles=payload["quantiles"])
        model.schema = TableSchema.from_dict(payload["schema"])
        model.columns = payload["columns"]
        return model

    def describe(self) -> dict[str, Any]:
        stored = sum(len(c.get("values", [])) for c in self.columns.values())
        return {"columns_modelled": len(self.columns), "stored_values": stored}


def _draw_column(
    kind: ColumnKind,
    integer: bool,
    entry: dict[str, Any],
    missing: np.ndarray,
    rng: np.random.Generator,
) -> pd.Series:
    n = len(missing)
    if entry["kind"] == "empty":
        values = pd.Series([None] * n, dtype=object)
    elif entry["kind"] == "quantiles":
        q = np.asarray(entry["values"], dtype=float)
        drawn = np.interp(rng.random(n), np.linspace(0.0, 1.0, len(q)), q)
        if integer:
            drawn = np.round(drawn)
        if kind is ColumnKind.DATETIME:
            values = pd.Series(pd.to_datetime(drawn.astype("int64")))
        else:
            values = pd.Series(drawn, dtype="float64")
    elif entry["kind"] == "categories":
        idx = rng.choice(len(entry["values"]), size=n, p=np.asarray(entry["probs"]))
        labels = np.asarray(entry["values"], dtype=object)[idx]
        if kind is ColumnKind.BOOLEAN:
            values = pd.Series(labels == "True", dtype="boolean")
        else:
            values = pd.Series(labels, dtype=object)
    else:  # text values
        idx = rng.integers(0, len(entry["values"]), size=n)
        values = pd.Series(np.asarray(entry["values"], dtype=object)[idx], dtype=object)
    values = values.copy()
    values[missing] = (
        None if values.dtype == object else pd.NA if values.dtype == "boolean" else np.nan
    )
    return values
