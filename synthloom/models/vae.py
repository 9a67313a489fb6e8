"""DiffLM's VAE: a trainable encoder, a latent z, and a FROZEN causal LM that decodes z.

DiffLM (arXiv 2411.03250, section 3.2 and 3.4): a BERT-style encoder maps a serialized
record x to q(z|x) = N(mu, diag(exp(logvar))); z = mu + exp(logvar / 2) * eps; an injector
turns z into an `Injection` (soft prompt, KV memory or input-embedding offset) that steers
the frozen decoder, which reconstructs x with the causal-LM loss. Training minimises
recon + beta * KL (beta schedules: `synthloom.methods.difflm.beta`).

Shapes: B batch, Te / T encoder / decoder tokens, He / H encoder / decoder width, d latent
size, k injected positions, L decoder layers, Hkv key-value heads, Dh head width, V vocab.
Only the encoder, the latent heads and the injector are trainable (plus, with
`lora_rank` > 0, low-rank adapters on the decoder's attention, `synthloom.models.lora`); the
decoder is held outside the module tree, so `parameters()`, `state_dict()` and `.to()` never
touch its weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import DynamicCache, PreTrainedModel

from synthloom.errors import SynthloomError
from synthloom.models.encoder import mean_pool
from synthloom.models.injection import INJECTION_MODES, Injection
from synthloom.models.kv_cache import cache_kwargs, output_cache
from synthloom.models.lora import attach_lora

log = logging.getLogger(__name__)

WEIGHTS_FILE = "vae.safetensors"
CONFIG_FILE = "vae_config.json"


@dataclass
class VAEConfig:
    """Hyper-parameters of the trainable part (the decoder brings its own config)."""

    latent_dim: int = 64  # d
    num_prompts: int = 16  # k: soft-prompt vectors or KV-memory slots
    mode: str = "soft_prompt"  # one of INJECTION_MODES
    injector_hidden: int = 512  # width of the injector MLP
    dropout: float = 0.0  # on the pooled encoder state and inside the injector MLP
    # Anchored init (soft prompt, KV memory): the injection starts as the decoder's own
    # embeddings / keys and values of these k token ids (a real text), plus a z-dependent
    # residual at `residual_scale` times the decoder's scale. None: the residual alone at
    # full scale (random prefix, DiffLM's init).
    anchor_ids: list[int] | None = None
    residual_scale: float = 1.0
    # False: the encoder's own dropout layers stay off in training (its mu then matches the
    # eval-mode mu the diffusion learns; dropout noise can exceed the spread between records)
    encoder_dropout: bool = True
    # > 0: low-rank adapters (synthloom.models.lora) on the decoder's attention query and
    # value projections train with the VAE; 0: the decoder is fully frozen (DiffLM's setting)
    lora_rank: int = 0
    lora_alpha: float = 16.0
    # Numbers beside the text (synthloom.methods.difflm.numeric_features): the spec of the
    # F numeric scores appended to the pooled encoder state; None: the text alone (DiffLM)
    numeric_spec: dict[str, Any] | None = None

    @property
    def num_numeric(self) -> int:
        """F: numeric scores the latent heads read beside the pooled text state."""
        return len(self.numeric_spec["fields"]) if self.numeric_spec else 0

    def __post_init__(self) -> None:
        if self.mode not in INJECTION_MODES:
            raise SynthloomError(
                f"VAE injection mode {self.mode!r} is unknown. Fix: use one of {INJECTION_MODES}."
            )
        if self.anchor_ids is not None and len(self.anchor_ids) != self.num_prompts:
            raise SynthloomError(
                f"VAE anchor has {len(self.anchor_ids)} token ids for {self.num_prompts} "
                "injected positions. Fix: pass exactly num_prompts ids (see anchor_token_ids)."
            )


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per record, (B, d) -> (B,).

    KL = 0.5 * sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)   (Kingma & Welling 2014).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


# ---------------------------------------------------------------- latent heads


class LatentHeads(nn.Module):
    """Pooled encoder state (B, He) -> mu (B, d), logvar (B, d): one linear map, split."""

    def __init__(self, encoder_dim: int, latent_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(encoder_dim, 2 * latent_dim)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.proj(self.dropout(pooled)).chunk(2, dim=-1)  # (B, d) each
        return mu, logvar

    @torch.no_grad()
    def init_from_data(self, pooled: torch.Tensor, logvar: float) -> None:
        """Data-dependent init: mu = W (p - c) spreads the pooled states `pooled` (N, He).

        c = mean of the rows; the rows of W (d, He) are the top-d principal directions of
        the centred rows, all divided by ONE scale s = sqrt(mean of their d variances), so
        over these rows mu has mean 0, uncorrelated dimensions and a mean variance of 1 (the
        first dimensions more, the last less: a direction of tiny variance is not blown up,
        which would amplify the encoder's dropout noise in training). Directions beyond
        the rows' rank stay 0. logvar starts at the constant `logvar` (weights 0, bias
        `logvar`). Without it, the pooled states of records that share a schema are nearly
        equal, and every record starts at one latent the decoder cannot tell apart.
        """
        d = self.proj.out_features // 2
        p = pooled.float()
        centre = p.mean(dim=0)
        _, sing, vt = torch.linalg.svd(p - centre, full_matrices=False)  # vt (r, He)
        std = sing / max(len(p) - 1, 1) ** 0.5  # (r,) descending
        keep = int(min(d, int((std > 1e-6 * std.max().clamp(min=1e-12)).sum())))
        scale = std[:keep].pow(2).mean().sqrt().clamp(min=1e-12) if keep else 1.0
        weight = torch.zeros(d, p.shape[1], dtype=p.dtype, device=p.device)
        weight[:keep] = vt[:keep] / scale
        w = self.proj.weight
        w[:d] = weight.to(w.dtype)
        w[d:] = 0.0
        self.proj.bias[:d] = (-weight @ centre).to(w.dtype)
        self.proj.bias[d:] = logvar


# ---------------------------------------------------------------- injectors


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> GELU -> Dropout -> Linear; the last layer is the one calibrated below."""
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


