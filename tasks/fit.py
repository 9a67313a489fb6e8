"""Task: fit the configured generator on the train split; save it under fit/model/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from synthloom.artifacts import read_table
from synthloom.methods import build_generator
from synthloom.models.device import set_seed
from tasks.runtime import STAGE_TASK_OPTIONS, StageOutput, execute_stage


@task(name="fit", **STAGE_TASK_OPTIONS)
def fit_generator(
    method: dict[str, Any],
    seed: int,
    device: str,
    seed_files: dict[str, dict[str, Any]],
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Fit `method` on the train split and persist it (weights as safetensors, else JSON)."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        set_seed(seed)
        train, schema = read_table(seed_files["train"]["path"])
        assert schema is not None, "the ingest stage stores the schema with every split"
        generator = build_generator(method)
        logger.info("fitting %s on %d rows", method["name"], len(train))
        generator.fit(train, schema, seed=seed)
        generator.save(out / "model")
        return StageOutput(
            files={"model": ("model", None)},
            rows_in=len(train),
            rows_out=None,
            info={"method": method["name"], "device": device, **generator.describe()},
        )

    return execute_stage(
        "fit",
        stage_dir,
        body,
        config=method,
        inputs={"train": seed_files["train"]["sha256"], "seed": seed},
        inject_failure=inject_failure,
    )
