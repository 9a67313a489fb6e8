"""TabSyn (synthloom.methods.tabsyn) on tiny shapes: codec round trips, latent shapes, the
trainer's resume, conditions, dirty tables, and save/load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import ndtr
from scipy.stats import ks_2samp
from sigkill import kill_once_checkpointed

from synthloom.conditions import check_conditions
from synthloom.errors import DataError
from synthloom.methods import build_generator
from synthloom.methods.tabsyn import TabSynGenerator
from synthloom.methods.tabsyn.columns import MISSING_SUFFIX, ColumnCodec, QuantileNormal
from synthloom.methods.tabsyn.generator import STATE_FILE
from synthloom.methods.tabsyn.train import VAETraining, train_tabular_vae
from synthloom.methods.tabsyn.vae import TabularVAE
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "vae_epochs": 30,
    "vae_batch_size": 64,
    "diffusion_hidden": 32,
    "diffusion_steps": 30,
    "diffusion_batch_size": 64,
    "sampler_steps": 4,
    "ffn_factor": 4,
}


def dirty_table(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, TableSchema]:
    """Every column kind, gaps in numbers and categories, an integer and a constant column."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n).round(2)
    income[::9] = np.nan
    city = rng.choice(["a", "b", "c"], n).astype(object)
    city[::11] = None
    frame = pd.DataFrame(
        {
            "income": income,
            "age": rng.integers(18, 80, n).astype(float),
            "city": city,
            "owner": pd.array(rng.random(n) < 0.4, dtype="boolean"),
            "seen": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), "D"),
            "const": np.full(n, 7.0),
            "status": np.where(rng.random(n) < 0.3, "bad", "good").astype(object),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema("income", ColumnKind.NUMERIC, nullable=True, minimum=0, maximum=120),
            ColumnSchema("age", ColumnKind.NUMERIC, integer=True, minimum=18, maximum=79),
            ColumnSchema("city", ColumnKind.CATEGORICAL, nullable=True, categories=("a", "b", "c")),
            ColumnSchema("owner", ColumnKind.BOOLEAN, categories=("False", "True")),
            ColumnSchema("seen", ColumnKind.DATETIME),
            ColumnSchema("const", ColumnKind.NUMERIC, minimum=7, maximum=7),
            ColumnSchema("status", ColumnKind.CATEGORICAL, categories=("bad", "good")),
        ),
        target="status",
        task="classification",
    )
    return frame, schema


def test_quantile_normal_inverts_on_the_training_values_and_stays_in_range() -> None:
    values = np.random.default_rng(0).exponential(3.0, 500)
    qn = QuantileNormal.fit(values)
    z = qn.transform(values)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05  # standard normal scores
    np.testing.assert_allclose(qn.inverse(z), values, rtol=1e-6, atol=1e-9)
    far = qn.inverse(np.array([-50.0, 50.0]))
    assert far[0] == pytest.approx(values.min()) and far[1] == pytest.approx(values.max())


def test_codec_round_trip_restores_every_kind_gaps_and_constants() -> None:
    frame, schema = dirty_table()
    codec = ColumnCodec.fit(frame, schema)
    assert codec.numeric == ["income", "age", "seen"]
    assert codec.categorical == ["income" + MISSING_SUFFIX, "city", "owner", "status"]
    assert codec.constants == {"const": 7.0}
    x_num, x_cat = codec.encode(frame)
    assert x_num.shape == (120, 3) and x_cat.shape == (120, 4)
    back = codec.decode(x_num, x_cat)
    assert list(back.columns) == schema.names
    np.testing.assert_allclose(back["income"], frame["income"], equal_nan=True, atol=1e-9)
    assert back["age"].tolist() == frame["age"].tolist()
    assert back["city"].tolist() == frame["city"].tolist()
    assert back["owner"].tolist() == frame["owner"].tolist()
    assert (back["seen"] == frame["seen"]).all()
    assert (back["const"] == 7.0).all()
    again = ColumnCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    assert again.decode(x_num, x_cat).equals(back)
    # dequantised ties (the TabSyn default): other scores, the same rows back
    spread = ColumnCodec.fit(frame, schema, dequantize=True)
    d_num, d_cat = spread.encode(frame, seed=0)
    assert not np.allclose(d_num, x_num) and (d_cat == x_cat).all()
    assert spread.decode(d_num, d_cat).equals(back)
    assert ColumnCodec.from_dict(json.loads(json.dumps(spread.to_dict()))).dequantize


def test_dequantised_ties_fill_their_cdf_stretch_and_decode_to_the_tied_value() -> None:
    rng = np.random.default_rng(0)
    values = np.where(rng.random(2000) < 0.8, 0.0, rng.uniform(100, 5000, 2000).round(0))
    qn = QuantileNormal.fit(values)
    zeros = values == 0.0
    averaged = qn.transform(values)
    assert np.unique(averaged[zeros]).size == 1  # the paper: one spike at Phi^-1(0.4)
    spread = qn.transform(values, np.random.default_rng(1))
    u = ndtr(spread[zeros])
    assert u.min() < 0.05 and u.max() > 0.75 and u.max() <= zeros.mean() + 1e-9
    assert abs(spread.mean()) < 0.1 and abs(spread.std() - 1) < 0.1  # normal, no spike
    np.testing.assert_allclose(qn.inverse(spread), values, atol=1e-6)
    # untied values are unchanged by the draw
    np.testing.assert_allclose(spread[~zeros], averaged[~zeros], atol=1e-6)


