"""Which Prefect flow runs a pipeline config: the `flow` of its method's row in the core's
method registry (synthloom/methods/registry.py), a "module:function" string imported here.

Every pipeline flow has the signature `flow(config: dict, run_id: str, data_dir: str) -> dict`
(the run's summary). The import is lazy because importing a flow imports Prefect, which must
happen after `flows.environment.configure_runtime`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthloom.methods.registry import method_spec, resolve


def flow_for(method_name: str) -> Callable[..., dict[str, Any]]:
    """The flow function of a method (KeyError for a name the registry does not hold)."""
    return resolve(method_spec(method_name).flow)
