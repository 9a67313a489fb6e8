"""The Python API: `synthloom.fit` / `.sample` on a frame, `synthloom.load_run`, and
`synthloom.run` end to end (a real marginals pipeline in a child process); the same errors
as the CLI; `import synthloom` loads no Prefect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

import synthloom
from synthloom.api import FRAME_SOURCE
from synthloom.config import load_config
from synthloom.errors import ConfigError, DataError
from synthloom.ingest.inference import prepare_seed_table
from synthloom.ingest.sources import load_source

REPO = Path(__file__).resolve().parent.parent
TINY_TABSYN = {
    "vae_epochs": 20,
    "diffusion_steps": 20,
    "diffusion_hidden": 32,
    "sampler_steps": 4,
    "ffn_factor": 4,
}


def test_import_synthloom_loads_no_orchestration():
    """The core and its API import no Prefect, MLflow, tasks or flows (only reading the
    attribute `synthloom.run` does)."""
    code = (
        "import sys, synthloom, synthloom.api, synthloom.config\n"
        "synthloom.fit, synthloom.load_run, synthloom.Run\n"
        "print([m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'mlflow', 'flows', 'tasks')])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    assert {"fit", "load_run", "run", "Run"} <= set(dir(synthloom))
    with pytest.raises(AttributeError):
        synthloom.no_such_name  # noqa: B018


def test_fit_then_sample_tabsyn_on_a_frame(mixed_table: pd.DataFrame):
    gen = synthloom.fit(mixed_table, method="tabsyn", target="status", **TINY_TABSYN)
    rows = gen.sample(60, seed=0)
    assert isinstance(rows, pd.DataFrame) and len(rows) == 60
    assert list(rows.columns) == list(mixed_table.columns)
    assert set(rows["home"].dropna()) <= {"rent", "owner", "parents"}
    assert set(rows["status"]) <= {"good", "bad"}
    pd.testing.assert_frame_equal(rows, gen.sample(60, seed=0))  # seeded
    assert gen.schema.target == "status" and gen.method == "tabsyn"
    conditioned = gen.sample(20, seed=1, conditions={"status": {"good": 5, "bad": 15}})
    assert conditioned["status"].value_counts().to_dict() == {"bad": 15, "good": 5}


def test_fit_marginals_refuses_conditions(mixed_table: pd.DataFrame):
    gen = synthloom.fit(mixed_table, method="marginals", target="status")
    assert len(gen.sample(10)) == 10
    with pytest.raises(ConfigError, match="cannot generate under conditions"):
        gen.sample(10, conditions={"status": {"good": 10}})


def test_a_bad_method_key_gets_the_clis_error(mixed_table: pd.DataFrame, tmp_path: Path):
    with pytest.raises(ConfigError) as api_error:
        synthloom.fit(mixed_table, method="tabsyn", target="status", vae_epoch=20)
    config = {
        "data": {"source": "seed.csv", "target": "status"},
        "method": {"name": "tabsyn", "vae_epoch": 20},
        "generate": {"num_rows": 10},
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as cli_error:
        load_config(tmp_path / "bad.yaml")

    def problem(err: pytest.ExceptionInfo) -> str:  # the text after the origin
        return str(err.value).split(": ", 1)[1]

    assert "unknown key `method.vae_epoch`. Did you mean `vae_epochs`?" in problem(api_error)
    assert problem(api_error) == problem(cli_error)
    with pytest.raises(ConfigError, match="unknown method 'tabsin'. Did you mean `tabsyn`"):
        synthloom.fit(mixed_table, method="tabsin")
    with pytest.raises(ConfigError, match="runs as a pipeline"):
        synthloom.fit(mixed_table, method="difflm")


def test_a_bad_frame_gets_the_ingest_stages_error(mixed_table: pd.DataFrame, tmp_path: Path):
    """The same DataError text as a bad file, with the frame named where the path was."""
    csv = tmp_path / "seed.csv"
    mixed_table.to_csv(csv, index=False)
    with pytest.raises(DataError) as from_file:
        prepare_seed_table(load_source(str(csv)), source=str(csv), target="no_such_column")
    with pytest.raises(DataError) as from_frame:
        synthloom.fit(mixed_table, method="tabsyn", target="no_such_column", **TINY_TABSYN)
    assert "no_such_column" in str(from_frame.value) and "Fix:" in str(from_frame.value)
    assert str(from_frame.value) == str(from_file.value).replace(str(csv), FRAME_SOURCE)
    with pytest.raises(DataError, match="no rows"):
        synthloom.fit(mixed_table.iloc[:0], method="marginals")
    with pytest.raises(DataError, match="expected a pandas DataFrame, got list"):
        synthloom.fit([[1, 2]], method="marginals")


# ----------------------------------------------------- synthloom.run and load_run


def _seed_table(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    income = rng.normal(50, 15, n).round(1)
    return pd.DataFrame(
        {
            "income": income,
            "home": rng.choice(["rent", "owner", "parents"], n).astype(object),
            "status": np.where(income + rng.normal(0, 5, n) > 50, "good", "bad").astype(object),
        }
    )


def _config(root: Path, table: pd.DataFrame, **data: object) -> dict:
    table.to_csv(root / "seed.csv", index=False)
    return {
        "data": {"source": str(root / "seed.csv"), "target": "status", **data},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 200, "batch_size": 64},
        "evaluate": {"metrics": ["quality"], "mle_seeds": [0], "plots": False},
        "tracking": {"experiment": "api"},
        "run": {"seed": 0, "name": "api_marginals"},
    }


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> tuple[Path, dict, synthloom.Run]:
    """(data dir, config, Run) of one real `synthloom.run` of a tiny marginals pipeline.
    Also asserts the call left no process behind: only processes it started count, since a
    test that ran a flow in this process before keeps Prefect's shared temporary server."""
    root = tmp_path_factory.mktemp("api")
    config = _config(root, _seed_table())
    before = _descendants()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PREFECT_HOME")  # the child uses <data_dir>/prefect, as a user's would
        run = synthloom.run(config, overrides={"generate.num_rows": 150}, data_dir=root / "data")
    assert _descendants() - before == set()  # nothing left running
    return root / "data", config, run


