"""Labelled-text generators by `method.name`: the method registry's text rows
(synthloom/methods/registry.py), each class imported on first use (each pulls its own code).

Add a method: a class meeting `TextGenerator` (synthloom.methods.text.base), a config model
in synthloom/config/methods.py, and a row in the registry.
"""

from __future__ import annotations

from typing import Any

from synthloom.methods.registry import TEXT_METHODS, method_spec, resolve
from synthloom.methods.text.base import TextGenerator


def text_generator_class(name: str) -> type[TextGenerator]:
    """The generator class registered under `name` (KeyError for another name)."""
    if name not in TEXT_METHODS:
        raise KeyError(f"{name!r} is not a text method; text methods: {', '.join(TEXT_METHODS)}")
    return resolve(method_spec(name).generator)


def build_text_generator(method: dict[str, Any]) -> TextGenerator:
    """Instantiate the generator named by `method["name"]` with the whole method config."""
    return text_generator_class(method["name"])(dict(method))


__all__ = ["build_text_generator", "text_generator_class"]
