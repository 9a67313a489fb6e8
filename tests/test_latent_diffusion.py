"""EDM denoiser, Heun sampler and DiffLM's latent diffusion: fast CPU tests."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from synthloom.methods.difflm.latent_diffusion import (
    LatentDiffusionConfig,
    LatentDiffusionModel,
    LatentNormalizer,
    train_latent_diffusion,
)
from synthloom.models.denoiser import EDMPrecond, MLPDenoiser, PositionalEmbedding
from synthloom.samplers import EDMHeunSampler, edm_loss, edm_sigma_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- schedule


def test_sigma_schedule_endpoints_and_monotonic():
    sigmas = edm_sigma_schedule(50)
    assert sigmas.shape == (51,)
    assert sigmas[0].item() == pytest.approx(80.0)
    assert sigmas[-2].item() == pytest.approx(0.002)
    assert sigmas[-1].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    # Karras eq. 5 at the midpoint: rho-th power of the mean of the rho-th roots (steps odd).
    mid = edm_sigma_schedule(3, 0.002, 80.0, 7.0)[1].item()
    assert mid == pytest.approx(((80.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7)
    assert edm_sigma_schedule(1).tolist() == [80.0, 0.0]
    with pytest.raises(ValueError):
        edm_sigma_schedule(0)


def test_sampler_set_steps():
    sampler = EDMHeunSampler(steps=50)
    sampler.set_steps(18)
    assert sampler.steps == 18 and sampler.sigmas.shape == (19,)


# ---------------------------------------------------------------- denoiser


class _Recorder(torch.nn.Module):
    """F that returns a constant and records its inputs."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.x_in, self.c_noise = x_in, c_noise
        return torch.full_like(x_in, self.value)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 3.0, 80.0])
def test_preconditioning_matches_formulas(sigma: float):
    sd = 0.5
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / math.sqrt(sigma**2 + sd**2)
    c_in = 1 / math.sqrt(sigma**2 + sd**2)
    c_noise = math.log(sigma) / 4
    net = _Recorder(value=1.0)
    precond = EDMPrecond(net, sigma_data=sd)
    got = precond.coefficients(torch.tensor(sigma, dtype=torch.float64))
    for g, want in zip(got, (c_skip, c_out, c_in, c_noise), strict=True):
        assert g.item() == pytest.approx(want, rel=1e-9)
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
    out = precond(x, sigma)  # F = 1 everywhere -> D = c_skip x + c_out
    torch.testing.assert_close(out, c_skip * x + c_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.x_in, c_in * x, rtol=1e-5, atol=1e-6)
    assert net.c_noise.shape == (3,)
    torch.testing.assert_close(net.c_noise, torch.full((3,), c_noise), rtol=1e-5, atol=1e-6)


def test_mlp_denoiser_shapes():
    emb = PositionalEmbedding(16)(torch.tensor([0.0, 1.0]))
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))
    d = EDMPrecond(MLPDenoiser(dim=5, hidden=32))
    out = d(torch.randn(4, 5), torch.rand(4) + 0.1)
    assert out.shape == (4, 5) and out.dtype == torch.float32


# ---------------------------------------------------------------- sampler vs an oracle denoiser

M = torch.tensor([1.5, -2.0, 0.0])
S = torch.tensor([0.3, 2.0, 1.0])


