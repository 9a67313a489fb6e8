"""Every method the pipeline runs, in one table: `METHODS`, a `MethodSpec` per `method.name`.

A spec names the method's config model, its kind (what it makes and which flow runs it),
its generator class and its flow (each a "module:attr" string, imported on use: the core
must not import flows, and a generator's module pulls in torch), and its stages. Every
other lookup is derived from the table:

| lookup                                                   | where                           |
| -------------------------------------------------------- | ------------------------------- |
| the `method` union of `PipelineConfig`                   | synthloom/config/pipeline.py    |
| `stages_for`, `METHOD_CONFIGS`, `TEXT_METHODS`, ...      | here                            |
| `GENERATORS`, `build_generator`, `generator_class`       | synthloom/methods/__init__.py   |
| `build_text_generator`, `text_generator_class`           | synthloom/methods/text/         |
| `flow_for`                                               | flows/registry.py               |

Add a method: its config model (synthloom/config/methods.py, or beside its code when that
package imports light, like synthloom/peer_configs.py), its generator class (or its own
stages in a flow), and one row here. tests/test_method_registry.py checks that every row's
strings import and that the config's method union holds exactly these names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from synthloom.concepts.config import SynthLLMConfig
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
from synthloom.peer_configs import (
    CTGANConfig,
    GaussianCopulaConfig,
    GReaTConfig,
    SmoteConfig,
    TVAEConfig,
)

# What a method makes, which decides its flow: table rows, labelled text, or SynthLLM's
# concept-graph text.
MethodKind = Literal["tabular", "text", "synthllm"]

STAGES = ("ingest", "fit", "generate", "filter", "evaluate")
TABSYN_STAGES = ("ingest", "train_vae", "train_diffusion", "generate", "filter", "evaluate")
DIFFLM_STAGES = (
    "ingest",
    "serialize",
    "train_vae",
    "train_diffusion",
    "generate",
    "reconstruction",
    "filter",
    "evaluate",
)
TEXT_STAGES = ("ingest", "generate", "filter", "evaluate")
SYNTHLLM_STAGES = (
    "ingest",
    "extract_concepts",
    "build_graph",
    "sample_combinations",
    "generate",
    "filter",
    "evaluate",
)

# Every pipeline flow has the signature `flow(config: dict, run_id: str, data_dir: str) -> dict`.
TABULAR_FLOW = "flows.tabular:tabular_pipeline"
TEXT_FLOW = "flows.text:text_pipeline"
SYNTHLLM_FLOW = "flows.synthllm:synthllm_pipeline"


@dataclass(frozen=True)
class MethodSpec:
    """One method: `name` is its `method.name`.

    `generator`: "module:Class" of its generator (a `TabularGenerator` built from the method
    keys, or a `TextGenerator` built from the whole method config); None where the flow runs
    the method's own stages (DiffLM, SynthLLM). `flow`: "module:function" of its pipeline
    flow. `conditional`: its `sample` takes `conditions` (generate.conditions)."""

    name: str
    config: type[BaseModel]
    kind: MethodKind
    generator: str | None
    flow: str
    stages: tuple[str, ...]
    conditional: bool = False


def _tabular(
    name: str,
    config: type[BaseModel],
    generator: str,
    conditional: bool = False,
    stages: tuple[str, ...] = STAGES,
) -> MethodSpec:
    return MethodSpec(name, config, "tabular", generator, TABULAR_FLOW, stages, conditional)


def _text(name: str, config: type[BaseModel], generator: str) -> MethodSpec:
    return MethodSpec(name, config, "text", generator, TEXT_FLOW, TEXT_STAGES)


# In the order names are listed to users (errors, docs/config_reference.md): the table
# generators, DiffLM, the labelled-text generators, SynthLLM.
METHODS: tuple[MethodSpec, ...] = (
    _tabular("marginals", MarginalsConfig, "synthloom.methods.marginals:IndependentMarginals"),
    _tabular(
        "tabsyn",
        TabSynConfig,
        "synthloom.methods.tabsyn.generator:TabSynGenerator",
        conditional=True,
        stages=TABSYN_STAGES,
    ),
    # the peers (synthloom/methods/peers): their packages are imported when they fit or load
    _tabular("smote", SmoteConfig, "synthloom.methods.peers.smote:SmoteGenerator"),
    _tabular(
        "gaussian_copula",
        GaussianCopulaConfig,
        "synthloom.methods.peers.sdv_models:GaussianCopulaGenerator",
    ),
    _tabular("ctgan", CTGANConfig, "synthloom.methods.peers.sdv_models:CTGANGenerator"),
    _tabular("tvae", TVAEConfig, "synthloom.methods.peers.sdv_models:TVAEGenerator"),
    _tabular("great", GReaTConfig, "synthloom.methods.peers.great:GReaTGenerator"),
    MethodSpec(
        "difflm", DiffLMConfig, "tabular", None, TABULAR_FLOW, DIFFLM_STAGES, conditional=True
    ),
    _text("fewgen", FewGenConfig, "synthloom.methods.text.fewgen:FewGenGenerator"),
    _text("cfg", CFGConfig, "synthloom.methods.text.cfg:CFGGenerator"),
    _text("corrsynth", CorrSynthConfig, "synthloom.methods.text.corrsynth:CorrSynthGenerator"),
    _text("bare", BAREConfig, "synthloom.methods.text.bare:BAREGenerator"),
    _text("synalign", SynAlignConfig, "synthloom.methods.text.synalign:SynAlignGenerator"),
    MethodSpec("synthllm", SynthLLMConfig, "synthllm", None, SYNTHLLM_FLOW, SYNTHLLM_STAGES),
)

SPECS: dict[str, MethodSpec] = {spec.name: spec for spec in METHODS}
METHOD_CONFIGS: dict[str, type[BaseModel]] = {spec.name: spec.config for spec in METHODS}
# Methods of the tabular flow (table generators and DiffLM); a bench compares these.
TABULAR_METHODS = tuple(spec.name for spec in METHODS if spec.kind == "tabular")
# Labelled-text generators (synthloom.methods.text): they run in flows/text.py.
TEXT_METHODS = tuple(spec.name for spec in METHODS if spec.kind == "text")
# Methods whose seeds and samples are labelled text (a text column and a label column).
LABELLED_TEXT_METHODS = tuple(spec.name for spec in METHODS if spec.kind != "tabular")
CONDITIONAL_METHODS = tuple(spec.name for spec in METHODS if spec.conditional)


def method_spec(name: str) -> MethodSpec:
    """The spec of method `name`; KeyError naming the known methods for another name."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(SPECS)}") from None


def stages_for(method_name: str) -> tuple[str, ...]:
    """The pipeline's stages, in order, for a method (the tabular flow's for an unknown name,
    e.g. a stored config's that is not valid)."""
    spec = SPECS.get(method_name)
    return spec.stages if spec is not None else STAGES


def resolve(target: str) -> Any:
    """The object a "module:attr" string names (a spec's generator or flow), imported now."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
