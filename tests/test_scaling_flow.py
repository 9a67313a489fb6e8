"""`synthloom scaling` end to end on a small table with the marginals baseline (real Prefect and
MLflow), and the study config's validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli.main import main
from synthloom.errors import ConfigError
from synthloom.scaling.config import load_scaling_config


def _pipeline_config(tmp_path: Path, table) -> Path:
    csv = tmp_path / "seed.csv"
    table.to_csv(csv, index=False)
    path = tmp_path / "small.yaml"
    config = {
        "data": {"source": str(csv), "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 100, "batch_size": 128},
        "evaluate": {"enabled": False},
        "tracking": {"enabled": False},
        "run": {"seed": 0},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _study(tmp_path: Path, pipeline: Path, **extra) -> Path:
    study = {
        "curves": [{"label": "marginals", "config": str(pipeline)}],
        "sizes": [20, 40, 80, 160],
        "seeds": [0, 1],
        "tracking": {"experiment": "scaling-tests"},
        "run": {"data_dir": str(tmp_path / "data")},
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.integration
def test_scaling_study_runs_fits_plots_and_logs(tmp_path: Path, mixed_table, capsys) -> None:
    study = _study(tmp_path, _pipeline_config(tmp_path, mixed_table))
    assert main(["scaling", str(study)]) == 0
    out = capsys.readouterr().out
    assert "marginals" in out and "real" in out and "plateau D" in out

    (study_dir,) = (tmp_path / "data" / "scaling").iterdir()
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert [s["name"] for s in summary["stages"]] == ["curve_marginals", "curve_real", "fit"]
    # the pipeline run was generated with num_rows raised to the largest size
    (run_id,) = summary["runs"].values()
    run_config = json.loads((tmp_path / "data" / "runs" / run_id / "config.json").read_text())
    assert run_config["generate"]["num_rows"] == 160

    fits = json.loads((study_dir / "fit" / "fits.json").read_text())
    assert set(fits) == {"marginals", "real"}
    for fit in fits.values():
        assert fit["fitted"] and fit["B"] > 0 and fit["D_l"] >= 0 and fit["beta"] > 0
        assert [p["size"] for p in fit["points"]] == [20, 40, 80, 160]
    # marginals keep no relation between columns: the student learns nothing from them
    real_err = fits["real"]["points"][-1]["mean"]
    marginal_err = fits["marginals"]["points"][-1]["mean"]
    assert real_err < marginal_err - 0.15
    for name in ("overlay.png", "curve_real.png", "curve_marginals.png", "points.csv"):
        assert (study_dir / "fit" / name).stat().st_size > 0

    import mlflow

    mlflow.set_tracking_uri("sqlite:///" + str(tmp_path / "data" / "mlflow" / "mlflow.db"))
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(_child_run(client, summary, "real"), "error")
    assert sorted(m.step for m in history) == [20, 40, 80, 160]
    parent = client.get_run(summary["mlflow_run_id"])
    assert "real_E" in parent.data.metrics and "marginals_beta" in parent.data.metrics

    assert main(["scaling", str(study)]) == 0  # rerun: every stage comes from the cache
    again = json.loads((study_dir / "summary.json").read_text())
    assert all(s["cached"] for s in again["stages"])


def _child_run(client, summary: dict, label: str) -> str:
    parent = client.get_run(summary["mlflow_run_id"])
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.curve = '{label}'",
    )
    return runs[0].info.run_id


def test_study_config_errors_name_the_key_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"curves": [{"label": "a", "run": "x"}], "sizes": [10, 5, 20, 40]})
    )
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_scaling_config(path)
    path.write_text(
        yaml.safe_dump(
            {
                "curves": [{"label": "a", "run": "x"}],
                "size_range": {"smallest": 10, "largest": 1000},
                "seedz": [1],
            }
        )
    )
    with pytest.raises(ConfigError, match=r"unknown key `seedz`.*Did you mean `seeds`"):
        load_scaling_config(path)
    path.write_text(
        yaml.safe_dump(
            {"curves": [{"label": "real", "run": "x", "config": "y"}], "sizes": [1, 2, 3, 4]}
        )
    )
    with pytest.raises(ConfigError, match="exactly one of `run`"):
        load_scaling_config(path)
    ok = load_scaling_config(path, ["curves=[{label: a, run: x}]", "real_curve=false"])
    assert ok.size_list() == [1, 2, 3, 4] and ok.run.name == "bad"


def test_unknown_run_is_a_user_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "curves": [{"label": "a", "run": "no-such-run"}],
                "sizes": [10, 20, 40, 80],
                "run": {"data_dir": str(tmp_path / "data")},
            }
        )
    )
    assert main(["scaling", str(path)]) == 2
    assert "run 'no-such-run' does not exist" in capsys.readouterr().err
