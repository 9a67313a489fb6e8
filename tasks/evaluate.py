"""Task: evaluate the filtered synthetic rows against the real splits; write metrics + plots.

The tabular metric groups (quality, mle, privacy, detection) are independent: each runs as
its own shard task (tasks/sharding.py: in turn locally, in parallel on a Dask/Ray
executor) and their flat dicts are merged in the order of `synthloom.metrics.tabular.PIECES`,
which gives the same metrics.json as one `evaluate_tabular` call over all groups.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from synthloom.artifacts import atomic_write_json, read_table
from synthloom.metrics import cap_rows, dcr_distances, dcr_reference_pair, evaluate_tabular
from synthloom.metrics.code import code_metrics
from synthloom.metrics.tabular import PIECES
from synthloom.metrics.tools import tool_metrics
from synthloom.plots import plot_column_distributions, plot_dcr_histogram
from tasks.runtime import StageOutput, StageRun, stage, stage_progress
from tasks.sharding import map_calls


@stage("evaluate", config="evaluate")
def evaluate_synthetic(
    run: StageRun,
    evaluate: dict[str, Any],
    filtered_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Quality, MLE (synthetic vs real reference), privacy and detection metrics."""
    synthetic, schema = read_table(filtered_files["synthetic"]["path"])
    real = {
        k: read_table(seed_files[k]["path"])[0]
        for k in ("train", "test", "dcr_train", "dcr_holdout")
    }
    run.log.info(
        "evaluating %d synthetic rows (%s)", len(synthetic), ", ".join(evaluate["metrics"])
    )
    if evaluate["suite"] != "tabular":
        metrics = _document_metrics(evaluate["suite"], synthetic, real["train"], schema)
    elif len(synthetic) == 0:
        run.log.warning("no synthetic rows survived generation and filtering: nothing to evaluate")
        metrics: dict[str, Any] = {"eval_n_synthetic": 0.0, "note": "no synthetic rows"}
    else:
        groups = [piece for piece in PIECES if piece in evaluate["metrics"]]
        progress = stage_progress("evaluate", len(groups), "metric groups", min_interval=0)
        calls = [
            (
                f"evaluate-{group}",
                partial(
                    evaluate_tabular,
                    synthetic,
                    **real,
                    schema=schema,
                    seeds=tuple(evaluate["mle_seeds"]),
                    grid=evaluate["mle_grid"],
                    include=(group,),
                    max_rows=evaluate["max_rows"],
                ),
            )
            for group in groups
        ]
        progress.update(0)
        metrics = {}
        for part in map_calls(calls, on_done=lambda i, _: progress.update(i + 1)):
            metrics.update(part)
    atomic_write_json(metrics, run.out / "metrics.json")
    files: dict[str, tuple[str, int | None]] = {"metrics": ("metrics.json", None)}
    if evaluate["plots"] and len(synthetic) and evaluate["suite"] == "tabular":
        plot_column_distributions(real["train"], synthetic, schema, run.out / "columns.png")
        files["columns_plot"] = ("columns.png", None)
        if "privacy" in evaluate["metrics"]:
            cap = evaluate["max_rows"]  # the same rows dcr_share was measured on
            pair = dcr_reference_pair(real["dcr_train"], real["dcr_holdout"], cap)
            d_train, d_holdout = dcr_distances(cap_rows(synthetic, cap), *pair, schema)
            plot_dcr_histogram(d_train, d_holdout, run.out / "dcr.png")
            files["dcr_plot"] = ("dcr.png", None)
    synthetic.head(50).to_csv(run.out / "sample_rows.csv", index=False)
    files["sample_rows"] = ("sample_rows.csv", min(50, len(synthetic)))
    scalar = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return StageOutput(files=files, rows_in=len(synthetic), rows_out=len(synthetic), metrics=scalar)


def _document_metrics(suite: str, synthetic, train, schema) -> dict[str, Any]:  # noqa: ANN001
    """Code or tool-spec metrics over the single text column of raw-record data."""
    (column,) = schema.names
    synthetic_texts, real_texts = synthetic[column].tolist(), train[column].tolist()
    if suite == "tool":
        return tool_metrics(synthetic_texts, real_texts)
    from synthloom.models.encoder import load_encoder  # transformers: only code records need it

    return code_metrics(synthetic_texts, real_texts, encoder=load_encoder(device="cpu"))
