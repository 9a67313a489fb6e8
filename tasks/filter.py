"""Task: apply the filter rules to the generated rows; count what each rule removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from synthloom.artifacts import read_table, write_table
from synthloom.filters.tabular import filter_table
from tasks.runtime import STAGE_TASK_OPTIONS, StageOutput, execute_stage


@task(name="filter", **STAGE_TASK_OPTIONS)
def filter_rows(
    rules: dict[str, Any],
    generated_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Keep the rows that pass every enabled rule; valid_row_rate = kept / generated."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        synthetic, schema = read_table(generated_files["synthetic"]["path"])
        train, _ = read_table(seed_files["train"]["path"])
        result = filter_table(synthetic, schema, train, **rules)
        write_table(result.kept, out / "synthetic.parquet", schema)
        rate = len(result.kept) / len(synthetic) if len(synthetic) else 0.0
        logger.info(
            "kept %d of %d rows; removed %s", len(result.kept), len(synthetic), result.removed
        )
        return StageOutput(
            files={"synthetic": ("synthetic.parquet", len(result.kept))},
            rows_in=len(synthetic),
            rows_out=len(result.kept),
            metrics={"valid_row_rate": rate},
            counts={f"removed_{k}": v for k, v in result.removed.items()},
        )

    return execute_stage(
        "filter",
        stage_dir,
        body,
        config=rules,
        inputs={k: v["sha256"] for k, v in generated_files.items()}
        | {"train": seed_files["train"]["sha256"]},
        inject_failure=inject_failure,
    )