def test_an_exact_linear_dependent_is_written_back_from_its_source() -> None:
    rng = np.random.default_rng(0)
    n = 300
    minutes = rng.uniform(0, 350, n).round(1)
    frame = pd.DataFrame(
        {
            "minutes": minutes,
            "calls": rng.integers(0, 160, n).astype(float),
            "charge": np.floor(17 * minutes + 0.5 + 1e-9) / 100,  # per minute, to the cent
            "near": (0.17 * minutes + rng.normal(0, 0.05, n)).round(2),  # correlated, not exact
            "status": np.where(rng.random(n) < 0.3, "bad", "good").astype(object),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema("minutes", ColumnKind.NUMERIC),
            ColumnSchema("calls", ColumnKind.NUMERIC, integer=True),
            ColumnSchema("charge", ColumnKind.NUMERIC),
            ColumnSchema("near", ColumnKind.NUMERIC),
            ColumnSchema("status", ColumnKind.CATEGORICAL, categories=("bad", "good")),
        ),
        target="status",
        task="classification",
    )
    assert ColumnCodec.fit(frame, schema).derived == {}  # off: every column modelled
    codec = ColumnCodec.fit(frame, schema, derive_linear=True)
    assert list(codec.derived) == ["charge"]  # `near` is off by more than its rounding
    rule = codec.derived["charge"]
    assert rule["source"] == "minutes" and rule["slope"] == pytest.approx(0.17, abs=1e-4)
    assert codec.numeric == ["minutes", "calls", "near"]
    x_num, x_cat = codec.encode(frame)
    assert x_num.shape == (n, 3)
    back = codec.decode(x_num, x_cat)
    np.testing.assert_allclose(back["charge"], frame["charge"], atol=1e-9)
    # generated scores: the identity holds in every row, inside the training range
    fresh = codec.decode(rng.normal(0, 1.5, (50, 3)).astype(np.float32), x_cat[:50])
    np.testing.assert_allclose(fresh["charge"], 0.17 * fresh["minutes"], atol=0.0051)
    assert fresh["charge"].between(frame["charge"].min(), frame["charge"].max()).all()
    again = ColumnCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    assert again.decode(x_num, x_cat).equals(back)
    # the target is never derived, even when it is an exact function of a feature
    as_target = TableSchema(columns=schema.columns[:3], target="charge", task="regression")
    assert (
        ColumnCodec.fit(
            frame[["minutes", "calls", "charge"]], as_target, derive_linear=True
        ).derived
        == {}
    )


def test_a_text_column_is_refused_with_the_column_and_the_fix() -> None:
    schema = TableSchema(
        columns=(
            ColumnSchema("x", ColumnKind.NUMERIC),
            ColumnSchema("note", ColumnKind.TEXT),
        )
    )
    frame = pd.DataFrame({"x": np.arange(20.0), "note": [f"text {i}" for i in range(20)]})
    with pytest.raises(DataError, match=r"'note'.*data.drop_columns"):
        ColumnCodec.fit(frame, schema)


def test_vae_gives_one_latent_token_per_modelled_column() -> None:
    vae = TabularVAE(n_num=3, cardinalities=[2, 5], d_token=4, layers=1, ffn_factor=2)
    x_num = torch.randn(8, 3)
    x_cat = torch.stack([torch.randint(0, 2, (8,)), torch.randint(0, 5, (8,))], dim=1)
    mu, logvar = vae.encode(x_num, x_cat)
    assert mu.shape == logvar.shape == (8, 5, 4)
    x_hat, logits = vae.decode(mu)
    assert x_hat.shape == (8, 3) and [lg.shape for lg in logits] == [(8, 2), (8, 5)]


def test_pre_norm_latents_are_free_and_post_norm_ones_lie_on_a_layernorm_sphere() -> None:
    torch.manual_seed(0)
    x_num, x_cat = torch.randn(16, 3), torch.randint(0, 2, (16, 1))
    for norm in ("pre", "post"):
        vae = TabularVAE(n_num=3, cardinalities=[2], d_token=4, layers=2, ffn_factor=2, norm=norm)
        mu, _ = vae.encode(x_num, x_cat)
        token_var = mu.var(-1, unbiased=False)  # over d_token, per row and column
        if norm == "post":  # LayerNorm's output (weights at their init): variance 1
            torch.testing.assert_close(token_var, torch.ones_like(token_var), atol=1e-3, rtol=0)
        else:
            assert token_var.std() > 0.1
    with pytest.raises(ValueError, match="norm"):
        TabularVAE(n_num=1, cardinalities=[], norm="middle")


