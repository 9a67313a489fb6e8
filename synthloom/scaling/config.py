"""Scaling-study configs (`synthloom scaling CONFIG`): YAML validated with pydantic, strict.

A study names its curves (each a finished pipeline run, or a pipeline config to run first),
the sizes D_1 < ... < D_n, the seeds, the students' settings and tracking. Every mistake
raises ConfigError naming the file, the dotted key and the fix.

    curves:
      - {label: marginals, run: marginals_credit-b13e191b88}
      - {label: difflm, config: pipeline_configs/difflm_credit.yaml, set: [generate.num_rows=2000]}
    real_curve: true          # the student on nested subsets of the real train split too
    sizes: [50, 100, 200, 400, 800, 1600]     # or size_range: {smallest, largest, num}
    seeds: [0, 1, 2]
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from synthloom.config.base import StrictConfig, config_error
from synthloom.config.loading import load_overridden
from synthloom.config.sections import TrackingConfig
from synthloom.errors import ConfigError
from synthloom.scaling.law import log_spaced_sizes

REAL_LABEL = "real"
_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")


class CurveSource(StrictConfig):
    """One curve: the filtered synthetic output of a finished run, or of a config run first."""

    label: str = Field(description="name of the curve in plots and MLflow (letters, digits, _.-)")
    run: str | None = Field(None, description="id of a finished run under <data_dir>/runs/")
    config: str | None = Field(None, description="pipeline config to run (or continue) first")
    set: list[str] = Field(default_factory=list, description="--set overrides for `config`")

    @model_validator(mode="after")
    def _one_source(self) -> CurveSource:
        if (self.run is None) == (self.config is None):
            raise ValueError("give exactly one of `run` (a run id) or `config` (a YAML path)")
        if not _LABEL.match(self.label) or self.label == REAL_LABEL:
            raise ValueError(
                f"label {self.label!r} must use letters, digits, _ . - and not be "
                f"{REAL_LABEL!r} (reserved for the real-data curve)"
            )
        if self.set and self.config is None:
            raise ValueError("`set` overrides only apply to a `config` curve")
        return self


class SizeRange(StrictConfig):
    smallest: int = Field(gt=0)
    largest: int = Field(gt=0)
    num: int = Field(6, ge=4, description="sizes, log-spaced (the law has 4 parameters)")

    @model_validator(mode="after")
    def _ordered(self) -> SizeRange:
        if self.largest <= self.smallest:
            raise ValueError("largest must exceed smallest")
        return self


class StudyRunConfig(StrictConfig):
    name: str | None = Field(None, description="study id prefix; default: the config file's stem")
    data_dir: str | None = Field(None, description="default $SYNTHLOOM_DATA_DIR or ./data")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ScalingConfig(StrictConfig):
    curves: list[CurveSource] = Field(min_length=1)
    real_curve: bool = Field(True, description="also measure the real train split's curve")
    sizes: list[int] | None = Field(None, description="D_1 < ... < D_n (>= 4 sizes)")
    size_range: SizeRange | None = None
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    mle_grid: Literal["small", "tabsyn"] = Field("small", description="tables: XGBoost grid")
    encoder: str = Field("minilm-l6", description="texts: sentence encoder for the student")
    rel_tol: float = Field(0.01, gt=0, lt=1, description="plateau: L within this share of E")
    restarts: int = Field(8, gt=0, description="fits refined from the best grid starts")
    extrapolate_factor: float = Field(10.0, ge=1.0, description="plot the fit to largest x this")
    tracking: TrackingConfig = Field(
        default_factory=lambda: TrackingConfig(experiment="synthloom-scaling")
    )
    run: StudyRunConfig = Field(default_factory=StudyRunConfig)

    @model_validator(mode="after")
    def _sizes(self) -> ScalingConfig:
        if (self.sizes is None) == (self.size_range is None):
            raise ValueError("give exactly one of `sizes` (a list) or `size_range`")
        if self.sizes is not None:
            if len(self.sizes) < 4 or any(s <= 0 for s in self.sizes):
                raise ValueError(
                    "`sizes` needs at least 4 positive sizes (the law has 4 parameters)"
                )
            if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
                raise ValueError("`sizes` must be strictly increasing: D_1 < ... < D_n")
        labels = [c.label for c in self.curves]
        if len(set(labels)) != len(labels):
            raise ValueError(f"curve labels must be distinct, got {labels}")
        return self

    def size_list(self) -> list[int]:
        if self.sizes is not None:
            return list(self.sizes)
        assert self.size_range is not None
        r = self.size_range
        return log_spaced_sizes(r.smallest, r.largest, r.num)


_HASH_EXCLUDED = ("tracking", "run")


def study_hash(config: ScalingConfig) -> str:
    """sha256 of the config without tracking and run settings (they cannot change results)."""
    dumped = {k: v for k, v in config.model_dump(mode="json").items() if k not in _HASH_EXCLUDED}
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def validate_scaling_config(raw: Any, origin: str) -> ScalingConfig:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Config error in {origin}: a scaling study must be a YAML mapping with at least "
            "`curves` and `sizes` (or `size_range`). Fix: start from "
            "pipeline_configs/scaling_credit.yaml."
        )
    try:
        return ScalingConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(
            "Config error",
            origin,
            exc,
            ScalingConfig,
            "Fix the file or the --set override (see synthloom/scaling/config.py for every "
            "key, or pipeline_configs/scaling_*.yaml).",
        ) from None


def load_scaling_config(
    path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> ScalingConfig:
    """Load, override (`dotted.key=value`) and validate a scaling study config."""
    config = validate_scaling_config(*load_overridden(path, overrides))
    if config.run.name is None:
        config.run.name = Path(path).stem
    return config
