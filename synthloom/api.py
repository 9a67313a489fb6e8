"""The Python API of the core: `fit` a table generator on a DataFrame, `load_run` a stored run.

`fit(df, method="tabsyn", target="Status", **method_keys)` types the frame and infers its
schema with the ingest stage's own functions (so a bad frame gets the ingest stage's
DataError), validates `method_keys` with the pipeline's pydantic config (so a bad key gets
the CLI's ConfigError), and fits the generator; `.sample(n)` returns a DataFrame.
`load_run(run_id)` reads `<data_dir>/runs/<run_id>/` into a `Run`. Plain Python and torch:
`synthloom.run(config)`, which needs Prefect, lives in flows/api.py (see synthloom/__init__).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthloom.config import validate_config
from synthloom.errors import ConfigError, data_error
from synthloom.export import kept_table, load_finished_run
from synthloom.methods.registry import CONDITIONAL_METHODS
from synthloom.runs import resolve_data_dir, stored_run
from synthloom.schema import TableSchema

FRAME_SOURCE = "the DataFrame given to synthloom.fit"  # where a DataError says the data was


@dataclass(frozen=True)
class FittedGenerator:
    """A generator fitted by `fit`: `.sample(n)` draws rows with the seed frame's columns."""

    method: str
    generator: Any  # the method's TabularGenerator (synthloom.methods)
    schema: TableSchema

    def sample(
        self,
        n: int,
        seed: int = 0,
        conditions: Mapping[str, Mapping[Any, int]] | None = None,
    ) -> pd.DataFrame:
        """`n` rows as the pipeline's generate stage makes them (before its filter stage).
        `conditions`: exact counts per value of one categorical column, e.g.
        {"Status": {"good": 600, "bad": 400}} (methods in CONDITIONAL_METHODS only)."""
        if n <= 0:
            raise ConfigError(f"sample(n): n must be a positive row count, got {n}.")
        if conditions:
            if self.method not in CONDITIONAL_METHODS:
                raise ConfigError(
                    f"sample(conditions=...): method {self.method} cannot generate under "
                    f"conditions. Fix: leave conditions out, or fit one of "
                    f"{', '.join(CONDITIONAL_METHODS)}."
                )
            counts = {col: dict(c) for col, c in conditions.items()}
            return self.generator.sample(n, seed=seed, conditions=counts)
        return self.generator.sample(n, seed=seed)

    def save(self, directory: str | Path) -> None:
        """Persist the fitted generator as the fit stage does (`<run>/fit/model/`)."""
        self.generator.save(Path(directory))


def fit(
    df: pd.DataFrame,
    method: str = "tabsyn",
    target: str | None = None,
    *,
    seed: int = 0,
    drop_columns: Sequence[str] = (),
    column_types: Mapping[str, str] | None = None,
    max_categories: int | None = None,
    max_rows: int | None = None,
    **method_keys: Any,
) -> FittedGenerator:
    """Fit the table generator `method` on all rows of `df` (no split, no files, no Prefect).

    `target` and the keyword arguments before `**method_keys` mean what the `data:` keys of
    the same names mean; `method_keys` are the keys of `method:` (docs/config_reference.md),
    e.g. `fit(df, "tabsyn", "Status", vae_epochs=200)`. Raises ConfigError for a bad key or
    value and DataError for a frame the pipeline would refuse."""
    from synthloom.ingest.inference import prepare_seed_table
    from synthloom.methods import GENERATORS, build_generator
    from synthloom.models.device import set_seed

    data = {
        "source": FRAME_SOURCE,
        "target": target,
        "drop_columns": list(drop_columns),
        "column_types": dict(column_types or {}),
        "max_categories": max_categories,
        "max_rows": max_rows,
    }
    shown = ", ".join(f"{k}={v!r}" for k, v in method_keys.items())
    origin = f"synthloom.fit(method={method!r}{', ' + shown if shown else ''})"
    config = validate_config(
        {
            "data": data,
            "method": {"name": method, **method_keys},
            "generate": {"num_rows": 1},
            "run": {"seed": seed},
        },
        origin,
    )
    if method not in GENERATORS:
        raise ConfigError(
            f"Config error in {origin}: fit() fits the table generators "
            f"({', '.join(GENERATORS)}); {method} runs as a pipeline. Fix: pick one of those, "
            "or run it with synthloom.run(config)."
        )
    if not isinstance(df, pd.DataFrame):
        raise data_error(
            FRAME_SOURCE,
            f"expected a pandas DataFrame, got {type(df).__name__}.",
            "pass a pd.DataFrame, e.g. pd.read_csv(path).",
        )
    table, schema = prepare_seed_table(
        df,
        source=FRAME_SOURCE,
        target=config.data.target,
        drop_columns=config.data.drop_columns,
        column_types=config.data.column_types,
        max_categories=config.data.max_categories,
        max_rows=config.data.max_rows,
        seed=seed,
    )
    method_config = config.method.model_dump(mode="json")
    set_seed(seed)
    generator = build_generator(method_config)
    generator.fit(table, schema, seed=seed)
    return FittedGenerator(method, generator, schema)


@dataclass(frozen=True)
class Run:
    """A stored pipeline run: what summary.json, config.json and the filter stage hold."""

    run_id: str
    run_dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.summary.get("status"))

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's metrics, as summary.json and MLflow hold them."""
        return dict(self.summary.get("metrics") or {})

    @property
    def mlflow_run_id(self) -> str | None:
        return self.summary.get("mlflow_run_id")

    @property
    def synthetic(self) -> pd.DataFrame:
        """The kept synthetic rows (text runs: text and label), as `synthloom export` writes
        them; a ConfigError saying how to finish the run when it has none."""
        return kept_table(load_finished_run(self.run_id, self.run_dir.parent.parent)).to_pandas()


def load_run(run_id: str, data_dir: str | Path | None = None) -> Run:
    """The run `run_id` under `data_dir` (default: $SYNTHLOOM_DATA_DIR or ./data); a
    ConfigError listing the stored runs when there is no such run."""
    run_dir, config = stored_run(
        run_id, resolve_data_dir(str(data_dir) if data_dir else None), "load"
    )
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return Run(run_id, run_dir, summary, config)


__all__ = ["FittedGenerator", "Run", "fit", "load_run"]