def test_a_model_saved_before_vae_norm_and_category_draws_loads_as_it_was(tmp_path: Path) -> None:
    frame, schema = dirty_table()
    model = TabSynGenerator(
        **TINY, vae_norm="post", category_temperature=0.0, decoder_calibration="training"
    )
    model.fit(frame, schema, seed=0).save(tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    config = state["config"]
    del config["vae_norm"], config["category_temperature"], config["decoder_calibration"]
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    loaded = TabSynGenerator.load(tmp_path)
    assert loaded.config.vae_norm == "post" and loaded.config.category_temperature == 0.0
    assert loaded.config.decoder_calibration == "training"
    assert loaded.sample(20, seed=3).equals(model.sample(20, seed=3))


def test_a_calibration_on_generated_latents_gives_sampled_rows_the_data_marginals(
    one_thread,
) -> None:
    """decoder_calibration: "generated" fits the calibration on decoded diffusion samples,
    so newly sampled rows get the training rows' marginals even from a denoiser trained for
    30 steps; "training" (the same fit: same seed) only undoes the decoder's shrinkage, and
    the undertrained denoiser's shifts stay. Measured at this size (fit seeds 0-2): KS
    0.016-0.038 against 0.20-0.30."""
    frame, schema = dirty_table(n=200)
    ks = {}
    for source in ("generated", "training"):  # one thread: the same fit both times
        model = TabSynGenerator(**TINY, decoder_calibration=source).fit(frame, schema, seed=0)
        rows = model.sample(2000, seed=11)
        ks[source] = {
            c: ks_2samp(rows[c].dropna(), frame[c].dropna()).statistic for c in ("income", "age")
        }
    assert max(ks["generated"].values()) < 0.08, ks
    assert all(ks["generated"][c] < ks["training"][c] for c in ("income", "age")), ks


def _tiny_data(n: int = 64) -> tuple[tuple[torch.Tensor, torch.Tensor], TabularVAE]:
    g = torch.Generator().manual_seed(0)
    x_num = torch.randn(n, 2, generator=g)
    x_cat = (x_num[:, :1] > 0).long()
    torch.manual_seed(0)
    return (x_num, x_cat), TabularVAE(2, [2], d_token=4, layers=1, ffn_factor=2)


def test_vae_training_learns_the_reconstruction() -> None:
    data, vae = _tiny_data()
    summary = train_tabular_vae(vae, data, data, VAETraining(epochs=150, batch_size=32))
    first, last = summary["history"][0], summary["history"][-1]
    assert last["val_recon"] < 0.5 * first["val_recon"]
    assert summary["best_val_recon"] == min(r["val_recon"] for r in summary["history"])


def test_interrupted_training_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    settings = VAETraining(epochs=40, batch_size=16, checkpoint_seconds=1e-9)
    data, reference = _tiny_data()
    train_tabular_vae(reference, data, data, settings)

    data, vae = _tiny_data()
    checkpoint = tmp_path / "vae.pt"

    def stop_at_25(record: dict) -> None:
        if record["epoch"] == 25:
            raise KeyboardInterrupt  # a kill between epochs; the checkpoint has epoch 24

    with pytest.raises(KeyboardInterrupt):
        train_tabular_vae(vae, data, data, settings, checkpoint=checkpoint, log=stop_at_25)
    data, resumed = _tiny_data()
    summary = train_tabular_vae(resumed, data, data, settings, checkpoint=checkpoint)
    assert summary["resumed_from_epoch"] == 24 and summary["epochs"] == 40
    expected, got = reference.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


_KILL_SCRIPT = """
import sys, torch
sys.path[:0] = [{repo!r}, {tests!r}]
from pathlib import Path
from test_tabsyn import _tiny_data
from synthloom.methods.tabsyn.train import VAETraining, train_tabular_vae
from safetensors.torch import save_file
torch.set_num_threads(1)
data, vae = _tiny_data()
settings = VAETraining(epochs=150, batch_size=8, checkpoint_seconds=1e-9)
summary = train_tabular_vae(vae, data, data, settings, checkpoint=Path(sys.argv[1]))
save_file(vae.state_dict(), sys.argv[2])
print("resumed_from", summary["resumed_from_epoch"])
"""


def test_sigkill_during_training_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    """A real SIGKILL part way: the rerun starts from the last checkpoint, not from zero,
    and ends with the weights of an uninterrupted run (same thread count: exact)."""
    from safetensors.torch import load_file

    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ref.pt"), str(tmp_path / "ref.st")],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert "resumed_from 0" in ref.stdout
    checkpoint = tmp_path / "run.pt"
    killed_at = kill_once_checkpointed(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "run.st")],
        env,
        checkpoint,
        lambda saved: saved["state"]["counters"]["epoch"],
        at_least=20,
    )
    assert 20 <= killed_at < 150
    rerun = subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "run.st")],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert f"resumed_from {killed_at}" in rerun.stdout
    a, b = load_file(str(tmp_path / "ref.st")), load_file(str(tmp_path / "run.st"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def fitted() -> tuple[TabSynGenerator, pd.DataFrame, TableSchema]:
    frame, schema = dirty_table(n=200)
    generator = build_generator({"name": "tabsyn", **TINY})
    generator.fit(frame, schema, seed=0)
    return generator, frame, schema


def test_sample_gives_schema_columns_gaps_and_is_deterministic(fitted) -> None:
    generator, frame, schema = fitted
    rows = generator.sample(150, seed=3)
    assert list(rows.columns) == schema.names and len(rows) == 150
    assert rows["age"].dropna().mod(1).eq(0).all()  # integer column stays whole
    assert (rows["const"] == 7.0).all()
    assert set(rows["city"].dropna()) <= {"a", "b", "c"}
    assert rows["income"].dropna().between(frame["income"].min(), frame["income"].max()).all()
    assert generator.sample(150, seed=3).equals(rows)


def test_conditions_give_exact_counts(fitted) -> None:
    generator, _, _ = fitted
    rows = generator.sample(50, seed=1, conditions={"status": {"good": 30, "bad": 20}})
    assert rows["status"].value_counts().to_dict() == {"good": 30, "bad": 20}
    assert generator.last_attempts >= 50


def test_inpainting_keeps_the_conditioned_column_fixed_and_is_deterministic(fitted) -> None:
    generator, _, schema = fitted
    generator.config = generator.config.model_copy(update={"condition_sampling": "inpaint"})
    try:
        rows = generator.sample(40, seed=2, conditions={"city": {"a": 25, "c": 15}})
        assert rows["city"].value_counts().to_dict() == {"a": 25, "c": 15}
        assert list(rows.columns) == schema.names
        assert generator.last_inpainted == 40 and generator.last_attempts == 0
        assert 0.0 <= generator.last_condition_agreement <= 1.0
        again = generator.sample(40, seed=2, conditions={"city": {"a": 25, "c": 15}})
        assert again.equals(rows)
    finally:
        generator.config = generator.config.model_copy(update={"condition_sampling": "auto"})


def rare_kind_table(n: int = 600) -> tuple[pd.DataFrame, TableSchema]:
    """`kind` b in 5% of rows, with x around 5 there and around 0 elsewhere."""
    rng = np.random.default_rng(0)
    kind = np.where(rng.random(n) < 0.05, "b", "a").astype(object)
    frame = pd.DataFrame(
        {
            "kind": kind,
            "x": np.where(kind == "b", 5.0, 0.0) + 0.5 * rng.normal(size=n),
            "status": np.where(rng.random(n) < 0.3, "bad", "good").astype(object),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema("kind", ColumnKind.CATEGORICAL, categories=("a", "b")),
            ColumnSchema("x", ColumnKind.NUMERIC),
            ColumnSchema("status", ColumnKind.CATEGORICAL, categories=("bad", "good")),
        ),
        target="status",
        task="classification",
    )
    return frame, schema


SMALL = {**TINY, "vae_epochs": 40, "diffusion_hidden": 64, "diffusion_steps": 300}
SMALL.update(diffusion_batch_size=128, sampler_steps=20)


@pytest.fixture(scope="module")
def rare_kind() -> tuple[TabSynGenerator, pd.DataFrame]:
    """Conditioned on the target alone, so a condition on `kind` goes by rejection or
    inpainting (with the default joint classes, it would be one of the classes)."""
    frame, schema = rare_kind_table()
    return TabSynGenerator(**SMALL, conditioning="target").fit(frame, schema, seed=0), frame


def test_inpainting_a_rare_value_carries_what_goes_with_it(rare_kind) -> None:
    """Rows inpainted with kind = b have x far above the a rows' (the data: 5 vs 0), and
    resampling (RePaint's U) pulls them further than plain replacement (measured 3.0 vs
    0.5 on this small fit, whose own unconditional b rows average 2.0)."""
    generator, _ = rare_kind
    means = {}
    try:
        for resample in (1, 10):
            generator.config = generator.config.model_copy(
                update={"condition_sampling": "inpaint", "inpaint_resample": resample}
            )
            rows = generator.sample(100, seed=1, conditions={"kind": {"b": 80, "a": 20}})
            assert rows["kind"].value_counts().to_dict() == {"b": 80, "a": 20}
            means[resample] = rows.loc[rows["kind"] == "b", "x"].mean()
            assert rows.loc[rows["kind"] == "a", "x"].mean() < 1.0
    finally:  # the fixture is shared by the module's tests
        generator.config = generator.config.model_copy(
            update={"condition_sampling": "auto", "inpaint_resample": 10}
        )
    assert means[10] > 2.0 and means[10] > means[1] + 1.0


def test_auto_conditions_inpaint_what_rejection_leaves_open(rare_kind, tmp_path: Path) -> None:
    generator, _ = rare_kind
    generator.config = generator.config.model_copy(update={"max_condition_factor": 1.0})
    try:
        rows = generator.sample(60, seed=0, conditions={"kind": {"b": 30, "a": 30}})
        assert rows["kind"].value_counts().to_dict() == {"b": 30, "a": 30}
        assert 0 < generator.last_inpainted < 60  # some b rows came by rejection
        generator.sample(10, seed=0)
        assert generator.last_inpainted == 0  # reset by a sample without conditions
        generator.sample(60, seed=0, conditions={"kind": {"b": 30, "a": 30}})
        generator.save(tmp_path / "model")
        loaded = TabSynGenerator.load(tmp_path / "model")
        again = loaded.sample(60, seed=0, conditions={"kind": {"b": 30, "a": 30}})
        assert again.equals(rows)

        (tmp_path / "model" / "condition_latents.safetensors").unlink()  # an older model
        old = TabSynGenerator.load(tmp_path / "model")
        with pytest.raises(DataError, match="too rare in the fitted model.*condition_sampling"):
            old.sample(60, seed=0, conditions={"kind": {"b": 30, "a": 30}})
        old.config = old.config.model_copy(update={"condition_sampling": "inpaint"})
        with pytest.raises(DataError, match="fitted before inpainting existed"):
            old.sample(60, seed=0, conditions={"kind": {"b": 30, "a": 30}})
        generator.config = generator.config.model_copy(update={"condition_sampling": "rejection"})
        with pytest.raises(DataError, match="too rare in the fitted model"):
            generator.sample(60, seed=0, conditions={"kind": {"b": 30, "a": 30}})
    finally:
        generator.config = generator.config.model_copy(
            update={"max_condition_factor": 50.0, "condition_sampling": "auto"}
        )


def test_joint_classes_keep_binary_shares_and_condition_them_exactly(tmp_path: Path) -> None:
    """conditioning: target_and_binary: the denoiser's classes are the joint values of the
    target and the two-valued columns, so their cross-counts come out as in training (in
    proportion, by largest remainders) and a condition on one of them needs no rejection."""
    frame, schema = rare_kind_table()
    generator = TabSynGenerator(**SMALL).fit(frame, schema, seed=0)  # the default
    classes = generator.classes
    assert classes.columns == ("status", "kind") and len(classes) == 4
    rows = generator.sample(540, seed=1)  # the 540 training rows' own size: counts exact
    for (status, kind), count in zip(classes.values, classes.counts, strict=True):
        assert int(((rows["status"] == status) & (rows["kind"] == kind)).sum()) == count
    assert rows.loc[rows["kind"] == "b", "x"].mean() > 1.5  # b's x (data: 5, a's: 0)

    asked = generator.sample(100, seed=1, conditions={"kind": {"b": 80, "a": 20}})
    assert asked["kind"].value_counts().to_dict() == {"b": 80, "a": 20}
    assert generator.last_attempts == 100 and generator.last_inpainted == 0
    by_status = generator.sample(100, seed=1, conditions={"status": {"bad": 50, "good": 50}})
    assert by_status["status"].value_counts().to_dict() == {"bad": 50, "good": 50}
    assert (by_status["kind"] == "b").sum() == 4  # 2 + 2: b's share within each class
    none_b = generator.sample(10, seed=0, conditions={"kind": {"b": 0, "a": 10}})
    assert (none_b["kind"] == "a").all()

    generator.save(tmp_path / "model")
    loaded = TabSynGenerator.load(tmp_path / "model")
    assert loaded.classes == generator.classes
    assert loaded.sample(50, seed=3).equals(generator.sample(50, seed=3))


def test_related_classes_join_the_flag_that_follows_the_target(tmp_path: Path) -> None:
    """conditioning: target_and_related (DiffLM's default): `kind` is drawn independently
    of `status` in rare_kind_table, so it stays out; a flag copying status on 90 % of rows
    joins. A model saved with the class codes of earlier versions loads to the same classes
    and samples the same rows."""
    frame, schema = rare_kind_table(n=300)
    rng = np.random.default_rng(2)
    follows = rng.random(len(frame)) < 0.9
    frame["vip"] = np.where(follows, frame["status"] == "bad", rng.random(len(frame)) < 0.5)
    frame["vip"] = frame["vip"].map({True: "y", False: "n"}).astype(object)
    schema = TableSchema(
        columns=(
            *schema.columns,
            ColumnSchema("vip", ColumnKind.CATEGORICAL, categories=("n", "y")),
        ),
        target="status",
        task="classification",
    )
    generator = TabSynGenerator(**TINY, conditioning="target_and_related").fit(frame, schema)
    assert generator.classes.columns == ("status", "vip")
    rows = generator.sample(len(frame), seed=1)
    # the classes come out in their training shares (largest remainders: within a row each)
    classes = generator.classes
    for (status, vip), count in zip(classes.values, classes.counts, strict=True):
        got = int(((rows["status"] == status) & (rows["vip"] == vip)).sum())
        assert abs(got - len(rows) * count / sum(classes.counts)) < 1

    generator.save(tmp_path / "model")
    state = json.loads((tmp_path / "model" / "tabsyn.json").read_text())
    classes, codec = state.pop("classes"), generator.codec
    state["label_index"] = codec.categorical.index("status")
    state["label_columns"] = [codec.categorical.index(c) for c in classes["columns"]]
    state["label_combos"] = [
        [codec.categories[c].index(v) for c, v in zip(classes["columns"], values, strict=True)]
        for values in classes["values"]
    ]
    state["label_counts"] = classes["counts"]
    (tmp_path / "model" / "tabsyn.json").write_text(json.dumps(state))
    old = TabSynGenerator.load(tmp_path / "model")
    assert old.classes == generator.classes
    assert old.sample(60, seed=4).equals(generator.sample(60, seed=4))


def test_joint_classes_stop_before_every_row_gets_a_class_of_its_own() -> None:
    rng = np.random.default_rng(0)
    flags = {f"f{i}": np.where(rng.random(300) < 0.5, "y", "n").astype(object) for i in range(8)}
    frame = pd.DataFrame({**flags, "status": np.where(rng.random(300) < 0.3, "bad", "good")})
    schema = TableSchema(
        columns=tuple(ColumnSchema(n, ColumnKind.CATEGORICAL, categories=("n", "y")) for n in flags)
        + (ColumnSchema("status", ColumnKind.CATEGORICAL, categories=("bad", "good")),),
        target="status",
        task="classification",
    )
    generator = TabSynGenerator(**TINY, conditioning="target_and_binary").fit(frame, schema, seed=0)
    # the target and five flags: 64 joint values; a sixth flag would double them
    assert len(generator.classes.columns) == 6 and len(generator.classes) <= 64
    assert generator.classes.columns[0] == "status"


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"nope": {"a": 1}}, "no such column"),
        ({"income": {"1": 1}}, "categorical or boolean"),
        ({"status": {"ugly": 1}}, "unknown value"),
        ({"status": {"good": 3}}, "sum to the rows requested"),
        ({"status": {"good": 1}, "city": {"a": 1}}, "exactly one"),
    ],
)
def test_bad_conditions_name_the_key_and_the_fix(conditions, message) -> None:
    _, schema = dirty_table(n=20)
    with pytest.raises(DataError, match=message):
        check_conditions(conditions, schema, 2 if len(conditions) == 2 else 1)


