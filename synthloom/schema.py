"""Table schema: the kind of every column, the target, and the task it implies.

The schema is inferred once at ingestion (`synthloom.ingest.infer_schema`), stored
beside the data (schema.json and Parquet metadata) and read by every later stage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Literal


class ColumnKind(str, Enum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    TEXT = "text"


TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class ColumnSchema:
    """One column. `categories` is set for categorical and boolean columns (as strings for
    categorical, ["False", "True"] for boolean); `minimum`/`maximum` for numeric and datetime
    (datetimes as epoch seconds); `integer` marks numeric columns whose values are whole."""

    name: str
    kind: ColumnKind
    nullable: bool = False
    integer: bool = False
    categories: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["categories"] = list(self.categories) if self.categories is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnSchema:
        cats = d.get("categories")
        return cls(
            name=d["name"],
            kind=ColumnKind(d["kind"]),
            nullable=bool(d.get("nullable", False)),
            integer=bool(d.get("integer", False)),
            categories=tuple(cats) if cats is not None else None,
            minimum=d.get("minimum"),
            maximum=d.get("maximum"),
        )


@dataclass(frozen=True)
class TableSchema:
    """All columns in order, the target column (or None) and the prediction task it implies."""

    columns: tuple[ColumnSchema, ...]
    target: str | None = None
    task: TaskKind | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def names_of(self, *kinds: ColumnKind) -> list[str]:
        return [c.name for c in self.columns if c.kind in kinds]

    @property
    def features(self) -> list[str]:
        """Every column except the target."""
        return [c.name for c in self.columns if c.name != self.target]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "target": self.target,
            "task": self.task,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        return cls(
            columns=tuple(ColumnSchema.from_dict(c) for c in d["columns"]),
            target=d.get("target"),
            task=d.get("task"),
            extra=dict(d.get("extra") or {}),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> TableSchema:
        return cls.from_dict(json.loads(text))

    def sdmetrics_metadata(self) -> dict[str, Any]:
        """Single-table metadata in the dict form sdmetrics reports accept.

        Free-text columns are left out (sdmetrics has no text sdtype): drop them from the
        frames too, e.g. with `frame[schema.sdmetrics_columns]`."""
        sdtype = {
            ColumnKind.NUMERIC: "numerical",
            ColumnKind.CATEGORICAL: "categorical",
            ColumnKind.BOOLEAN: "boolean",
            ColumnKind.DATETIME: "datetime",
        }
        return {
            "columns": {
                c.name: {"sdtype": sdtype[c.kind]}
                for c in self.columns
                if c.kind is not ColumnKind.TEXT
            }
        }

    @property
    def sdmetrics_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind is not ColumnKind.TEXT]
