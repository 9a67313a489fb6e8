"""Export a finished run's kept rows (the filter stage's output) as CSV, Parquet, JSONL or a
`datasets` save_to_disk folder, with the run's identity and metrics attached.

`export_run(run_id, out, fmt, data_dir)` reads `runs/<run_id>/summary.json` and the filter
stage's manifest, and writes `out`. Where the metadata goes: Parquet key-value metadata
(`synthloom.run_id`, `synthloom.config_hash`, `synthloom.method`, `synthloom.metrics` as
JSON); for `hf`, the dataset info's description plus `synthloom.json` inside the folder; for
CSV and JSONL, which have no metadata, a sidecar `<out>.metadata.json`. Text runs export
`text` and `label` only. Unknown runs, unfinished runs and unknown formats are
`ConfigError`s (exit code 2) that say what to do. `push_run_to_hub` pushes the same rows to
the Hugging Face Hub as a dataset; where the Hub cannot be reached it says so, with the fix.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthloom.artifacts import atomic_write_bytes, read_manifest, staged_directory
from synthloom.errors import ConfigError
from synthloom.methods.registry import LABELLED_TEXT_METHODS

FORMATS = ("csv", "parquet", "jsonl", "hf")
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    "": "hf",  # a folder: datasets' save_to_disk layout
}
TEXT_EXPORT_COLUMNS = ("text", "label")
METADATA_PREFIX = "synthloom."
HF_METADATA_NAME = "synthloom.json"
JSON_METADATA_KEYS = ("rows", "metrics")  # the non-string values of `run_metadata`


@dataclass(frozen=True)
class FinishedRun:
    """A completed run: its directory, summary.json, stored config and kept-rows file."""

    run_id: str
    run_dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    kept_path: Path

    @property
    def method(self) -> str:
        return str(self.config.get("method", {}).get("name", ""))

    @property
    def is_text(self) -> bool:
        return self.method in LABELLED_TEXT_METHODS


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    rows: int
    columns: tuple[str, ...]
    metadata_path: Path | None  # the sidecar or hf metadata file; None for Parquet


def _known_runs(data_dir: Path) -> str:
    runs = sorted(p.name for p in (data_dir / "runs").glob("*") if (p / "summary.json").is_file())
    return ", ".join(runs[-10:]) or "none"


def load_finished_run(run_id: str, data_dir: str | Path) -> FinishedRun:
    """The finished run `run_id` under `data_dir`, or a ConfigError saying why it cannot be
    exported (unknown id: the known ones are listed; not completed: how to finish it)."""
    data_dir = Path(data_dir)
    run_dir = data_dir / "runs" / run_id
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise ConfigError(
            f"Cannot export {run_id!r}: {summary_path} does not exist. Runs under "
            f"{data_dir / 'runs'}: {_known_runs(data_dir)}. Fix: pass one of those ids, or "
            "--data-dir where the run lives."
        )
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    status = summary.get("status")
    manifest = read_manifest(run_dir / "filter")
    if status != "completed" or manifest is None or "synthetic" not in manifest["files"]:
        failed = (summary.get("error") or {}).get("stage")
        why = f" (stage {failed} failed)" if failed else ""
        raise ConfigError(
            f"Cannot export {run_id!r}: the run is {status}{why}, so it has no final kept rows. "
            f"Fix: finish it with `synthloom resume {run_id}` (add --data-dir if you used "
            "one), then export again."
        )
    # The manifest holds absolute paths of where the run was written; resolve the file
    # inside this run directory so a moved or copied data dir still exports.
    recorded = Path(manifest["files"]["synthetic"]["path"])
    try:
        kept_path = run_dir / "filter" / recorded.relative_to(manifest["dir"])
    except ValueError:
        kept_path = run_dir / "filter" / recorded.name
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return FinishedRun(run_id, run_dir, summary, config, kept_path)


def export_format(out: str | Path, fmt: str | None = None) -> str:
    """The format to write: `fmt` when given, else the suffix of `out` (none: `hf`)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(
                f"Cannot export as {fmt!r}: unknown format. Fix: --format one of "
                f"{', '.join(FORMATS)}."
            )
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        known = ", ".join(s for s in SUFFIX_FORMATS if s)
        raise ConfigError(
            f"Cannot export to {out}: the suffix {suffix!r} names no known format. Fix: end "
            f"the path with one of {known}, give a folder path (no suffix) for a datasets "
            f"folder, or pass --format one of {', '.join(FORMATS)}."
        )
    return SUFFIX_FORMATS[suffix]


def run_metadata(run: FinishedRun, rows: int) -> dict[str, Any]:
    """What an exported file says about where it came from."""
    return {
        "run_id": run.run_id,
        "config_hash": run.summary.get("config_hash"),
        "method": run.method,
        "dataset": run.config.get("data", {}).get("source"),
        "rows": rows,
        "mlflow_run_id": run.summary.get("mlflow_run_id"),
        "finished": run.summary.get("finished"),
        "metrics": run.summary.get("metrics", {}),
    }


def kept_table(run: FinishedRun) -> pa.Table:
    """The run's kept rows as an Arrow table (text runs: text and label only)."""
    table = pq.read_table(run.kept_path)
    if run.is_text:
        table = table.select(list(TEXT_EXPORT_COLUMNS))
    return table


