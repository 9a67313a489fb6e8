"""Pipeline configs: YAML validated with pydantic; every mistake names file, dotted key and fix.

| module     | holds                                                                          |
| ---------- | ------------------------------------------------------------------------------ |
| `base`     | `StrictConfig` (every config's base), `parse_yaml` (the safe YAML reader),     |
|            | `config_error` (a ValidationError as one ConfigError): bench and scaling too   |
| `methods`  | the method configs of DiffLM, TabSyn, marginals and the text methods           |
| `sections` | data, generate, filter, text_filter, evaluate, tracking, run                   |
| `pipeline` | `PipelineConfig`, its `method` union built from synthloom/methods/registry.py  |
| `identity` | `config_hash`: a run's identity, without the keys that cannot change results   |
| `loading`  | `load_config`, `load_raw_config`, `load_overridden`, `apply_override`,         |
|            | `validate_config`, `flatten`                                                   |

The names in `__all__` can be imported from `synthloom.config` itself. A module is imported
when one of its names is first read, so importing `synthloom.config.base` or `.methods` runs
no other module of the package (the method registry imports the method configs, and the
pipeline config imports the registry).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthloom.config.identity import config_hash
    from synthloom.config.loading import (
        apply_override,
        flatten,
        load_config,
        load_overridden,
        load_raw_config,
        validate_config,
    )
    from synthloom.config.methods import (
        BAREConfig,
        CFGConfig,
        CorrSynthConfig,
        DiffLMConfig,
        FewGenConfig,
        MarginalsConfig,
        SynAlignConfig,
        TabSynConfig,
    )
    from synthloom.config.pipeline import MethodConfig, PipelineConfig
    from synthloom.config.sections import (
        DataConfig,
        EvaluateConfig,
        FilterConfig,
        GenerateConfig,
        RunConfig,
        TextFilterConfig,
        TrackingConfig,
    )

__all__ = [
    "BAREConfig",
    "CFGConfig",
    "CorrSynthConfig",
    "DataConfig",
    "DiffLMConfig",
    "EvaluateConfig",
    "FewGenConfig",
    "FilterConfig",
    "GenerateConfig",
    "MarginalsConfig",
    "MethodConfig",
    "PipelineConfig",
    "RunConfig",
    "SynAlignConfig",
    "TabSynConfig",
    "TextFilterConfig",
    "TrackingConfig",
    "apply_override",
    "config_hash",
    "flatten",
    "load_config",
    "load_overridden",
    "load_raw_config",
    "validate_config",
]

# In import order: a module imports names only from modules before it, so the first one
# that holds a name defines it.
_MODULES = ("methods", "sections", "pipeline", "identity", "loading")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            found = importlib.import_module(f"{__name__}.{module}").__dict__
            if name in found:
                globals()[name] = found[name]
                return found[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
