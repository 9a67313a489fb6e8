"""Where a run's state lives, set up BEFORE Prefect is imported (it reads env at import).

data_dir (default ./data, or SYNTHLOOM_DATA_DIR: synthloom/runs.py) holds runs/, prefect/
(the ephemeral API's SQLite database), mlflow/ and models/. When PREFECT_API_URL is already
set (a `prefect server start`), flows report there instead of the ephemeral API.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure_runtime(data_dir: str | Path) -> Path:
    """Point Prefect's home at data_dir/prefect and quiet analytics; returns data_dir resolved."""
    data_dir = Path(data_dir).resolve()
    (data_dir / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(data_dir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return data_dir


class _UserErrorsWithoutTraceback:
    """Logging filter: a user-fixable SynthloomError is logged as its message, no traceback;
    so is every error logged after a stop signal (SIGTERM, SIGHUP, SIGINT) was received.

    Prefect logs every failed task and flow with its traceback; for bad input the
    one-paragraph message is the whole story. While a run is being cancelled, tasks in
    flight fail BECAUSE of the cancellation (their flow context is gone, the API server is
    stopping), and their tracebacks would bury the one line that says the run was
    cancelled and how to resume. Other exceptions keep their tracebacks."""

    def filter(self, record) -> bool:  # noqa: ANN001 - logging.LogRecord
        from synthloom.errors import SynthloomError
        from synthloom.stopping import stop_signal

        if record.exc_info and (
            isinstance(record.exc_info[1], SynthloomError) or stop_signal() is not None
        ):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    """Install the filter on the handlers of Prefect's loggers (call after importing Prefect)."""
    import logging

    seen = set()
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                handler.addFilter(_UserErrorsWithoutTraceback())


def console_logs_to_current_stderr() -> None:
    """Point Prefect's console log handlers at the current `sys.stderr`.

    Prefect makes them once per process, bound to the `sys.stderr` of that moment. A process
    that replaced `sys.stderr` since (a notebook, a wrapper, pytest's per-test capture) would
    have every later run write its log to that old stream, closed by then: "--- Logging
    error --- ... I/O operation on closed file" in the middle of the run's output. Called
    before each run."""
    import logging
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, PrefectConsoleHandler) and handler.stream is not sys.stderr:
                with handler.lock:  # not setStream: it flushes the old stream, maybe closed
                    handler.stream = sys.stderr
                    handler.console.file = sys.stderr


def reap_orphaned_servers(prefect_home: str | Path | None = None) -> list[int]:
    """Stop ephemeral Prefect API servers left running by a killed synthloom process.

    Prefect starts its ephemeral server as a child process and stops it at exit; a process
    killed with SIGKILL (OOM killer, `kill -9`) cannot, and the server lives on. A server
    counts as orphaned when its parent is gone (re-parented to init or a subreaper) and it
    belongs to the same PREFECT_HOME. Returns the pids that were stopped."""
    import psutil

    home = str(prefect_home or os.environ.get("PREFECT_HOME", ""))
    stopped = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if "prefect.server.api.server:create_app" not in cmdline:
                continue
            parent = proc.parent()
            if parent is not None and parent.pid != 1 and "python" in (parent.name() or ""):
                continue  # its synthloom/prefect parent is alive
            env = proc.environ()
            if env.get("PREFECT__SERVER_EPHEMERAL") != "1" or env.get("PREFECT_HOME") != home:
                continue
            proc.terminate()
            proc.wait(timeout=10)
            stopped.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return stopped
