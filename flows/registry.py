"""Which Prefect flow runs a pipeline config, by `method.name`.

Every pipeline flow has the signature `flow(config: dict, run_id: str, data_dir: str) -> dict`
(the run's summary). Entries are "module:function", imported lazily because importing a flow
imports Prefect, which must happen after `flows.environment.configure_runtime`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

TABULAR_FLOW = "flows.tabular:tabular_pipeline"
TEXT_FLOW = "flows.text:text_pipeline"
SYNTHLLM_FLOW = "flows.synthllm:synthllm_pipeline"

# method name -> flow; methods not listed run in the tabular flow.
FLOW_BY_METHOD: dict[str, str] = {
    "fewgen": TEXT_FLOW,
    "cfg": TEXT_FLOW,
    "corrsynth": TEXT_FLOW,
    "bare": TEXT_FLOW,
    "synalign": TEXT_FLOW,
    "synthllm": SYNTHLLM_FLOW,
}


def flow_for(method_name: str) -> Callable[..., dict[str, Any]]:
    """The flow function for a method (the tabular flow unless listed in FLOW_BY_METHOD)."""
    module, _, attr = FLOW_BY_METHOD.get(method_name, TABULAR_FLOW).partition(":")
    return getattr(importlib.import_module(module), attr)
