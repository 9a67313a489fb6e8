"""synthloom core: models, methods, serialization, filters and metrics as plain functions.

Nothing in this package imports Prefect or MLflow; `tasks/` and `flows/` wrap it.

The Python API, loaded on first use so that `import synthloom` stays light:
`synthloom.fit(df, ...)`, `synthloom.load_run(run_id)` and `synthloom.Run` (synthloom/api.py,
core), and `synthloom.run(config, overrides=...)` (flows/api.py: running a pipeline needs
Prefect, so it lives in the flows layer; this module's `__getattr__` hands it out, the one
import of an upper layer by the core that tests/test_architecture.py allows).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_CORE_API = ("FittedGenerator", "Run", "fit", "load_run")
__all__ = [*_CORE_API, "run"]


def __getattr__(name: str) -> Any:
    if name in _CORE_API:
        from synthloom import api

        return getattr(api, name)
    if name == "run":
        from flows.api import run  # lazy: only `synthloom.run` itself imports the flows

        return run
    raise AttributeError(f"module 'synthloom' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