def _gaussian_oracle(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x_0 | x_0 + sigma n = x] for x_0 ~ N(M, diag S^2): (S^2 x + sigma^2 M) / (S^2 + sigma^2)."""
    s2 = sigma.reshape(-1, 1) ** 2
    return (S**2 * x + s2 * M) / (S**2 + s2)


def _exact_flow(eps: torch.Tensor, sigma_max: float = 80.0) -> torch.Tensor:
    """The exact probability-flow ODE solution from x_T = sigma_max eps down to sigma = 0:
    x(sigma) = M + sqrt(S^2 + sigma^2) / sqrt(S^2 + sigma_max^2) (x_T - M)."""
    return M + S / torch.sqrt(S**2 + sigma_max**2) * (sigma_max * eps - M)


def test_heun_sampler_with_oracle_recovers_gaussian():
    n = 20_000
    sampler = EDMHeunSampler(steps=50)
    x = sampler.sample(_gaussian_oracle, (n, 3), generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x.mean(0), M, atol=4 * 2.0 / math.sqrt(n), rtol=0)
    torch.testing.assert_close(x.std(0), S, atol=0, rtol=0.03)
    # Pathwise against the exact ODE solution from the same starting noise.
    exact = _exact_flow(torch.randn((n, 3), generator=torch.Generator().manual_seed(0)))
    err = (x - exact).abs()
    assert (err.max(0).values < 0.05 * S).all() and (err.mean(0) < 0.01 * S).all()
    torch.testing.assert_close(x.std(0), exact.std(0), atol=0, rtol=0.01)


def test_heun_sampler_is_second_order():
    """Halving the step size cuts the global error about 4x (Euler would give 2x)."""
    eps = torch.randn((2000, 3), generator=torch.Generator().manual_seed(0))
    exact = _exact_flow(eps)
    errors = []
    for steps in (25, 50, 100):
        x = EDMHeunSampler(steps=steps).sample(
            _gaussian_oracle, eps.shape, generator=torch.Generator().manual_seed(0)
        )
        errors.append((x - exact).abs().mean().item())
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 3.0 < coarse / fine < 5.5


def test_heun_sampler_with_churn_still_matches_gaussian():
    sampler = EDMHeunSampler(steps=50, s_churn=1.0)
    x = sampler.sample(_gaussian_oracle, (20_000, 3), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.mean(0), M, atol=0.06, rtol=0)
    torch.testing.assert_close(x.std(0), S, atol=0, rtol=0.03)


RHO = 0.8


def _correlated_oracle(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x_0 | x_0 + sigma n = x] for x_0 ~ N(0, [[1, RHO], [RHO, 1]]): Sigma (Sigma + sigma^2 I)^-1 x."""
    cov = torch.tensor([[1.0, RHO], [RHO, 1.0]])
    gain = cov @ torch.linalg.inv(cov + sigma.reshape(-1, 1, 1) ** 2 * torch.eye(2))
    return (gain @ x.unsqueeze(-1)).squeeze(-1)


def test_inpainting_with_the_oracle_draws_the_conditional_and_keeps_the_known_part():
    """x_0 = 1.5 fixed: x_1 | x_0 ~ N(RHO 1.5, 1 - RHO^2) = N(1.2, 0.6^2). Replacement alone
    on the ODE stays near the prior (the unknown part commits before the known one is
    legible); resampling with churn mixes it toward the conditional."""
    n, a = 20_000, 1.5
    known = torch.zeros(n, 2)
    known[:, 0] = a
    mask = torch.tensor([True, False])

    def run(churn: float, resample: int) -> torch.Tensor:
        sampler = EDMHeunSampler(steps=50, s_churn=churn)
        generator = torch.Generator().manual_seed(0)
        return sampler.inpaint(_correlated_oracle, known, mask, generator, resample=resample)

    plain, mixed = run(0.0, 1), run(50.0, 10)
    assert (mixed[:, 0] == a).all() and (plain[:, 0] == a).all()
    want_mean, want_std = RHO * a, math.sqrt(1 - RHO**2)
    assert plain[:, 1].mean() < 0.5 * want_mean  # measured 0.50
    assert abs(float(mixed[:, 1].mean()) - want_mean) < 0.1 * want_mean  # measured 1.14
    assert abs(float(mixed[:, 1].std()) - want_std) < 0.05  # measured 0.614
    with pytest.raises(ValueError, match="resample"):
        run(0.0, 0)


