"""The method registry (synthloom/methods/registry.py): one row per `method.name`, and every
other method lookup derived from it."""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import synthloom.config
from synthloom.bench.config import GeneratorEntry
from synthloom.config import PipelineConfig, validate_config
from synthloom.errors import ConfigError
from synthloom.methods import GENERATORS, generator_class
from synthloom.methods.peers import PEER_PACKAGES
from synthloom.methods.registry import (
    METHOD_CONFIGS,
    METHODS,
    STAGES,
    TEXT_METHODS,
    method_spec,
    resolve,
    stages_for,
)
from synthloom.methods.text import text_generator_class

REPO = Path(__file__).resolve().parent.parent
NAMES = [spec.name for spec in METHODS]


def minimal(name: str) -> dict[str, typing.Any]:
    """The smallest valid pipeline config of method `name`."""
    data = {"source": "data.csv", "target": "label"}
    if method_spec(name).kind != "tabular":
        data["text_column"] = "text"
    return {"data": data, "method": {"name": name}, "generate": {"num_rows": 10}}


def test_names_are_unique_and_each_config_is_its_methods() -> None:
    assert len(NAMES) == len(set(NAMES))
    for spec in METHODS:
        assert typing.get_args(spec.config.model_fields["name"].annotation) == (spec.name,)
        assert spec.config.__module__.startswith("synthloom.")


@pytest.mark.parametrize("spec", METHODS, ids=NAMES)
def test_generator_strings_resolve_to_the_methods_class(spec) -> None:
    if spec.generator is None:  # the flow runs the method's own stages
        assert spec.name in ("difflm", "synthllm")
        return
    cls = resolve(spec.generator)
    assert cls.name == spec.name
    if spec.kind == "tabular":
        assert generator_class(spec.name) is cls
    else:
        assert text_generator_class(spec.name) is cls


@pytest.mark.parametrize("spec", METHODS, ids=NAMES)
def test_flow_strings_resolve_to_a_flow(spec) -> None:
    from flows.registry import flow_for

    flow = resolve(spec.flow)
    assert flow_for(spec.name) is flow and callable(flow)
    assert spec.flow.startswith(f"flows.{spec.kind}:")


def test_stages() -> None:
    for spec in METHODS:
        assert spec.stages[0] == "ingest" and spec.stages[-1] == "evaluate"
        assert stages_for(spec.name) == spec.stages
    assert stages_for("") == STAGES  # a stored config without a method: the tabular flow's


def test_the_method_union_accepts_exactly_the_registrys_names() -> None:
    annotation = PipelineConfig.model_fields["method"].annotation
    union = [
        typing.get_args(m.model_fields["name"].annotation)[0] for m in typing.get_args(annotation)
    ]
    assert union == NAMES
    for name in NAMES:
        config = validate_config(minimal(name), "test")
        assert type(config.method) is METHOD_CONFIGS[name]
    with pytest.raises(ConfigError, match="Expected one of: " + ", ".join(NAMES) + r"\."):
        validate_config(minimal("marginals") | {"method": {"name": "nope"}}, "test")


def test_derived_lookups() -> None:
    tabular = [s.name for s in METHODS if s.kind == "tabular"]
    assert list(GENERATORS) == [s.name for s in METHODS if s.kind == "tabular" and s.generator]
    assert set(TEXT_METHODS) == {s.name for s in METHODS if s.kind == "text"}
    peers = {s.name for s in METHODS if (s.generator or "").startswith("synthloom.methods.peers.")}
    assert peers == set(PEER_PACKAGES)
    for name in NAMES:  # a bench compares the tabular flow's methods only
        if name in tabular:
            GeneratorEntry(method={"name": name})
        else:
            with pytest.raises(ValueError, match="generates text"):
                GeneratorEntry(method={"name": name})
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        method_spec("nope")
    with pytest.raises(KeyError):
        text_generator_class("tabsyn")


def test_the_config_package_names_resolve() -> None:
    for name in synthloom.config.__all__:
        value = getattr(synthloom.config, name)
        home = getattr(value, "__module__", "")
        if home.startswith("synthloom.config."):  # classes and functions: the defining module
            assert getattr(importlib.import_module(home), name) is value


@pytest.mark.parametrize(
    "module",
    [
        "synthloom.methods.registry",
        "synthloom.methods",
        "synthloom.peer_configs",
        "synthloom.concepts.config",
        "synthloom.config.base",
        "synthloom.config.methods",
    ],
)
def test_any_config_module_imports_first(module) -> None:
    """The registry imports the method configs and the pipeline config imports the registry:
    whichever a program imports first, no module meets another half-initialised."""
    script = f"import {module}; from synthloom.config import load_config, PipelineConfig"
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