def test_save_and_load_sample_the_same_rows(fitted, tmp_path: Path) -> None:
    generator, _, _ = fitted
    generator.save(tmp_path / "model")
    loaded = TabSynGenerator.load(tmp_path / "model")
    assert loaded.sample(40, seed=5).equals(generator.sample(40, seed=5))
    info = loaded.describe()
    assert info["latent_dim"] == 7 * 4  # income, age, seen + income flag, city, owner, status


def test_all_categorical_and_all_numeric_tables_fit_and_sample() -> None:
    rng = np.random.default_rng(0)
    cats = pd.DataFrame({"a": rng.choice(["x", "y"], 80), "b": rng.choice(["p", "q", "r"], 80)})
    cat_schema = TableSchema(
        columns=(
            ColumnSchema("a", ColumnKind.CATEGORICAL, categories=("x", "y")),
            ColumnSchema("b", ColumnKind.CATEGORICAL, categories=("p", "q", "r")),
        )
    )
    nums = pd.DataFrame({"u": rng.normal(size=80), "v": rng.exponential(size=80)})
    num_schema = TableSchema(
        columns=(ColumnSchema("u", ColumnKind.NUMERIC), ColumnSchema("v", ColumnKind.NUMERIC))
    )
    for frame, schema in ((cats, cat_schema), (nums, num_schema)):
        rows = TabSynGenerator(**TINY).fit(frame, schema, seed=0).sample(30, seed=0)
        assert list(rows.columns) == schema.names and rows.notna().all().all()


