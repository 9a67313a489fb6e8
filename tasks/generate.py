"""Task: sample synthetic rows from the fitted generator, in shards, with progress logs.

`generate.num_rows` rows are cut into shards of `generate.batch_size` rows; shard i draws
with seed `shard_seed(seed, i)` = seed * 100003 + i (and its share of `generate.conditions`,
synthloom/conditions.py) and is written as a Parquet part
(tasks/sharding.py), so a failed attempt keeps its finished shards and the output is the
same on any executor. The parts are merged in shard order into synthetic.parquet.
"""

from __future__ import annotations

import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import pandas as pd

from synthloom.artifacts import read_table, write_table
from synthloom.conditions import check_conditions, shard_conditions
from synthloom.methods import generator_class
from tasks.runtime import StageOutput, StageRun, stage, stage_progress
from tasks.sharding import run_shards, shard_key, shard_sizes


@lru_cache(maxsize=4)
def _load_generator(method_name: str, model_path: str, model_sha256: str) -> Any:
    """One loaded generator per process (and per Dask/Ray worker) for a fitted model."""
    return generator_class(method_name).load(Path(model_path))


def sample_shard(
    method_name: str,
    model_path: str,
    model_sha256: str,
    conditions: list[dict[str, dict[str, int]]] | None,
    index: int,
    seed: int,
    rows: int,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Shard function: `rows` rows drawn with `seed`, under shard `index`'s share of the
    conditions if any (picklable: runs on any worker)."""
    generator = _load_generator(method_name, model_path, model_sha256)
    if conditions is None:
        part = generator.sample(rows, seed=seed)
    else:
        part = generator.sample(rows, seed=seed, conditions=conditions[index])
    stats = {
        "attempts": int(getattr(generator, "last_attempts", len(part))),
        "inpainted": int(getattr(generator, "last_inpainted", 0)),  # conditions: TabSyn
    }
    return {"synthetic": part}, stats


@stage("generate", config="generate", fail_midway=True)
def generate_rows(
    run: StageRun,
    generate: dict[str, Any],
    method_name: str,
    seed: int,
    model_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Draw `generate.num_rows` rows shard by shard (shard i uses seed * 100003 + i)."""
    inputs = {"model": model_files["model"]["sha256"], "seed": seed}
    _, schema = read_table(seed_files["test"]["path"])
    total = generate["num_rows"]
    sizes = shard_sizes(total, generate["batch_size"])
    model = model_files["model"]
    conditions = generate.get("conditions")
    if conditions:
        for column, counts in conditions.items():  # the schema's checks, before any shard
            check_conditions({column: counts}, schema, total)
        conditions = shard_conditions(
            {c: {str(k): int(n) for k, n in v.items()} for c, v in conditions.items()}, sizes
        )
    start = time.perf_counter()
    shards = run_shards(
        "generate",
        run.stage_dir,
        shard_key(config=generate, method=method_name, inputs=inputs, code=run.code, sizes=sizes),
        sizes,
        seed,
        partial(sample_shard, method_name, model["path"], model["sha256"], conditions or None),
        progress=stage_progress("generate", total, "rows"),
    )
    frame = shards.frame("synthetic")
    write_table(frame, run.out / "synthetic.parquet", schema)
    shards.remove()
    seconds = time.perf_counter() - start
    attempts = sum(r["stats"]["attempts"] for r in shards.records)
    metrics = {"rows_per_second": len(frame) / max(seconds, 1e-9), "attempts": attempts}
    inpainted = sum(r["stats"].get("inpainted", 0) for r in shards.records)
    if inpainted:
        metrics["inpainted_rows"] = inpainted
    return StageOutput(
        files={"synthetic": ("synthetic.parquet", len(frame))},
        rows_in=None,
        rows_out=len(frame),
        metrics=metrics,
        info=shards.describe(),
    )
