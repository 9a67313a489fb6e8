"""Model loading: the causal LM that writes records, the encoder that embeds them, devices."""

from synthloom.models.causal_lm import BUILTIN_CAUSAL_LMS, causal_lm_info, load_causal_lm
from synthloom.models.device import autocast_dtype, resolve_device, set_seed
from synthloom.models.encoder import BUILTIN_ENCODERS, encode_texts, load_encoder, mean_pool
from synthloom.models.tiny import tiny_causal_lm, tiny_encoder

__all__ = [
    "BUILTIN_CAUSAL_LMS",
    "BUILTIN_ENCODERS",
    "autocast_dtype",
    "causal_lm_info",
    "encode_texts",
    "load_causal_lm",
    "load_encoder",
    "mean_pool",
    "resolve_device",
    "set_seed",
    "tiny_causal_lm",
    "tiny_encoder",
]
