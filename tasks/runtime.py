"""What every stage task shares: cache policy, the staged output directory, the manifest.

A stage body is a plain function `body(out_dir) -> StageOutput` that writes its files
into `out_dir`; `execute_stage` times it, records CPU time and peak memory, hashes what
it wrote into `manifest.json` and renames the directory into place in one step.
The task's return value is that manifest: downstream tasks take it as an input, so
their cache keys change exactly when an upstream artifact's bytes change.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import resource
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from synthloom.artifacts import MANIFEST_NAME, atomic_write_json, sha256_tree, staged_directory
from synthloom.code_fingerprint import stage_fingerprint
from synthloom.errors import StageError, SynthloomError
from synthloom.progress import PROGRESS_EXTRA, ProgressEvent, ProgressReporter
from synthloom.stopping import RunInterrupted, stop_signal


@dataclass
class StageCode(CachePolicy):
    """Cache key part: `stage_fingerprint` of the task's module and the method it runs, i.e.
    the source of every project module the stage can run (synthloom.code_fingerprint), not
    of the whole tree."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        if not task_ctx:
            return None
        return stage_fingerprint(task_ctx.task.fn.__module__, method_of(inputs or {}))


def method_of(inputs: dict[str, Any]) -> str | None:
    """The method a stage runs, from its inputs: `method["name"]` or `method_name`."""
    method = inputs.get("method")
    name = method.get("name") if isinstance(method, dict) else inputs.get("method_name")
    return name if isinstance(name, str) else None


# Every stage's cache key: its inputs (upstream manifests enter as their file hashes, so new
# bytes upstream miss), its stage_dir, the body's own source and its code fingerprint.
# `inject_failure` is left out: a stage that recovered from an injected failure (retries,
# resume) is reused like any other.
STAGE_CACHE_POLICY = (INPUTS - "inject_failure") + TASK_SOURCE + StageCode()


def checkpoint_dir(stage_dir: Path) -> Path:
    """`<run>/.checkpoints/<stage>/`: outside the staged output, so a killed stage resumes
    from it; the stage frame removes it once the stage's output is in place."""
    return stage_dir.parent / ".checkpoints" / stage_dir.name


@dataclass(frozen=True)
class StageRun:
    """What a stage body gets besides its inputs: `stage_dir` (the stage's directory, named
    after the stage), `out` (the staged directory its files go to; renamed to `stage_dir`
    when the body returns), the run logger `log` and `code` (the stage's code fingerprint,
    for keys of its own, e.g. shards)."""

    stage_dir: Path
    out: Path
    log: Any
    code: str

    @property
    def name(self) -> str:
        """The stage's name, as the flow's recorder gives it: its directory's."""
        return self.stage_dir.name

    @property
    def checkpoint_dir(self) -> Path:
        """`checkpoint_dir(stage_dir)`: where this stage may checkpoint."""
        return checkpoint_dir(self.stage_dir)


def _manifest_value(value: Any) -> Any:
    """An input as the manifest records it: file refs {key: {path, sha256}} as {key: sha256}."""
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and "sha256" in v for v in value.values())
    ):
        return {k: v["sha256"] for k, v in value.items()}
    return value


