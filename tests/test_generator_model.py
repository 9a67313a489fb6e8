"""The fitted table generator as an MLflow pyfunc (tracking/generator_model.py): logged with
the pipeline's MLflow run, loaded back in a fresh process, rows equal to the generator's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from synthloom.errors import ConfigError
from tracking.generator_model import LOGGED_TAG, MODEL_NAME, fit_model_dir, requests_of

REPO = Path(__file__).resolve().parent.parent


def test_requests_read_rows_seeds_and_conditions() -> None:
    frame = pd.DataFrame(
        {"num_rows": [5, 3], "seed": [None, 7], "conditions": [None, '{"s": {"a": 2, "b": 1}}']}
    )
    assert requests_of(frame) == [
        {"n": 5, "seed": 0, "conditions": None},
        {"n": 3, "seed": 7, "conditions": {"s": {"a": 2, "b": 1}}},
    ]
    assert requests_of({"num_rows": [2]}) == [{"n": 2, "seed": 0, "conditions": None}]


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (pd.DataFrame({"rows": [5]}), "expected columns num_rows"),
        (pd.DataFrame({"num_rows": [5], "temperature": [1.0]}), "expected columns num_rows"),
        (pd.DataFrame({"num_rows": [0]}), "num_rows must be a whole number >= 1"),
        (pd.DataFrame({"num_rows": [2.5]}), "num_rows must be a whole number >= 1"),
        (pd.DataFrame({"num_rows": [True]}), "num_rows must be a whole number >= 1"),
        (pd.DataFrame({"num_rows": ["many"]}), "num_rows must be a whole number >= 1"),
        (pd.DataFrame({"num_rows": [None]}), "num_rows must be a whole number >= 1"),
        (pd.DataFrame({"num_rows": [5], "seed": [-1]}), "seed must be a whole number >= 0"),
        (pd.DataFrame({"num_rows": [5], "seed": ["x"]}), "seed must be a whole number >= 0"),
        (pd.DataFrame({"num_rows": []}), "has no rows"),
        (pd.DataFrame({"num_rows": [5], "conditions": ["{bad"]}), "conditions is not JSON"),
    ],
)
def test_bad_requests_say_what_to_pass(frame: pd.DataFrame, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        requests_of(frame)
    assert "Fix:" in str(err.value)


def test_only_runs_of_a_table_generator_have_a_model(tmp_path: Path) -> None:
    fit_dir = tmp_path / "fit"
    (fit_dir / "model").mkdir(parents=True)
    manifest = {"files": {"model": {"path": str(fit_dir / "model")}}}
    (fit_dir / "manifest.json").write_text(json.dumps(manifest))
    summary = {"stages": [{"name": "fit", "dir": str(fit_dir)}]}
    assert fit_model_dir(summary, "marginals") == fit_dir / "model"
    assert fit_model_dir(summary, "fewgen") is None  # text: no table generator
    assert fit_model_dir(summary, "difflm") is None  # its own stages, no single model
    assert fit_model_dir({"stages": []}, "marginals") is None


@pytest.mark.integration
def test_a_run_logs_its_generator_and_a_fresh_process_samples_from_it(
    tmp_path: Path, mixed_table: pd.DataFrame
) -> None:
    from cli.main import main

    csv = tmp_path / "seed.csv"
    mixed_table.to_csv(csv, index=False)
    data_dir = tmp_path / "data"
    config = {
        "data": {"source": str(csv), "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 50},
        "evaluate": {"metrics": ["quality"], "plots": False},
        "run": {"seed": 0, "data_dir": str(data_dir)},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--run-id", "logged"]) == 0
    summary = json.loads((data_dir / "runs" / "logged" / "summary.json").read_text())
    uri = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
    model_uri = f"runs:/{summary['mlflow_run_id']}/{MODEL_NAME}"

    script = (
        "import sys, mlflow, pandas as pd\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "model = mlflow.pyfunc.load_model(sys.argv[2])\n"
        "out = model.predict(pd.DataFrame({'num_rows': [20, 10], 'seed': [3, 4]}))\n"
        "out.to_parquet(sys.argv[3])\n"
    )
    out_path = tmp_path / "rows.parquet"
    done = subprocess.run(
        [sys.executable, "-c", script, uri, model_uri, str(out_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_parquet(out_path)

    # the same rows as the fit stage's saved generator draws with those seeds
    from synthloom.methods import generator_class

    generator = generator_class("marginals").load(data_dir / "runs" / "logged" / "fit" / "model")
    expected = pd.concat(
        [generator.sample(20, seed=3), generator.sample(10, seed=4)], ignore_index=True
    )
    assert len(rows) == 30
    assert list(rows.columns) == list(mixed_table.columns)
    pd.testing.assert_frame_equal(rows, expected)

    from mlflow.tracking import MlflowClient

    tags = MlflowClient(tracking_uri=uri).get_run(summary["mlflow_run_id"]).data.tags
    assert tags[LOGGED_TAG] == model_uri