@pytest.mark.integration
def test_run_end_to_end_returns_the_finished_run(api_run):
    data_dir, _, run = api_run
    assert run.status == "completed" and run.run_id.startswith("api_marginals-")
    assert run.run_dir == data_dir / "runs" / run.run_id
    assert [s["cached"] for s in run.summary["stages"]] == [False] * 5
    assert run.config["generate"]["num_rows"] == 150
    rows = run.synthetic
    kept = pd.read_parquet(run.run_dir / "filter" / "synthetic.parquet")
    pd.testing.assert_frame_equal(rows, kept)
    assert 0 < len(rows) <= 150 and "status" in rows.columns
    assert run.metrics["column_shape_error_pct"] >= 0
    assert run.mlflow_run_id  # tracked as the CLI tracks


@pytest.mark.integration
def test_load_run_reads_the_stored_run(api_run):
    data_dir, _, run = api_run
    loaded = synthloom.load_run(run.run_id, data_dir=data_dir)
    assert loaded.summary == json.loads((run.run_dir / "summary.json").read_text())
    assert loaded.config == json.loads((run.run_dir / "config.json").read_text())
    assert loaded.metrics == loaded.summary["metrics"] and loaded.metrics
    pd.testing.assert_frame_equal(loaded.synthetic, run.synthetic)
    with pytest.raises(ConfigError, match=f"Cannot load 'nope'.*{run.run_id}"):
        synthloom.load_run("nope", data_dir=data_dir)


@pytest.mark.integration
def test_run_again_reuses_every_stage_and_errors_like_the_cli(api_run, monkeypatch, capsys):
    data_dir, config, first = api_run
    monkeypatch.delenv("PREFECT_HOME")
    again = synthloom.run(config, overrides={"generate.num_rows": 150}, data_dir=data_dir)
    assert again.run_id == first.run_id
    assert [s["cached"] for s in again.summary["stages"]] == [True] * 5
    assert "cached" in capsys.readouterr().out  # the CLI's stage table, echoed
    with pytest.raises(ConfigError, match="Did you mean `num_rows`"):
        synthloom.run(config, overrides={"generate.num_row": 5}, data_dir=data_dir)
    bad = {**config, "data": {**config["data"], "target": "no_such_column"}}
    with pytest.raises(DataError) as failed:
        synthloom.run(bad, data_dir=data_dir, echo=False)
    assert "in stage 'ingest'" in str(failed.value) and "no_such_column" in str(failed.value)
    assert "Fix:" in str(failed.value)


@pytest.mark.integration
def test_an_interrupt_cancels_the_run_and_leaves_nothing_running(tmp_path: Path):
    """Ctrl-C in the caller (a notebook's interrupt): the child records the run cancelled,
    `synthloom.run` re-raises KeyboardInterrupt, and no process of the run is left."""
    config = _config(tmp_path, _seed_table())
    config["generate"] = {"num_rows": 3_000_000, "batch_size": 500}  # a long generate stage
    config["data"]["max_rows"] = 200
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = (
        "import json, sys, synthloom\n"
        "config = json.load(open(sys.argv[1]))\n"
        "try:\n"
        "    synthloom.run(config, data_dir=sys.argv[2], echo=False)\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt raised', flush=True)\n"
    )
    env = dict(os.environ)
    env.pop("PREFECT_HOME", None)
    caller = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "config.json"), str(tmp_path / "data")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    summary: dict = {}
    while time.monotonic() < deadline:
        paths = list((tmp_path / "data" / "runs").glob("*/summary.json"))
        if paths:
            try:
                summary = json.loads(paths[0].read_text())
            except json.JSONDecodeError:
                summary = {}
            if any(
                s["name"] == "generate" and s["status"] == "running"
                for s in summary.get("stages", [])
            ):
                break
        time.sleep(0.5)
    else:
        caller.kill()
        pytest.fail(f"generate never started: {summary}")
    descendants = psutil.Process(caller.pid).children(recursive=True)
    assert descendants  # the run's child process (and Prefect's server)
    caller.send_signal(signal.SIGINT)
    out = caller.communicate(timeout=60)[0]
    assert "KeyboardInterrupt raised" in out
    assert json.loads(paths[0].read_text())["status"] == "cancelled"
    time.sleep(1)
    assert [p.pid for p in descendants if p.is_running() and p.status() != "zombie"] == []
