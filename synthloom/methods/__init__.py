"""Table generators by `method.name`: the tabular rows of the method registry
(synthloom/methods/registry.py) that name a generator class, imported on first use (so
importing this package imports no method's code). Add a method: see the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthloom.methods.registry import METHODS, resolve

if TYPE_CHECKING:
    from synthloom.methods.base import TabularGenerator

# method name -> "module:Class" of its `TabularGenerator`
GENERATORS: dict[str, str] = {
    spec.name: spec.generator for spec in METHODS if spec.kind == "tabular" and spec.generator
}


def generator_class(name: str) -> type[TabularGenerator]:
    """The table generator class of method `name` (KeyError for another name)."""
    return resolve(GENERATORS[name])


def build_generator(method: dict[str, Any]) -> TabularGenerator:
    """Instantiate the generator named by `method["name"]` with the remaining keys."""
    params = dict(method)
    name = params.pop("name")
    return generator_class(name)(**params)


__all__ = ["GENERATORS", "build_generator", "generator_class"]
