"""Prefect artifacts on the flow-run page: a real marginals run publishes its overview,
stage, count and metric tables on its own flow run, read back with the Prefect client; a
failed run's overview names the failed stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli.main import main
from flows.execute import print_summary
from flows.run_artifacts import (
    ARTIFACTS,
    artifact_key,
    count_rows,
    metric_rows,
    overview_markdown,
    stage_rows,
)


def test_artifact_keys_are_valid_prefect_keys():
    assert artifact_key("marginals_credit-787d2eff83", "stages") == (
        "marginals-credit-787d2eff83-stages"
    )
    assert artifact_key("My.Run", "metrics") == "my-run-metrics"


def test_tables_from_a_summary():
    summary = {
        "run_id": "r-1",
        "status": "completed",
        "stages": [
            {"name": "ingest", "status": "completed", "cached": True, "seconds": 0.1,
             "rows_in": 10, "rows_out": 10, "counts": {}},
            {"name": "filter", "status": "completed", "cached": False, "seconds": 0.2,
             "rows_in": 8, "rows_out": 7, "counts": {"removed_duplicates": 1}},
        ],
        "metrics": {"zeta": 1.0, "mle_auc_mean": 0.7, "column_shape_error_pct": 2.0,
                    "c2st": float("nan")},
        "mlflow_run_id": "abc123",
    }  # fmt: skip
    assert [r["stage"] for r in stage_rows(summary)] == ["ingest", "filter"]
    assert stage_rows(summary)[1]["rows_out"] == 7
    assert count_rows(summary) == [{"stage": "filter", "count": "removed_duplicates", "value": 1}]
    names = [r["metric"] for r in metric_rows(summary)]
    assert names == ["column_shape_error_pct", "mle_auc_mean", "c2st", "zeta"]  # key ones first
    assert metric_rows(summary)[2]["value"] == "nan"
    text = overview_markdown(summary)
    assert "completed" in text and "abc123" in text and "| rows kept | 7 |" in text


def _artifacts(run_id: str) -> dict[str, object]:
    """key -> the latest artifact of that key of run `run_id` (read back from the API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = [artifact_key(run_id, part) for part in ARTIFACTS]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    latest: dict[str, object] = {}
    for artifact in sorted(found, key=lambda a: a.created):
        latest[artifact.key] = artifact
    return latest


def _flow_run_id(run_id: str) -> object:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_id])),
            sort=FlowRunSort.START_TIME_DESC,
        )
    return runs[0].id


@pytest.mark.integration
def test_a_run_publishes_its_figures_on_its_flow_run(tmp_path: Path):
    rng = np.random.default_rng(0)
    income = rng.normal(50, 15, 200).round(1)
    pd.DataFrame(
        {
            "income": income,
            "home": rng.choice(["rent", "owner"], 200).astype(object),
            "status": np.where(income > 50, "good", "bad").astype(object),
        }
    ).to_csv(tmp_path / "seed.csv", index=False)
    config = {
        "data": {"source": str(tmp_path / "seed.csv"), "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 120, "batch_size": 64},
        "evaluate": {"metrics": ["quality"], "mle_seeds": [0], "plots": False},
        "tracking": {"experiment": "artifacts"},
        "run": {"seed": 0, "data_dir": str(tmp_path / "data")},
    }
    path = tmp_path / "artifacts_run.yaml"
    path.write_text(yaml.safe_dump(config))
    # A failed attempt first: its flow run's overview names the failed stage.
    assert main(["run", str(path), "--set", "run.fail_at_stage=evaluate"]) == 1
    (run_dir,) = (tmp_path / "data" / "runs").iterdir()
    run_id = run_dir.name
    overview = _artifacts(run_id)[artifact_key(run_id, "overview")]
    assert "failed" in overview.data and "stage `evaluate`" in overview.data

    # The same command again finishes the run; its flow run carries every artifact.
    assert main(["run", str(path)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())

    found = _artifacts(run_id)
    assert set(found) == {artifact_key(run_id, part) for part in ARTIFACTS}
    flow_run = _flow_run_id(run_id)
    assert all(a.flow_run_id == flow_run for a in found.values())  # on the run's own page

    overview = found[artifact_key(run_id, "overview")]
    assert overview.type == "markdown"
    assert summary["mlflow_run_id"] and summary["mlflow_run_id"] in overview.data
    stages = json.loads(found[artifact_key(run_id, "stages")].data)
    assert [s["stage"] for s in stages] == [s["name"] for s in summary["stages"]]
    assert stages[3]["rows_out"] == summary["stages"][3]["rows_out"]
    counts = json.loads(found[artifact_key(run_id, "counts")].data)
    removed = {c["count"]: c["value"] for c in counts if c["stage"] == "filter"}
    assert removed == {k: v for k, v in summary["counts"].items() if k.startswith("removed_")}
    metrics = {
        m["metric"]: m["value"] for m in json.loads(found[artifact_key(run_id, "metrics")].data)
    }
    assert metrics["column_shape_error_pct"] == summary["metrics"]["column_shape_error_pct"]


def test_stage_table_keeps_long_stage_names_apart_from_their_status(tmp_path, capsys):
    stages = [
        {
            "name": n,
            "status": "completed",
            "cached": False,
            "seconds": 1.0,
            "rows_in": 30,
            "rows_out": 30,
        }
        for n in ("ingest", "sample_combinations")
    ]
    summary = {"stages": stages, "metrics": {}, "status": "completed"}
    (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    print_summary(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("sample_combinations"))
    assert row.split()[:3] == ["sample_combinations", "completed", "false"]
    header = next(line for line in lines if line.startswith("stage"))
    assert header.index("status") == row.index("completed")  # the columns line up
