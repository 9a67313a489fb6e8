"""A stop signal this process received (SIGTERM, SIGHUP, SIGINT): noted once, read by
whatever must not go on as if nothing happened (the run recorder, the CLI)."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_received: list[signal.Signals] = []


class RunInterrupted(BaseException):  # noqa: N818 - named like KeyboardInterrupt
    """A run stopped by a signal, raised in the main thread.

    A BaseException like KeyboardInterrupt, so that no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(f"interrupted by {self.signum.name}")


def note_stop(signum: int) -> None:
    """Remember that `signum` asked this process to stop (the first one counts)."""
    if not _received and signum in STOP_SIGNALS:
        _received.append(signal.Signals(signum))


def stop_signal() -> signal.Signals | None:
    """The stop signal received so far, or None."""
    return _received[0] if _received else None


def clear_stop() -> None:
    """Forget a noted signal (a new run in the same process starts clean)."""
    _received.clear()
