"""`synthloom.run(config)`: the pipeline `synthloom run` runs, called from Python.

The config (a YAML path or a mapping, plus `overrides` as {dotted key: value}) is validated
here, so a bad key raises the CLI's ConfigError in the caller. The run itself is
`execute_run` in a child process (`python -m flows.api`): the same run id, stage cache, run
lock, MLflow tracking and signal handling as the CLI, and nothing left in a notebook kernel
afterwards (Prefect's temporary API server, its threads and the signal handlers that end a
cancelled run with os._exit live and end with the child). The child's output is echoed
line by line; a failed run raises the error class and message its summary.json records.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthloom import errors
from synthloom.api import Run, load_run
from synthloom.config import PipelineConfig, apply_override, load_config, validate_config
from synthloom.ingest.sources import source_files
from synthloom.runs import resolve_data_dir, run_id_for

DICT_ORIGIN = "synthloom.run(config mapping)"
CANCEL_WAIT_SECONDS = 30.0  # a run stops within seconds of SIGINT (flows/signals.py)


def pipeline_config(
    config: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> PipelineConfig:
    """The validated config: a YAML file as `synthloom run FILE --set k=v` reads it, or a
    mapping with the same sections; override values are Python values (`500`, `"cuda"`)."""
    assignments = [f"{key}={json.dumps(value)}" for key, value in (overrides or {}).items()]
    if isinstance(config, (str, Path)):
        return load_config(config, assignments)
    raw = copy.deepcopy(dict(config))
    origin = DICT_ORIGIN
    if assignments:
        origin += " (with --set " + " ".join(assignments) + ")"
    for assignment in assignments:
        apply_override(raw, assignment, origin)
    return validate_config(raw, origin)


def run(
    config: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
    *,
    fresh: bool = False,
    run_id: str | None = None,
    echo: bool = True,
) -> Run:
    """Run the pipeline of `config` as `synthloom run` would and return the finished `Run`.

    Running the same config again continues the same run (finished stages are reused);
    `fresh=True` starts a new one. `echo=False` keeps the run's output to the returned
    error. Raises the ConfigError / DataError / StageError a failed run ends with, and
    KeyboardInterrupt (after the run recorded itself cancelled) on an interrupt."""
    cfg = pipeline_config(config, overrides)
    source_files(cfg.data.source, cfg.data.format)  # the CLI's refusal, before a process starts
    run_id = run_id_for(cfg, fresh, run_id)
    root = resolve_data_dir(str(data_dir) if data_dir else None, cfg).resolve()
    started = time.time()
    code, tail = _run_child(cfg.model_dump(mode="json"), run_id, root, echo)
    if code != 0:
        raise _run_error(run_id, root, code, tail, started)
    return load_run(run_id, root)


def _run_child(
    config: dict[str, Any], run_id: str, data_dir: Path, echo: bool
) -> tuple[int, list[str]]:
    """Run `python -m flows.api RUN_ID DATA_DIR` with the config on stdin; echo its output.
    Returns its exit code and its last lines."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.api", run_id, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    tail: deque[str] = deque(maxlen=40)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(config))
        proc.stdin.close()
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if echo:
                print(line, end="", flush=True)
        return proc.wait(), list(tail)
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        if proc.poll() is None:  # any other exception in the caller: never leave it running
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT, as Ctrl-C in a terminal would send (the run records itself cancelled and
    stops its children), then SIGKILL if it has not exited within CANCEL_WAIT_SECONDS."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=CANCEL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run_error(
    run_id: str, data_dir: Path, code: int, tail: list[str], started: float
) -> errors.SynthloomError:
    """The error a failed child ends with: summary.json's error (its class by name) when this
    run wrote one, else the child's own last `synthloom:` paragraph."""
    path = data_dir / "runs" / run_id / "summary.json"
    recorded: dict[str, Any] = {}
    if path.is_file() and path.stat().st_mtime >= started - 1:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("error") or {}
    if recorded.get("message"):
        cls = getattr(errors, str(recorded.get("type")), None)
        if not (isinstance(cls, type) and issubclass(cls, errors.SynthloomError)):
            cls = errors.StageError
        stage = f" in stage {recorded['stage']!r}" if recorded.get("stage") else ""
        return cls(
            f"run {run_id} failed{stage}: {recorded['message']} (summary: {path}; run the "
            f"same call again, or `synthloom resume {run_id}`, to continue)"
        )
    said = [line for line in tail if line.startswith("synthloom: ")]
    message = said[-1][len("synthloom: ") :] if said else "\n".join(tail[-10:])
    cls = errors.ConfigError if code == 2 else errors.StageError
    return cls(f"run {run_id} exited with code {code}: {message}")


def main(argv: list[str] | None = None) -> int:
    """The child: `python -m flows.api RUN_ID DATA_DIR`, the validated config as JSON on
    stdin; exit codes as `synthloom run`'s."""
    from flows.execute import execute_run

    run_id, data_dir = argv if argv is not None else sys.argv[1:3]
    config = json.loads(sys.stdin.read())
    try:
        return execute_run(config, run_id, Path(data_dir))
    except errors.SynthloomError as err:
        print(f"synthloom: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["pipeline_config", "run"]
