"""SMOTE as a generator (Chawla et al. 2002, JAIR 16; imbalanced-learn's implementation).

SMOTE was made to oversample a minority class; as a generator (the TabDDPM baseline,
arXiv 2209.15421) every new row is an interpolation between a training row and one of its
k nearest neighbours OF THE SAME STRATUM:

    x_new = x_i + u * (x_nn - x_i),   u ~ U(0, 1)

- numeric features are interpolated; categorical ones (SMOTE-NC) take the most frequent
  category among the k neighbours; an all-categorical table uses SMOTE-N (value difference
  metric, categories from the neighbours);
- strata: the classes of a classification target (the new row carries its class; rows are
  split between classes in their training shares); for a regression target, `target_bins`
  quantile bins of the target (the target itself is interpolated like any feature); with
  no target, two random halves of the training rows;
- missing values: a numeric gap is filled with the column median plus a missing-indicator
  category (interpolated as a category, restored as a gap); a categorical gap is its own
  category;
- a stratum with a single row cannot be interpolated: its new rows are copies of that row
  (counted in `describe()["copied_rows"]`).

Fitting only stores the training rows; the neighbour search runs at sampling time, so
this generator's cost shows up as sampling time, and it keeps the training rows on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synthloom.artifacts import read_table, write_table
from synthloom.methods.peers.availability import require_peer
from synthloom.methods.peers.frames import from_peer_frame, to_peer_frame
from synthloom.schema import ColumnKind, TableSchema

PARAMS_FILE = "smote.json"
TRAIN_FILE = "train.parquet"
_MISSING = "__missing__"
_MISSING_FLAG = "__is_missing__"


class SmoteGenerator:
    """Interpolating generator; `k_neighbors` as in SMOTE (5), `target_bins` for regression."""

    name: ClassVar[str] = "smote"

    def __init__(self, k_neighbors: int = 5, target_bins: int = 4) -> None:
        assert k_neighbors >= 1 and target_bins >= 2
        self.k_neighbors = k_neighbors
        self.target_bins = target_bins
        self.schema: TableSchema | None = None
        self.train: pd.DataFrame | None = None
        self.copied_rows = 0

    def fit(self, train: pd.DataFrame, schema: TableSchema, *, seed: int = 0) -> SmoteGenerator:
        """Store the training rows (SMOTE has no parameters to learn)."""
        require_peer(self.name)
        if len(train) < 2:
            raise ValueError("SMOTE needs at least two training rows to interpolate")
        self.schema = schema
        self.train = train[schema.names].reset_index(drop=True)
        return self

    def sample(self, num_rows: int, *, seed: int = 0) -> pd.DataFrame:
        """`num_rows` interpolated rows, split over strata in their training shares."""
        assert self.schema is not None and self.train is not None, "fit or load first"
        require_peer(self.name)
        rng = np.random.default_rng(seed)
        strata = self._strata(rng)
        features = [
            c for c in self.schema.names if not self._target_is_label() or c != self.schema.target
        ]
        encoded, decoders = _encode(to_peer_frame(self.train, self.schema)[features], self.schema)
        counts = _allocate(num_rows, strata.value_counts(sort=False))
        parts, labels, self.copied_rows = [], [], 0
        for label, n_new in counts.items():
            if n_new == 0:
                continue
            members = np.flatnonzero(strata.to_numpy() == label)
            if len(members) < 2:
                rows = encoded.iloc[rng.choice(members, size=n_new)].reset_index(drop=True)
                self.copied_rows += n_new
            else:
                rows = self._interpolate(encoded, strata, label, n_new, seed)
            parts.append(rows)
            labels += [None if label == _MISSING else label] * n_new
        out = _decode(pd.concat(parts, ignore_index=True), decoders)
        if self._target_is_label():
            out[self.schema.target] = pd.Series(labels, dtype=object)
        order = rng.permutation(len(out))
        self.last_attempts = num_rows
        return from_peer_frame(out.iloc[order].reset_index(drop=True), self.schema)

    def _target_is_label(self) -> bool:
        assert self.schema is not None
        return self.schema.target is not None and self.schema.task == "classification"

    def _strata(self, rng: np.random.Generator) -> pd.Series:
        """The label each training row is interpolated within (see the module docstring)."""
        assert self.schema is not None and self.train is not None
        target = self.schema.target
        if target is not None and self.schema.task == "classification":
            labels = to_peer_frame(self.train, self.schema)[target].fillna(_MISSING)
        elif target is not None and self.schema.task == "regression":
            values = pd.to_numeric(self.train[target], errors="coerce")
            ranks = values.rank(method="first", pct=True)
            labels = np.ceil(ranks * self.target_bins).fillna(0).astype(int).astype(str)
        else:
            labels = pd.Series(np.where(rng.random(len(self.train)) < 0.5, "a", "b"))
        labels = pd.Series(labels, dtype=object).reset_index(drop=True)
        if labels.nunique() < 2:  # imbalanced-learn needs two classes to resample one
            labels = pd.Series(np.where(np.arange(len(labels)) % 2 == 0, "a", "b"), dtype=object)
        return labels

    def _interpolate(
        self, encoded: pd.DataFrame, strata: pd.Series, label: str, n_new: int, seed: int
    ) -> pd.DataFrame:
        """`n_new` SMOTE rows of stratum `label` (imbalanced-learn appends them after X)."""
        from imblearn.over_sampling import SMOTE, SMOTEN, SMOTENC

        size = int((strata == label).sum())
        k = min(self.k_neighbors, size - 1)
        categorical = [i for i, c in enumerate(encoded.columns) if encoded[c].dtype == object]
        if not categorical:
            sampler = SMOTE(
                sampling_strategy={label: size + n_new}, k_neighbors=k, random_state=seed
            )
        elif len(categorical) == encoded.shape[1]:
            sampler = SMOTEN(
                sampling_strategy={label: size + n_new}, k_neighbors=k, random_state=seed
            )
        else:
            sampler = SMOTENC(
                categorical_features=categorical,
                sampling_strategy={label: size + n_new},
                k_neighbors=k,
                random_state=seed,
            )
        x_res, _ = sampler.fit_resample(encoded, strata.to_numpy())
        new = pd.DataFrame(x_res, columns=encoded.columns).iloc[len(encoded) :]
        assert len(new) == n_new, (len(new), n_new)
        return new.reset_index(drop=True)

    def save(self, directory: Path) -> None:
        assert self.schema is not None and self.train is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_table(self.train, directory / TRAIN_FILE, self.schema)
        params = {"k_neighbors": self.k_neighbors, "target_bins": self.target_bins}
        (directory / PARAMS_FILE).write_text(json.dumps(params), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> SmoteGenerator:
        params = json.loads((Path(directory) / PARAMS_FILE).read_text(encoding="utf-8"))
        model = cls(**params)
        model.train, model.schema = read_table(Path(directory) / TRAIN_FILE)
        return model

    def describe(self) -> dict[str, Any]:
        return {
            "stored_training_rows": 0 if self.train is None else len(self.train),
            "k_neighbors": self.k_neighbors,
            "copied_rows": self.copied_rows,
        }


def _allocate(total: int, sizes: pd.Series) -> dict[Any, int]:
    """Split `total` over strata in proportion to `sizes` (largest-remainder rounding)."""
    shares = sizes / sizes.sum() * total
    counts = np.floor(shares).astype(int)
    remainder = total - int(counts.sum())
    order = np.argsort(-(shares - counts).to_numpy(), kind="stable")
    counts.iloc[order[:remainder]] += 1
    return {label: int(n) for label, n in counts.items()}


def _encode(frame: pd.DataFrame, schema: TableSchema) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Numbers as float (gaps: median + indicator column), everything else as strings."""
    out: dict[str, pd.Series] = {}
    decoders: dict[str, Any] = {}
    for name in frame.columns:
        kind = schema.column(name).kind
        values = frame[name]
        if kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME):
            if kind is ColumnKind.DATETIME:
                as_ns = values.to_numpy("datetime64[ns]").astype("int64").astype("float64")
                numbers = pd.Series(as_ns, index=values.index).where(values.notna())
            else:
                numbers = values.astype("float64")
            missing = numbers.isna()
            fill = float(numbers.median()) if (~missing).any() else 0.0
            out[name] = numbers.fillna(fill)
            decoders[name] = kind.value
            if missing.any():
                out[name + _MISSING_FLAG] = pd.Series(np.where(missing, "1", "0"), dtype=object)
        else:
            out[name] = values.astype(object).where(values.notna(), _MISSING).astype(str)
            decoders[name] = "text"
    return pd.DataFrame(out), decoders


def _decode(frame: pd.DataFrame, decoders: dict[str, Any]) -> pd.DataFrame:
    """Undo `_encode`: indicator '1' -> gap, the missing category -> gap, datetimes back."""
    out: dict[str, pd.Series] = {}
    for name, kind in decoders.items():
        values = frame[name]
        if kind in ("numeric", "datetime"):
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            flag = name + _MISSING_FLAG
            if flag in frame:
                numbers = numbers.where(frame[flag].astype(str) != "1")
            out[name] = (
                pd.to_datetime(numbers.round().astype("Int64"), unit="ns")
                if kind == "datetime"
                else numbers
            )
        else:
            out[name] = values.astype(object).where(values.astype(str) != _MISSING, None)
    return pd.DataFrame(out)