def test_generated_rows_keep_an_exact_identity_and_the_model_saves_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    minutes = rng.uniform(0, 300, 150).round(1)
    frame = pd.DataFrame(
        {
            "minutes": minutes,
            "charge": np.floor(4.5 * minutes + 0.5 + 1e-9) / 100,  # 0.045 per minute
            "plan": rng.choice(["a", "b"], 150).astype(object),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema("minutes", ColumnKind.NUMERIC),
            ColumnSchema("charge", ColumnKind.NUMERIC),
            ColumnSchema("plan", ColumnKind.CATEGORICAL, categories=("a", "b")),
        )
    )
    generator = TabSynGenerator(**TINY, derive_linear=True).fit(frame, schema, seed=0)
    info = generator.describe()
    assert info["latent_dim"] == 2 * 4  # minutes, plan: charge is written
    assert info["derived_columns"] == {"charge": "0.045 x minutes + 0"}
    rows = generator.sample(60, seed=1)
    expected = np.floor(4.5 * rows["minutes"] + 0.5 + 1e-9) / 100
    np.testing.assert_allclose(rows["charge"], expected, atol=1e-9)
    generator.save(tmp_path / "model")
    assert TabSynGenerator.load(tmp_path / "model").sample(60, seed=1).equals(rows)
    paper = TabSynGenerator(**TINY, derive_linear=False).fit(frame, schema, seed=0)
    assert paper.describe()["latent_dim"] == 3 * 4


