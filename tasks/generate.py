"""Task: sample synthetic rows from the fitted generator, in batches, with progress logs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from synthloom.artifacts import read_table, write_table
from synthloom.methods import generator_class
from tasks.runtime import STAGE_TASK_OPTIONS, StageOutput, execute_stage


@task(name="generate", **STAGE_TASK_OPTIONS)
def generate_rows(
    generate: dict[str, Any],
    method_name: str,
    seed: int,
    model_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Draw `generate.num_rows` rows batch by batch (batch b uses seed + b)."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        generator = generator_class(method_name).load(Path(model_files["model"]["path"]))
        _, schema = read_table(seed_files["test"]["path"])
        total, batch = generate["num_rows"], generate["batch_size"]
        parts, attempts, done, start = [], 0, 0, time.perf_counter()
        for index, offset in enumerate(range(0, total, batch)):
            part = generator.sample(min(batch, total - offset), seed=seed * 100_003 + index)
            attempts += getattr(generator, "last_attempts", len(part))
            parts.append(part)
            done += len(part)
            rate = done / max(time.perf_counter() - start, 1e-9)
            logger.info(
                "generated %d/%d rows (%.0f rows/s, ETA %.1f s)",
                done,
                total,
                rate,
                (total - done) / rate,
            )
        frame = pd.concat(parts, ignore_index=True)
        write_table(frame, out / "synthetic.parquet", schema)
        seconds = time.perf_counter() - start
        return StageOutput(
            files={"synthetic": ("synthetic.parquet", len(frame))},
            rows_in=None,
            rows_out=len(frame),
            metrics={"rows_per_second": len(frame) / max(seconds, 1e-9), "attempts": attempts},
        )

    return execute_stage(
        "generate",
        stage_dir,
        body,
        config=generate,
        inputs={"model": model_files["model"]["sha256"], "seed": seed},
        inject_failure=inject_failure,
    )
