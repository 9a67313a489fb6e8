"""Task: apply the filter rules to the generated rows; count what each rule removed."""

from __future__ import annotations

from typing import Any

from synthloom.artifacts import read_table, write_table
from synthloom.filters.tabular import filter_table
from tasks.runtime import StageOutput, StageRun, stage


@stage("filter", config="rules")
def filter_rows(
    run: StageRun,
    rules: dict[str, Any],
    generated_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Keep the rows that pass every enabled rule; valid_row_rate = kept / generated."""
    synthetic, schema = read_table(generated_files["synthetic"]["path"])
    train, _ = read_table(seed_files["train"]["path"])
    result = filter_table(synthetic, schema, train, **rules)
    write_table(result.kept, run.out / "synthetic.parquet", schema)
    rate = len(result.kept) / len(synthetic) if len(synthetic) else 0.0
    run.log.info("kept %d of %d rows; removed %s", len(result.kept), len(synthetic), result.removed)
    return StageOutput(
        files={"synthetic": ("synthetic.parquet", len(result.kept))},
        rows_in=len(synthetic),
        rows_out=len(result.kept),
        metrics={"valid_row_rate": rate},
        counts={f"removed_{k}": v for k, v in result.removed.items()},
    )
