"""What every stage task shares: cache policy, the staged output directory, the manifest.

A stage body is a plain function `body(out_dir) -> StageOutput` that writes its files
into `out_dir`; `execute_stage` times it, records CPU time and peak memory, hashes what
it wrote into `manifest.json` and renames the directory into place in one step.
The task's return value is that manifest: downstream tasks take it as an input, so
their cache keys change exactly when an upstream artifact's bytes change.
"""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE

from synthloom.artifacts import MANIFEST_NAME, atomic_write_json, sha256_tree, staged_directory
from synthloom.errors import StageError

# Declared once, used by every stage task: inputs (incl. upstream hashes, stage config and
# `code_version`) + the task's own source.
STAGE_CACHE_POLICY = INPUTS + TASK_SOURCE
# Every stage task: `@task(name="...", **STAGE_TASK_OPTIONS)`; results persist as JSON so a
# rerun in a new process finds them.
STAGE_TASK_OPTIONS = {
    "cache_policy": STAGE_CACHE_POLICY,
    "persist_result": True,
    "result_serializer": "json",
}

_CODE_PACKAGES = ("synthloom", "tasks")


@cache
def code_version() -> str:
    """sha256 over the source of the core and task packages: a code change misses the cache."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in _CODE_PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


class InjectedFailure(StageError):
    """Raised on purpose by `run.fail_at_stage` so resume can be tested and demonstrated."""


@dataclass
class StageOutput:
    """What a stage body reports: files as {key: (relative name, rows or None)}."""

    files: dict[str, tuple[str, int | None]]
    rows_in: int | None = None
    rows_out: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def execute_stage(
    name: str,
    stage_dir: str | Path,
    body: Callable[[Path], StageOutput],
    *,
    config: dict[str, Any],
    inputs: dict[str, Any],
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Run `body` into a staged directory and return the stage manifest (also on disk)."""
    stage_dir = Path(stage_dir)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if inject_failure:
        raise InjectedFailure(
            f"Stage {name!r} failed: a failure was injected by run.fail_at_stage={name}. "
            "Fix: remove that setting and run the same config again (or `synthloom resume "
            "RUN_ID`); finished stages are reused."
        )
    with staged_directory(stage_dir) as tmp:
        out = body(tmp)
        files = {
            key: {"path": str(stage_dir / rel), "sha256": sha256_tree(tmp / rel), "rows": rows}
            for key, (rel, rows) in out.files.items()
        }
        manifest = {
            "stage": name,
            "dir": str(stage_dir),
            "files": files,
            "rows_in": out.rows_in,
            "rows_out": out.rows_out,
            "metrics": out.metrics,
            "counts": out.counts,
            "info": out.info,
            "config": config,
            "inputs": inputs,
            "seconds": round(time.perf_counter() - wall0, 3),
            "cpu_seconds": round(time.process_time() - cpu0, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        atomic_write_json(manifest, tmp / MANIFEST_NAME)
    return manifest


def file_refs(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of an upstream manifest a downstream task depends on: paths and hashes."""
    return {k: {"path": v["path"], "sha256": v["sha256"]} for k, v in manifest["files"].items()}
