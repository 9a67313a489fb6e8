"""The contract every tabular generator meets: fit on train rows, sample rows, save, load.

Generators never touch files other than the directory they are given in `save`/`load`;
the pipeline stage decides where that is. `sample` returns a frame with the schema's
columns in order (values may still be invalid: the filter stage removes those) and
reports how many rows it attempted in `last_attempts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import pandas as pd

from synthloom.schema import TableSchema


@runtime_checkable
class TabularGenerator(Protocol):
    name: ClassVar[str]
    schema: TableSchema

    def fit(self, train: pd.DataFrame, schema: TableSchema, *, seed: int) -> TabularGenerator: ...

    def sample(self, num_rows: int, *, seed: int) -> pd.DataFrame: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> TabularGenerator: ...

    def describe(self) -> dict[str, Any]:
        """Small facts for tracking (parameter count, columns modelled, ...)."""
        ...
