"""TabSyn's VAE: one latent token per column (Zhang et al. 2024, arXiv 2310.09656, section 3.2).

    tokens  t_j = x_j w_j + b_j                (numeric column j, x_j a quantile-normal score)
            t_j = E_j[c_j] + b_j               (categorical column j, c_j its code)
    encoder mu = T_mu(t), log sigma^2 = T_var(t)   two small transformers over the tokens
    z       = mu + sigma * eps                 (B, n_columns, d_token), no pooled bottleneck
    decoder h = T_dec(z);  x_hat_j = <h_j, r_j> (numeric),  logits_j = h_j W_j + a_j (categorical)

    loss = MSE(x_hat_num, x_num) + mean_j CE(logits_j, c_j) + beta * KL(q(z|x) || N(0, I))

with the MSE and KL averaged over their elements and beta lowered on plateaus by the trainer
(`synthloom.methods.tabsyn.train`). Every transformer has one head and a d_token *
`ffn_factor` wide feed-forward layer (TabSyn: d_token 4, 2 layers, factor 32). `norm="pre"`
is TabSyn's (x + f(LayerNorm(x)), no norm on the output), so a column's latent is the free
residual stream; `norm="post"` (LayerNorm after each residual, torch's default) leaves every
d_token-wide output on a LayerNorm's sphere, d_token - 2 free dimensions per column: churn's
51 US states reconstruct worse, but the latents stay on one scale for the diffusion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ColumnTokenizer(nn.Module):
    """(x_num (B, n_num), x_cat (B, n_cat) int64) -> tokens (B, n_num + n_cat, d_token)."""

    def __init__(self, n_num: int, cardinalities: list[int], d_token: int) -> None:
        super().__init__()
        self.n_num = n_num
        self.num_weight = nn.Parameter(torch.randn(n_num, d_token) / d_token**0.5)
        self.num_bias = nn.Parameter(torch.zeros(n_num, d_token))
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets[: len(cardinalities)], persistent=False)
        self.cat_embedding = nn.Embedding(max(sum(cardinalities), 1), d_token)
        nn.init.normal_(self.cat_embedding.weight, std=d_token**-0.5)
        self.cat_bias = nn.Parameter(torch.zeros(len(cardinalities), d_token))

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        numeric = x_num.unsqueeze(-1) * self.num_weight + self.num_bias  # (B, n_num, d)
        categorical = self.cat_embedding(x_cat + self.offsets) + self.cat_bias  # (B, n_cat, d)
        return torch.cat([numeric, categorical], dim=1)


def column_transformer(
    d_token: int, layers: int, ffn_factor: int, norm: str = "post"
) -> nn.TransformerEncoder:
    """`layers` blocks (`norm` "pre" or "post"), one attention head, over (B, columns, d_token)."""
    if norm not in ("pre", "post"):
        raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
    block = nn.TransformerEncoderLayer(
        d_model=d_token,
        nhead=1,
        dim_feedforward=d_token * ffn_factor,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=norm == "pre",
    )
    return nn.TransformerEncoder(block, num_layers=layers, enable_nested_tensor=False)


class ColumnReconstructor(nn.Module):
    """Decoder tokens h (B, n_num + n_cat, d) -> (x_hat_num (B, n_num), [logits_j (B, K_j)])."""

    def __init__(self, n_num: int, cardinalities: list[int], d_token: int) -> None:
        super().__init__()
        self.n_num = n_num
        self.num_weight = nn.Parameter(torch.randn(n_num, d_token) / d_token**0.5)
        self.cat_heads = nn.ModuleList(nn.Linear(d_token, k) for k in cardinalities)

    def forward(self, h: Tensor) -> tuple[Tensor, list[Tensor]]:
        x_num = (h[:, : self.n_num] * self.num_weight).sum(-1)  # (B, n_num)
        logits = [head(h[:, self.n_num + j]) for j, head in enumerate(self.cat_heads)]
        return x_num, logits


class TabularVAE(nn.Module):
    """The per-column-token VAE of the module docstring; latents are (B, n_columns, d_token)."""

    def __init__(
        self,
        n_num: int,
        cardinalities: list[int],
        d_token: int = 4,
        layers: int = 2,
        ffn_factor: int = 32,
        norm: str = "post",
    ) -> None:
        super().__init__()
        self.n_num = n_num
        self.cardinalities = list(cardinalities)
        self.d_token = d_token
        self.tokenizer = ColumnTokenizer(n_num, self.cardinalities, d_token)
        self.encoder_mu = column_transformer(d_token, layers, ffn_factor, norm)
        self.encoder_logvar = column_transformer(d_token, layers, ffn_factor, norm)
        self.decoder = column_transformer(d_token, layers, ffn_factor, norm)
        self.reconstructor = ColumnReconstructor(n_num, self.cardinalities, d_token)

    @property
    def n_columns(self) -> int:
        return self.n_num + len(self.cardinalities)

    def encode(self, x_num: Tensor, x_cat: Tensor) -> tuple[Tensor, Tensor]:
        """-> (mu, logvar), each (B, n_columns, d_token)."""
        tokens = self.tokenizer(x_num, x_cat)
        return self.encoder_mu(tokens), self.encoder_logvar(tokens)

    def decode(self, z: Tensor) -> tuple[Tensor, list[Tensor]]:
        """z (B, n_columns, d_token) -> (x_hat_num (B, n_num), [logits_j (B, K_j)])."""
        return self.reconstructor(self.decoder(z))

    def forward(
        self, x_num: Tensor, x_cat: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
        """-> (x_hat_num, logits, mu, logvar) with z = mu + sigma * eps (eps from `generator`)."""
        mu, logvar = self.encode(x_num, x_cat)
        # eps from `generator` on its own device (the trainer's is a CPU one), then moved
        source = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=source, dtype=mu.dtype)
        eps = eps.to(mu.device)
        x_hat, logits = self.decode(mu + eps * (0.5 * logvar).exp())
        return x_hat, logits, mu, logvar


def vae_loss_terms(
    x_num: Tensor,
    x_cat: Tensor,
    x_hat: Tensor,
    logits: list[Tensor],
    mu: Tensor,
    logvar: Tensor,
) -> dict[str, Tensor]:
    """{"mse", "ce", "kl", "accuracy"}: the module docstring's terms (scalars), plus the share
    of categorical values the logits' argmax gets right (1 with no categorical column)."""
    zero = x_hat.new_zeros(())
    mse = F.mse_loss(x_hat, x_num) if x_num.shape[1] else zero
    if logits:
        ce = torch.stack([F.cross_entropy(lg, x_cat[:, j]) for j, lg in enumerate(logits)]).mean()
        hits = torch.stack([(lg.argmax(-1) == x_cat[:, j]).float() for j, lg in enumerate(logits)])
        accuracy = hits.mean()
    else:
        ce, accuracy = zero, x_hat.new_ones(())
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean()
    return {"mse": mse, "ce": ce, "kl": kl, "accuracy": accuracy}
