"""`PipelineConfig`: a whole pipeline config, its `method` one of the registry's method
configs (synthloom/methods/registry.py) chosen by `method.name`."""

from __future__ import annotations

import functools
import operator
from typing import Annotated

from pydantic import Field, model_validator

from synthloom.config.base import StrictConfig
from synthloom.config.sections import (
    DataConfig,
    EvaluateConfig,
    FilterConfig,
    GenerateConfig,
    RunConfig,
    TextFilterConfig,
    TrackingConfig,
)
from synthloom.methods.registry import (
    CONDITIONAL_METHODS,
    LABELLED_TEXT_METHODS,
    METHODS,
    stages_for,
)

# One of the registry's method configs (A | B | ..., in its order), picked by `method.name`.
MethodConfig = Annotated[
    functools.reduce(operator.or_, (spec.config for spec in METHODS)),
    Field(discriminator="name"),
]


class PipelineConfig(StrictConfig):
    data: DataConfig
    method: MethodConfig
    generate: GenerateConfig
    filter: FilterConfig = Field(default_factory=FilterConfig)
    text_filter: TextFilterConfig = Field(
        default_factory=TextFilterConfig, description="text methods' filter rules"
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _failure_stage_exists(self) -> PipelineConfig:
        stages = stages_for(self.method.name)
        if self.run.fail_at_stage is not None and self.run.fail_at_stage not in stages:
            raise ValueError(
                f"run.fail_at_stage must name a stage of method {self.method.name}: "
                + ", ".join(stages)
            )
        if self.run.rerun_from is not None and self.run.rerun_from not in stages:
            raise ValueError(
                f"run.rerun_from must name a stage of method {self.method.name}: "
                + ", ".join(stages)
            )
        unknown = sorted(set(self.run.retries) - {*stages, "default"})
        if unknown or any(n < 0 for n in self.run.retries.values()):
            raise ValueError(
                f"run.retries maps stage names (or `default`) to retry counts >= 0; "
                f"unknown {unknown}; stages of method {self.method.name}: " + ", ".join(stages)
            )
        return self

    @model_validator(mode="after")
    def _conditions_need_a_conditional_method(self) -> PipelineConfig:
        if self.generate.conditions and self.method.name not in CONDITIONAL_METHODS:
            raise ValueError(
                f"generate.conditions: method {self.method.name} cannot generate under "
                "conditions; remove the key, or use a method that can: "
                + ", ".join(CONDITIONAL_METHODS)
            )
        method = self.method
        if self.generate.conditions and method.name == "difflm":
            if not method.constrained or method.serialization == "raw":
                raise ValueError(
                    "generate.conditions: DiffLM forces the conditioned value through its "
                    "schema-constrained decoding. Fix: set method.constrained: true and "
                    "method.serialization json or compact, or remove generate.conditions"
                )
        return self

    @model_validator(mode="after")
    def _text_methods_have_text_data(self) -> PipelineConfig:
        """Text methods need a text column and a label column; their suite is `text`."""
        if self.method.name not in LABELLED_TEXT_METHODS:
            return self
        missing = [k for k in ("text_column", "target") if getattr(self.data, k) is None]
        if missing:
            raise ValueError(
                f"method {self.method.name} generates labelled text: set "
                + " and ".join(f"data.{k}" for k in missing)
                + " (the column of texts and the column of labels)"
            )
        if "suite" not in self.evaluate.model_fields_set:
            self.evaluate.suite = "text"
        elif self.evaluate.suite != "text":
            raise ValueError(
                f"method {self.method.name} is evaluated with evaluate.suite: text "
                f"(got {self.evaluate.suite}); remove the key or set it to text"
            )
        return self