def stage(
    name: str, *, config: str | tuple[str, ...], fail_midway: bool = False
) -> Callable[[Callable[..., StageOutput]], Any]:
    """Declare a pipeline stage: the decorated `body(run: StageRun, **inputs) -> StageOutput`
    becomes the Prefect task `name`, called as `task(**inputs, stage_dir=..,
    inject_failure=False)` and returning the stage manifest (`execute_stage`). The stage's
    own name (`run.name`: manifest, checkpoints, messages) is its directory's, which the
    flow's recorder gives; it equals `name` except for the scaling curves (`curve_<label>`).

    Cache key: STAGE_CACHE_POLICY (above). The manifest records `config` (the input of that
    name, or {name: value} of several, None left out) and `inputs` (every other input, file
    refs as their hashes). `fail_midway`: an injected failure strikes part way (sharded
    stages, `run_shards`). Results persist as JSON so a rerun in a new process finds them."""
    config_names = (config,) if isinstance(config, str) else config

    def declare(body: Callable[..., StageOutput]) -> Any:
        signature = inspect.signature(body)
        inputs = [p for p in signature.parameters.values() if p.name != "run"]
        extra = [
            inspect.Parameter("stage_dir", inspect.Parameter.KEYWORD_ONLY, annotation=str),
            inspect.Parameter(
                "inject_failure", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool
            ),
        ]

        @functools.wraps(body)
        def run_stage(
            *args: Any, stage_dir: str, inject_failure: bool = False, **kwargs: Any
        ) -> dict[str, Any]:
            bound = signature.bind_partial(None, *args, **kwargs)
            bound.apply_defaults()
            values = {k: v for k, v in bound.arguments.items() if k != "run"}
            log = get_run_logger()
            code = stage_fingerprint(body.__module__, method_of(values))
            if len(config_names) == 1:
                recorded = values[config_names[0]]
            else:
                recorded = {k: values[k] for k in config_names if values[k] is not None}
            stage_path = Path(stage_dir)
            manifest = execute_stage(
                stage_path.name,
                stage_dir,
                lambda out: body(StageRun(stage_path, out, log, code), **values),
                config=recorded,
                inputs={k: _manifest_value(v) for k, v in values.items() if k not in config_names},
                inject_failure=inject_failure,
                fail_midway=fail_midway,
            )
            shutil.rmtree(checkpoint_dir(stage_path), ignore_errors=True)
            return manifest

        run_stage.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*inputs, *extra],
            return_annotation=dict[str, Any],
        )
        return task(
            name=name,
            cache_policy=STAGE_CACHE_POLICY,
            persist_result=True,
            result_serializer="json",
        )(run_stage)

    return declare


class InjectedFailure(StageError):
    """Raised on purpose by `run.fail_at_stage` so resume can be tested and demonstrated."""


FAULTS_DIR = ".faults"


def fault_budget_path(stage_dir: str | Path) -> Path:
    """`<run_dir>/.faults/<stage>.json`: how many more attempts an injected failure fails."""
    stage_dir = Path(stage_dir)
    return stage_dir.parent / FAULTS_DIR / f"{stage_dir.name}.json"


def set_fault_budget(stage_dir: str | Path, attempts: int) -> None:
    """Make the injected failure of this stage transient: only the next `attempts` fail
    (0: no budget, every attempt fails)."""
    path = fault_budget_path(stage_dir)
    if attempts > 0:
        atomic_write_json({"remaining": attempts}, path)
    else:
        path.unlink(missing_ok=True)


def _consume_fault(stage_dir: Path) -> bool:
    """Whether this attempt fails: always without a budget file, else while it lasts."""
    path = fault_budget_path(stage_dir)
    if not path.is_file():
        return True
    remaining = json.loads(path.read_text(encoding="utf-8"))["remaining"]
    if remaining <= 0:
        return False
    atomic_write_json({"remaining": remaining - 1}, path)
    return True


# Set while a stage body runs with a pending part-way failure (see `run_shards`).
_MIDWAY_FAILURE: contextvars.ContextVar[dict[str, bool] | None] = contextvars.ContextVar(
    "synthloom_midway_failure", default=None
)


def take_midway_failure() -> bool:
    """True once if the running stage body should fail part way (the caller then raises)."""
    pending = _MIDWAY_FAILURE.get()
    if pending and pending["pending"]:
        pending["pending"] = False
        return True
    return False


def interruption_signal(error: BaseException | None) -> signal.Signals | None:
    """The signal that stopped the run, when `error` stands for one or a stop signal has
    been received (`synthloom.stopping`); else None.

    Looks through the exception's cause/context chain: Prefect can turn a TerminationSignal
    raised at an awkward moment into another error (e.g. "Task run is not set")."""
    from prefect.exceptions import TerminationSignal

    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, RunInterrupted):
            return error.signum
        if isinstance(error, TerminationSignal):
            return signal.Signals(error.signal)
        if isinstance(error, KeyboardInterrupt):
            return signal.SIGINT
        error = error.__cause__ or error.__context__
        seen += 1
    return stop_signal()


def is_user_error(error: BaseException | None) -> bool:
    """Bad input (config, data: exit code 2) is never retried; other failures may be."""
    return isinstance(error, SynthloomError) and error.exit_code == 2


