"""One process per run directory: an advisory lock (flock) on ``<run_dir>/.lock``.

The kernel drops the lock when its holder exits, however it exits (kill -9 included), so a
lock never outlives its process and never blocks a later resume. The file says who holds
it, for the error the second process shows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from synthloom.errors import SynthloomError

LOCK_NAME = ".lock"


class RunLockedError(SynthloomError):
    """Another process is running the same run (same run directory)."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path, run_id: str) -> Iterator[Path]:
    """Hold the run directory's lock for the block; RunLockedError names the holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked_error(run_id, _holder(path)) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> dict[str, object]:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def _locked_error(run_id: str, holder: dict[str, object]) -> RunLockedError:
    pid = holder.get("pid", "?")
    where = f" on {holder['host']}" if holder.get("host") else ""
    since = f", started {holder['started']}" if holder.get("started") else ""
    command = f": `{holder['command']}`" if holder.get("command") else ""
    return RunLockedError(
        f"Run {run_id!r} is already running in process {pid}{where}{since}{command}. Two "
        "processes writing one run directory would corrupt it. Fix: wait for that process "
        f"to finish (or stop it with `kill {pid}`) and then `synthloom resume {run_id}`, or "
        "start a separate run with --fresh."
    )
