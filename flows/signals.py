"""How a run stops on SIGTERM, SIGHUP or SIGINT: within seconds, recorded, resumable.

`stop_on_signals` turns SIGTERM and SIGHUP into `RunInterrupted` in the main thread (SIGINT
raises KeyboardInterrupt as always). While a flow runs, Prefect swaps in its own SIGTERM
bridge (TerminationSignal), which Prefect may turn into another error or swallow, so every
stop signal is also noted by a watcher thread reading `signal.set_wakeup_fd` (written for
any signal, whichever Python handler is installed): `RunRecorder` then marks the
interrupted stage `cancelled` and starts nothing new, and if the main thread has not left
within `FORCE_EXIT_SECONDS` the watcher leaves for it.

Leaving (`exit_after_signal`): summary.json says `cancelled` with the signal, Prefect's
queued logs and events get at most `LOG_DRAIN_SECONDS`, this process's children (the
ephemeral Prefect API server, local cluster workers) are stopped, and the process ends with
os._exit(128 + signal number), so interpreter shutdown cannot wait on worker threads or on a
log queue whose API server is already gone. Finished stages and generation shards are on
disk; `synthloom resume RUN_ID` continues from there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from synthloom.stopping import STOP_SIGNALS, RunInterrupted, clear_stop, note_stop, stop_signal

RAISING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
FORCE_EXIT_SECONDS = 5.0
LOG_DRAIN_SECONDS = 1.5
CHILD_STOP_SECONDS = 2.0

_leaving = threading.Lock()


def _raise_interrupted(signum: int, frame: object) -> None:  # noqa: ARG001
    note_stop(signum)
    raise RunInterrupted(signum)


@contextlib.contextmanager
def stop_on_signals(run_id: str, run_dir: Path) -> Iterator[None]:
    """Within the block a stop signal ends the run as the module docstring says (in the
    main thread only: signal handlers cannot be installed from another thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear_stop()
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _raise_interrupted) for s in RAISING_SIGNALS}
    watcher = threading.Thread(
        target=_watch, args=(reader, run_id, run_dir), name="synthloom-signals", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(previous_fd)
        writer.close()  # the watcher reads end-of-file and returns


def _watch(reader: socket.socket, run_id: str, run_dir: Path) -> None:
    with reader:
        while data := reader.recv(64):
            stops = [b for b in data if b in STOP_SIGNALS]
            if stops:
                note_stop(stops[0])
                time.sleep(FORCE_EXIT_SECONDS)  # the main thread normally leaves first
                _leave(signal.Signals(stops[0]), run_id, run_dir, forced=True)


def exit_after_signal(error: BaseException | None, run_id: str, run_dir: Path) -> None:
    """Leave the process at once when `error` (or a noted signal) says a stop signal ended
    the run; returns, doing nothing, otherwise."""
    if error is None:
        received = stop_signal()
    else:
        from tasks.runtime import interruption_signal  # Prefect is imported by now

        received = interruption_signal(error)
    if received is not None:
        _leave(received, run_id, run_dir, forced=False)


def _leave(received: signal.Signals, run_id: str, run_dir: Path, forced: bool) -> None:
    code = 128 + int(received)
    if not _leaving.acquire(blocking=False):
        return  # the other thread is already leaving
    with contextlib.suppress(Exception):
        for s in STOP_SIGNALS:  # a second signal only shortens the cleanup
            signal.signal(s, lambda *_: os._exit(code))
    summary = None
    with contextlib.suppress(Exception):
        from tasks.recorder import record_cancellation

        summary = record_cancellation(run_dir, received.name)
    _drain_prefect_logs(LOG_DRAIN_SECONDS)
    stop_child_processes(CHILD_STOP_SECONDS)
    late = f" (the run had not stopped {FORCE_EXIT_SECONDS:.0f} s after it)" if forced else ""
    where = (
        f"finished stages are kept.\n  summary: {run_dir / 'summary.json'}\n  resume:  "
        f"synthloom resume {run_id}"
        if summary is not None
        else "run the same command again to continue (finished work is reused)."
    )
    with contextlib.suppress(Exception):
        print(
            f"\nsynthloom: run {run_id} cancelled by {received.name}{late}; {where}",
            file=sys.stderr,
            flush=True,
        )
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _drain_prefect_logs(timeout: float) -> None:
    """Send Prefect's queued logs and events to the API server for at most `timeout` s."""
    if "prefect.logging.handlers" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        start = time.monotonic()
        APILogWorker.drain_all(timeout=timeout)
        EventsWorker.drain_all(timeout=max(0.1, timeout - (time.monotonic() - start)))


PREFECT_SERVER_APP = "prefect.server.api.server:create_app"


def _is_temporary_server(process) -> bool:  # noqa: ANN001 - a psutil.Process
    """Whether `process` is a Prefect ephemeral API server (False when it cannot be read)."""
    import psutil

    try:
        return PREFECT_SERVER_APP in process.cmdline()
    except psutil.Error:
        return False


@functools.cache  # registered once per process
def kill_temporary_server_at_exit() -> None:
    """At interpreter exit, kill this process's temporary Prefect API server before Prefect's
    own exit handler stops it gracefully (call after a flow ran, so the handler registered
    here runs first: atexit is last in, first out; registered once per process).

    A graceful stop cancels the server's last task-run-state write, and the server prints
    the cancelled write's tracebacks after the run's final lines; the write is lost either
    way. SQLite keeps the database consistent through a kill (see stop_child_processes)."""
    import atexit

    atexit.register(_kill_temporary_servers)


def _kill_temporary_servers() -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        servers = [c for c in psutil.Process().children(recursive=True) if _is_temporary_server(c)]
        for server in servers:
            with contextlib.suppress(psutil.Error):
                server.kill()
        psutil.wait_procs(servers, timeout=CHILD_STOP_SECONDS)


def stop_child_processes(timeout: float) -> list[int]:
    """Stop every child process of this one (recursively), kill what outlives `timeout`
    seconds; returns their pids.

    The ephemeral Prefect API server is killed outright: its SQLite database survives that
    (transactions), and a graceful stop while it is behind on recording task-run events
    prints the server's own tracebacks over the run's last lines. Others get SIGTERM."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if _is_temporary_server(child):
                child.kill()
            else:
                child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [c.pid for c in children]