def test_edm_loss_of_the_oracle_is_small_and_per_sample():
    """The oracle is the optimal denoiser: its loss equals the irreducible Bayes error."""
    x0 = M + S * torch.randn((4096, 3), generator=torch.Generator().manual_seed(2))
    loss = edm_loss(_gaussian_oracle, x0, generator=torch.Generator().manual_seed(3))
    assert loss.shape == (4096,)
    wrong = edm_loss(lambda x, s: x * 0, x0, generator=torch.Generator().manual_seed(3))
    assert loss.mean() < 0.5 * wrong.mean()


# ---------------------------------------------------------------- normaliser


@pytest.mark.parametrize("mode", ["standard", "tabsyn"])
def test_normalizer_round_trip(mode: str):
    rng = np.random.default_rng(0)
    z = rng.normal([3.0, -1.0, 0.0], [5.0, 0.1, 1.0], size=(500, 3))
    z[:, 2] = 7.0  # a constant dimension must not blow up
    norm = LatentNormalizer.fit(z, target_std=0.5, mode=mode)
    x = norm.transform(z)
    if mode == "standard":
        np.testing.assert_allclose(x.std(0, ddof=1)[:2], [0.5, 0.5], rtol=1e-9)
    else:
        np.testing.assert_allclose(x, (z - z.mean(0)) / 2)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(norm.inverse(x), z, rtol=1e-12, atol=1e-12)
    restored = LatentNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    t = torch.as_tensor(z, dtype=torch.float32)
    torch.testing.assert_close(restored.inverse(restored.transform(t)), t)
    assert restored.transform(t).dtype == torch.float32


# ---------------------------------------------------------------- training


def _two_mode_mixture(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, float]:
    """70% around (-4, 1), 30% around (4, -1), std 0.4."""
    rng = np.random.default_rng(seed)
    left = rng.random(n) < 0.7
    centres = np.where(left[:, None], [-4.0, 1.0], [4.0, -1.0])
    return centres + 0.4 * rng.normal(size=(n, 2)), float(left.mean())


@pytest.fixture(scope="module")
def mixture_model() -> tuple[LatentDiffusionModel, list[dict], float]:
    z, p_left = _two_mode_mixture()
    records: list[dict] = []
    config = LatentDiffusionConfig(
        hidden=128, epochs=150, batch_size=256, lr=2e-3, sampler_steps=30, seed=0
    )
    model = train_latent_diffusion(z, config, device="cpu", log=records.append)
    return model, records, p_left


def test_training_lowers_loss_and_finds_both_modes(mixture_model):
    model, records, p_left = mixture_model
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    assert {"step", "epoch", "loss", "lr"} <= set(records[0])
    losses = np.array([r["loss"] for r in records])
    assert losses.min() < 0.8 * losses[0]
    assert losses[-10:].mean() < 0.9 * losses[:5].mean()
    assert model.training["best_loss"] == min(r["loss"] for r in records)

    samples = model.sample(2000, seed=0)
    assert samples.shape == (2000, 2) and samples.dtype == np.float32
    d_left = np.linalg.norm(samples - [-4.0, 1.0], axis=1)
    d_right = np.linalg.norm(samples - [4.0, -1.0], axis=1)
    near = np.minimum(d_left, d_right) < 1.5
    assert near.mean() > 0.9
    frac_left = (d_left < d_right)[near].mean()
    assert abs(frac_left - p_left) < 0.08
    # Spread within a mode is roughly right (true std 0.4 per axis).
    assert 0.2 < samples[d_left < 1.5, 0].std() < 0.8


def test_sampling_is_deterministic_for_a_seed(mixture_model):
    model = mixture_model[0]
    a = model.sample(64, seed=7)
    np.testing.assert_array_equal(a, model.sample(64, seed=7))
    assert not np.array_equal(a, model.sample(64, seed=8))
    assert model.sample(64, seed=7, steps=10).shape == (64, 2)


