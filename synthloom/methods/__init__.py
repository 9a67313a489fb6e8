"""Generators by `method.name`. Add a method: a class meeting `TabularGenerator`, a config
model in `synthloom.config`, and an entry in `GENERATORS`."""

from __future__ import annotations

from typing import Any

from synthloom.methods.base import TabularGenerator
from synthloom.methods.marginals import IndependentMarginals
from synthloom.methods.peers import PEER_GENERATORS  # their packages load lazily (fit/load)
from synthloom.methods.tabsyn import TabSynGenerator

GENERATORS: dict[str, type] = {
    IndependentMarginals.name: IndependentMarginals,
    TabSynGenerator.name: TabSynGenerator,
    **PEER_GENERATORS,
}


def build_generator(method: dict[str, Any]) -> TabularGenerator:
    """Instantiate the generator named by `method["name"]` with the remaining keys."""
    params = dict(method)
    name = params.pop("name")
    return GENERATORS[name](**params)


def generator_class(name: str) -> type:
    return GENERATORS[name]


__all__ = [
    "GENERATORS",
    "IndependentMarginals",
    "TabularGenerator",
    "build_generator",
    "generator_class",
]