def retry_options(
    stage: str,
    retries: dict[str, int],
    delay_seconds: float,
    on_retry: Callable[[BaseException | None], None] = lambda error: None,
) -> dict[str, Any]:
    """`Task.with_options` keywords for a stage's retries (run.retries / retry_delay_seconds).

    Delays back off exponentially (prefect.tasks.exponential_backoff): delay, 2 x delay,
    4 x delay, ... A user error (`is_user_error`) is not retried."""
    from prefect.tasks import exponential_backoff

    count = retries.get(stage, retries.get("default", 0))
    if count <= 0:
        return {"retries": 0}

    def retry_unless_user_error(task, task_run, state) -> bool:  # noqa: ANN001, ARG001
        error = state.result(raise_on_failure=False)
        error = error if isinstance(error, BaseException) else None
        if is_user_error(error):
            return False
        on_retry(error)
        return True

    return {
        "retries": count,
        "retry_delay_seconds": exponential_backoff(backoff_factor=delay_seconds)(count),
        "retry_condition_fn": retry_unless_user_error,
    }


@dataclass
class StageOutput:
    """What a stage body reports: files as {key: (relative name, rows or None)}."""

    files: dict[str, tuple[str, int | None]]
    rows_in: int | None = None
    rows_out: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def stage_progress(
    stage: str, total: int, unit: str, min_interval: float = 0.5
) -> ProgressReporter:
    """A ProgressReporter whose events go to the Prefect run log (counts, rate, ETA)."""
    from prefect import get_run_logger

    logger = get_run_logger()

    def log_event(event: ProgressEvent) -> None:
        logger.info(
            "%s: %s",
            stage,
            event.describe(),
            extra={PROGRESS_EXTRA: {**asdict(event), "rate": event.rate, "eta": event.eta}},
        )

    return ProgressReporter(stage, total, log_event, unit=unit, min_interval=min_interval)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextlib.contextmanager
def measure_resources(interval: float = 0.2) -> Iterator[dict[str, float]]:
    """Measure a block: the dict it yields gets `stage_peak_rss_mb` (this block's own peak,
    sampled every `interval` s) and, when the block used CUDA, `gpu_peak_mb`
    (torch.cuda.max_memory_allocated over the block)."""
    import psutil

    process = psutil.Process()
    found: dict[str, float] = {}
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    torch = sys.modules.get("torch")  # never import torch just to measure a stage
    cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        yield found
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        found["stage_peak_rss_mb"] = round(peak[0] / 2**20, 1)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            found["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


def execute_stage(
    name: str,
    stage_dir: str | Path,
    body: Callable[[Path], StageOutput],
    *,
    config: dict[str, Any],
    inputs: dict[str, Any],
    inject_failure: bool = False,
    fail_midway: bool = False,
) -> dict[str, Any]:
    """Run `body` into a staged directory and return the stage manifest (also on disk).

    `inject_failure` (run.fail_at_stage) fails the attempt up front, or part way through
    when `fail_midway` (sharded stages: after half of the missing shards); with
    run.fail_attempts only the first N attempts fail (see `set_fault_budget`)."""
    stage_dir = Path(stage_dir)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    injected = inject_failure and _consume_fault(stage_dir)
    if injected and not fail_midway:
        raise InjectedFailure(
            f"Stage {name!r} failed: a failure was injected by run.fail_at_stage={name}. "
            "Fix: remove that setting and run the same config again (or `synthloom resume "
            "RUN_ID`); finished stages are reused."
        )
    midway = {"pending": injected}
    token = _MIDWAY_FAILURE.set(midway)
    try:
        with staged_directory(stage_dir) as tmp:
            with measure_resources() as used:
                out = body(tmp)
            if midway["pending"]:
                raise InjectedFailure(
                    f"Stage {name!r} failed: a failure was injected by "
                    f"run.fail_at_stage={name} (it had no shards to fail between)."
                )
            manifest = _manifest(name, stage_dir, tmp, out, config, inputs, wall0, cpu0)
            manifest.update(used)
            atomic_write_json(manifest, tmp / MANIFEST_NAME)
    finally:
        _MIDWAY_FAILURE.reset(token)
    return manifest


def _manifest(
    name: str,
    stage_dir: Path,
    tmp: Path,
    out: StageOutput,
    config: dict[str, Any],
    inputs: dict[str, Any],
    wall0: float,
    cpu0: float,
) -> dict[str, Any]:
    """The manifest of a finished stage body (its files are still in `tmp`)."""
    files = {
        key: {"path": str(stage_dir / rel), "sha256": sha256_tree(tmp / rel), "rows": rows}
        for key, (rel, rows) in out.files.items()
    }
    return {
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


def file_refs(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of an upstream manifest a downstream task depends on: paths and hashes."""
    return {k: {"path": v["path"], "sha256": v["sha256"]} for k, v in manifest["files"].items()}