def test_an_all_constant_table_is_refused_with_the_fix() -> None:
    frame = pd.DataFrame({"a": np.ones(30), "b": ["k"] * 30})
    schema = TableSchema(
        columns=(
            ColumnSchema("a", ColumnKind.NUMERIC),
            ColumnSchema("b", ColumnKind.CATEGORICAL, categories=("k",)),
        )
    )
    with pytest.raises(DataError, match="no column to model"):
        TabSynGenerator(**TINY).fit(frame, schema, seed=0)


def test_a_rare_class_and_high_cardinality_categories_are_kept_in_the_domain() -> None:
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "code": [f"c{i}" for i in rng.integers(0, 120, n)],
            "x": rng.normal(size=n),
            "y": np.where(np.arange(n) < 6, "rare", "common"),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema(
                "code", ColumnKind.CATEGORICAL, categories=tuple(sorted(set(frame["code"])))
            ),
            ColumnSchema("x", ColumnKind.NUMERIC),
            ColumnSchema("y", ColumnKind.CATEGORICAL, categories=("common", "rare")),
        ),
        target="y",
        task="classification",
    )
    rows = TabSynGenerator(**TINY).fit(frame, schema, seed=0).sample(100, seed=0)
    assert set(rows["code"]) <= set(frame["code"]) and set(rows["y"]) <= {"common", "rare"}


def test_shard_conditions_split_exact_counts_in_proportion() -> None:
    from synthloom.conditions import shard_conditions

    shards = shard_conditions({"y": {"good": 600, "bad": 400}}, [256, 256, 256, 232])
    assert [sum(s["y"].values()) for s in shards] == [256, 256, 256, 232]
    assert sum(s["y"]["good"] for s in shards) == 600
    assert all(abs(s["y"]["good"] - 0.6 * sum(s["y"].values())) <= 1 for s in shards)
    assert shard_conditions({"y": {"a": 0, "b": 3}}, [2, 1]) == [
        {"y": {"a": 0, "b": 2}},
        {"y": {"a": 0, "b": 1}},
    ]
    with pytest.raises(ValueError, match="sum to 3"):
        shard_conditions({"y": {"a": 3}}, [2])


def test_conditions_are_validated_with_the_config(tmp_path: Path) -> None:
    from synthloom.config import PipelineConfig

    base = {
        "data": {"source": "x.csv", "target": "y"},
        "method": {"name": "tabsyn"},
        "generate": {"num_rows": 10, "conditions": {"y": {True: 4, "no": 6}}},
    }
    cfg = PipelineConfig.model_validate(base)
    assert cfg.generate.conditions == {"y": {"True": 4, "no": 6}}
    with pytest.raises(ValueError, match="sum to generate.num_rows"):
        PipelineConfig.model_validate({**base, "generate": {**base["generate"], "num_rows": 11}})
    with pytest.raises(ValueError, match="method marginals cannot generate under conditions"):
        PipelineConfig.model_validate({**base, "method": {"name": "marginals"}})


