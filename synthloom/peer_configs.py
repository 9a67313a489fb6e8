"""Config models of the peer generators (`method.name` smote, gaussian_copula, ctgan, tvae,
great); synthloom/methods/registry.py names them. Pydantic only: no peer package is imported
here, so configs validate (and `synthloom validate` works) without the extra.

Defaults are the packages' own (SMOTE k = 5; SDV's CTGAN/TVAE 300 epochs, batch 500) except
GReaT's step budget, which is sized for a CPU (see docs/benchmarks.md, "Peers").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthloom.config.base import StrictConfig


class SmoteConfig(StrictConfig):
    """SMOTE interpolation within strata (imbalanced-learn); see methods/peers/smote.py."""

    name: Literal["smote"]
    k_neighbors: int = Field(5, ge=1, description="neighbours to interpolate towards")
    target_bins: int = Field(4, ge=2, description="regression: quantile strata of the target")


class GaussianCopulaConfig(StrictConfig):
    """SDV GaussianCopulaSynthesizer."""

    name: Literal["gaussian_copula"]
    default_distribution: Literal[
        "norm", "beta", "truncnorm", "uniform", "gamma", "gaussian_kde"
    ] = Field("beta", description="marginal fitted to every numeric column")


class CTGANConfig(StrictConfig):
    """SDV CTGANSynthesizer (Xu et al. 2019)."""

    name: Literal["ctgan"]
    epochs: int = Field(300, gt=0)
    batch_size: int = Field(500, gt=0, description="even and a multiple of pac")
    pac: int = Field(10, gt=0, description="rows the discriminator judges together")
    embedding_dim: int = Field(128, gt=0)
    generator_dim: list[int] = Field(default_factory=lambda: [256, 256], min_length=1)
    discriminator_dim: list[int] = Field(default_factory=lambda: [256, 256], min_length=1)

    @model_validator(mode="after")
    def _batch_fits_pac(self) -> CTGANConfig:
        if self.batch_size % 2 or self.batch_size % self.pac:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be even and a multiple of pac "
                f"({self.pac}), as CTGAN requires"
            )
        return self


class TVAEConfig(StrictConfig):
    """SDV TVAESynthesizer (Xu et al. 2019)."""

    name: Literal["tvae"]
    epochs: int = Field(300, gt=0)
    batch_size: int = Field(500, gt=0)
    embedding_dim: int = Field(128, gt=0)
    compress_dims: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)
    decompress_dims: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)


class GReaTConfig(StrictConfig):
    """GReaT (arXiv 2210.06280) via be-great, on the local SmolLM2 weights by default."""

    name: Literal["great"]
    llm: str = Field(
        "smollm2-135m-instruct", description="built-in alias or a local causal-LM directory"
    )
    max_steps: int = Field(200, gt=0, description="fine-tuning optimiser steps")
    epochs: int = Field(100, gt=0, description="upper bound; max_steps usually stops first")
    batch_size: int = Field(8, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    float_precision: int | None = Field(
        None, ge=0, description="decimals written for floats; null: as stored"
    )
    temperature: float = Field(0.7, gt=0)
    sample_batch_size: int = Field(64, gt=0, description="sequences generated together")
    max_length: int | None = Field(
        None, gt=8, description="tokens per generated row; null: from the longest training row"
    )
    max_attempts_factor: float = Field(
        5.0, ge=1.0, description="stop after this many generations per requested row"
    )