def _with_metadata(table: pa.Table, meta: dict[str, Any]) -> pa.Table:
    """Parquet key-value metadata: `synthloom.<key>`, strings as they are, the rest JSON."""
    extra = {
        f"{METADATA_PREFIX}{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in meta.items()
        if value is not None
    }
    merged = {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in extra.items()}}
    return table.replace_schema_metadata(merged)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n").encode("utf-8")


def _write_parquet(table: pa.Table, out: Path, meta: dict[str, Any]) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(_with_metadata(table, meta), buffer)
    atomic_write_bytes(buffer.getvalue().to_pybytes(), out)


def _write_text_file(frame: pd.DataFrame, out: Path, fmt: str) -> None:
    if fmt == "csv":
        data = frame.to_csv(index=False).encode("utf-8")
    else:
        text = io.StringIO()
        frame.to_json(text, orient="records", lines=True, force_ascii=False, date_format="iso")
        data = text.getvalue().encode("utf-8")
    atomic_write_bytes(data, out)


def _hf_dataset(frame: pd.DataFrame, meta: dict[str, Any]):  # noqa: ANN202 - datasets.Dataset
    """The rows as a `datasets.Dataset`, the run metadata as JSON in its info's description."""
    import datasets

    info = datasets.DatasetInfo(description=json.dumps(meta, default=str))
    return datasets.Dataset.from_pandas(frame, preserve_index=False, info=info)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """datasets' progress bars off within the block (one line of output, not a bar per
    shard), restored after."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _write_hf(frame: pd.DataFrame, out: Path, meta: dict[str, Any]) -> Path:
    if out.exists() and not (out / "state.json").is_file():
        raise ConfigError(
            f"Cannot export to {out}: it exists and is not a datasets folder, so it is not "
            "replaced. Fix: choose a new path, or remove it first."
        )
    dataset = _hf_dataset(frame, meta)
    with _no_progress_bars(), staged_directory(out) as tmp:
        dataset.save_to_disk(str(tmp))
        atomic_write_bytes(_json_bytes(meta), tmp / HF_METADATA_NAME)
    return out / HF_METADATA_NAME


def export_run(
    run_id: str, out: str | Path, fmt: str | None = None, data_dir: str | Path = "data"
) -> ExportResult:
    """Write the kept rows of finished run `run_id` to `out` in `fmt` (default: by suffix)."""
    out = Path(out)
    fmt = export_format(out, fmt)
    run = load_finished_run(run_id, data_dir)
    table = kept_table(run)
    meta = run_metadata(run, table.num_rows)
    sidecar: Path | None = None
    if fmt == "parquet":
        _write_parquet(table, out, meta)
    elif fmt == "hf":
        sidecar = _write_hf(table.to_pandas(), out, meta)
    else:
        _write_text_file(table.to_pandas(), out, fmt)
        sidecar = out.with_name(out.name + ".metadata.json")
        atomic_write_bytes(_json_bytes(meta), sidecar)
    return ExportResult(out, fmt, table.num_rows, tuple(table.column_names), sidecar)


def push_run_to_hub(
    run_id: str, repo_id: str, data_dir: str | Path = "data", *, private: bool = True
) -> str:
    """Push the kept rows of finished run `run_id` to the Hugging Face Hub as dataset
    `repo_id` (private unless `private=False`), the run metadata in the dataset info's
    description as `hf` exports carry it. Returns the dataset's URL. Every failure (no
    network, offline mode, no token, no write access, a bad name) is a ConfigError that
    names the endpoint and the fix; nothing local is changed."""
    from huggingface_hub import constants

    run = load_finished_run(run_id, data_dir)
    table = kept_table(run)
    dataset = _hf_dataset(table.to_pandas(), run_metadata(run, table.num_rows))
    endpoint = constants.ENDPOINT
    try:
        with _no_progress_bars():
            dataset.push_to_hub(repo_id, private=private)
    except Exception as err:  # noqa: BLE001 - the Hub client raises many kinds; all mean "not pushed"
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300].rstrip(".")
        raise ConfigError(
            f"Cannot push run {run_id!r} to the Hugging Face Hub as {repo_id!r} ({endpoint}): "
            f"{reason}. Fix: check that this machine reaches {endpoint} (HF_ENDPOINT, "
            "HF_HUB_OFFLINE) and that you are logged in with write access to the name "
            "(`huggingface-cli login` or HF_TOKEN); or export with --out and upload the file "
            "from a machine that can reach the Hub."
        ) from err
    return f"{endpoint}/datasets/{repo_id}"


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The run metadata of an exported file or folder (inverse of what `export_run` wrote)."""
    path = Path(path)
    if path.is_dir():
        return json.loads((path / HF_METADATA_NAME).read_text(encoding="utf-8"))
    if path.suffix.lower() in (".parquet", ".pq"):
        raw = pq.read_schema(path).metadata or {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.decode()
            if name.startswith(METADATA_PREFIX):
                name = name[len(METADATA_PREFIX) :]
                out[name] = json.loads(value) if name in JSON_METADATA_KEYS else value.decode()
        return out
    sidecar = path.with_name(path.name + ".metadata.json")
    return json.loads(sidecar.read_text(encoding="utf-8"))