@pytest.mark.integration
def test_tabsyn_pipeline_runs_under_conditions_and_resumes_cached(
    tmp_path: Path, mixed_table
) -> None:
    """The tabular flow with method tabsyn on a small table: exact class counts through the
    sharded generate stage, checkpoints cleaned up, a rerun reuses every stage."""
    import yaml

    from cli.main import main

    csv = tmp_path / "seed.csv"
    mixed_table.to_csv(csv, index=False)
    config = {
        "data": {"source": str(csv), "target": "status"},
        "method": {"name": "tabsyn", **TINY},
        "generate": {"num_rows": 90, "batch_size": 40, "conditions": {"status": {"good": 60, "bad": 30}}},
        "evaluate": {"mle_seeds": [0], "mle_grid": "small"},
        "tracking": {"experiment": "tests"},
        "run": {"seed": 0, "data_dir": str(tmp_path / "data")},
    }  # fmt: skip
    path = tmp_path / "tabsyn.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--run-id", "t"]) == 0
    run_dir = tmp_path / "data" / "runs" / "t"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == [
        "ingest", "train_vae", "train_diffusion", "generate", "filter", "evaluate"
    ]  # fmt: skip
    assert all(s["status"] == "completed" for s in summary["stages"])
    rows = pd.read_parquet(run_dir / "generate" / "synthetic.parquet")
    assert rows["status"].value_counts().to_dict() == {"good": 60, "bad": 30}
    assert not (run_dir / ".checkpoints").exists() or not any((run_dir / ".checkpoints").iterdir())
    fit = json.loads((run_dir / "train_diffusion" / "manifest.json").read_text())
    assert fit["info"]["training"]["n_validation"] > 0  # the pipeline's validation split
    for name in ("history.json", "loss_curves.png", "latents.png"):  # for MLflow
        assert (run_dir / "train_diffusion" / name).is_file(), name
    curves = json.loads((run_dir / "train_diffusion" / "history.json").read_text())
    assert len(curves["val_recon"]) == TINY["vae_epochs"] and curves["diffusion_loss"]
    assert main(["run", str(path), "--run-id", "t"]) == 0
    again = json.loads((run_dir / "summary.json").read_text())
    assert all(s["cached"] for s in again["stages"])


def test_training_rows_decode_from_their_own_latents(fitted) -> None:
    """The reconstruction diagnostic: rows -> mu -> rows, in the schema's columns and domain
    (how much it keeps is measured by benchmarks/tabsyn_vs_peers.py, not at this size)."""
    generator, frame, schema = fitted
    latents = generator.encode_rows(frame)
    assert latents.shape == (len(frame), 7 * 4)
    rebuilt = generator.decode_latents(latents)
    assert list(rebuilt.columns) == schema.names and len(rebuilt) == len(frame)
    assert set(rebuilt["status"]) <= {"good", "bad"} and (rebuilt["const"] == 7.0).all()


def test_a_class_conditional_model_keeps_the_training_balance_exactly(fitted) -> None:
    generator, _, _ = fitted
    # the classes: status joint with the two-valued `owner` (conditioning: target_and_binary)
    classes = generator.classes
    assert classes.columns == ("status", "owner")
    assert generator.diffusion.config.n_classes == len(classes) == 4
    trained = dict.fromkeys(("bad", "good"), 0)
    for values, count in zip(classes.values, classes.counts, strict=True):
        trained[values[0]] += count
    bad, good = trained["bad"], trained["good"]
    rows = generator.sample(150, seed=3)
    counts = rows["status"].value_counts().to_dict()
    assert set(counts) == {"bad", "good"} and sum(counts.values()) == 150
    assert abs(counts["bad"] - 150 * bad / (bad + good)) <= 1.0  # largest remainders, 2 classes
    assert 0.0 <= generator.last_label_agreement <= 1.0
    assert generator.sample(150, seed=3).equals(rows)
    assert not generator.sample(150, seed=4).equals(rows)


def test_conditions_on_the_target_of_a_class_conditional_model_draw_no_row_in_vain(
    fitted,
) -> None:
    generator, _, _ = fitted
    rows = generator.sample(50, seed=1, conditions={"status": {"good": 5, "bad": 45}})
    assert rows["status"].value_counts().to_dict() == {"good": 5, "bad": 45}
    assert generator.last_attempts == 50  # the counts are the labels: no rejection
    rows = generator.sample(40, seed=1, conditions={"city": {"a": 25, "b": 15}})
    assert rows["city"].value_counts().to_dict() == {"a": 25, "b": 15}  # other columns: rejection
    assert generator.last_attempts > 40


def test_a_class_conditional_model_saves_and_loads(fitted, tmp_path: Path) -> None:
    generator, _, _ = fitted
    generator.save(tmp_path / "model")
    loaded = TabSynGenerator.load(tmp_path / "model")
    assert loaded.classes == generator.classes
    assert loaded.sample(40, seed=5).equals(generator.sample(40, seed=5))


