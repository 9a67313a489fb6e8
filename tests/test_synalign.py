"""SynAlign mechanics: GP uncertainty tracker, MMD^2 weights and resampling, attribute JSON,
and the generator on tiny models; one integration test on SmolLM2 + MiniLM."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from synthloom.methods.text import synalign as synalign_module
from synthloom.methods.text.attributes import (
    ATTRIBUTE_KEYS,
    ATTRIBUTE_PREFILL,
    attribute_conditioned_prompt,
    attribute_request,
    parse_attributes,
    summarize_with_retries,
)
from synthloom.methods.text.base import GenerationStats, ModelBox, SeedSet
from synthloom.methods.text.distribution_matching import (
    learn_mmd_weights,
    median_heuristic_bandwidth,
    mmd2,
    resample_by_weights,
)
from synthloom.methods.text.prompts import CLOSE, OPEN
from synthloom.methods.text.sampling import Continuations
from synthloom.methods.text.synalign import SynAlignGenerator
from synthloom.methods.text.uncertainty import (
    GPUncertaintyTracker,
    gp_posterior_std,
    median_heuristic_lengthscale,
    rbf_kernel,
)
from synthloom.models.tiny import tiny_causal_lm, tiny_encoder

# ---------------------------------------------------------------- GP uncertainty tracker


def test_posterior_std_is_zero_at_observed_points_and_prior_far_away() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]])
    std = gp_posterior_std(points, [0, 1, 2], lengthscale=1.0, variance=1.0, noise=1e-10)
    assert np.allclose(std[:3], 0.0, atol=1e-4)
    assert std[3] == pytest.approx(1.0, abs=1e-9)  # no correlation left: prior std


def test_posterior_std_matches_hand_computed_single_observation() -> None:
    # one observed point x0: var(x) = 1 - k(x, x0)^2 / (1 + noise)
    points = np.array([[0.0], [1.0], [2.0]])
    std = gp_posterior_std(points, [0], lengthscale=1.0, noise=0.0)
    k = np.exp(-np.array([0.0, 1.0, 4.0]) / 2.0)
    assert np.allclose(std, np.sqrt(1.0 - k**2), atol=1e-6)


def test_tracker_picks_the_point_far_from_all_chosen_ones() -> None:
    # a tight group near the origin, one point far away: after a first cluster inside the
    # group, the far point is the most uncertain one
    points = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [3.0, 3.0], [0.05, 0.05]])
    tracker = GPUncertaintyTracker(points, ["a"] * 6, lengthscale=0.5, rng=np.random.default_rng(0))
    tracker.chosen = [0, 1, 2]
    std = tracker.posterior_std()
    assert np.argmax(std) == 4
    assert tracker.most_uncertain() == 4
    # with the far point chosen too, the next pick is the remaining one least covered:
    # (0.1, 0.1) is farther from the chosen points than (0.05, 0.05)
    tracker.chosen.append(4)
    assert tracker.most_uncertain() == 3


def test_clusters_stay_within_a_label_and_rounds_restart() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(8, 4))
    groups = ["x", "y"] * 4
    tracker = GPUncertaintyTracker(points, groups, rng=np.random.default_rng(1))
    cluster = tracker.next_cluster(2, group="x")
    assert len(cluster) == 2 and all(groups[i] == "x" for i in cluster)
    assert set(tracker.chosen) == set(cluster)
    # single-seed clusters: every "x" row is picked once before any repeats
    tracker = GPUncertaintyTracker(points, groups, rng=np.random.default_rng(1))
    centres = [tracker.next_cluster(1, group="x")[0] for _ in range(4)]
    assert sorted(centres) == [0, 2, 4, 6] and tracker.rounds == 1
    tracker.next_cluster(1, group="x")  # every "x" row chosen: a new round begins
    assert tracker.rounds == 2 and len(tracker.chosen) == 1
    # nearest neighbours are by cosine, nearest first
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    nn = tracker.nearest_neighbours(0, 3)
    sims = [unit[0] @ unit[i] for i in nn[1:]]
    assert nn[0] == 0 and sims == sorted(sims, reverse=True)


def test_median_heuristic_and_rbf_kernel() -> None:
    points = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 -> median 2
    assert median_heuristic_lengthscale(points) == pytest.approx(2.0)
    k = rbf_kernel(points, points, lengthscale=2.0)
    assert k[0, 2] == pytest.approx(np.exp(-9.0 / 8.0))
    assert np.allclose(np.diag(k), 1.0)


# ---------------------------------------------------------------- MMD^2 weights


def _shifted_sets(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic = half near the real cloud, half shifted away; real = one cloud."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(30, 3))
    near = rng.normal(size=(20, 3))
    far = rng.normal(size=(20, 3)) + 4.0
    return np.concatenate([near, far]), real


def test_mmd_weights_lower_mmd2_and_stay_on_the_simplex() -> None:
    synthetic, real = _shifted_sets()
    result = learn_mmd_weights(synthetic, real, iterations=300)
    w = result.weights
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    uniform = mmd2(synthetic, real, bandwidth=result.bandwidth)
    assert result.mmd2_uniform == pytest.approx(uniform)
    weighted = mmd2(synthetic, real, bandwidth=result.bandwidth, weights=w)
    assert weighted == pytest.approx(result.mmd2_weighted)
    assert weighted < 0.5 * uniform
    # the mass moves to the rows near the real cloud
    assert w[:20].sum() > 0.9


def test_mmd2_is_zero_for_identical_sets_and_bandwidth_is_median_distance() -> None:
    synthetic, real = _shifted_sets(1)
    sigma = median_heuristic_bandwidth(synthetic, real)
    pooled = np.concatenate([synthetic, real])
    d = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)
    assert sigma == pytest.approx(np.median(d[np.triu_indices(len(pooled), 1)]))
    assert mmd2(real, real, bandwidth=sigma) == pytest.approx(0.0, abs=1e-12)


def test_resampling_follows_the_weights() -> None:
    weights = np.array([0.7, 0.2, 0.1, 0.0])
    rng = np.random.default_rng(0)
    picks = resample_by_weights(weights, 3, replace=False, rng=rng)
    assert len(set(picks.tolist())) == 3 and 3 not in picks[:3]
    firsts = [resample_by_weights(weights, 1, replace=False, rng=rng)[0] for _ in range(2000)]
    assert np.bincount(firsts, minlength=4)[0] / 2000 == pytest.approx(0.7, abs=0.05)
    many = resample_by_weights(weights, 4000, replace=True, rng=rng)
    assert np.bincount(many, minlength=4) / 4000 == pytest.approx(weights, abs=0.03)
    assert len(resample_by_weights(weights, 10, replace=False, rng=rng)) == 4


# ---------------------------------------------------------------- attribute reasoning


def test_parse_attributes_accepts_valid_and_rejects_invalid() -> None:
    good = 'Sure: {"style": "casual", "tone": "angry", "topic": "news", "length": 20} done'
    assert parse_attributes(good) == {
        "style": "casual",
        "tone": "angry",
        "topic": "news",
        "length": "20",
    }
    assert (
        parse_attributes(ATTRIBUTE_PREFILL + 'short", "tone": "a", "topic": "b", "length": "c"}')
        is not None
    )
    repaired = '{"style": "a", "tone": "b", "topic": "c", "length": "581}'
    assert parse_attributes(repaired) == {"style": "a", "tone": "b", "topic": "c", "length": "581"}
    bad = [
        "no json here",
        '{"style": "casual", "tone": "angry"}',  # missing keys
        '{"style": "casual", "tone": "angry", "topic": "news", "length": ""}',  # empty
        '{"style": ["a"], "tone": "angry", "topic": "news", "length": "x"}',  # not scalar
        '{"style": "casual", "tone": "angry", "topic": "news", "length": ',  # truncated
        '["style", "tone"]',
        '{"style": "' + "x" * 300 + '", "tone": "a", "topic": "b", "length": "c"}',
        '{"style": "<text>", "tone": "a", "topic": "b", "length": "c"}',
    ]
    assert all(parse_attributes(b) is None for b in bad)


def test_summarize_with_retries_counts_retries_and_drops() -> None:
    replies = iter(
        ["oops", '{"style": 1}', '{"style": "s", "tone": "t", "topic": "p", "length": "l"}']
    )
    stats = GenerationStats()
    summary, raw = summarize_with_retries(lambda: next(replies), retries=3, stats=stats)
    assert summary == {"style": "s", "tone": "t", "topic": "p", "length": "l"}
    assert len(raw) == 3 and stats.counts == {"attribute_retries": 2}

    stats = GenerationStats()
    summary, raw = summarize_with_retries(lambda: "never json", retries=1, stats=stats)
    assert summary is None and len(raw) == 2
    assert stats.counts == {"attribute_retries": 1, "attribute_invalid": 1}


def test_attribute_prompts_show_examples_and_end_open() -> None:
    request = attribute_request("android", ["a b", "c d"], task="tweets")
    assert request.count(OPEN) == 2 and request.count(CLOSE) == 2
    assert all(f'"{k}": "..."' in request for k in ATTRIBUTE_KEYS)  # the format is shown
    prompt = attribute_conditioned_prompt(
        "android", ["a b", "c d"], {"style": "terse", "tone": "calm"}, task="tweets"
    )
    assert prompt.startswith("Style: terse\nTone: calm\n\n")
    assert prompt.endswith(f"{OPEN}\n") and prompt.count(CLOSE) == 2


# ---------------------------------------------------------------- the generator


SEEDS = SeedSet(
    texts=(
        "the cat sat on the mat",
        "a dog ran in the park",
        "birds sing at dawn",
        "fish swim in the lake",
        "stocks fell sharply today",
        "the bank raised rates",
        "markets rallied at noon",
        "bond yields dropped again",
    ),
    labels=("nature",) * 4 + ("money",) * 4,
)
VALID_TAIL = 'brief", "tone": "calm", "topic": "animals", "length": "short"'


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_box() -> ModelBox:
    lm, encoder = tiny_causal_lm(0), tiny_encoder(0)
    return ModelBox(load_causal_lm=lambda name: lm, load_encoder=lambda: encoder)


class ScriptedSynAlign:
    """Fixed replies: attribute attempt 0 of every cluster is not JSON, attempt 1 is valid,
    except in the first round for "money", where both fail. Each cluster prompt's rows
    alternate between a copy of the prompt's first example and junk; its last row never
    closes. Attribute requests and a round's cluster prompts are one batch each."""

    def __init__(self) -> None:
        self.attribute_prompts: list[list[str]] = []
        self.generation_prompts: list[str] = []
        self.generation_batches = 0

    def sample_prompts(self, model, tokenizer, prompts, copies=None, **kw):
        if kw["stop_strings"] == (CLOSE,):
            return self._generate(prompts, copies)
        assert kw["stop_strings"] == ("}",) and copies is None
        first_round = not self.attribute_prompts
        self.attribute_prompts.append(list(prompts))
        texts, finished = [], []
        for r, prompt in enumerate(prompts):
            attempt = r % 2  # attribute_retries = 1: two rows per cluster
            ok = attempt == 1 and not (first_round and 'label "money"' in prompt)
            texts.append(VALID_TAIL if ok else "not json at all")
            finished.append(ok)
        return Continuations(texts, finished, 3 * len(prompts), 3, 20 * len(prompts))

    def _generate(self, prompts, copies):
        self.generation_batches += 1
        texts, finished = [], []
        for prompt, num in zip(prompts, copies, strict=True):
            c = len(self.generation_prompts)
            self.generation_prompts.append(prompt)
            example = prompt.split(f"{OPEN}\n")[1].split(f"\n{CLOSE}")[0]
            texts += [example if j % 2 == 0 else f"zq{c}{j} xv qq {j * 7}" for j in range(num)]
            finished += [True] * (num - 1) + [False]
        return Continuations(texts, finished, 4 * len(texts), 4, 30 * len(prompts))


