"""Model loading: the causal LM that writes records, the encoder that embeds them, devices.

The names below load on first use (PEP 562), so importing a light submodule such as
`synthloom.models.denoiser` does not import transformers (about 3 s on a 2-core CPU): a
tabular run that never loads a language model starts that much sooner.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "BUILTIN_CAUSAL_LMS": "causal_lm",
    "causal_lm_info": "causal_lm",
    "load_causal_lm": "causal_lm",
    "autocast_dtype": "device",
    "resolve_device": "device",
    "set_seed": "device",
    "BUILTIN_ENCODERS": "encoder",
    "encode_texts": "encoder",
    "load_encoder": "encoder",
    "mean_pool": "encoder",
    "tiny_causal_lm": "tiny",
    "tiny_encoder": "tiny",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