def test_a_numeric_target_or_the_paper_setting_leaves_the_denoiser_unconditional() -> None:
    frame, schema = dirty_table(n=120)
    numeric = TableSchema(columns=schema.columns, target="income", task="regression")
    generator = TabSynGenerator(**TINY, conditioning="target").fit(frame, numeric, seed=0)
    assert generator.classes is None and generator.diffusion.config.n_classes == 0
    assert len(generator.sample(20, seed=0)) == 20
    joint = TabSynGenerator(**TINY).fit(frame, numeric, seed=0)  # the two-valued columns only
    assert joint.classes.columns == ("owner", "status")  # no target among them
    assert joint.diffusion.config.n_classes == 4
    related = TabSynGenerator(**TINY, conditioning="target_and_related").fit(frame, numeric)
    assert related.classes is None  # no categorical target to be related to
    paper = TabSynGenerator(**TINY, class_conditional=False).fit(frame, schema, seed=0)
    assert paper.classes is None and paper.diffusion.config.n_classes == 0
    rows = paper.sample(30, seed=1, conditions={"status": {"good": 20, "bad": 10}})
    assert rows["status"].value_counts().to_dict() == {"good": 20, "bad": 10}
    assert paper.last_attempts > 30  # by rejection


def test_guidance_samples_from_a_null_class_model_and_survives_save_and_load(
    tmp_path: Path,
) -> None:
    frame, schema = dirty_table(n=120)
    generator = TabSynGenerator(**TINY, label_dropout=0.2, guidance_scale=2.0)
    generator.fit(frame, schema, seed=0)
    # the null class is one more row of the class table (status x owner: 4 classes)
    assert generator.diffusion.denoiser.net.class_embed.num_embeddings == 4 + 1
    guided = generator.sample(40, seed=3)
    assert guided.equals(generator.sample(40, seed=3))
    guided_config = generator.config
    generator.config = guided_config.model_copy(update={"guidance_scale": 1.0})
    unguided = generator.sample(40, seed=3)
    generator.config = guided_config
    assert not unguided.equals(guided)  # the same noise, another denoiser
    generator.save(tmp_path / "model")
    assert TabSynGenerator.load(tmp_path / "model").sample(40, seed=3).equals(guided)


def test_diffusion_ema_reaches_the_denoiser_and_changes_its_weights() -> None:
    frame, schema = dirty_table(n=120)
    averaged = TabSynGenerator(**TINY, diffusion_ema=0.9).fit(frame, schema, seed=0)
    best = TabSynGenerator(**TINY).fit(frame, schema, seed=0)
    assert averaged.diffusion.config.ema_decay == 0.9 and best.diffusion.config.ema_decay == 0
    # the same VAE (same seed), another denoiser: the average, not the best epoch's weights
    a, b = averaged.diffusion.denoiser.state_dict(), best.diffusion.denoiser.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(averaged.encode_rows(frame), best.encode_rows(frame))


def test_guidance_without_a_null_class_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="label_dropout > 0"):
        TabSynGenerator(guidance_scale=2.0)
    with pytest.raises(ValueError, match="class_conditional: true"):
        TabSynGenerator(guidance_scale=2.0, label_dropout=0.1, class_conditional=False)


def test_category_codes_are_the_argmax_at_zero_and_softmax_draws_above() -> None:
    from synthloom.methods.tabsyn.generator import _category_codes

    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(20_000, 1)
    logits[:5] = torch.tensor([0.0, 0.0, 9.0])
    assert _category_codes(logits, 0.0, np.random.default_rng(0))[:6].tolist() == [2] * 5 + [0]
    codes = _category_codes(logits, 1.0, np.random.default_rng(0)).numpy()
    np.testing.assert_allclose(np.bincount(codes[5:]) / len(codes[5:]), [0.7, 0.2, 0.1], atol=0.01)
    hot = _category_codes(logits, 2.0, np.random.default_rng(0)).numpy()[5:]
    flat = np.sqrt([0.7, 0.2, 0.1]) / np.sqrt([0.7, 0.2, 0.1]).sum()  # p^(1/T), T = 2
    np.testing.assert_allclose(np.bincount(hot) / len(hot), flat, atol=0.01)


def test_sampled_categories_keep_a_column_the_latent_carries_badly() -> None:
    """A 24-value column the tiny VAE cannot carry: the argmax piles it onto a few values,
    draws from the decoder's softmax restore its shares (total variation 0.63 vs 0.17)."""
    rng = np.random.default_rng(1)
    n = 240
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).round(3),
            "code": rng.choice([f"c{i}" for i in range(24)], n).astype(object),
            "y": np.where(rng.random(n) < 0.5, "a", "b").astype(object),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema("x", ColumnKind.NUMERIC),
            ColumnSchema(
                "code", ColumnKind.CATEGORICAL, categories=tuple(f"c{i}" for i in range(24))
            ),
            ColumnSchema("y", ColumnKind.CATEGORICAL, categories=("a", "b")),
        ),
        target="y",
        task="classification",
    )
    tiny = {**TINY, "vae_epochs": 5}
    argmax = TabSynGenerator(**tiny, category_temperature=0.0).fit(frame, schema, seed=0)
    drawn = TabSynGenerator(**tiny, category_temperature=1.0).fit(frame, schema, seed=0)
    collapsed, spread = argmax.sample(400, seed=2), drawn.sample(400, seed=2)
    real = frame["code"].value_counts(normalize=True)

    def total_variation(rows: pd.DataFrame) -> float:
        shares = rows["code"].value_counts(normalize=True)
        return 0.5 * float(real.subtract(shares, fill_value=0).abs().sum())

    assert total_variation(spread) < 0.5 * total_variation(collapsed)
    assert set(spread["code"]) <= set(schema.column("code").categories)
    assert spread.equals(drawn.sample(400, seed=2))
    assert not spread.equals(drawn.sample(400, seed=3))
