"""SynAlign (Ren et al., WWW 2025, arXiv 2502.08661; partial official code github
nighood/SynAlign): uncertainty-driven demonstrations, attribute reasoning, distribution
matching.

1. Embed the seeds with the encoder (MiniLM: `models.encoder()` + `encode_texts`).
2. Uncertainty tracker (`uncertainty.GPUncertaintyTracker`): an RBF Gaussian process over the
   embeddings of the seeds shown so far; the unshown seed of the label with the largest
   posterior std and its `num_examples - 1` nearest same-label neighbours form the next
   demonstration cluster. A round takes up to `clusters_per_round` clusters of every label
   still short (no more than it needs), so the pool stays balanced.
3. Attribute reasoning (`attributes`): the LLM, through its chat template, writes a JSON
   summary {style, tone, topic, length} of the cluster; an invalid reply is retried up to
   `attribute_retries` times, then the cluster is dropped (counts "attribute_retries",
   "attribute_invalid"). The retries of a cluster are sampled together in one batch (all
   clusters of a round in one `sample_prompts` call) and read in order, which is the same
   as asking again after each failure. Then `samples_per_cluster` samples are drawn from
   the raw completion prompt "attribute lines + few-shot prompt of the cluster" (with
   `seed_openers` n > 0 ending with the first n words of a random seed of the label, the
   sample being that opener + the continuation), every cluster of the round in one batch,
   stopping at the closing delimiter (and a blank line with `paragraph_stop`; unclosed /
   empty ones dropped: "unfinished", "empty").
4. Distribution matching (`distribution_matching`, reconstructed): the pool holds about
   `oversample` x the requested samples. Per label (`match_per_label`, default; else over
   the whole pool against all seeds), weights w on the simplex minimise
   MMD^2(sum_i w_i phi(s_i), mean_j phi(r_j)) between the candidates' and the seeds'
   embeddings (RBF kernel, median-heuristic bandwidth unless `mmd_bandwidth`), then the
   label's quota is drawn in proportion to w, WITHOUT replacement by default
   (`resample_with_replacement: true` draws i.i.d. and may repeat a sample, which the
   duplicate filter then removes). With `oversample` 1 and no replacement the draw keeps
   every candidate, so matching changes nothing.

stats.metrics: "mmd2_before" = unbiased MMD^2 (U-statistic, so a pool and its smaller
subset compare fairly) between the whole candidate pool and all seeds, "mmd2_after" = the
same for the resampled output, both with one bandwidth (the median heuristic over pool +
seeds); "mmd2_weighted" = the mean over matched groups of the optimised objective MMD^2(w*)
(the V-statistic of the module `distribution_matching`). Each sample's info holds the cluster's seed indices, its
attribute summary and its learned weight.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from synthloom.config import SynAlignConfig
from synthloom.methods.text.attributes import (
    ATTRIBUTE_PREFILL,
    attribute_conditioned_prompt,
    attribute_request,
    summarize_with_retries,
)
from synthloom.methods.text.base import (
    GenerationStats,
    ModelBox,
    SeedSet,
    TextBatch,
    TextSample,
)
from synthloom.methods.text.distribution_matching import (
    learn_mmd_weights,
    median_heuristic_bandwidth,
    mmd2_unbiased,
    resample_by_weights,
)
from synthloom.methods.text.fewgen import label_quotas
from synthloom.methods.text.prompts import (
    closing_ramp_for,
    random_seed_opener,
    sample_stop_strings,
    token_budget,
    with_opener,
)
from synthloom.methods.text.sampling import (
    chat_prompt,
    sample_prompts,
)
from synthloom.methods.text.uncertainty import GPUncertaintyTracker
from synthloom.models.encoder import encode_texts


class SynAlignGenerator:
    """GP-chosen clusters -> JSON attributes -> conditioned samples -> MMD resampling."""

    name: ClassVar[str] = "synalign"

    def __init__(self, method: dict[str, Any]) -> None:
        """`method`: a `SynAlignConfig` (synthloom.config) dumped to a dict; its keys and
        defaults live there alone."""
        self.cfg = SynAlignConfig.model_validate({**method, "name": "synalign"}).model_dump()

    def generate(
        self, seeds: SeedSet, num_samples: int, *, models: ModelBox, seed: int
    ) -> TextBatch:
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        stats = GenerationStats()
        encoder, enc_tokenizer = models.encoder()
        seed_emb = encode_texts(encoder, enc_tokenizer, list(seeds.texts))
        tracker = GPUncertaintyTracker(
            seed_emb,
            seeds.labels,
            lengthscale=cfg["gp_lengthscale"],
            noise=cfg["gp_noise"],
            rng=rng,
        )
        quotas = label_quotas(seeds.label_names, num_samples)
        pool = self._candidate_pool(seeds, quotas, tracker, models, rng, generator, stats)
        if not pool:
            return TextBatch(samples=[], stats=stats)
        pool_emb = encode_texts(encoder, enc_tokenizer, [s.text for s in pool])
        chosen = self._match(seeds, seed_emb, pool, pool_emb, quotas, rng, stats)
        bandwidth = median_heuristic_bandwidth(pool_emb, seed_emb)
        if len(chosen) >= 2 and len(seed_emb) >= 2:
            before = mmd2_unbiased(pool_emb, seed_emb, bandwidth=bandwidth)
            stats.metrics["mmd2_before"] = before
            stats.metrics["mmd2_after"] = mmd2_unbiased(
                pool_emb[chosen], seed_emb, bandwidth=bandwidth
            )
        stats.metrics["synalign_pool_size"] = float(len(pool))
        if len(set(chosen)) < len(pool):
            stats.count("not_resampled", len(pool) - len(set(chosen)))
        return TextBatch(samples=[pool[i] for i in chosen], stats=stats)

    # ---------------------------------------------------------------- steps 2-3

    def _candidate_pool(
        self,
        seeds: SeedSet,
        quotas: dict[str, int],
        tracker: GPUncertaintyTracker,
        models: ModelBox,
        rng: np.random.Generator,
        generator: torch.Generator,
        stats: GenerationStats,
    ) -> list[TextSample]:
        """About oversample x quota candidates per label, one round of clusters (up to
        `clusters_per_round` per label still short, decoded in one batch) at a time, until
        every label is full or out of attempts."""
        cfg = self.cfg
        model, tokenizer = models.causal_lm(cfg["model"])
        budget = token_budget(tokenizer, seeds.texts, cfg["max_new_tokens"])
        stops = sample_stop_strings(seeds.texts, cfg["paragraph_stop"])
        ramp = closing_ramp_for(tokenizer, seeds.texts, budget, cfg["closing_ramp"], stops)
        targets = {lab: math.ceil(q * cfg["oversample"]) for lab, q in quotas.items() if q > 0}
        max_clusters = {
            lab: math.ceil(cfg["max_attempts_factor"] * t / cfg["samples_per_cluster"])
            for lab, t in targets.items()
        }
        made = {lab: 0 for lab in targets}
        clusters_tried = {lab: 0 for lab in targets}
        pool: list[TextSample] = []
        while True:
            todo = [
                lab
                for lab in targets
                if made[lab] < targets[lab] and clusters_tried[lab] < max_clusters[lab]
            ]
            if not todo:
                break
            clusters: list[tuple[str, list[int]]] = []
            for lab in todo:  # up to clusters_per_round per label, no more than it still needs
                need = math.ceil((targets[lab] - made[lab]) / cfg["samples_per_cluster"])
                count = min(
                    cfg["clusters_per_round"], need, max_clusters[lab] - clusters_tried[lab]
                )
                for _ in range(count):
                    clusters.append((lab, tracker.next_cluster(cfg["num_examples"], group=lab)))
                clusters_tried[lab] += count
            summaries = self._summaries(seeds, clusters, model, tokenizer, generator, stats)
            plan: list[tuple[str, list[int], dict[str, str], str, str]] = []
            for (lab, cluster), summary in zip(clusters, summaries, strict=True):
                if summary is None:
                    continue
                prompt = attribute_conditioned_prompt(
                    lab,
                    [seeds.texts[i] for i in cluster],
                    summary,
                    task=cfg["task"],
                    description=seeds.description(lab),
                )
                opener = random_seed_opener(seeds.for_label(lab), cfg["seed_openers"], rng)
                plan.append((lab, cluster, summary, prompt + opener, opener))
            if plan:
                cont = sample_prompts(  # the round's clusters in one batch; a full cluster
                    model,  # even near the target: a larger pool only adds choice
                    tokenizer,
                    [prompt for *_, prompt, _ in plan],
                    copies=[cfg["samples_per_cluster"]] * len(plan),
                    max_new_tokens=budget,
                    temperature=cfg["temperature"],
                    top_p=cfg["top_p"],
                    stop_strings=stops,
                    generator=generator,
                    no_repeat_ngram=cfg["no_repeat_ngram"],
                    closing_ramp=ramp,
                )
                stats.add_sampling_cost(cont)
                stats.count_sampled(cont)  # sample continuations, not summaries
            width = cfg["samples_per_cluster"]
            for k, (lab, cluster, summary, _, opener) in enumerate(plan):
                rows = range(k * width, (k + 1) * width)
                for text, finished in ((cont.texts[r], cont.finished[r]) for r in rows):
                    text = with_opener(opener, text)
                    if not finished:
                        stats.count("unfinished")
                    elif not text:
                        stats.count("empty")
                    else:
                        made[lab] += 1
                        info = {
                            "method": "synalign",
                            "seed_indices": list(cluster),
                            "seeds_shown": [seeds.texts[i] for i in cluster],
                            "attributes": dict(summary),
                        }
                        if opener:
                            info["opener"] = opener
                        pool.append(TextSample(text=text, label=lab, info=info))
            # candidates are `oversample` x the rows; the MMD match keeps num_rows of them
            models.report(int(sum(min(made[k], targets[k]) for k in targets) / cfg["oversample"]))
        stats.metrics["synalign_clusters"] = float(sum(clusters_tried.values()))
        stats.metrics["synalign_gp_rounds"] = float(tracker.rounds)
        return pool

    def _summaries(
        self,
        seeds: SeedSet,
        clusters: list[tuple[str, list[int]]],
        model,
        tokenizer,
        generator: torch.Generator,
        stats: GenerationStats,
    ) -> list[dict[str, str] | None]:
        """One attribute summary (or None) per (label, cluster), in order; every attempt of
        every cluster in one batch, read in order per cluster (see the module docstring)."""
        cfg = self.cfg
        attempts = cfg["attribute_retries"] + 1
        prompts: list[str] = []
        for lab, cluster in clusters:
            request = attribute_request(lab, [seeds.texts[i] for i in cluster], task=cfg["task"])
            prompts.extend([chat_prompt(tokenizer, request) + ATTRIBUTE_PREFILL] * attempts)
        cont = sample_prompts(
            model,
            tokenizer,
            prompts,
            max_new_tokens=cfg["attribute_max_new_tokens"],
            temperature=cfg["attribute_temperature"],
            top_p=1.0,
            stop_strings=("}",),
            generator=generator,
        )
        stats.add_sampling_cost(cont)
        out: list[dict[str, str] | None] = []
        for k in range(len(clusters)):
            rows = range(k * attempts, (k + 1) * attempts)
            # a finished reply was cut before "}" (or ended): close the object again
            replies = iter(
                ATTRIBUTE_PREFILL + cont.texts[r] + ("}" if cont.finished[r] else "") for r in rows
            )
            summary, _ = summarize_with_retries(
                lambda it=replies: next(it), retries=cfg["attribute_retries"], stats=stats
            )
            out.append(summary)
        return out

    # ---------------------------------------------------------------- step 4

    def _match(
        self,
        seeds: SeedSet,
        seed_emb: np.ndarray,
        pool: list[TextSample],
        pool_emb: np.ndarray,
        quotas: dict[str, int],
        rng: np.random.Generator,
        stats: GenerationStats,
    ) -> list[int]:
        """Indices into `pool` of the resampled output (see the module docstring)."""
        cfg = self.cfg
        if cfg["match_per_label"]:
            groups = [
                (
                    [i for i, s in enumerate(pool) if s.label == lab],
                    [i for i, s in enumerate(seeds.labels) if s == lab],
                    quotas[lab],
                )
                for lab in quotas
            ]
        else:
            groups = [(list(range(len(pool))), list(range(len(seeds.texts))), sum(quotas.values()))]
        chosen: list[int] = []
        objectives: list[float] = []
        for members, refs, quota in groups:
            if not members or quota <= 0:
                continue
            result = learn_mmd_weights(
                pool_emb[members],
                seed_emb[refs],
                bandwidth=cfg["mmd_bandwidth"],
                iterations=cfg["mmd_iterations"],
                step=cfg["mmd_step"],
            )
            objectives.append(result.mmd2_weighted)
            for i, w in zip(members, result.weights, strict=True):
                pool[i].info["mmd_weight"] = float(w)
            picks = resample_by_weights(
                result.weights, quota, replace=cfg["resample_with_replacement"], rng=rng
            )
            chosen.extend(members[int(p)] for p in picks)
        stats.metrics["mmd2_weighted"] = float(np.mean(objectives)) if objectives else 0.0
        return chosen
