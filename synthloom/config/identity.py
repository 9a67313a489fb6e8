"""`config_hash`: the identity of a run's results (its run id and cached stages), the config
without the keys that cannot change them (tracking, data_dir, ...)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from synthloom.config.methods import DIFFLM_RECONSTRUCTION_RECORDS
from synthloom.config.pipeline import PipelineConfig

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
    ("method", "no_repeat_ngram", 0),
    ("method", "paragraph_stop", False),
    ("method", "repeat_passthrough", 0),
    ("method", "closing_ramp", 0.0),
    ("method", "draft_fallback_ngram", None),
    ("method", "refine_describes_label", False),
    # text generators decoded in float32 on every CPU before the key existed
    ("method", "decoder_dtype", "float32"),
    ("method", "seed_adaptation", {"steps": 0, "batch_size": 8, "lr": 3e-3, "rank": 8}),
    ("method", "attributes", {}),
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
    "record_keys": "names",
    "decoder_lora_rank": 0,
    "decoder_lora_alpha": 16.0,
    "encoder_numeric_features": False,
    "checkpoint_seconds": 120.0,  # where the state is saved, never what is computed
    "vae_dtype": "float32",  # what every CPU run trained in before the key existed
    "class_conditional": False,
    "conditioning": "target",
    "label_dropout": 0.0,
    "guidance_scale": 1.0,
    "derive_linear": False,
    "diffusion_ema": 0.0,
    "diffusion_lr_schedule": "plateau",
}

# DiffLM keys that only act with class_conditional: true (left out of the identity without it)
_DIFFLM_CLASS_KEYS = ("conditioning", "label_dropout", "guidance_scale")

# The same for the other methods' keys added after runs existed.
_METHOD_HASH_OMITTED: dict[str, dict[str, Any]] = {
    "difflm": _DIFFLM_HASH_OMITTED,
    "tabsyn": {
        "class_conditional": False,
        "dequantize": False,
        "derive_linear": False,
        "vae_norm": "post",
        "label_dropout": 0.0,
        "guidance_scale": 1.0,
        "category_temperature": 0.0,
        # 'auto' draws the same rows as the rejection runs made before it, which failed
        # where it goes on to inpaint
        "condition_sampling": "auto",
        "inpaint_resample": 10,
        "conditioning": "target",
        "diffusion_ema": 0.0,
        # fitted on the training rows' latents before the key existed ("generated", the
        # default since, is a new run)
        "decoder_calibration": "training",
    },
    "synthllm": {"concept_source": "label"},
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
    if method["name"] == "difflm" and method.get("class_conditional") is False:
        for key in _DIFFLM_CLASS_KEYS:  # no effect without the class-conditional diffusion
            method.pop(key, None)
    # keys at the value that behaves as before they existed
    for key, before in _METHOD_HASH_OMITTED.get(method["name"], {}).items():
        if key in method and method[key] == before:
            method.pop(key)
    for path in _HASH_EXCLUDED:
        node = dumped
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
