"""`synthloom ui`: the Prefect server and the MLflow UI for a data directory, on 127.0.0.1.

Starts `prefect server start` (PREFECT_HOME = <data_dir>/prefect, the same database the
ephemeral API of a plain `synthloom run` writes, so earlier runs show up too) and
`mlflow ui --workers 1` on the run store `<data_dir>/mlflow/mlflow.db`
(`tracking.client.default_tracking_uri`), each in its own process group with its output in
`<data_dir>/logs/`. Waits until both answer their health endpoints, prints the URLs, and on
Ctrl-C or SIGTERM stops both process groups (SIGTERM, then SIGKILL after a grace period).
`synthloom run` reports into this server when PREFECT_API_URL is exported.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloom.errors import ConfigError, SynthloomError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000
STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0


class ServiceError(SynthloomError):
    """A dashboard service did not start or died; the message points at its log."""

    exit_code = 1


@dataclass
class Service:
    """One started server: its process (a process-group leader), URLs and log file."""

    name: str
    url: str
    health_url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def require_free_port(host: str, port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise ConfigError(
                f"Port {port} on {host} is already in use (another Prefect server or MLflow "
                f"UI?). Fix: stop that process, or pass {flag} with a free port."
            ) from None


def _venv_script(name: str) -> str:
    """The console script installed beside this interpreter (the project's .venv)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def prefect_server_command(host: str, port: int) -> list[str]:
    return [_venv_script("prefect"), "server", "start", "--host", host, "--port", str(port)]


def mlflow_ui_command(data_dir: Path, host: str, port: int) -> list[str]:
    from tracking.client import default_tracking_uri

    artifacts = (data_dir / "mlflow" / "artifacts").resolve()
    return [
        _venv_script("mlflow"),
        "ui",
        "--workers",
        "1",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        default_tracking_uri(data_dir),
        "--default-artifact-root",
        artifacts.as_uri(),
    ]


def service_env(data_dir: Path) -> dict[str, str]:
    """Environment of both servers: Prefect state under the data dir, no analytics."""
    env = dict(os.environ)
    env["PREFECT_HOME"] = str((data_dir / "prefect").resolve())
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] = "false"
    env.pop("PREFECT_API_URL", None)  # the server is the API; it must not point elsewhere
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_process(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start `command` as the leader of a new process group, output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_groups(processes: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process groups led by `processes` (all at once), SIGKILL whatever is left
    after `grace_s`, and reap the leaders. Group id = leader pid (`start_new_session`)."""

    def signal_group(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    for process in processes:
        signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:  # also children that outlived their leader
        signal_group(process, signal.SIGKILL)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URL
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(services: list[Service], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Block until every service answers its health URL; ServiceError if one dies or times out."""
    deadline = time.monotonic() + timeout_s
    pending = list(services)
    while pending:
        for service in list(pending):
            if service.process.poll() is not None:
                raise ServiceError(
                    f"{service.name} exited with code {service.process.returncode} while "
                    f"starting. Its log ({service.log_path}) ends with:\n{service.log_tail()}"
                )
            if is_healthy(service.health_url):
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise ServiceError(
                f"{names} did not become healthy within {timeout_s:.0f} s. See "
                + ", ".join(str(s.log_path) for s in pending)
            )
        if pending:
            time.sleep(0.5)


def start_prefect_server(data_dir: Path, host: str, port: int) -> Service:
    """`prefect server start` with PREFECT_HOME=<data_dir>/prefect (not yet healthy)."""
    (data_dir / "prefect").mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    log = data_dir / "logs" / "prefect.log"
    env = service_env(data_dir)
    env["PREFECT_SERVER_UI_API_URL"] = f"{url}/api"  # the browser UI's API (default: port 4200)
    process = start_process(prefect_server_command(host, port), env, log)
    return Service("Prefect server", url, f"{url}/api/health", process, log)


def start_mlflow_ui(data_dir: Path, host: str, port: int) -> Service:
    """`mlflow ui --workers 1` on the data dir's tracking store (not yet healthy)."""
    (data_dir / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    log = data_dir / "logs" / "mlflow.log"
    process = start_process(mlflow_ui_command(data_dir, host, port), service_env(data_dir), log)
    return Service("MLflow UI", url, f"{url}/health", process, log)


@contextmanager
def dashboard(
    data_dir: str | Path,
    host: str = DEFAULT_HOST,
    prefect_port: int | None = DEFAULT_PREFECT_PORT,
    mlflow_port: int | None = DEFAULT_MLFLOW_PORT,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> Iterator[dict[str, Service]]:
    """Start the servers whose port is not None, wait until healthy, yield them by name
    ("prefect", "mlflow"); always stop their process groups on exit (also when startup
    fails or is interrupted)."""
    from flows.environment import configure_runtime

    data_dir = configure_runtime(data_dir)
    if prefect_port is not None:
        require_free_port(host, prefect_port, "--prefect-port")
    if mlflow_port is not None:
        require_free_port(host, mlflow_port, "--mlflow-port")
    services: dict[str, Service] = {}
    try:
        if prefect_port is not None:
            services["prefect"] = start_prefect_server(data_dir, host, prefect_port)
        if mlflow_port is not None:
            services["mlflow"] = start_mlflow_ui(data_dir, host, mlflow_port)
        wait_healthy(list(services.values()), timeout_s)
        yield services
    finally:
        with _signals_ignored():  # a second Ctrl-C / SIGTERM must not cut the stop short
            stop_process_groups([service.process for service in services.values()])


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (main thread only; elsewhere a no-op)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigterm_raises_keyboard_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt (main thread only), so the `finally`
    blocks that stop child process groups also run when this process is terminated."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_ui(
    data_dir: str | Path,
    host: str = DEFAULT_HOST,
    prefect_port: int = DEFAULT_PREFECT_PORT,
    mlflow_port: int = DEFAULT_MLFLOW_PORT,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> int:
    """`synthloom ui`: serve both dashboards until Ctrl-C / SIGTERM (0) or one dies (1)."""
    print(f"synthloom: starting the Prefect server and the MLflow UI on {host} ...", flush=True)
    try:
        with (
            sigterm_raises_keyboard_interrupt(),
            dashboard(data_dir, host, prefect_port, mlflow_port, timeout_s) as services,
        ):
            prefect, mlflow = services["prefect"], services["mlflow"]
            print(
                f"synthloom: dashboards are up.\n"
                f"  Prefect: {prefect.url}  (flow runs, one task run per stage)\n"
                f"  MLflow:  {mlflow.url}  (runs, metrics, plots)\n"
                f"  logs:    {prefect.log_path.parent}\n"
                "To report `synthloom run` / `synthloom serve` into this Prefect server, run in "
                f"your shell:\n  export PREFECT_API_URL={prefect.url}/api\n"
                "Ctrl-C stops both.",
                flush=True,
            )
            while True:
                for service in services.values():
                    if service.process.poll() is not None:
                        raise ServiceError(
                            f"{service.name} exited with code {service.process.returncode}. "
                            f"Its log ({service.log_path}) ends with:\n{service.log_tail()}"
                        )
                time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        print("synthloom: stopped the Prefect server and the MLflow UI.", flush=True)
        return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from synthloom.runs import resolve_data_dir

    return run_ui(
        resolve_data_dir(args.data_dir),
        host=args.host,
        prefect_port=args.prefect_port,
        mlflow_port=args.mlflow_port,
        timeout_s=args.timeout,
    )


def add_ui_command(sub: Any) -> None:
    """Register `synthloom ui` on the CLI's subparsers."""
    ui = sub.add_parser(
        "ui",
        help="start the Prefect server and the MLflow UI for the data dir (Ctrl-C stops)",
        description="Start the Prefect server and the MLflow UI (one worker) on 127.0.0.1, "
        "wait until both are healthy and print their URLs.",
    )
    ui.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on")
    ui.add_argument("--prefect-port", type=int, default=DEFAULT_PREFECT_PORT)
    ui.add_argument("--mlflow-port", type=int, default=DEFAULT_MLFLOW_PORT)
    ui.add_argument(
        "--timeout", type=float, default=STARTUP_TIMEOUT_S, help="seconds to wait for health"
    )
    ui.add_argument("--data-dir", help="where runs/, prefect/ and mlflow/ live (default: data)")
    ui.set_defaults(func=cmd_ui)


__all__ = ["ServiceError", "add_ui_command", "dashboard", "free_port", "run_ui"]