def _probe_latents(latent_dim: int, like: torch.Tensor) -> torch.Tensor:
    """1024 fixed latents z ~ N(0, I), (1024, d), from a private generator (global RNG untouched)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    return torch.randn(1024, latent_dim, generator=gen).to(like.device, like.dtype)


@torch.no_grad()
def _rescale_rows(last: nn.Linear, out: torch.Tensor, target_std: torch.Tensor) -> None:
    """Scale `last` so its probe output `out` (N, G, n) gets std `target_std[g]` per group g.

    The G groups are equal contiguous blocks of `last`'s output rows; weight and bias rows
    are multiplied by target / measured, so the output scales exactly (it is affine in them).
    """
    scale = target_std.to(out.device) / out.float().std(dim=(0, 2)).clamp(min=1e-8)  # (G,)
    per_row = scale.repeat_interleave(last.out_features // len(target_std))  # (out,)
    last.weight.mul_(per_row[:, None].to(last.weight.dtype))
    last.bias.mul_(per_row.to(last.bias.dtype))


@torch.no_grad()
def _calibrate_mlp(mlp: nn.Sequential, latent_dim: int, target_std: float) -> None:
    """Rescale the MLP's last layer so mlp(z), z ~ N(0, I), has std `target_std` (dropout off)."""
    was_training = mlp.training
    mlp.eval()
    out = mlp(_probe_latents(latent_dim, mlp[0].weight))  # (N, out)
    mlp.train(was_training)
    _rescale_rows(mlp[-1], out[:, None, :], torch.tensor([target_std]))


class SoftPromptInjector(nn.Module):
    """z (B, d) -> k soft-prompt vectors (B, k, H) placed before BOS (DiffLM's choice).

    prefix(z) = anchor + mlp(z), anchor (k, H) trainable. Init: without anchor ids there is
    no anchor (0) and mlp(z), z ~ N(0, I), has the std of the decoder's token-embedding
    matrix (the prompt starts as random vectors at the scale of real tokens); with anchor
    ids the anchor is those tokens' embeddings and mlp(z) gets `residual_scale` times that
    std (the prompt starts as a real text, nudged by z).
    """

    def __init__(self, cfg: VAEConfig, decoder: PreTrainedModel) -> None:
        super().__init__()
        embeddings = decoder.get_input_embeddings().weight
        self.k, self.h = cfg.num_prompts, embeddings.shape[1]
        embed_std = embeddings.float().std().item()
        self.mlp = _mlp(cfg.latent_dim, cfg.injector_hidden, self.k * self.h, cfg.dropout)
        self.anchor: nn.Parameter | None = None  # registered only when anchored
        scale = 1.0
        if cfg.anchor_ids is not None:
            ids = torch.tensor(cfg.anchor_ids, device=embeddings.device)
            self.anchor = nn.Parameter(embeddings[ids].detach().float().clone())
            scale = cfg.residual_scale
        _calibrate_mlp(self.mlp, cfg.latent_dim, scale * embed_std)

    def forward(self, z: torch.Tensor) -> Injection:
        prefix = self.mlp(z).view(z.shape[0], self.k, self.h)  # (B, k, H)
        if self.anchor is not None:
            prefix = prefix + self.anchor
        return Injection(prefix_embeds=prefix)


