"""The method configs (`method:` of a pipeline config) of DiffLM, TabSyn, the marginals
baseline and the labelled-text generators. Pydantic only: no method code (nor torch) is
imported here. The peers' configs are in synthloom/peer_configs.py, SynthLLM's in
synthloom/concepts/config.py; synthloom/methods/registry.py names every method's config.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from synthloom.config.base import StrictConfig

DIFFLM_RECONSTRUCTION_RECORDS = 32  # method.reconstruction_records' default

# A generation length: tokens, or "auto" (from the seeds' lengths, prompts.token_budget).
TokenBudget = Annotated[int, Field(gt=0)] | Literal["auto"]
DecoderDtype = Annotated[
    Literal["auto", "float32", "bfloat16"],
    Field(
        description="the causal LM's weights while it decodes and scores: auto = bfloat16 on "
        "a GPU that supports it, and on a CPU where a bfloat16 matmul measures at least "
        "1.25x faster than float32 in this process (e.g. AMX), else float32"
    ),
]
SeedOpeners = Annotated[
    int,
    Field(
        ge=0,
        description="n > 0: each prompt's samples start with the first n words of a random "
        "seed of its label (the model writes the rest): the label's openings steer the "
        "sample; 0: the model writes the whole sample (the paper's prompt)",
    ),
]
ParagraphStop = Annotated[
    bool | Literal["auto"],
    Field(
        description="a blank line ends a sample as the closing delimiter does: true; auto: "
        "when every seed is one paragraph (a sample's blank line then starts what the data "
        "never holds: a second text, a list, a reply); false: the closing delimiter alone "
        "(the paper's decoding)"
    ),
]
ClosingRampStrength = Annotated[
    float,
    Field(
        ge=0,
        description="nats added to the logit of the closing line's first token, growing "
        "linearly from 0 at the seeds' 95th-percentile token length to this value where the "
        "closing line last fits in the token budget (synthloom.samplers.closing_ramp): a "
        "sample ends near the data's length instead of running to the budget; 0: off (the "
        "papers' decoding)",
    ),
]
NoRepeatNgram = Annotated[
    int,
    Field(
        ge=0,
        description="n > 0: a sample never repeats an n-gram of its own generated tokens "
        "(stops loops that run to the token budget; synthloom.samplers.ngram_block); 0: "
        "off (the paper's decoding)",
    ),
]


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
    record_keys: Literal["names", "aliases"] = Field(
        "names",
        description="json records' keys: the column names (the paper's), or short distinct "
        "aliases of them (total_day_minutes -> tdm; fewer tokens per record on a wide "
        "table, so more VAE steps per minute and faster decoding); rows come back under "
        "the column names either way",
    )
    derive_linear: bool = Field(
        False,
        description="true: a numeric column that is an exact linear function of an earlier "
        "one on every training row, up to rounding (a charge billed per minute), is left out "
        "of the records and written back from the decoded source, so the identity holds in "
        "every row and the records are shorter (ours, as TabSyn's; measured lower MLE on "
        "mlc_churn, docs/methods.md, so off: every column in the records, the paper)",
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
        "the machine's speed); the minutes cover the final validation and encoding the "
        "training records too, so the train_vae stage ends within them after its models "
        "load; null: vae_steps alone",
    )
    checkpoint_seconds: float = Field(
        120.0,
        gt=0,
        description="VAE and diffusion training state saved this often (a killed run "
        "resumes from it)",
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
    diffusion_ema: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="> 0: sample from the moving average of the denoiser's weights with this "
        "decay per step (steadier rows from one training seed to the next; measured in "
        "docs/methods.md); null: 1 - 4 / diffusion_steps, about the last quarter of the "
        "training (0.999 at 4,000 steps, the measured setting); 0: the best epoch's weights "
        "(the paper's TabSyn code)",
    )
    diffusion_lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau",
        description="the denoiser's learning rate: 'cosine' decays it to 0 over "
        "diffusion_steps, so the weights it ends with have settled; 'plateau': cut by 0.9 "
        "after 20 epochs without a lower loss (TabSyn, the paper's code)",
    )
    sampler_steps: int = Field(50, gt=0)
    class_conditional: bool = Field(
        True,
        description="condition the latent diffusion on each training record's class (the "
        "target's value; see conditioning), draw the classes in the training balance (or "
        "in generate.conditions' exact counts) and force the record's class slots to the "
        "drawn values through the grammar, so the label comes from the latent the encoder "
        "put it in rather than from the decoder's reading of it (false: the paper's "
        "unconditional diffusion; ignored without a categorical or boolean target)",
    )
    conditioning: Literal["target", "target_and_binary", "target_and_related"] = Field(
        "target_and_related",
        description="with class_conditional: the class is the joint value of the target and "
        "the two-valued categorical or boolean columns related to it (Cramer's V >= 0.1 on "
        "the training rows; taken in schema order while at most 64 joint values occur), "
        "'target_and_binary': with every two-valued column, or 'target': the target's value "
        "alone (measured in docs/methods.md)",
    )
    label_dropout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="class-conditional diffusion: share of training labels replaced by a "
        "null class, so the denoiser also learns p(z) and guidance can contrast the two",
    )
    guidance_scale: float = Field(
        2.0,
        gt=0,
        description="classifier-free guidance of the class-conditional diffusion: sample "
        "with D_null + w (D_class - D_null), which moves each latent toward where its class "
        "is likely; 1: the conditional model alone. != 1 needs label_dropout > 0",
    )
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
    vae_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32",
        description="the frozen decoder's weights while the VAE trains (the trained parts "
        "stay float32). float32 (default): bfloat16 training reached a worse validation "
        "reconstruction and MLE on the bench (Default 0.690 vs 0.907, credit 0.762 vs "
        "0.794, same split). auto = bfloat16 on a GPU that supports it, and on a CPU where "
        "a bfloat16 matmul measures at least 1.25x faster than float32 (e.g. AMX: about "
        "2x faster steps)",
    )
    reconstruction_records: int = Field(
        DIFFLM_RECONSTRUCTION_RECORDS,
        ge=0,
        description="reconstruction stage: training and validation records decoded from "
        "their own latent (greedy and sampled) and scored against the originals; 0 = off",
    )

    @model_validator(mode="after")
    def _guidance_needs_a_null_class(self) -> DiffLMConfig:
        if self.guidance_scale != 1.0 and self.label_dropout <= 0:
            raise ValueError(
                f"guidance_scale {self.guidance_scale} contrasts the class-conditional "
                "diffusion with its null class, which label_dropout 0 never trains. Fix: "
                "set label_dropout > 0 (e.g. 0.1), or guidance_scale: 1"
            )
        return self

    @model_validator(mode="after")
    def _aliases_need_keys(self) -> DiffLMConfig:
        if self.record_keys == "aliases" and self.serialization != "json":
            raise ValueError(
                f"record_keys: aliases shortens the keys of json records, but serialization "
                f"is {self.serialization!r}, whose records have no keys. Fix: set "
                "serialization: json, or record_keys: names"
            )
        return self


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
    vae_norm: Literal["pre", "post"] = Field(
        "post",
        description="'post': LayerNorm after each block, every latent token on a LayerNorm "
        "sphere (ours: the diffusion drew small categorical columns more reliably); 'pre': "
        "before each block, the output free (the paper; reconstructs better, generated "
        "binary columns' shares drifted on some seeds)",
    )
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
        120.0,
        gt=0,
        description="VAE and diffusion training state saved this often (resume after a kill)",
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
    diffusion_ema: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="> 0: sample from the moving average of the denoiser's weights with this "
        "decay per step; 0: the best epoch's weights (the paper)",
    )
    latent_normalization: Literal["standard", "tabsyn"] = Field(
        "tabsyn", description="'tabsyn': (z - mean) / 2; 'standard': per-dim z-score x 0.5"
    )
    sampler_steps: int = Field(50, gt=0, description="Heun steps per sample")
    sampler_churn: float = Field(0.0, ge=0, description="EDM s_churn (TabSyn samples with 1)")
    max_decimals: int = Field(6, ge=0, le=12, description="decimals kept at most on decoding")
    calibrate_decoder: bool = Field(
        True,
        description="map each decoded numeric score through a decoded distribution's "
        "quantiles, so numbers decode with the data's marginals (false: the paper)",
    )
    decoder_calibration: Literal["generated", "training"] = Field(
        "generated",
        description="what the calibration's decoded distribution is: 'generated', decoded "
        "diffusion samples (also removes the denoiser's shift of a column's marginal); "
        "'training', the training rows' own latents (restores only the tails an MSE decoder "
        "shrinks; the default before 2026-12-06)",
    )
    max_grid_values: int = Field(
        64,
        ge=0,
        description="a numeric column with at most this many distinct values decodes to the "
        "nearest of them (0: never)",
    )
    max_condition_factor: float = Field(
        50.0,
        ge=1,
        description="conditions by rejection: rows drawn at most, as a multiple of the request",
    )
    condition_sampling: Literal["auto", "rejection", "inpaint"] = Field(
        "auto",
        description="conditions on a column the denoiser's class does not hold (see "
        "conditioning): "
        "'rejection' keeps drawn rows while their value's quota is open (exact, slow for a "
        "rare value; fails after max_condition_factor x the request); 'inpaint' fixes the "
        "column's latent token to one of a training row with the value and draws the rest "
        "(the paper's imputation); 'auto': rejection, then inpainting for what is still open",
    )
    inpaint_resample: int = Field(
        10,
        ge=1,
        description="inpainting: passes per sampler step (RePaint's U; 1: plain replacement, "
        "which leaves the other columns closer to their unconditional distribution)",
    )
    class_conditional: bool = Field(
        True,
        description="condition the denoiser on the target's class (TabDDPM-style) and draw "
        "the classes in the training balance, or in generate.conditions' exact counts "
        "(false: the paper's unconditional denoiser; ignored for a numeric target)",
    )
    conditioning: Literal["target", "target_and_binary", "target_and_related"] = Field(
        "target_and_binary",
        description="with class_conditional: the denoiser's class is the joint value of the "
        "target and the two-valued categorical columns (ours; at most 64 joint values; the "
        "two-valued columns alone for a numeric target): their shares and cross-counts come "
        "out as in training and conditions on them need no rejection; 'target_and_related': "
        "only the two-valued columns related to the target (Cramer's V >= 0.1, DiffLM's "
        "default); 'target': the target's value alone",
    )
    dequantize: bool = Field(
        True,
        description="a number held by many rows (a debt of 0) maps to a uniform draw inside "
        "its stretch of the quantile transform instead of one point, so the latent has no "
        "spike for the diffusion to smear (false: the paper, ties averaged)",
    )
    derive_linear: bool = Field(
        True,
        description="a numeric column that is an exact linear function of an earlier one on "
        "every training row, up to rounding (a charge billed per minute), is not modelled but "
        "written back from the decoded source, so the identity holds in every row (ours; "
        "false: every column modelled, the paper)",
    )
    category_temperature: float = Field(
        1.0,
        ge=0,
        description="decode each category by a draw from softmax(logits / this) (ours), so "
        "a column the latent carries only partly (mlc_churn's 51 US states) keeps its "
        "shares instead of piling onto a few values (0: the argmax, the paper)",
    )
    label_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="class-conditional denoiser: share of training labels replaced by a null "
        "class, so the network also learns p(z) for classifier-free guidance (0: none)",
    )
    guidance_scale: float = Field(
        1.0,
        ge=0,
        description="classifier-free guidance weight w at sampling, D_null + w (D_y - D_null); "
        "1: the conditional model; != 1 needs label_dropout > 0 and a categorical target",
    )

    @model_validator(mode="after")
    def _guidance_needs_a_null_class(self) -> TabSynConfig:
        if self.guidance_scale != 1.0 and (self.label_dropout <= 0 or not self.class_conditional):
            raise ValueError(
                f"guidance_scale {self.guidance_scale} needs class_conditional: true and "
                "label_dropout > 0 (e.g. 0.1), which trains the null class guidance uses"
            )
        return self


class _GuidedTextConfig(StrictConfig):
    """Shared knobs of the lockstep-guided text generators (CorrSynth, K-class CFG)."""

    model: str = Field("smollm2-135m-instruct", description="causal LM: alias or HF name")
    decoder_dtype: DecoderDtype = "auto"
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
    no_repeat_ngram: NoRepeatNgram = 0
    paragraph_stop: ParagraphStop = False
    closing_ramp: ClosingRampStrength = 0.0
    repeat_passthrough: int = Field(
        0,
        ge=0,
        description="n > 0: a token that would repeat an n-gram of the sequence's own "
        "tokens keeps the sequence's own probability instead of the guided score (the "
        "contrast rewards copying one's own words, which runs into loops); 0: off (the paper)",
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


class SeedAdaptationConfig(StrictConfig):
    """LoRA steps on leave-one-out few-shot prompts of the seeds before sampling
    (synthloom.methods.text.seed_adaptation); steps 0 = the frozen model (the paper)."""

    steps: int = Field(0, ge=0, description="AdamW steps; 0 = off")
    batch_size: int = Field(8, gt=0, description="leave-one-out prompts per step")
    lr: float = Field(3e-3, gt=0, description="learning rate of the adapters")
    rank: int = Field(8, gt=0, description="LoRA rank on the attention queries and values")


class FewGenConfig(StrictConfig):
    """FewGen baseline: per label, a raw few-shot prompt with `num_examples` random seeds of
    that label (synthloom.methods.text.prompts), `samples_per_prompt` independent samples
    sharing the prompt's prefill, each stopped at the closing delimiter; the prompts of a
    round decode together, `batch_rows` continuations wide."""

    name: Literal["fewgen"]
    model: str = Field("smollm2-135m-instruct", description="causal LM: alias or HF name")
    decoder_dtype: DecoderDtype = "auto"
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
    no_repeat_ngram: NoRepeatNgram = 0
    paragraph_stop: ParagraphStop = False
    closing_ramp: ClosingRampStrength = 0.0
    seed_adaptation: SeedAdaptationConfig = Field(default_factory=SeedAdaptationConfig)
    attributes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="attribute grid, e.g. {topic: [sports, music, history]}: each prompt asks "
        "for one random value per attribute (AttrPrompt); {} = none (the paper)",
    )

    @field_validator("attributes")
    @classmethod
    def _attributes_have_values(cls, grid: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in grid.items():
            if not values or any(not str(v).strip() for v in values):
                raise ValueError(
                    f"method.attributes.{name} needs at least one non-empty value, e.g. "
                    f"{name}: [sports, music]"
                )
        return grid


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
    decoder_dtype: DecoderDtype = "auto"  # both models'
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
    no_repeat_ngram: NoRepeatNgram = 0  # drafts and refinements alike
    paragraph_stop: ParagraphStop = False  # the drafts (a refinement has its own rule)
    closing_ramp: ClosingRampStrength = 0.0  # the drafts
    refine_max_new_tokens: int = Field(96, gt=0, description="token budget per refinement")
    refine_batch_size: int = Field(16, gt=0, description="refine prompts decoded together")
    refine_describes_label: bool = Field(
        False,
        description="true: the refine message says what the label means and that the rewrite "
        "must keep it (when data.label_descriptions has it); false: the paper's refine prompt",
    )
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
    decoder_dtype: DecoderDtype = "auto"
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
    no_repeat_ngram: NoRepeatNgram = 0  # the samples, not the attribute summaries
    paragraph_stop: ParagraphStop = False
    closing_ramp: ClosingRampStrength = 0.0
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
