"""Shards: a stage's work split into independent pieces that run as Prefect tasks.

Generation shards write Parquet parts into `<run_dir>/shards/<stage>/<key>/` (outside the
stage's staged directory, so they survive a failed attempt). `key` hashes everything that
decides a shard's content (stage config, input hashes, code, shard sizes); shard i draws
with seed `shard_seed(run.seed, i)`, so the merged output (parts concatenated in shard order)
is the same for any executor and any number of workers. A part counts as done when its
`part-NNNNN.json` (written last, atomically) exists: a retry or resume computes only the
missing shards. After a successful merge the stage's shard folder is removed.

Where shards run follows the flow's task runner: with the default thread-pool runner they
run one after another in this process; with a Dask or Ray runner (`run.executor`) they
are submitted to the cluster together. Shard callables must be picklable (module-level
functions, `functools.partial`), and with a remote cluster the run directory must be on
storage every worker can read and write.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from synthloom.artifacts import atomic_write_json, write_table
from synthloom.progress import ProgressReporter
from tasks.runtime import InjectedFailure, take_midway_failure

SHARDS_DIR = "shards"

# (index, seed, rows) -> ({part name: frame}, stats)
ShardFunction = Callable[[int, int, int], tuple[dict[str, pd.DataFrame], dict[str, Any]]]


def shard_seed(run_seed: int, index: int) -> int:
    """The seed of shard `index`: depends only on the run's seed and the shard index."""
    return run_seed * 100_003 + index


def shard_sizes(total: int, shard_rows: int) -> list[int]:
    """[shard_rows, ..., remainder]: `total` rows cut into shards of `shard_rows`."""
    assert total >= 0 and shard_rows > 0
    return [min(shard_rows, total - start) for start in range(0, total, shard_rows)]


def shard_key(**identity: Any) -> str:
    """16 hex digits of sha256 over the canonical JSON of what decides the shards' content."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shards_root(stage_dir: str | Path) -> Path:
    """`<run_dir>/shards/<stage>`: where a stage's shard parts live between attempts."""
    stage_dir = Path(stage_dir)
    return stage_dir.parent / SHARDS_DIR / stage_dir.name


def _part_stem(index: int) -> str:
    return f"part-{index:05d}"


@task(name="shard", cache_policy=NO_CACHE, persist_result=False, task_run_name="{label}")
def run_call(label: str, fn: Callable[[], Any]) -> Any:
    """One independent piece of a stage (a generation shard, an evaluation group)."""
    return fn()


def _distributed() -> bool:
    """True when the flow runs on a Dask/Ray (any non-thread-pool) task runner."""
    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)


def map_calls(
    calls: Sequence[tuple[str, Callable[[], Any]]],
    *,
    on_done: Callable[[int, Any], None] = lambda position, result: None,
    stop_after: int | None = None,
) -> list[Any]:
    """Run labelled zero-argument calls as shard tasks and return their results in order.

    Sequential in this process under the thread-pool runner (no flow: plain calls);
    submitted together under a Dask/Ray runner. `on_done(position, result)` follows each
    completion in order. `stop_after` runs only the first N calls (fault injection)."""
    calls = list(calls)[:stop_after] if stop_after is not None else list(calls)
    results: list[Any] = []
    if FlowRunContext.get() is None:
        for position, (_, fn) in enumerate(calls):
            results.append(fn())
            on_done(position, results[-1])
        return results
    if not _distributed():
        for position, (label, fn) in enumerate(calls):
            results.append(run_call(label, fn))
            on_done(position, results[-1])
        return results
    futures = [run_call.submit(label, fn) for label, fn in calls]
    for position, future in enumerate(futures):
        results.append(future.result())
        on_done(position, results[-1])
    return results


