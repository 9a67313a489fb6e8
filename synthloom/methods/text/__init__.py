"""Labelled-text generators by `method.name`, imported lazily (each pulls its own code).

Add a method: a class meeting `TextGenerator` (synthloom.methods.text.base), a config model
in `synthloom.config`, and an entry "name": "module:Class" in `TEXT_GENERATORS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from synthloom.methods.text.base import TextGenerator

TEXT_GENERATORS: dict[str, str] = {
    "fewgen": "synthloom.methods.text.fewgen:FewGenGenerator",
    "cfg": "synthloom.methods.text.cfg:CFGGenerator",
    "corrsynth": "synthloom.methods.text.corrsynth:CorrSynthGenerator",
    "bare": "synthloom.methods.text.bare:BAREGenerator",
    "synalign": "synthloom.methods.text.synalign:SynAlignGenerator",
}


def text_generator_class(name: str) -> type:
    """The generator class registered under `name` (KeyError for an unknown name)."""
    module, _, attr = TEXT_GENERATORS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def build_text_generator(method: dict[str, Any]) -> TextGenerator:
    """Instantiate the generator named by `method["name"]` with the whole method config."""
    return text_generator_class(method["name"])(dict(method))


__all__ = ["TEXT_GENERATORS", "build_text_generator", "text_generator_class"]