def _run(monkeypatch, box, num_samples=4, **method):
    fake = ScriptedSynAlign()
    monkeypatch.setattr(synalign_module, "sample_prompts", fake.sample_prompts)
    config = {
        "name": "synalign",
        "task": "sentences",
        "num_examples": 2,
        "samples_per_cluster": 4,
        "attribute_retries": 1,
        "clusters_per_round": 1,
        **method,
    }
    return SynAlignGenerator(config).generate(SEEDS, num_samples, models=box, seed=0), fake


def test_synalign_pipeline_counts_retries_drops_and_resamples(monkeypatch, tiny_box):
    reported: list[int] = []
    box = ModelBox(tiny_box.load_causal_lm, tiny_box.load_encoder, progress=reported.append)
    batch, fake = _run(monkeypatch, box)
    stats = batch.stats
    clusters = int(stats.metrics["synalign_clusters"])
    # every cluster needed one retry; the first "money" cluster failed twice and was dropped
    assert stats.counts["attribute_retries"] == clusters
    assert stats.counts["attribute_invalid"] == 1
    assert len(fake.generation_prompts) == clusters - 1
    assert stats.counts["unfinished"] == clusters - 1
    # attribute requests go through the chat template with the JSON opening pre-filled
    for prompts in fake.attribute_prompts:
        assert len(prompts) % 2 == 0
        assert all(p.startswith("<|im_start|>user\n") for p in prompts)
        assert all(p.endswith(f"<|im_start|>assistant\n{ATTRIBUTE_PREFILL}") for p in prompts)
    for prompt in fake.generation_prompts:
        assert prompt.startswith("Style: brief\nTone: calm\nTopic: animals\nLength: short\n\n")
    # balanced output, each sample carrying its cluster, attributes and weight
    assert sorted(s.label for s in batch.samples) == ["money", "money", "nature", "nature"]
    for sample in batch.samples:
        shown = sample.info["seed_indices"]
        assert len(shown) == 2 and {SEEDS.labels[i] for i in shown} == {sample.label}
        assert sample.info["attributes"]["topic"] == "animals"
        assert 0 < sample.info["mmd_weight"] <= 1
    # the pool was twice the output; matching keeps the seed-like rows, not the junk
    # money: cluster 1 dropped, clusters 2-3 give 3 closed rows each; nature: 2 clusters
    assert clusters == 5
    assert stats.metrics["synalign_pool_size"] == 12 and stats.counts["not_resampled"] == 8
    # 4 clusters decoded x 4 rows: the unfinished share's denominator (one unclosed each)
    assert stats.metrics["sampled"] == 4 * 4 and stats.counts["unfinished"] == 4
    copies = sum(s.text in SEEDS.texts for s in batch.samples)
    assert copies >= 3
    assert stats.metrics["mmd2_after"] < stats.metrics["mmd2_before"]
    assert len(fake.attribute_prompts) == 3  # rounds: both labels, both, money only
    # progress after each round: candidates within the targets (4 a label) / oversample 2
    assert reported == [3 // 2, (3 + 4) // 2, (4 + 4) // 2]
    # one batch per round for the attributes (3 passes) and one for the cluster prompts (4)
    assert fake.generation_batches == 3
    assert stats.forward_passes == 3 * 3 + 3 * 4


def test_a_round_batches_several_clusters_per_label_and_stops_at_the_need(monkeypatch, tiny_box):
    # quota 6 a label, target 12 candidates = 3 clusters of 4 rows (3 close): 2 per round
    batch, fake = _run(monkeypatch, tiny_box, num_samples=12, clusters_per_round=2)
    rounds = fake.attribute_prompts
    assert len(rounds[0]) == 2 * 2 * 2  # 2 labels x 2 clusters x 2 attempts, one batch
    for prompts in rounds:
        per_label = [
            sum(f'label "{lab}"' in p for p in prompts) // 2 for lab in ("money", "nature")
        ]
        assert max(per_label) <= 2
    # every round with a valid summary decodes all its cluster prompts in one batch
    assert fake.generation_batches == len(rounds)
    assert len(fake.generation_prompts) == int(batch.stats.metrics["synalign_clusters"]) - 2
    # nature: 2 clusters in round 1 (6 closed rows), then ceil(6 / 4) = 2 more: 4 in all
    assert sum('label "nature"' in p for p in fake.generation_prompts) == 4
    labels = [s.label for s in batch.samples]
    assert labels.count("money") == 6 and labels.count("nature") == 6


def test_synalign_is_deterministic_and_replacement_is_optional(monkeypatch, tiny_box):
    first, _ = _run(monkeypatch, tiny_box)
    again, _ = _run(monkeypatch, tiny_box)
    assert [s.text for s in first.samples] == [s.text for s in again.samples]
    assert first.stats.metrics == again.stats.metrics
    pooled, _ = _run(
        monkeypatch, tiny_box, num_samples=6, match_per_label=False, resample_with_replacement=True
    )
    assert len(pooled.samples) == 6  # one draw over the whole pool, with replacement
    assert pooled.stats.metrics["synalign_pool_size"] == 12


def test_synalign_on_a_tiny_model_drops_invalid_attributes(tiny_box):
    # a random model never writes the JSON: every cluster is retried, then dropped
    method = {
        "name": "synalign",
        "attribute_retries": 1,
        "attribute_max_new_tokens": 4,
        "max_attempts_factor": 1.0,
    }
    batch = SynAlignGenerator(method).generate(SEEDS, 2, models=tiny_box, seed=0)
    clusters = int(batch.stats.metrics["synalign_clusters"])
    assert batch.samples == [] and clusters >= 2
    assert batch.stats.counts == {"attribute_retries": clusters, "attribute_invalid": clusters}
    assert batch.stats.forward_passes > 0


def test_config_defaults_match_the_generator_and_the_registry_builds_it():
    from synthloom.methods.registry import METHOD_CONFIGS, TEXT_METHODS
    from synthloom.methods.text import build_text_generator

    assert "synalign" in TEXT_METHODS
    config = METHOD_CONFIGS["synalign"](name="synalign", oversample=1.5)
    generator = build_text_generator(config.model_dump())
    assert isinstance(generator, SynAlignGenerator) and generator.cfg == config.model_dump()
    assert SynAlignGenerator({"oversample": 1.5}).cfg == config.model_dump()  # one home
    with pytest.raises(ValueError, match="oversampel"):
        SynAlignGenerator({"oversampel": 2})


def test_seed_openers_start_each_cluster_sample_with_a_seed_opening(monkeypatch, tiny_box):
    batch, fake = _run(monkeypatch, tiny_box, seed_openers=2)
    openers = {
        lab: {" ".join(t.split()[:2]) for t in SEEDS.for_label(lab)} for lab in ("money", "nature")
    }
    assert fake.generation_prompts
    for prompt in fake.generation_prompts:
        assert prompt.rsplit(f"{OPEN}\n", 1)[1] in openers["money"] | openers["nature"]
    for sample in batch.samples:
        assert sample.info["opener"] in openers[sample.label]
        assert sample.text.startswith(sample.info["opener"])


@pytest.mark.integration
def test_synalign_on_real_smollm2_and_minilm():
    from synthloom.models.causal_lm import load_causal_lm
    from synthloom.models.encoder import load_encoder

    cache = Path(os.environ["SYNTHLOOM_MODEL_CACHE"])
    box = ModelBox(
        load_causal_lm=lambda name: load_causal_lm(name, device="cpu", cache_dir=cache),
        load_encoder=lambda: load_encoder("minilm-l6", device="cpu"),
    )
    method = {
        "name": "synalign",
        "task": "short sentences about nature or money",
        "samples_per_cluster": 4,
        "max_new_tokens": 40,
        "max_attempts_factor": 4.0,  # the 135M model's JSON fails about half the time
    }
    batch = SynAlignGenerator(method).generate(SEEDS, 2, models=box, seed=0)
    stats = batch.stats
    assert stats.forward_passes > 0 and stats.metrics["synalign_clusters"] >= 2
    assert len(batch.samples) >= 1, stats.counts
    assert stats.metrics["mmd2_before"] > 0 and stats.metrics["mmd2_after"] > 0
    for sample in batch.samples:
        assert sample.text and CLOSE not in sample.text
        assert set(sample.info["attributes"]) == set(ATTRIBUTE_KEYS)
