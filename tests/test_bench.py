"""The bench harness: config validation, the comparison table, and one end-to-end bench
(marginals, SMOTE, Gaussian copula, a peer made absent) on a small table with Prefect and
MLflow for real."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cli.main import main
from synthloom.bench.config import bench_hash, pipeline_config_for, validate_bench_config
from synthloom.bench.table import (
    COLUMNS,
    comparison_frame,
    generator_row,
    reference_row,
    to_markdown,
    unavailable_row,
)
from synthloom.errors import ConfigError
from synthloom.methods.peers import missing_peer


def bench_raw(source: str = "seed.csv", **generators) -> dict:
    return {
        "name": "tiny",
        "data": {"source": source, "target": "status"},
        "generate": {"num_rows": 200},
        "evaluate": {"mle_seeds": [0, 1, 2], "mle_grid": "small", "plots": False},
        "generators": generators
        or {
            "marginals": {"method": {"name": "marginals"}},
            "copula": {
                "method": {"name": "gaussian_copula", "default_distribution": "norm"},
                "generate": {"num_rows": 120},
            },
            "ctgan": {"enabled": False, "method": {"name": "ctgan", "epochs": 1}},
        },
    }


def test_bench_config_builds_one_pipeline_config_per_generator() -> None:
    cfg = validate_bench_config(bench_raw(), "bench.yaml")
    assert list(cfg.enabled()) == ["marginals", "copula"]
    assert cfg.tracking.experiment == "bench"
    copula = pipeline_config_for(cfg, "copula")
    assert copula.method.name == "gaussian_copula" and copula.generate.num_rows == 120
    assert copula.generate.batch_size == 1024  # shared section kept where not overridden
    assert copula.run.name == "tiny-copula" and copula.evaluate.mle_grid == "small"
    marginals = pipeline_config_for(cfg, "marginals")
    assert marginals.generate.num_rows == 200
    assert marginals.data == copula.data and marginals.run.seed == copula.run.seed


def test_bench_hash_ignores_disabled_generators_and_tracking() -> None:
    base = validate_bench_config(bench_raw(), "b")
    raw = bench_raw()
    raw["generators"]["ctgan"]["method"]["epochs"] = 7  # disabled: not part of the identity
    raw["tracking"] = {"experiment": "elsewhere"}
    assert bench_hash(validate_bench_config(raw, "b")) == bench_hash(base)
    raw["generate"]["num_rows"] = 201
    assert bench_hash(validate_bench_config(raw, "b")) != bench_hash(base)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r["generators"]["ctgan"]["method"].update(epoch=3),
            "unknown key `generators.ctgan.method.epoch`. Did you mean `epochs`?",
        ),
        (
            lambda r: r["generators"]["copula"].update(enable=True),
            "unknown key `generators.copula.enable`. Did you mean `enabled`?",
        ),
        (
            lambda r: r["generators"]["marginals"]["method"].update(name="marginal"),
            "unknown method 'marginal'. Did you mean `marginals`?",
        ),
        (
            lambda r: r["generators"].update(text={"method": {"name": "fewgen"}}),
            "generates text, not table rows",
        ),
        (lambda r: r["generators"].update({"bad label": r["generators"]["marginals"]}), "labels"),
        (lambda r: r.pop("generate"), "required key `generate` is missing"),
        (lambda r: r["evaluate"].update(suite="code"), "evaluate.suite must be tabular"),
        (
            lambda r: [e.update(enabled=False) for e in r["generators"].values()],
            "enable at least one",
        ),
    ],
)
def test_bench_config_errors_name_file_key_and_fix(change, expected) -> None:
    raw = bench_raw()
    change(raw)
    with pytest.raises(ConfigError) as err:
        validate_bench_config(raw, "pipeline_configs/bench_x.yaml")
    message = str(err.value)
    assert "pipeline_configs/bench_x.yaml" in message and expected in message
    assert "Fix" in message


def test_bench_cli_reports_bad_config_and_unknown_only_label(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bench.yaml"
    raw = bench_raw()
    raw["generators"]["marginals"]["method"]["quantile"] = 3
    path.write_text(yaml.safe_dump(raw))
    assert main(["bench", str(path)]) == 2
    err = capsys.readouterr().err
    assert "generators.marginals.method.quantile" in err and "Traceback" not in err
    path.write_text(yaml.safe_dump(bench_raw()))
    assert main(["bench", str(path), "--only", "tvae"]) == 2
    assert "--only tvae" in capsys.readouterr().err


def fake_summary(fit_stages: dict[str, float], cached: bool = False) -> dict:
    stages = [
        {"name": name, "status": "completed", "cached": cached, "compute_seconds": seconds}
        for name, seconds in fit_stages.items()
    ]
    stages += [
        {
            "name": "generate",
            "status": "completed",
            "cached": cached,
            "compute_seconds": 4.0,
            "rows_out": 100,
        },
        {"name": "filter", "status": "completed", "cached": cached, "rows_out": 80},
    ]
    return {
        "run_id": "r1",
        "status": "completed",
        "mlflow_run_id": "m1",
        "stages": stages,
        "metrics": {
            "generate_attempts": 160,
            "mle_auc_mean": 0.7,
            "mle_auc_std": 0.01,
            "mle_auc_best": 0.71,
            "dcr_share": 0.52,
        },
    }


def test_generator_row_costs_and_rates() -> None:
    difflm = generator_row(
        "d",
        "difflm",
        fake_summary({"serialize": 1.0, "train_vae": 10.0, "train_diffusion": 2.5}),
        900.0,
    )
    assert difflm["fit_s"] == 13.5 and difflm["sample_s"] == 4.0
    assert difflm["rows"] == 80 and difflm["rows_per_s"] == 20.0
    assert difflm["valid_row_rate"] == 0.5  # kept / attempted, not kept / returned
    assert (difflm["mle_metric"], difflm["mle_mean"], difflm["mle_best"]) == ("auc", 0.7, 0.71)
    assert difflm["mlflow_run_id"] == "m1" and difflm["peak_rss_mb"] == 900.0


def test_table_has_every_column_and_markdown_every_row() -> None:
    rows = [
        reference_row({"mle_metric": "auc", "mle_auc_mean": 0.8, "eval_n_synthetic": 30}, "ref"),
        generator_row("ctgan", "ctgan", fake_summary({"fit": 3.0}), None),
        unavailable_row("great", "great", "skipped", 'needs be-great: pip install ".[peers]"'),
    ]
    frame = comparison_frame(rows)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 3
    assert frame["fit_s"].dtype == "float64" and pd.isna(frame.loc[2, "fit_s"])
    markdown = to_markdown(frame)
    lines = markdown.strip().splitlines()
    assert len(lines) == 2 + 3 and "MLE AUC" in lines[0]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "0.700 ± 0.010 (0.710)" in markdown and "skipped" in markdown and ".[peers]" in markdown


def test_peak_rss_is_recorded_when_computed_and_reused_when_cached(tmp_path: Path) -> None:
    from tasks.bench import (
        current_rss_mb,
        generator_peak_rss,
        peak_rss_since_reset_mb,
        reset_peak_rss,
    )

    assert generator_peak_rss(tmp_path, fake_summary({"fit": 1.0}), 1234.0) == 1234.0
    # a rerun whose stages all came from the cache reports the figure measured when they ran
    assert generator_peak_rss(tmp_path, fake_summary({"fit": 1.0}, cached=True), 99.0) == 1234.0
    if reset_peak_rss():  # Linux: the high-water mark restarts from the current size
        import numpy as np

        block = np.ones(40 * 2**20 // 8)  # 40 MiB
        block[::512] += 1
        high = peak_rss_since_reset_mb()
        del block
        reset_peak_rss()
        # After a reset the mark restarts from the current size: never above the old mark,
        # never below what the process holds now (whether freed pages went back to the OS
        # depends on the allocator's state, so a strict drop is not guaranteed in a long run).
        assert current_rss_mb() - 1 <= peak_rss_since_reset_mb() <= high


@pytest.mark.integration
def test_bench_end_to_end_on_a_small_table(
    tmp_path: Path, mixed_table, monkeypatch, capsys
) -> None:
    """Fast generators on identical splits; one table; MLflow runs nested under the bench."""
    import flows.bench

    if missing_peer("smote") or missing_peer("gaussian_copula"):
        pytest.skip(missing_peer("smote") or missing_peer("gaussian_copula"))
    mixed_table.to_csv(tmp_path / "seed.csv", index=False)
    raw = bench_raw(
        str(tmp_path / "seed.csv"),
        marginals={"method": {"name": "marginals"}},
        smote={"method": {"name": "smote"}},
        copula={
            "method": {"name": "gaussian_copula", "default_distribution": "norm"},
            "generate": {"num_rows": 120},
        },
        tvae={"method": {"name": "tvae", "epochs": 1}},
    )
    raw["run"] = {"data_dir": str(tmp_path / "data")}
    path = tmp_path / "bench_tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    absent = "method 'tvae' needs the 'sdv' package, which is not installed. Fix: pip install \".[peers]\""
    monkeypatch.setattr(
        flows.bench, "missing_peer", lambda name: absent if name == "tvae" else missing_peer(name)
    )

    assert main(["bench", str(path)]) == 0
    out = capsys.readouterr().out
    (md_path,) = (tmp_path / "data" / "bench").glob("tiny-*/comparison.md")
    table = pd.read_parquet(md_path.with_suffix(".parquet"))
    assert list(table.columns) == list(COLUMNS)
    assert table["generator"].tolist() == [
        "real data (reference)",
        "marginals",
        "smote",
        "copula",
        "tvae",
    ]
    assert table["status"].tolist() == ["completed"] * 4 + ["skipped"]
    assert ".[peers]" in table.loc[4, "note"] and "| tvae | skipped" in md_path.read_text()
    ran = table.iloc[1:4]
    budgets = pd.Series([200.0, 200.0, 120.0], index=ran.index)
    assert (ran["rows"] <= budgets).all() and (
        ran["rows"] >= 0.9 * budgets
    ).all()  # filter drops few
    for column in (
        "column_shape_error_pct",
        "pair_trend_error_pct",
        "mle_mean",
        "mle_std",
        "mle_best",
        "dcr_share",
        "exact_copy_rate",
        "c2st",
        "valid_row_rate",
        "fit_s",
        "sample_s",
        "rows_per_s",
    ):
        assert ran[column].notna().all(), column
    assert (ran["mle_metric"] == "auc").all() and ran["note"].isna().all()  # identical splits
    assert table.loc[0, "mle_mean"] > 0.8  # the real reference learns income -> status
    assert table.loc[1, "mle_mean"] < table.loc[2, "mle_mean"]  # SMOTE keeps what marginals drop
    if ran["peak_rss_mb"].notna().any():
        assert (ran["peak_rss_mb"] > 100).all()

    import mlflow

    mlflow.set_tracking_uri("sqlite:///" + str(tmp_path / "data" / "mlflow" / "mlflow.db"))
    client = mlflow.tracking.MlflowClient()
    parents = mlflow.search_runs(experiment_names=["bench"], filter_string="tags.kind = 'bench'")
    assert len(parents) == 1
    parent = parents["run_id"][0]
    assert f"MLflow bench run: {parent}" in out
    for run_id in table["mlflow_run_id"].iloc[:4]:
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
    assert {a.path for a in client.list_artifacts(parent)} == {
        "comparison.md",
        "comparison.parquet",
    }
    assert client.get_run(parent).data.metrics["smote.mle_mean"] == pytest.approx(
        table.loc[2, "mle_mean"]
    )
    # each pipeline run is a normal synthloom run with its own summary
    summary = json.loads(
        (tmp_path / "data" / "runs" / table.loc[2, "run_id"] / "summary.json").read_text()
    )
    assert (
        summary["status"] == "completed"
        and summary["mlflow_run_id"] == table.loc[2, "mlflow_run_id"]
    )
