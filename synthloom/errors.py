"""User-facing errors: one paragraph that names the file, the field and the fix.

Raise these at the boundary (config, ingestion, CLI arguments). The CLI prints
`str(err)` and exits non-zero without a traceback. Internal invariants use assert.
"""

from __future__ import annotations


class SynthloomError(Exception):
    """Base class for errors a user can fix; the message is shown verbatim."""

    exit_code = 2


class ConfigError(SynthloomError):
    """A config file or `--set` override is invalid."""


class DataError(SynthloomError):
    """Seed data cannot be used as given (missing, empty, malformed)."""


class StageError(SynthloomError):
    """A pipeline stage failed; the run summary records which one and why."""

    exit_code = 1


def data_error(source: str, problem: str, fix: str, column: str | None = None) -> DataError:
    """Build a DataError that says where (source, column), what went wrong, and the fix."""
    where = f"{source!s}" + (f", column {column!r}" if column is not None else "")
    return DataError(f"Seed data error in {where}: {problem} Fix: {fix}")
