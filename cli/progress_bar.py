"""The CLI's progress bar: one line on stderr, redrawn from the stages' progress log records.

Stages report progress through `tasks.runtime.stage_progress`: Prefect log records carrying
a `synthloom_progress` event (stage, done, total, unit, elapsed, rate, eta). They reach the
Prefect run log as usual; on a terminal this handler also draws them as a bar and keeps the
same lines off the console (elsewhere, e.g. in CI logs, the plain log lines remain).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from synthloom.progress import PROGRESS_EXTRA

BAR_WIDTH = 28


def render_bar(event: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """'generate [##########----------]  1200/2000 rows  345.2 rows/s  ETA 2.3 s'."""
    total = max(int(event["total"]), 1)
    share = min(max(event["done"] / total, 0.0), 1.0)
    filled = int(round(share * width))
    eta = event.get("eta")
    eta_text = (
        "done"
        if event["done"] >= event["total"]
        else "ETA ?"
        if eta is None
        else f"ETA {eta:.1f} s"
    )
    return (
        f"{event['stage']} [{'#' * filled}{'-' * (width - filled)}] "
        f"{event['done']}/{event['total']} {event['unit']}  "
        f"{event.get('rate', 0.0):.1f} {event['unit']}/s  {eta_text}"
    )


class ProgressBarHandler(logging.Handler):
    """Draws progress records as a single line redrawn in place on `stream`."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(level=logging.INFO)
        self.stream = stream
        self._width = 0

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, PROGRESS_EXTRA, None)
        if event is None:
            return
        line = render_bar(event)
        pad = " " * max(self._width - len(line), 0)
        self._width = len(line)
        end = "\n" if event["done"] >= event["total"] else ""
        if end:
            self._width = 0
        self.stream.write(f"\r{line}{pad}{end}")
        self.stream.flush()


class _NotProgress(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, PROGRESS_EXTRA, None) is None


def install_progress_bar(stream: TextIO | None = None) -> ProgressBarHandler | None:
    """On a terminal: draw progress on `stream` (stderr) and keep progress lines off the
    console handlers. Returns the handler, or None when `stream` is not a terminal."""
    stream = stream or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    logger = logging.getLogger("prefect.task_runs")
    for existing in logger.handlers:
        if isinstance(existing, ProgressBarHandler):
            return existing
    for name in ("prefect.task_runs", "prefect", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, ProgressBarHandler
            ):
                handler.addFilter(_NotProgress())
    handler = ProgressBarHandler(stream)
    logger.addHandler(handler)
    return handler
