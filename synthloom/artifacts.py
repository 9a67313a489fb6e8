"""Stage artifacts on disk: atomic writes, content hashes and per-stage manifests.

A stage writes everything into a hidden sibling directory and renames it into place
at the end (`staged_directory`), so a killed process never leaves a half-written
stage that a later stage would read. Single files use write-then-`os.replace`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthloom.schema import TableSchema

SCHEMA_METADATA_KEY = b"synthloom.schema"
MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hex sha256 over a file, or over every file under a directory (names and bytes)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


MAX_HASHED_BYTES = 1 << 30


def sha256_files(root: str | Path, files: list[Path], max_bytes: int = MAX_HASHED_BYTES) -> str:
    """Hex sha256 over the given files (relative names and bytes), reading at most `max_bytes`.

    Files are taken in the given order; once a file would take the bytes read past
    `max_bytes`, it and every later file contribute their size and modification time
    (ns) instead of their bytes, so a huge source is fingerprinted in bounded time."""
    root = Path(root)
    digest = hashlib.sha256()
    budget = max_bytes
    for file in files:
        stat = file.stat()
        digest.update(str(file.relative_to(root)).encode())
        if stat.st_size <= budget:
            budget -= stat.st_size
            digest.update(sha256_file(file).encode())
        else:
            budget = -1
            digest.update(f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_siblings(path: Path) -> list[Path]:
    """Remove the temporary siblings of `path` (`_temporary_sibling`) left by a process that
    no longer exists (killed with SIGKILL mid-write: its `finally` never ran). A sibling of
    a live process, this one included, is kept. The pid is looked up on this host: a data
    dir shared by several hosts' workers needs one host per run (the run lock's premise
    too). Returns what was removed."""
    removed = []
    for sibling in path.parent.glob(f".{path.name}.tmp-*"):
        pid = sibling.name.removeprefix(f".{path.name}.tmp-").split("-", 1)[0]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        if sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    """Write bytes to `path` via a temporary sibling and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    """Strict JSON (indented; NaN and infinities written as null) written atomically."""
    text = json.dumps(_finite_or_null(obj), indent=2, default=_json_default, allow_nan=False)
    return atomic_write_bytes(text.encode("utf-8"), path)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return _finite_or_null(value.item())
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_table(frame: pd.DataFrame, path: str | Path, schema: TableSchema | None = None) -> Path:
    """Write a frame as Parquet atomically; the schema (if given) goes into the file metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if schema is not None:
        meta = dict(table.schema.metadata or {})
        meta[SCHEMA_METADATA_KEY] = schema.to_json().encode("utf-8")
        table = table.replace_schema_metadata(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_table(path: str | Path) -> tuple[pd.DataFrame, TableSchema | None]:
    """Read a Parquet artifact and the schema stored in its metadata (None if absent)."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(SCHEMA_METADATA_KEY)
    schema = TableSchema.from_json(raw.decode("utf-8")) if raw else None
    return table.to_pandas(), schema


@contextlib.contextmanager
def staged_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `final` in one rename.

    On an exception the temporary directory is removed and `final` is left as it was; the
    temporary directories of killed processes for the same `final` are removed first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = _temporary_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def describe_file(path: str | Path, rows: int | None = None) -> dict[str, Any]:
    """{"path", "sha256", "bytes", "rows"} for a manifest."""
    path = Path(path)
    return {
        "path": str(path),
        "sha256": sha256_tree(path),
        "bytes": path.stat().st_size if path.is_file() else None,
        "rows": rows,
    }


def read_manifest(stage_dir: str | Path) -> dict[str, Any] | None:
    path = Path(stage_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