def test_save_load_gives_identical_samples(mixture_model, tmp_path):
    model = mixture_model[0]
    model.save(tmp_path / "ldm")
    loaded = LatentDiffusionModel.load(tmp_path / "ldm")
    assert loaded.config == model.config
    assert loaded.training == json.loads(json.dumps(model.training))
    np.testing.assert_array_equal(loaded.sample(100, seed=3), model.sample(100, seed=3))


def test_inpainting_a_trained_model_picks_the_mode_of_the_known_coordinate(mixture_model):
    """Modes (-4, 1) and (4, -1): fixing z_0 at a mode's first coordinate draws z_1 near
    that mode's second, in the original (unnormalised) space, deterministically."""
    model = mixture_model[0]
    known = np.zeros((400, 2), dtype=np.float32)
    known[:200, 0], known[200:, 0] = -4.0, 4.0
    mask = np.array([True, False])
    z = model.inpaint(known, mask, seed=0, resample=10)
    assert (z[:, 0] == known[:, 0]).all()
    # measured medians 1.13 and -0.91 (resample 1: 0.90 and -0.49)
    assert abs(np.median(z[:200, 1]) - 1.0) < 0.3 and abs(np.median(z[200:, 1]) + 1.0) < 0.3
    np.testing.assert_array_equal(z, model.inpaint(known, mask, seed=0, resample=10))
    with pytest.raises(ValueError, match="inpaint needs known"):
        model.inpaint(known[:, :1], mask, seed=0)


