"""Bench configs: several generators on one dataset, one split, one seed, one row budget.

A bench YAML holds the pipeline sections every generator shares (`data`, `generate`,
`filter`, `evaluate`, `tracking`, `run`) and `generators`, a mapping label -> entry:

    generators:
      marginals: {method: {name: marginals}}
      ctgan:     {method: {name: ctgan, epochs: 30}}
      difflm:    {enabled: false, method: {name: difflm, vae_steps: 100}}

Each entry becomes an ordinary pipeline config (`pipeline_config_for`): the shared
sections, its `method`, its `generate` overrides (if any) and `run.name` =
`<bench name>-<label>`. Labels are keys, so `--set generators.ctgan.method.epochs=5` and
`--set generators.difflm.enabled=true` work. Every mistake raises ConfigError naming the
file, the dotted key and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from synthloom.config.base import StrictConfig, config_error
from synthloom.config.loading import load_overridden
from synthloom.config.pipeline import MethodConfig, PipelineConfig
from synthloom.config.sections import (
    DataConfig,
    EvaluateConfig,
    FilterConfig,
    GenerateConfig,
    RunConfig,
    TrackingConfig,
)
from synthloom.errors import ConfigError
from synthloom.methods.registry import METHOD_CONFIGS, TABULAR_METHODS

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class GenerateOverride(StrictConfig):
    """Per-generator changes to the shared `generate` section (unset keys are shared)."""

    num_rows: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    max_attempts: int | None = Field(None, gt=0)


class GeneratorEntry(StrictConfig):
    """One row of the comparison: a method config, whether it runs, its generate overrides."""

    method: MethodConfig
    enabled: bool = True
    generate: GenerateOverride = Field(default_factory=GenerateOverride)

    @field_validator("method")
    @classmethod
    def _runs_on_tables(cls, method: BaseModel) -> BaseModel:
        if method.name not in TABULAR_METHODS:
            raise ValueError(
                f"method {method.name!r} generates text, not table rows; a bench compares "
                f"tabular generators: {', '.join(TABULAR_METHODS)}"
            )
        return method


class BenchConfig(StrictConfig):
    name: str | None = Field(None, description="bench id prefix; default: the file's stem")
    data: DataConfig
    generate: GenerateConfig
    filter: FilterConfig = Field(default_factory=FilterConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="bench"))
    run: RunConfig = Field(default_factory=RunConfig)
    reference: bool = Field(True, description="add the real-data reference row")
    generators: dict[str, GeneratorEntry] = Field(min_length=1)

    @field_validator("generators")
    @classmethod
    def _labels(cls, generators: dict[str, GeneratorEntry]) -> dict[str, GeneratorEntry]:
        bad = [label for label in generators if not _LABEL.match(label)]
        if bad:
            raise ValueError(
                f"generator labels {bad} must start with a letter or digit and hold only "
                "letters, digits, '_', '.', '-'"
            )
        if not any(entry.enabled for entry in generators.values()):
            raise ValueError("every generator is disabled; enable at least one")
        return generators

    @model_validator(mode="after")
    def _tabular_evaluation(self) -> BenchConfig:
        if self.evaluate.suite != "tabular":
            raise ValueError("evaluate.suite must be tabular: a bench compares table generators")
        return self

    def enabled(self) -> dict[str, GeneratorEntry]:
        return {label: e for label, e in self.generators.items() if e.enabled}


def bench_hash(config: BenchConfig) -> str:
    """sha256 of the config without tracking, run.data_dir and disabled generators."""
    dumped = config.model_dump(mode="json")
    dumped.pop("tracking")
    dumped["run"].pop("data_dir")
    dumped["generators"] = {k: v for k, v in dumped["generators"].items() if v["enabled"]}
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def pipeline_config_for(config: BenchConfig, label: str) -> PipelineConfig:
    """The pipeline config that runs generator `label` with the bench's shared sections."""
    entry = config.generators[label]
    shared = config.model_dump(mode="json")
    generate = shared["generate"] | entry.generate.model_dump(exclude_none=True)
    raw = {
        "data": shared["data"],
        "method": entry.method.model_dump(mode="json"),
        "generate": generate,
        "filter": shared["filter"],
        "evaluate": shared["evaluate"],
        "tracking": shared["tracking"],
        "run": shared["run"] | {"name": f"{config.name or 'bench'}-{label}"},
    }
    return PipelineConfig.model_validate(raw)


def validate_bench_config(raw: Any, origin: str) -> BenchConfig:
    """Validate a raw mapping; every error names `origin`, the dotted key and the fix."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Bench config error in {origin}: the file must hold a YAML mapping with the "
            "sections data, generate and generators (and optionally filter, evaluate, "
            "tracking, run, reference). Fix: start from pipeline_configs/bench_credit.yaml."
        )
    try:
        config = BenchConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(
            "Bench config error",
            origin,
            exc,
            BenchConfig,
            "Fix the file or the --set override; docs/benchmarks.md ('Benchmark') lists the "
            "keys, pipeline_configs/bench_credit.yaml is an example.",
            tags=METHOD_CONFIGS,
            choices=TABULAR_METHODS,
        ) from None
    for label in config.enabled():
        try:
            pipeline_config_for(config, label)
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors())
            raise ConfigError(
                f"Bench config error in {origin}: generator `generators.{label}` does not make "
                f"a valid pipeline config ({problems}). Fix that entry or the shared sections."
            ) from None
    return config


def load_bench_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
    """Read, override (`dotted.key=value`) and validate a bench config; name = file stem."""
    config = validate_bench_config(*load_overridden(path, overrides))
    if config.name is None:
        config.name = Path(path).stem
    return config