class KVMemoryInjector(nn.Module):
    """z (B, d) -> per-layer key/value memory, L pairs of (B, Hkv, k, Dh) (Optimus ablation).

    Factorised to stay small: an MLP makes k slot vectors (B, k, H); one shared linear map
    turns each slot into all layers' keys and values (B, k, L * 2 * Hkv * Dh). Keys are
    used as given (no rotary embedding), as a cache holds already-rotated keys.
    memory(z) = anchor + to_kv(slots(z)), anchor (L, 2, Hkv, k, Dh) trainable.
    Init: every (layer, key|value) group of the residual is rescaled so that, for
    z ~ N(0, I), its std equals the std of the decoder's own keys|values of that layer on a
    probe sequence (times `residual_scale` with anchor ids). There is no anchor (0)
    without anchor ids, else the decoder's own cache of those k tokens at positions 0..k-1: the
    memory starts as a real text the decoder has read, nudged by z.
    """

    def __init__(self, cfg: VAEConfig, decoder: PreTrainedModel) -> None:
        super().__init__()
        c = decoder.config
        self.k, self.slot = cfg.num_prompts, c.hidden_size
        self.n_layers, self.n_kv = c.num_hidden_layers, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.slots = _mlp(cfg.latent_dim, cfg.injector_hidden, self.k * self.slot, cfg.dropout)
        self.to_kv = nn.Linear(self.slot, self.n_layers * 2 * self.n_kv * self.head_dim)
        self.anchor: nn.Parameter | None = None  # registered only when anchored
        target_std = _decoder_kv_std(decoder)
        if cfg.anchor_ids is not None:
            self.anchor = nn.Parameter(_decoder_cache(decoder, cfg.anchor_ids))
            target_std = target_std * cfg.residual_scale
        self._calibrate(target_std, cfg.latent_dim)

    @torch.no_grad()
    def _calibrate(self, target_std: torch.Tensor, latent_dim: int) -> None:
        """Rescale `to_kv` per (layer, key|value) group to `target_std` (L * 2,)."""
        was_training = self.training
        self.eval()
        slots = self.slots(_probe_latents(latent_dim, self.to_kv.weight))  # (N, k * H)
        out = self.to_kv(slots.view(-1, self.slot))  # (N * k, L * 2 * Hkv * Dh)
        self.train(was_training)
        _rescale_rows(self.to_kv, out.view(out.shape[0], len(target_std), -1), target_std)

    def forward(self, z: torch.Tensor) -> Injection:
        b = z.shape[0]
        slots = self.slots(z).view(b, self.k, self.slot)  # (B, k, H)
        kv = self.to_kv(slots).view(b, self.k, self.n_layers, 2, self.n_kv, self.head_dim)
        kv = kv.permute(2, 3, 0, 4, 1, 5)  # (L, 2, B, Hkv, k, Dh)
        if self.anchor is not None:
            kv = kv + self.anchor[:, :, None]
        return Injection(past_key_values=tuple((kv[i, 0], kv[i, 1]) for i in range(len(kv))))


@torch.no_grad()
def _decoder_kv_std(decoder: PreTrainedModel) -> torch.Tensor:
    """Std of the decoder's keys and values per layer, (L * 2,) as [k0, v0, k1, v1, ...].

    Measured on one fixed probe sequence of 64 token ids spread over the vocabulary.
    """
    vocab = decoder.config.vocab_size
    ids = torch.linspace(0, vocab - 1, 64).long()[None].to(decoder.device)  # (1, 64)
    cache = output_cache(decoder(input_ids=ids, use_cache=True))
    stds = []
    for layer in cache.layers:
        stds += [layer.keys.float().std().item(), layer.values.float().std().item()]
    return torch.tensor(stds)


