"""A pipeline run's fitted table generator as an MLflow model (pyfunc): synthetic rows on demand.

Logged under the name `generator` of the pipeline's MLflow run when a run of a table
generator (`synthloom.methods.GENERATORS`: marginals, tabsyn and the peers) completes, so

    model = mlflow.pyfunc.load_model(f"runs:/{mlflow_run_id}/generator")
    rows = model.predict(pd.DataFrame({"num_rows": [500], "seed": [0]}))

and `mlflow models serve -m runs:/<id>/generator --env-manager local` give synthetic rows.

Contract of `predict(model_input)`: a DataFrame (or a dict of columns) where each row is one
request: `num_rows` (required, > 0), `seed` (optional, default 0) and `conditions` (optional,
a JSON object or dict of exact counts per value of one categorical column, e.g.
{"Status": {"good": 600, "bad": 400}}, for `CONDITIONAL_METHODS` only). The output is the
requests' rows in request order, with the seed table's columns: the same rows as the
pipeline's generate stage draws before its filter (`synthloom.api.FittedGenerator.sample`
with that seed), so filtering is the caller's, as for `synthloom.fit(...).sample(n)`.

The model's files are the fit stage's `fit/model/` directory (an MLflow artifact) and a
`generator.json` naming the method; the model is logged from code (MLflow's models-from-code:
tracking/generator_model_code.py, no pickle), so loading needs synthloom installed in the
Python that loads it (hence `--env-manager local`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from synthloom.artifacts import read_manifest
from synthloom.errors import ConfigError
from synthloom.methods import GENERATORS

MODEL_NAME = "generator"  # the logged model's name (artifact path) in the pipeline's run
LOGGED_TAG = "synthloom.generator_model"  # the run's tag: the logged model's URI
REQUEST_COLUMNS = ("num_rows", "seed", "conditions")


def requests_of(model_input: Any) -> list[dict[str, Any]]:
    """`model_input` as a list of {num_rows, seed, conditions} requests (ConfigError naming
    the column and the fix for anything else)."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    unknown = [c for c in frame.columns if c not in REQUEST_COLUMNS]
    if "num_rows" not in frame.columns or unknown:
        raise ConfigError(
            "generator model input: expected columns num_rows (required), seed and conditions "
            f"(optional); got {list(frame.columns)}. Fix: pass e.g. "
            'pd.DataFrame({"num_rows": [500], "seed": [0]}).'
        )
    if frame.empty:
        raise ConfigError(
            "generator model input has no rows. Fix: one row per request, e.g. "
            'pd.DataFrame({"num_rows": [500]}).'
        )
    requests = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        seed = row.get("seed")
        conditions = row.get("conditions")
        if isinstance(conditions, str):
            try:
                conditions = json.loads(conditions)
            except json.JSONDecodeError as err:
                raise ConfigError(
                    f"generator model input row {i}: conditions is not JSON ({err.msg}). Fix: "
                    'pass e.g. {"Status": {"good": 60, "bad": 40}} or leave it out.'
                ) from None
        elif conditions is not None and not isinstance(conditions, dict) and pd.isna(conditions):
            conditions = None
        requests.append(
            {
                "n": _whole(row["num_rows"], "num_rows", i, minimum=1),
                "seed": 0 if seed is None or pd.isna(seed) else _whole(seed, "seed", i),
                "conditions": conditions or None,
            }
        )
    return requests


def _whole(value: Any, column: str, row: int, minimum: int = 0) -> int:
    """`value` as a whole number >= minimum, else a ConfigError naming the row and column."""
    try:
        number = float(value)
        ok = not isinstance(value, bool) and number.is_integer() and number >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"generator model input row {row}: {column} must be a whole number >= {minimum}, "
            f"got {value!r}. Fix: pass e.g. {column}=500."
        )
    return int(number)


class GeneratorModel(PythonModel):
    """The pyfunc: `load_context` loads the fitted generator, `predict` samples (module
    docstring). Logged from code (tracking/generator_model_code.py), not pickled."""

    def load_context(self, context):  # noqa: ANN001, ANN201 (MLflow reads untyped hooks)
        from synthloom.api import FittedGenerator
        from synthloom.methods import generator_class

        directory = Path(context.artifacts["generator"])
        meta = json.loads((directory / "generator.json").read_text(encoding="utf-8"))
        generator = generator_class(meta["method"]).load(directory / "model")
        self.fitted = FittedGenerator(meta["method"], generator, generator.schema)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ANN001
        parts = [
            self.fitted.sample(r["n"], seed=r["seed"], conditions=r["conditions"])
            for r in requests_of(model_input)
        ]
        return pd.concat(parts, ignore_index=True)


MODEL_STAGES = ("fit", "train_diffusion")  # the stage that saves a table generator's model


def fit_model_dir(summary: dict[str, Any], method: str) -> Path | None:
    """The fitted model directory (fit/model, TabSyn's train_diffusion/model) of a run of
    table generator `method`, else None."""
    stages = summary.get("stages", [])
    fit = next((s for s in stages if s["name"] in MODEL_STAGES), None)
    manifest = read_manifest(Path(fit.get("dir") or "")) if fit else None
    entry = (manifest or {}).get("files", {}).get("model")
    if method not in GENERATORS or not entry or not Path(entry["path"]).is_dir():
        return None
    return Path(entry["path"])


def log_generator_model(mlflow: Any, summary: dict[str, Any], method: str) -> str | None:
    """Log the run's fitted generator as the pyfunc `generator` of the active MLflow run (once:
    a resumed run that has the tag keeps its model); returns the model URI, or None when the
    run has no fitted table generator."""
    model_dir = fit_model_dir(summary, method)
    if model_dir is None:
        return None
    run = mlflow.get_run(mlflow.active_run().info.run_id)
    if LOGGED_TAG in run.data.tags:
        return run.data.tags[LOGGED_TAG]
    from importlib.metadata import version

    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec("long", "num_rows"),
                ColSpec("long", "seed", required=False),
                ColSpec("string", "conditions", required=False),
            ]
        )
    )
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # MLflow's UserWarnings here are advice for hand-written models (type hints, input
        # examples), not the user's business
        warnings.simplefilter("ignore", UserWarning)
        bundle = Path(tmp) / "generator"
        shutil.copytree(model_dir, bundle / "model")
        (bundle / "generator.json").write_text(json.dumps({"method": method}), encoding="utf-8")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(__file__).with_name("generator_model_code.py")),
            artifacts={"generator": str(bundle)},
            signature=signature,
            # no inference of requirements (it would load the model in a subprocess): the
            # model runs in the Python that has synthloom, `--env-manager local`
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"torch=={version('torch').split('+')[0]}",
                f"pandas=={pd.__version__}",
            ],
        )
    uri = f"runs:/{run.info.run_id}/{MODEL_NAME}"
    mlflow.set_tag(LOGGED_TAG, uri)
    mlflow.set_tag(f"{LOGGED_TAG}.logged_model", info.model_uri)
    return uri