def test_training_is_seeded_and_respects_max_steps():
    z = np.random.default_rng(1).normal(size=(100, 4))
    config = LatentDiffusionConfig(hidden=16, epochs=50, max_steps=7, batch_size=32, seed=5)
    a = train_latent_diffusion(z, config)
    b = train_latent_diffusion(torch.as_tensor(z), config)
    assert a.training["steps"] == 7 and a.training["epochs"] == 2
    for (ka, va), (kb, vb) in zip(
        a.denoiser.state_dict().items(), b.denoiser.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_early_stopping_and_bad_input():
    z = np.random.default_rng(2).normal(size=(64, 3))
    model = train_latent_diffusion(
        z, LatentDiffusionConfig(hidden=16, epochs=1000, batch_size=64, patience=3, lr=0.0)
    )
    assert model.training["stopped_early"] and model.training["epochs"] < 1000
    with pytest.raises(ValueError):
        train_latent_diffusion(np.full((10, 2), np.nan), LatentDiffusionConfig(hidden=8))
    with pytest.raises(ValueError):
        LatentDiffusionConfig(normalization="minmax")  # type: ignore[arg-type]


# ---------------------------------------------------------------- class-conditional


def test_a_class_conditional_model_samples_the_mode_of_the_asked_class():
    """Labels = which mode a latent came from; asked for one class, the sampler stays in
    that class's mode (an unconditional model would give 70/30 of both)."""
    z, _ = _two_mode_mixture(n=1000)
    labels = (z[:, 0] < 0).astype(np.int64)  # 1: the left mode
    config = LatentDiffusionConfig(
        hidden=64, epochs=60, batch_size=256, lr=2e-3, sampler_steps=20, n_classes=2, seed=0
    )
    model = train_latent_diffusion(z, config, labels=labels)
    for label, centre in ((1, [-4.0, 1.0]), (0, [4.0, -1.0])):
        samples = model.sample(400, seed=1, labels=np.full(400, label))
        assert (np.linalg.norm(samples - centre, axis=1) < 1.5).mean() > 0.9
    mixed = np.array([0, 1] * 50)
    np.testing.assert_array_equal(
        model.sample(100, seed=2, labels=mixed), model.sample(100, seed=2, labels=mixed)
    )


def test_class_labels_are_checked():
    z = np.random.default_rng(3).normal(size=(40, 2))
    config = LatentDiffusionConfig(hidden=8, epochs=1, batch_size=40, n_classes=2)
    with pytest.raises(ValueError, match="pass labels"):
        train_latent_diffusion(z, config)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        train_latent_diffusion(z, config, labels=np.full(40, 2))
    model = train_latent_diffusion(z, config, labels=np.arange(40) % 2)
    with pytest.raises(ValueError, match="need 5 labels"):
        model.sample(5, seed=0, labels=[0, 1])
    plain = train_latent_diffusion(z, LatentDiffusionConfig(hidden=8, epochs=1, batch_size=40))
    with pytest.raises(ValueError, match="unconditional"):
        plain.sample(2, seed=0, labels=[0, 1])


def test_guidance_moves_samples_toward_where_their_class_is_likely():
    """Two overlapping classes, N(-0.6, 1) and N(+0.6, 1) in x_0 (x_1 is shared noise).
    Trained with label dropout, the null class samples the mixture (w = 0), the
    conditional model its class (w = 1), and guidance w = 3 follows
    p(x | y)^3 p(x)^-2, whose class-1 mean lies beyond the class's own (numerically 1.17)."""
    rng = np.random.default_rng(5)
    labels = np.arange(2000) % 2
    z = rng.normal(size=(2000, 2))
    z[:, 0] += np.where(labels == 1, 0.6, -0.6)
    config = LatentDiffusionConfig(
        hidden=64,
        epochs=120,
        batch_size=250,
        lr=2e-3,
        sampler_steps=20,
        n_classes=2,
        label_dropout=0.2,
        seed=0,
    )
    model = train_latent_diffusion(z, config, labels=labels)
    ones = np.ones(1500, dtype=np.int64)
    means = {
        w: model.sample(1500, seed=1, labels=ones, guidance_scale=w)[:, 0].mean()
        for w in (0.0, 1.0, 3.0)
    }
    assert abs(means[0.0]) < 0.25
    assert abs(means[1.0] - 0.6) < 0.2
    assert means[3.0] > means[1.0] + 0.4
    np.testing.assert_array_equal(
        model.sample(50, seed=2, labels=ones[:50], guidance_scale=2.0),
        model.sample(50, seed=2, labels=ones[:50], guidance_scale=2.0),
    )


def test_guidance_needs_a_model_trained_with_a_null_class():
    z = np.random.default_rng(3).normal(size=(40, 2))
    config = LatentDiffusionConfig(hidden=8, epochs=1, batch_size=40, n_classes=2)
    model = train_latent_diffusion(z, config, labels=np.arange(40) % 2)
    with pytest.raises(ValueError, match="label_dropout"):
        model.sample(4, seed=0, labels=[0, 1, 0, 1], guidance_scale=2.0)
    with pytest.raises(ValueError, match="class-conditional"):
        LatentDiffusionConfig(label_dropout=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LatentDiffusionConfig(n_classes=2, label_dropout=1.0)


def test_the_class_embedding_leaves_the_unconditional_initialisation_alone():
    """Built last, the embedding draws no random number before the shared layers: a saved
    unconditional model's keys and a seed's initial weights are what they were."""
    torch.manual_seed(0)
    plain = MLPDenoiser(6, hidden=16)
    torch.manual_seed(0)
    conditional = MLPDenoiser(6, hidden=16, n_classes=3)
    extra = set(conditional.state_dict()) - set(plain.state_dict())
    assert extra == {"class_embed.weight"}
    for key, value in plain.state_dict().items():
        assert torch.equal(value, conditional.state_dict()[key])


def test_an_interrupted_training_resumes_from_its_checkpoint_to_the_same_weights(tmp_path):
    z = np.random.default_rng(4).normal(size=(120, 3))
    labels = np.arange(120) % 3
    config = LatentDiffusionConfig(hidden=16, epochs=12, batch_size=32, n_classes=3, seed=2)
    reference = train_latent_diffusion(z, config, labels=labels)
    checkpoint = tmp_path / "diffusion.pt"

    def stop_at_8(record: dict) -> None:
        if record["epoch"] == 8:
            raise KeyboardInterrupt  # a kill between epochs: the checkpoint holds epoch 7

    with pytest.raises(KeyboardInterrupt):
        train_latent_diffusion(
            z, config, labels=labels, checkpoint=checkpoint, checkpoint_seconds=0, log=stop_at_8
        )
    records: list[dict] = []
    resumed = train_latent_diffusion(
        z, config, labels=labels, checkpoint=checkpoint, checkpoint_seconds=0, log=records.append
    )
    assert resumed.training["resumed_from_epoch"] == 7 and resumed.training["epochs"] == 12
    assert [r["epoch"] for r in records] == list(range(1, 13))  # the saved ones replayed
    expected, got = reference.denoiser.state_dict(), resumed.denoiser.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    other = LatentDiffusionConfig(hidden=16, epochs=13, batch_size=32, n_classes=3, seed=2)
    fresh = train_latent_diffusion(z, other, labels=labels, checkpoint=checkpoint)
    assert fresh.training["resumed_from_epoch"] == 0  # other settings: not resumed
    checkpoint.write_bytes(b"not a checkpoint")
    again = train_latent_diffusion(z, config, labels=labels, checkpoint=checkpoint)
    assert again.training["resumed_from_epoch"] == 0


def test_ema_returns_the_moving_average_of_the_weights_and_resumes_exactly(tmp_path):
    """With ema_decay d the model carries theta_ema / (1 - d^T), theta_ema updated after
    every step as d * theta_ema + (1 - d) * theta from 0: replayed here by hand from the
    same seeded run's raw weights after each step; an interrupted EMA run resumes to the
    same average."""
    z = np.random.default_rng(6).normal(size=(96, 3))
    decay = 0.9

    def config(**kw) -> LatentDiffusionConfig:
        return LatentDiffusionConfig(hidden=16, epochs=6, batch_size=32, seed=3, **kw)

    model = train_latent_diffusion(z, config(ema_decay=decay))
    steps = model.training["steps"]
    assert steps == 18  # 6 epochs of 3 batches

    def raw_after(k: int) -> dict[str, torch.Tensor]:
        # 1 - 1e-12 rounds to 1 in float32: the "average" is the raw weights after step k
        # (the EMA never feeds back into training, so the path is the same run's)
        capped = train_latent_diffusion(z, config(ema_decay=1e-12, max_steps=k))
        return {n: p.detach() for n, p in capped.denoiser.named_parameters()}

    average: dict[str, torch.Tensor] = {}
    for k in range(1, steps + 1):
        for name, weight in raw_after(k).items():
            average[name] = (
                decay * average.get(name, torch.zeros_like(weight)) + (1 - decay) * weight
            )
    for name, param in model.denoiser.named_parameters():
        expected = average[name] / (1 - decay**steps)  # the initial weights carry none
        torch.testing.assert_close(param.detach(), expected, rtol=1e-5, atol=1e-6)
    best = train_latent_diffusion(z, config()).denoiser.state_dict()
    assert any(not torch.equal(best[k], v) for k, v in model.denoiser.state_dict().items())

    checkpoint = tmp_path / "ema.pt"

    def stop_at_4(record: dict) -> None:
        if record["epoch"] == 4:
            raise KeyboardInterrupt  # the checkpoint holds epoch 3, its average included

    with pytest.raises(KeyboardInterrupt):
        train_latent_diffusion(
            z, config(ema_decay=decay), checkpoint=checkpoint, checkpoint_seconds=0, log=stop_at_4
        )
    resumed = train_latent_diffusion(
        z, config(ema_decay=decay), checkpoint=checkpoint, checkpoint_seconds=0
    )
    assert resumed.training["resumed_from_epoch"] == 3
    expected, again = model.denoiser.state_dict(), resumed.denoiser.state_dict()
    assert all(torch.equal(expected[k], again[k]) for k in expected)
    with pytest.raises(ValueError, match="ema_decay"):
        LatentDiffusionConfig(ema_decay=1.0)


def test_cosine_schedule_decays_the_learning_rate_to_zero_and_resumes_exactly(tmp_path):
    """lr_schedule 'cosine': after optimiser step t the rate is lr (1 + cos(pi t / T)) / 2,
    T = max_steps, so it reaches 0 at the last step; the plateau rule is not applied; an
    interrupted run resumes to the same weights."""
    z = np.random.default_rng(7).normal(size=(96, 3))
    config = LatentDiffusionConfig(
        hidden=16, epochs=100, max_steps=15, batch_size=32, seed=4, lr_schedule="cosine"
    )
    records: list[dict] = []
    model = train_latent_diffusion(z, config, log=records.append)
    assert [r["step"] for r in records] == [3, 6, 9, 12, 15]
    for r in records:
        expected = config.lr * 0.5 * (1 + math.cos(math.pi * r["step"] / 15))
        assert r["lr"] == pytest.approx(expected, abs=1e-12)
    assert records[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    plateau = train_latent_diffusion(z, replace(config, lr_schedule="plateau"))
    assert any(
        not torch.equal(v, plateau.denoiser.state_dict()[k])
        for k, v in model.denoiser.state_dict().items()
    )

    checkpoint = tmp_path / "cosine.pt"

    def stop_at_3(record: dict) -> None:
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_latent_diffusion(
            z, config, checkpoint=checkpoint, checkpoint_seconds=0, log=stop_at_3
        )
    resumed = train_latent_diffusion(z, config, checkpoint=checkpoint, checkpoint_seconds=0)
    assert resumed.training["resumed_from_epoch"] == 2
    expected, again = model.denoiser.state_dict(), resumed.denoiser.state_dict()
    assert all(torch.equal(expected[k], again[k]) for k in expected)
    with pytest.raises(ValueError, match="set max_steps"):
        LatentDiffusionConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule"):
        LatentDiffusionConfig(lr_schedule="step")  # type: ignore[arg-type]


_KILL_SCRIPT = """
import sys, numpy as np, torch
sys.path.insert(0, {repo!r})
from pathlib import Path
from safetensors.torch import save_file
from synthloom.methods.difflm.latent_diffusion import LatentDiffusionConfig, train_latent_diffusion
torch.set_num_threads(1)
z = np.random.default_rng(5).normal(size=(256, 8))
config = LatentDiffusionConfig(hidden=64, epochs=400, batch_size=32, n_classes=2, seed=1)
model = train_latent_diffusion(
    z, config, labels=np.arange(256) % 2, checkpoint=Path(sys.argv[1]), checkpoint_seconds=0
)
save_file(model.denoiser.state_dict(), sys.argv[2])
print("resumed_from", model.training["resumed_from_epoch"])
"""


def test_sigkill_during_diffusion_training_resumes_from_the_checkpoint(tmp_path):
    """A real SIGKILL part way: the rerun starts from the last checkpoint and ends with the
    weights of an uninterrupted run (same thread count: exact)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file
    from sigkill import kill_once_checkpointed

    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT.format(repo=str(Path(__file__).resolve().parent.parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> str:
        cmd = [sys.executable, str(script), *args]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "resumed_from 0" in run(str(tmp_path / "ref.pt"), str(tmp_path / "ref.st"))
    checkpoint = tmp_path / "run.pt"
    killed_at = kill_once_checkpointed(
        [sys.executable, str(script), str(checkpoint), "unused"],
        env,
        checkpoint,
        lambda saved: saved["state"]["epoch"],
        at_least=40,
    )
    assert 40 <= killed_at < 400
    assert f"resumed_from {killed_at}" in run(str(checkpoint), str(tmp_path / "run.st"))
    a, b = load_file(str(tmp_path / "ref.st")), load_file(str(tmp_path / "run.st"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