@torch.no_grad()
def _decoder_cache(decoder: PreTrainedModel, ids: list[int]) -> torch.Tensor:
    """The decoder's keys and values of token `ids` at positions 0..k-1, (L, 2, Hkv, k, Dh)."""
    device = decoder.get_input_embeddings().weight.device
    cache = output_cache(decoder(input_ids=torch.tensor([ids], device=device), use_cache=True))
    layers = [torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers]
    return torch.stack(layers).float()  # (L, 2, Hkv, k, Dh)


class EmbeddingInjector(nn.Module):
    """z (B, d) -> an offset (B, H) added to every token embedding (Optimus ablation).

    Init: rescaled so that, for z ~ N(0, I), its std equals the token embeddings' std.
    """

    def __init__(self, cfg: VAEConfig, hidden_size: int, embed_std: float) -> None:
        super().__init__()
        self.mlp = _mlp(cfg.latent_dim, cfg.injector_hidden, hidden_size, cfg.dropout)
        _calibrate_mlp(self.mlp, cfg.latent_dim, embed_std)

    def forward(self, z: torch.Tensor) -> Injection:
        return Injection(embed_offset=self.mlp(z))  # (B, H)


def build_injector(cfg: VAEConfig, decoder: PreTrainedModel) -> nn.Module:
    """The injector for `cfg.mode`, sized (and its init scaled) for `decoder`.

    The input-embedding injector has no prefix to anchor and ignores `cfg.anchor_ids`."""
    if cfg.mode == "soft_prompt":
        return SoftPromptInjector(cfg, decoder)
    if cfg.mode == "kv_memory":
        return KVMemoryInjector(cfg, decoder)
    hidden = decoder.config.hidden_size
    embed_std = decoder.get_input_embeddings().weight.float().std().item()
    return EmbeddingInjector(cfg, hidden, embed_std)


# ---------------------------------------------------------------- the VAE