def _write_shard(
    fn: ShardFunction, index: int, seed: int, rows: int, parts_dir: str
) -> dict[str, Any]:
    """Compute one shard and write its parts atomically; the JSON record is written last."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    frames, stats = fn(index, seed, rows)
    directory = Path(parts_dir)
    for name, frame in frames.items():
        write_table(frame, directory / f"{_part_stem(index)}.{name}.parquet")
    record = {
        "index": index,
        "seed": seed,
        "rows_requested": rows,
        "rows": {name: len(frame) for name, frame in frames.items()},
        "parts": sorted(frames),
        "stats": stats,
        "seconds": time.perf_counter() - wall0,
        "cpu_seconds": time.process_time() - cpu0,
    }
    atomic_write_json(record, directory / f"{_part_stem(index)}.json")
    return record


@dataclass
class ShardRun:
    """The outcome of `run_shards`: per-shard records in shard order and what was recomputed."""

    parts_dir: Path
    records: list[dict[str, Any]]
    computed: list[int]
    reused: list[int]
    cpu_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def frame(self, name: str) -> pd.DataFrame:
        """Part `name` of every shard, concatenated in shard order."""
        frames = [
            pd.read_parquet(self.parts_dir / f"{_part_stem(r['index'])}.{name}.parquet")
            for r in self.records
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def describe(self) -> dict[str, Any]:
        """What a manifest's `info` records about the shards."""
        return {
            "shards": len(self.records),
            "shards_computed": self.computed,
            "shards_reused": self.reused,
            "shard_cpu_seconds": round(self.cpu_seconds, 3),
        }

    def remove(self) -> None:
        """Delete the stage's shard folder (call once the merged output is written)."""
        shutil.rmtree(self.parts_dir.parent, ignore_errors=True)


def run_shards(
    stage: str,
    stage_dir: str | Path,
    key: str,
    sizes: Sequence[int],
    run_seed: int,
    fn: ShardFunction,
    *,
    progress: ProgressReporter | None = None,
    fail_after: int | None = None,
) -> ShardRun:
    """Compute the missing shards of `sizes` (rows per shard) with `fn`; reuse the rest.

    `fail_after`: raise InjectedFailure after that many missing shards were computed (a
    failure part way through a stage, used to test retries and resume); a stage run with
    a `@stage(..., fail_midway=True)` with an injected failure fails after half of them."""
    parts_dir = shards_root(stage_dir) / key
    parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in parts_dir.parent.iterdir():  # shards of an older config of this stage
        if stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    records: dict[int, dict[str, Any]] = {}
    for index in range(len(sizes)):
        path = parts_dir / f"{_part_stem(index)}.json"
        if path.is_file():
            records[index] = json.loads(path.read_text(encoding="utf-8"))
    reused = sorted(records)
    missing = [i for i in range(len(sizes)) if i not in records]
    done_rows = sum(sizes[i] for i in reused)
    if progress is not None:
        progress.update(done_rows)

    def finished(position: int, record: dict[str, Any]) -> None:
        nonlocal done_rows
        records[record["index"]] = record
        done_rows += sizes[record["index"]]
        if progress is not None:
            progress.update(done_rows)

    calls = [
        (
            f"{stage}-shard-{index}",
            _ShardCall(fn, index, shard_seed(run_seed, index), sizes[index], str(parts_dir)),
        )
        for index in missing
    ]
    if fail_after is None and take_midway_failure():
        fail_after = len(calls) // 2
    stop = None if fail_after is None else min(fail_after, len(calls))
    map_calls(calls, on_done=finished, stop_after=stop)
    computed = [i for i in missing if i in records]
    if fail_after is not None:
        raise InjectedFailure(
            f"Stage {stage!r} failed part way (injected by run.fail_at_stage={stage}) after "
            f"{len(computed)} of {len(missing)} missing shards; the finished shards are kept "
            f"in {parts_dir} and a retry or `synthloom resume RUN_ID` computes only the rest."
        )
    ordered = [records[i] for i in range(len(sizes))]
    return ShardRun(
        parts_dir=parts_dir,
        records=ordered,
        computed=computed,
        reused=reused,
        cpu_seconds=sum(records[i]["cpu_seconds"] for i in computed),
    )


@dataclass(frozen=True)
class _ShardCall:
    """A picklable zero-argument call computing one shard (sent to Dask/Ray workers)."""

    fn: ShardFunction
    index: int
    seed: int
    rows: int
    parts_dir: str

    def __call__(self) -> dict[str, Any]:
        return _write_shard(self.fn, self.index, self.seed, self.rows, self.parts_dir)
