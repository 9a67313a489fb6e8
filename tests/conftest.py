"""Test environment: Prefect and MLflow state go to a temporary directory, never ./data.

Prefect reads its settings when first imported, so they are set here, at collection time.
The directory (about 0.5 GB: it holds a converted copy of the decoder) is removed when the
test process exits; set SYNTHLOOM_KEEP_TEST_HOME=1 to keep it for a post-mortem.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="synthloom-tests-"))


def _remove_session_home() -> None:
    """Registered before Prefect or MLflow load, so it runs after their exit handlers
    (atexit runs last-registered first) have stopped what writes into the directory."""
    if not os.environ.get("SYNTHLOOM_KEEP_TEST_HOME"):
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


atexit.register(_remove_session_home)
os.environ["SYNTHLOOM_DATA_DIR"] = str(_SESSION_HOME / "data")
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("PREFECT_API_URL", None)
# One converted copy of the real decoder for every test that uses it.
os.environ["SYNTHLOOM_MODEL_CACHE"] = str(_SESSION_HOME / "models")
# Under pytest-xdist (`make test` runs 2 workers), the cores are split between the workers:
# torch's default of one thread per core in every worker (and in the runs they start as
# subprocesses, which inherit this) would oversubscribe the machine. Set before torch loads.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def one_thread():
    """torch on one thread for the test, the previous count restored after: results that
    compare two trainings bit for bit must not depend on the machine's thread count. Use
    with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_leaked_torch_modes(request):
    """A test should leave torch's global modes as it found them: an autocast or no-grad
    context left open (e.g. by an unfinished generator) silently changes every later test
    (a leaked bf16 autocast is the likely cause of a fine-tuning test failing far away).
    Warns with the test's id, and restores the modes so later tests run as written."""
    import torch

    yield
    leaked = []
    if torch.is_autocast_enabled("cpu"):
        leaked.append("CPU autocast")
        torch.set_autocast_enabled("cpu", False)
    if not torch.is_grad_enabled():
        leaked.append("no-grad mode")
        torch.set_grad_enabled(True)
    if leaked:
        warnings.warn(f"{request.node.nodeid} leaked {' and '.join(leaked)}", stacklevel=1)


@pytest.fixture
def mixed_table() -> pd.DataFrame:
    """A small table with every column kind, missing values and a learnable binary target."""
    rng = np.random.default_rng(0)
    n = 300
    income = rng.normal(50, 15, n).round(1)
    age = rng.integers(18, 80, n).astype(float)
    home = rng.choice(["rent", "owner", "parents"], n, p=[0.5, 0.3, 0.2]).astype(object)
    status = np.where(income + rng.normal(0, 5, n) > 50, "good", "bad").astype(object)
    frame = pd.DataFrame(
        {
            "income": income,
            "age": age,
            "home": home,
            "married": pd.array(rng.random(n) < 0.4, dtype="boolean"),
            "status": status,
        }
    )
    frame.loc[::17, "income"] = np.nan
    return frame


@pytest.fixture
def mixed_schema(mixed_table: pd.DataFrame):
    from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

    income = mixed_table["income"]
    return TableSchema(
        columns=(
            ColumnSchema(
                "income",
                ColumnKind.NUMERIC,
                nullable=True,
                minimum=float(income.min()),
                maximum=float(income.max()),
            ),
            ColumnSchema("age", ColumnKind.NUMERIC, integer=True, minimum=18.0, maximum=79.0),
            ColumnSchema("home", ColumnKind.CATEGORICAL, categories=("owner", "parents", "rent")),
            ColumnSchema("married", ColumnKind.BOOLEAN, categories=("False", "True")),
            ColumnSchema("status", ColumnKind.CATEGORICAL, categories=("bad", "good")),
        ),
        target="status",
        task="classification",
    )


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ARG001
    """Prefect stops its ephemeral server at exit and logs to a stream pytest has closed."""
    import logging

    logging.raiseExceptions = False


@pytest.fixture
def mlflow_dataset_inputs():
    """`read(data_dir, mlflow_run_id)` -> {context: (source path, rows in its profile)} of
    an MLflow run's dataset inputs; a context logged twice fails the test."""
    import json

    from mlflow.tracking import MlflowClient

    from tracking.client import default_tracking_uri

    def read(data_dir: Path, mlflow_run_id: str) -> dict[str, tuple[str, int]]:
        run = MlflowClient(default_tracking_uri(data_dir)).get_run(mlflow_run_id)
        found: dict[str, tuple[str, int]] = {}
        for item in run.inputs.dataset_inputs:
            context = next(t.value for t in item.tags if t.key == "mlflow.data.context")
            assert context not in found, f"{context} logged twice"
            source = json.loads(item.dataset.source)
            rows = json.loads(item.dataset.profile)["num_rows"]
            found[context] = (source.get("uri", source.get("path")), rows)
        return found

    return read