class DiffLMVAE(nn.Module):
    """Trainable encoder + latent heads + injector around a frozen causal LM decoder.

    The decoder gets requires_grad False on every parameter and stays in eval mode even
    while the VAE trains; it is kept out of the module tree, so `parameters()` (the same
    as `trainable_parameters()`), `state_dict()` and `.to()` cover only the trainable part.
    Move the decoder yourself (`vae.decoder.to(device)`) if it is not on the VAE's device.
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        decoder: PreTrainedModel,
        config: VAEConfig | None = None,
        *,
        encoder_name: str | None = None,
        decoder_name: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        self.encoder = encoder.train()
        self.heads = LatentHeads(
            encoder.config.hidden_size + self.config.num_numeric,
            self.config.latent_dim,
            self.config.dropout,
        )
        self.__dict__["_frozen_decoder"] = decoder.eval()  # not a submodule: see `decoder`
        for p in decoder.parameters():
            p.requires_grad_(False)
        self.injector = build_injector(self.config, decoder)
        if self.config.lora_rank > 0:  # adapters start at zero: the decoder is unchanged
            self.lora = attach_lora(decoder, self.config.lora_rank, self.config.lora_alpha)
        self.encoder_name = encoder_name or str(getattr(encoder, "name_or_path", ""))
        self.decoder_name = decoder_name or str(getattr(decoder, "name_or_path", ""))
        self.to(next(encoder.parameters()).device)  # heads and injector join the encoder

    @property
    def decoder(self) -> PreTrainedModel:
        """The frozen causal LM (read-only: assigning a module would register its weights)."""
        return self.__dict__["_frozen_decoder"]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "decoder":  # nn.Module would register it, weights and all
            raise AttributeError("DiffLMVAE.decoder is fixed at construction")
        super().__setattr__(name, value)

    def train(self, mode: bool = True) -> DiffLMVAE:
        super().train(mode)
        self.decoder.eval()  # frozen: no dropout, whatever the VAE's mode
        if not self.config.encoder_dropout:  # eval mode turns off every dropout, attention's
            self.encoder.eval()  # included; gradients still flow (a BERT has no batch norm)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should update: encoder, heads, injector."""
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Encoder, heads and injector weights (and the decoder's LoRA adapters, if any; never
        the frozen decoder weights), detached."""
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `trainable_state_dict` (strict: every key must match)."""
        self.load_state_dict(state, strict=True)

    # ------------------------------------------------------------ encode / inject

    def pooled(
        self,
        enc_ids: torch.Tensor,
        enc_mask: torch.Tensor,
        enc_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, Te) token ids and mask -> the mean-pooled encoder states (B, He), float32,
        followed by the record's F numeric scores `enc_features` (B, F) when the config has
        a numeric spec: (B, He + F)."""
        hidden = self.encoder(input_ids=enc_ids, attention_mask=enc_mask).last_hidden_state
        pooled = mean_pool(hidden.float(), enc_mask)
        if self.config.num_numeric:
            if enc_features is None or enc_features.shape[-1] != self.config.num_numeric:
                raise SynthloomError(
                    f"this VAE reads {self.config.num_numeric} numeric scores beside the text; "
                    "pass enc_features (numeric_scores of the records)"
                )
            pooled = torch.cat([pooled, enc_features.float()], dim=-1)
        return pooled

    def encode(
        self,
        enc_ids: torch.Tensor,
        enc_mask: torch.Tensor,
        enc_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Te) token ids and mask (and numeric scores) -> mu, logvar (B, d)."""
        return self.heads(self.pooled(enc_ids, enc_mask, enc_features))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from the global torch RNG; (B, d)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def inject(self, z: torch.Tensor) -> Injection:
        """Latent (B, d) -> the `Injection` the decoder consumes."""
        return self.injector(z)

    # ------------------------------------------------------------ decode

    def reconstruction_loss(
        self,
        injection: Injection,
        dec_ids: torch.Tensor,
        dec_mask: torch.Tensor,
        dec_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-record mean token NLL of the record under the frozen decoder, (B,).

        dec_ids (B, T): BOS, record tokens, EOS, padded on either side (dec_mask 0).
        loss_b = -(1/|S_b|) sum_{t in S_b} log p(x_t | injection, x_<t), where S_b are
        the positions t >= 1 with x_t and x_{t-1} both real: BOS is given, not predicted;
        injected positions and padding carry no loss. With `dec_weight` (B, T), S_b keeps
        only the positions of weight > 0 (e.g. the value slots of a record). Position ids count real positions
        only (injected ones first), so padding changes nothing.
        """
        dec = self.decoder
        b, t = dec_ids.shape
        k = injection.prefix_length
        mask = torch.cat([dec_mask.new_ones(b, k), dec_mask], dim=1)  # (B, k + T)
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, k + T)
        embeds = dec.get_input_embeddings()(dec_ids)  # (B, T, H)
        kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": False}
        if injection.prefix_embeds is not None:  # soft prompt: k vectors before BOS
            prefix = injection.prefix_embeds.to(embeds.dtype)
            kwargs |= {
                "inputs_embeds": torch.cat([prefix, embeds], dim=1),
                "position_ids": positions,
            }
        elif injection.past_key_values is not None:  # KV memory: k cached positions
            dtype = _compute_dtype(embeds)
            memory = tuple((key.to(dtype), val.to(dtype)) for key, val in injection.past_key_values)
            cache = DynamicCache(memory, config=dec.config)
            kwargs |= {
                "inputs_embeds": embeds,
                "position_ids": positions[:, k:],
                **cache_kwargs(cache),
            }
        else:  # input embedding: the offset is added to every token
            offset = injection.embed_offset.to(embeds.dtype)[:, None, :]
            kwargs |= {"inputs_embeds": embeds + offset, "position_ids": positions}
        logits = dec(**kwargs, logits_to_keep=t).logits  # (B, T, V): the record positions
        targets = F.pad(dec_ids[:, 1:], (0, 1))  # (B, T): next token; the last is unused
        nll = F.cross_entropy(  # on a contiguous (B * T, V) view: no copy, fast log-softmax
            logits.float().reshape(b * t, -1), targets.reshape(-1), reduction="none"
        ).view(b, t)[:, :-1]  # (B, T - 1)
        scored = (dec_mask[:, 1:] * dec_mask[:, :-1]).bool()  # target and its context real
        if dec_weight is not None:
            scored = scored & (dec_weight[:, 1:] > 0)
        nll = nll.masked_fill(~scored, 0.0)
        return nll.sum(dim=1) / scored.sum(dim=1).clamp(min=1)

    def forward(
        self,
        enc_ids: torch.Tensor,
        enc_mask: torch.Tensor,
        dec_ids: torch.Tensor,
        dec_mask: torch.Tensor,
        dec_weight: torch.Tensor | None = None,
        enc_features: torch.Tensor | None = None,
        *,
        sample: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode, sample z (or take z = mu when `sample` is False), inject, reconstruct.

        Returns loss_recon (scalar, batch mean of per-record NLL), recon (B,), kl (scalar:
        the KL of `kl_divergence` per latent dimension, i.e. divided by d, batch mean), mu
        and logvar (B, d). The training loss is loss_recon + beta * kl (DiffLM eq. 2-4, a
        beta-VAE). Per-dimension KL is what DiffLM's code optimises (`kl.mean(dim=1)`), so its
        beta values (0.1 -> x0.7 -> 1e-3) carry over unchanged for any latent size.
        """
        mu, logvar = self.encode(enc_ids, enc_mask, enc_features)
        z = self.reparameterize(mu, logvar) if sample else mu
        recon = self.reconstruction_loss(self.inject(z), dec_ids, dec_mask, dec_weight)
        kl = kl_divergence(mu.float(), logvar.float())
        return {
            "loss_recon": recon.mean(),
            "recon": recon,
            "kl": kl.mean() / mu.shape[-1],
            "mu": mu,
            "logvar": logvar,
        }

    # ------------------------------------------------------------ save / load

    def save(self, directory: str | Path) -> Path:
        """Write the trainable weights (`vae.safetensors`) and `vae_config.json`.

        The JSON holds the VAEConfig, the encoder and decoder names and the decoder's shape
        (architecture, sizes), which `load` checks. The decoder weights are not written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous().cpu() for k, v in self.trainable_state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        meta = {
            "vae": asdict(self.config),
            "encoder_name": self.encoder_name,
            "decoder_name": self.decoder_name,
            "decoder_shape": _decoder_shape(self.decoder),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, encoder: PreTrainedModel, decoder: PreTrainedModel
    ) -> DiffLMVAE:
        """Rebuild a saved VAE around `encoder` (weights replaced) and frozen `decoder`.

        Raises SynthloomError when the files are missing or `decoder` has another shape
        than the one the VAE was trained against; a different decoder name only warns.
        """
        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise SynthloomError(
                f"No saved DiffLM VAE in {directory} (needs {CONFIG_FILE} and {WEIGHTS_FILE}). "
                f"Fix: pass the directory that DiffLMVAE.save wrote."
            )
        meta = json.loads((directory / CONFIG_FILE).read_text())
        if meta["decoder_shape"] != _decoder_shape(decoder):
            raise SynthloomError(
                f"The VAE in {directory} was trained against decoder {meta['decoder_name']!r} "
                f"{meta['decoder_shape']}, not this one {_decoder_shape(decoder)}. "
                f"Fix: load it with the decoder it was trained with."
            )
        loaded = str(getattr(decoder, "name_or_path", ""))
        if meta["decoder_name"] not in (loaded, Path(loaded).name):  # alias -> its local copy
            log.warning(
                "VAE trained against decoder %r, loading it with %r",
                meta["decoder_name"],
                decoder.name_or_path,
            )
        vae = cls(
            encoder,
            decoder,
            VAEConfig(**meta["vae"]),
            encoder_name=meta["encoder_name"],
            decoder_name=meta["decoder_name"],
        )
        device = next(encoder.parameters()).device
        vae.load_trainable_state_dict(load_file(str(directory / WEIGHTS_FILE), device=str(device)))
        return vae


def _decoder_shape(decoder: PreTrainedModel) -> dict[str, Any]:
    """What a trained injector depends on: architecture and the sizes it was built for."""
    c = decoder.config
    return {
        "architecture": type(decoder).__name__,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_key_value_heads": c.num_key_value_heads,
        "vocab_size": c.vocab_size,
    }


def _compute_dtype(like: torch.Tensor) -> torch.dtype:
    """The dtype the decoder's attention runs in: the autocast dtype if active, else `like`'s."""
    device_type = like.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return like.dtype
