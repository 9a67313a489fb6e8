"""A table as the matrices TabSyn's VAE reads, and back: quantile-normal numbers, category codes.

`ColumnCodec.fit(train, schema)` learns, per column (TabSyn, arXiv 2310.09656, section 3.1):
- numeric and datetime (epoch seconds): a quantile-normal transform on the observed values,
      u = F_n(x) (empirical CDF on a grid of at most 1,000 quantiles, ties averaged as in
      scikit-learn's QuantileTransformer), x_num = Phi^-1(eps + (1 - 2 eps) u), eps = 1e-7,
  inverted by x = F_n^-1(Phi(x_num)), so a decoded value never leaves the training range;
  the decoded number is rounded to the column's observed precision (whole numbers for
  integer columns, at most `max_decimals` decimals otherwise), and a column with at most
  `max_grid_values` distinct observed values (a loan term in months, a count) is snapped
  to the nearest of them, so a term of 48 or 60 months never decodes as 47 or 59;
- a numeric column with missing values also gets a missingness indicator, modelled as a
  two-category column `<name>` + MISSING_SUFFIX; its gaps are filled with values drawn
  from the observed ones (seeded), so the fill adds no spike to the quantile transform;
- ties (ours, `dequantize`): a value held by many rows (a debt of 0 in 83 % of them)
  spans a stretch [F(x-), F(x)] of the CDF; the paper maps it to the stretch's middle, one
  spike that a diffusion model smooths into values never seen (1, 2, 3 where the data says
  0). Dequantised, each such row maps to a uniform draw inside the stretch (seeded), the
  scores stay standard normal, and the inverse transform still returns x;
- categorical and boolean: an integer code per category, missing values as a category of
  their own (decoded back to a gap);
- constant columns (one observed value and no gaps) are not modelled: they are written
  back as that value;
- exact linear dependents (ours, `derive_linear`): a numeric column b = s a + c of an
  earlier numeric column a on every training row, up to the rounding of both (a charge
  billed per minute; the test is `synthloom/linear_dependents.py`'s), is not modelled
  either: it is written back as round(s a + c) from the decoded a, clipped to b's training
  range, so the identity holds in every generated row and the VAE spends no token on it.
A text column cannot be modelled: `fit` raises `DataError` naming it and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from synthloom.errors import DataError
from synthloom.linear_dependents import (
    find_linear_dependents,
    observed_decimals,
    write_dependents,
)
from synthloom.methods.peers.frames import from_peer_frame, to_peer_frame
from synthloom.metrics.mle import numeric_values
from synthloom.schema import ColumnKind, TableSchema

MISSING_SUFFIX = "::missing"
MISSING_CATEGORY = "__missing__"
_EPS = 1e-7


@dataclass
class QuantileNormal:
    """x -> Phi^-1(F_n(x)) on a quantile grid, and back; see the module docstring."""

    quantiles: np.ndarray  # (Q,) nondecreasing, the empirical quantiles at `references`
    references: np.ndarray  # (Q,) in [0, 1]

    @classmethod
    def fit(cls, values: np.ndarray, n_quantiles: int = 1000) -> QuantileNormal:
        values = np.asarray(values, dtype=np.float64)
        q = int(min(n_quantiles, len(values)))
        references = np.linspace(0.0, 1.0, max(q, 2))
        return cls(np.quantile(values, references), references)

    def transform(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N,) -> (N,) standard-normal scores. A tied value x spans the CDF interval
        [F(x-), F(x)]: without `rng` it maps to the interval's middle (scikit-learn's
        QuantileTransformer); with `rng` to a uniform draw inside it (dequantisation), so a
        value held by many rows becomes a stretch of the normal instead of a spike."""
        x = np.asarray(x, dtype=np.float64)
        up = np.interp(x, self.quantiles, self.references)
        down = -np.interp(-x, -self.quantiles[::-1], -self.references[::-1])
        share = 0.5 if rng is None else rng.random(len(x))
        return ndtri(_EPS + (1 - 2 * _EPS) * (down + share * (up - down)))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(N,) scores -> (N,) values inside [quantiles[0], quantiles[-1]]."""
        u = (ndtr(np.asarray(z, dtype=np.float64)) - _EPS) / (1 - 2 * _EPS)
        return np.interp(np.clip(u, 0.0, 1.0), self.references, self.quantiles)

    def to_dict(self) -> dict[str, Any]:
        return {"quantiles": self.quantiles.tolist(), "references": self.references.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileNormal:
        return cls(np.asarray(d["quantiles"], float), np.asarray(d["references"], float))


@dataclass
class ColumnCodec:
    """The fitted per-column encoding of one table (see the module docstring).

    `numeric`: modelled numeric/datetime column names, in schema order; `categorical`:
    modelled categorical/boolean columns and the missingness indicators, each with its
    category list; `constants`: column -> the value written back unchanged; `derived`:
    column -> {source, slope, intercept, decimals, low, high}, written back from its source."""

    schema: TableSchema
    numeric: list[str] = field(default_factory=list)
    transforms: dict[str, QuantileNormal] = field(default_factory=dict)
    decimals: dict[str, int | None] = field(default_factory=dict)
    categorical: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    missing_rates: dict[str, float] = field(default_factory=dict)
    grids: dict[str, list[float]] = field(default_factory=dict)
    dequantize: bool = False
    derived: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        schema: TableSchema,
        max_decimals: int = 6,
        max_grid_values: int = 64,
        dequantize: bool = False,
        derive_linear: bool = False,
    ) -> ColumnCodec:
        frame = to_peer_frame(train, schema)
        codec = cls(schema, dequantize=dequantize)
        if derive_linear:
            codec.derived = find_linear_dependents(frame, schema, max_decimals)
        for col in schema.columns:
            if col.name in codec.derived:  # written from its source (decimals in the rule)
                continue
            values = frame[col.name]
            present = values.dropna()
            if col.kind is ColumnKind.TEXT:
                raise DataError(
                    f"tabsyn cannot model the free-text column {col.name!r}. Fix: add it to "
                    "data.drop_columns, set data.column_types."
                    f"{col.name}: categorical if it holds few distinct values, or use a text "
                    "method (DiffLM, GReaT) for tables with free text."
                )
            if present.nunique() <= 1 and len(present) == len(values):
                codec.constants[col.name] = present.iloc[0] if len(present) else None
                continue
            if len(present) == 0:  # an all-missing column: written back as gaps
                codec.constants[col.name] = None
                continue
            codec.missing_rates[col.name] = float(values.isna().mean())
            if col.kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME):
                numbers = numeric_values(values, col.kind)
                observed = numbers[~np.isnan(numbers)]
                codec.numeric.append(col.name)
                codec.transforms[col.name] = QuantileNormal.fit(observed)
                distinct = np.unique(observed)
                if len(distinct) <= max_grid_values:
                    codec.grids[col.name] = distinct.tolist()
                codec.decimals[col.name] = (
                    0 if col.integer or col.kind is ColumnKind.DATETIME else
                    observed_decimals(observed, max_decimals)
                )  # fmt: skip
                if np.isnan(numbers).any():
                    flag = col.name + MISSING_SUFFIX
                    codec.categorical.append(flag)
                    codec.categories[flag] = ["0", "1"]
            else:
                cats = sorted(present.astype(str).unique().tolist())
                if values.isna().any():
                    cats.append(MISSING_CATEGORY)
                codec.categorical.append(col.name)
                codec.categories[col.name] = cats
        return codec

    @property
    def n_num(self) -> int:
        return len(self.numeric)

    @property
    def n_modelled(self) -> int:
        """Columns the VAE sees: modelled numerics, categoricals and missingness flags."""
        return len(self.numeric) + len(self.categorical)

    @property
    def cardinalities(self) -> list[int]:
        return [len(self.categories[c]) for c in self.categorical]

    def encode(self, frame: pd.DataFrame, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Rows -> (x_num (N, n_num) float32, x_cat (N, n_cat) int64). Unknown categories map
        to code 0; numeric gaps are filled with observed values drawn with `seed`, which
        also draws the dequantised scores of tied values (`dequantize`)."""
        frame = to_peer_frame(frame, self.schema)
        rng = np.random.default_rng(seed)
        n = len(frame)
        x_num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        cat_values: dict[str, np.ndarray] = {}
        for j, name in enumerate(self.numeric):
            numbers = numeric_values(frame[name], self.schema.column(name).kind)
            gaps = np.isnan(numbers)
            if gaps.any():
                observed = numbers[~gaps]
                pool = observed if len(observed) else self.transforms[name].quantiles
                numbers[gaps] = rng.choice(pool, size=int(gaps.sum()))
                cat_values[name + MISSING_SUFFIX] = np.where(gaps, "1", "0")
            x_num[:, j] = self.transforms[name].transform(numbers, rng if self.dequantize else None)
        x_cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, name in enumerate(self.categorical):
            if name in cat_values:
                strings = cat_values[name]
            elif _is_flag(name, self.schema):
                strings = np.full(n, "0")  # no gap in these rows
            else:
                values = frame[name]
                strings = values.astype(object).where(values.notna(), MISSING_CATEGORY)
                strings = strings.astype(str).to_numpy()
            index = {c: i for i, c in enumerate(self.categories[name])}
            x_cat[:, j] = [index.get(s, 0) for s in strings]
        return x_num, x_cat

    def decode(self, x_num: np.ndarray, x_cat: np.ndarray) -> pd.DataFrame:
        """(x_num (N, n_num), x_cat codes (N, n_cat)) -> rows in the schema's columns and types."""
        n = len(x_num)
        out: dict[str, Any] = {}
        codes = {name: x_cat[:, j] for j, name in enumerate(self.categorical)}
        for j, name in enumerate(self.numeric):
            values = self.transforms[name].inverse(x_num[:, j])
            decimals = self.decimals[name]
            if decimals is not None:
                values = np.round(values, decimals)
            if name in self.grids:
                values = _snap(values, np.asarray(self.grids[name]))
            flag = name + MISSING_SUFFIX
            if flag in codes:
                values = np.where(codes[flag] == 1, np.nan, values)
            kind = self.schema.column(name).kind
            if kind is ColumnKind.DATETIME:
                whole = pd.Series(values).round().astype("Int64")
                out[name] = pd.to_datetime(whole * 1_000_000_000, unit="ns")
            else:
                out[name] = values
        out.update(write_dependents(out, self.derived))
        for name in self.categorical:
            if _is_flag(name, self.schema):
                continue
            cats = np.asarray(self.categories[name], dtype=object)
            strings = cats[np.clip(codes[name], 0, len(cats) - 1)]
            out[name] = pd.Series(strings, dtype=object).where(strings != MISSING_CATEGORY, None)
        for name, value in self.constants.items():
            out[name] = pd.Series([value] * n, dtype=object)
        return from_peer_frame(pd.DataFrame(out, index=range(n)), self.schema)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema.to_dict(),
            "numeric": self.numeric,
            "transforms": {k: v.to_dict() for k, v in self.transforms.items()},
            "decimals": self.decimals,
            "categorical": self.categorical,
            "categories": self.categories,
            "constants": {k: _json_value(v) for k, v in self.constants.items()},
            "missing_rates": self.missing_rates,
            "grids": self.grids,
            "dequantize": self.dequantize,
            "derived": self.derived,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnCodec:
        return cls(
            schema=TableSchema.from_dict(d["schema"]),
            numeric=list(d["numeric"]),
            transforms={k: QuantileNormal.from_dict(v) for k, v in d["transforms"].items()},
            decimals=dict(d["decimals"]),
            categorical=list(d["categorical"]),
            categories={k: list(v) for k, v in d["categories"].items()},
            constants=dict(d["constants"]),
            missing_rates=dict(d["missing_rates"]),
            grids={k: list(v) for k, v in d.get("grids", {}).items()},
            dequantize=bool(d.get("dequantize", False)),
            derived={k: dict(v) for k, v in d.get("derived", {}).items()},
        )


def _is_flag(name: str, schema: TableSchema) -> bool:
    """A missingness indicator of the codec's own, not a table column."""
    return name.endswith(MISSING_SUFFIX) and name not in schema.names


def _snap(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each value replaced by the nearest grid value (grid sorted ascending)."""
    right = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1) if len(grid) > 1 else None
    if right is None:
        return np.full_like(values, grid[0])
    left = right - 1
    nearer_left = np.abs(values - grid[left]) <= np.abs(grid[right] - values)
    return np.where(nearer_left, grid[left], grid[right])


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    return str(value)
