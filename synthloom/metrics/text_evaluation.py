"""The text evaluation suite: one synthetic labelled-text set against the real splits.

`evaluate_text_sets(synthetic, real, encoder, evaluate)` embeds every set once with the
sentence encoder and returns diversity and fidelity of the synthetic texts
(`synthloom.metrics.text`), the prompt-leakage rate left after filtering, the real texts'
own diversity (`real_*`, the reference), and the student (`synthloom.metrics.student`)
trained on each of synthetic / seeds / seeds + synthetic / real train and scored on the
SAME real test split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloom.filters.text import leaks_prompt
from synthloom.metrics.student import (
    choose_student_c,
    fast_student_scores,
    finetuned_student_scores,
    mixed_set_weights,
    unit_rows,
)
from synthloom.metrics.text import diversity_metrics, fidelity_metrics
from synthloom.models.encoder import encode_texts

__all__ = [
    "STUDENT_SETS",
    "evaluate_text_sets",
    "label_agreement",
    "nearest_seed_label_share",
    "sample_texts_table",
]

# student training set -> the splits it concatenates
STUDENT_SETS = {
    "synthetic": ("synthetic",),
    "seeds": ("seeds",),
    "seeds_plus_synthetic": ("seeds", "synthetic"),
    "real_train": ("real_train",),
}


def evaluate_text_sets(
    synthetic: pd.DataFrame,
    real: dict[str, pd.DataFrame],
    encoder: Any,
    evaluate: dict[str, Any],
    *,
    seed: int,
    task_description: str | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every text metric of a synthetic set against the real splits (seeds, test, real_train).

    Returns (metrics, embeddings by set). Student keys: student_{set}_{accuracy|macro_f1} for
    set in synthetic, seeds, seeds_plus_synthetic, real_train, all scored on the real test
    split, and student_gain_{accuracy|macro_f1} = seeds_plus_synthetic - seeds; with
    `evaluate["student"]` full/both the fine-tuned student adds student_full_*. Every fast
    student uses one C (`student_c`: `evaluate["student_c"]`, or chosen on the seeds alone
    by `choose_student_c`); in seeds + synthetic the seeds carry `evaluate["seed_share"]`
    of the weight (`mixed_set_weights`), and so do they for the fine-tuned student. With
    `evaluate["synthetic_weights"]` label_margin and a `label_margin` column (the filter's
    margin rule), each synthetic row weighs in proportion to its label posterior
    exp(label_margin): a noise-tolerant student.
    `synthetic_label_agreement` (`label_agreement`) says how many samples carry their label,
    `synthetic_nearest_seed_label_share` and `test_nearest_seed_label_share`
    (`nearest_seed_label_share`) whether they stay on their label's seed topics.
    """
    texts = {"synthetic": synthetic["text"].astype(str).tolist()}
    labels = {"synthetic": synthetic["label"].astype(str).tolist()}
    for name in ("seeds", "test", "real_train"):
        texts[name] = real[name]["text"].astype(str).tolist()
        labels[name] = real[name]["label"].astype(str).tolist()
    emb = {
        name: encode_texts(*encoder, t) if t else np.zeros((0, encoder[0].config.hidden_size))
        for name, t in texts.items()
    }
    metrics: dict[str, float] = {"n_synthetic": float(len(synthetic))}
    for label in sorted(set(labels["seeds"])):
        metrics[f"n_synthetic_{label}"] = float(labels["synthetic"].count(label))
    if texts["synthetic"]:
        metrics.update(
            diversity_metrics(
                texts["synthetic"],
                emb["synthetic"],
                self_bleu_samples=evaluate.get("self_bleu_samples", 200),
                seed=seed,
            )
        )
        real_pool = np.concatenate([emb["test"], emb["real_train"]])
        metrics.update(
            fidelity_metrics(
                emb["synthetic"], real_pool, mauve=evaluate.get("mauve", True), seed=seed
            )
        )
        metrics["prompt_leakage_rate"] = float(
            np.mean([leaks_prompt(t, task_description) for t in texts["synthetic"]])
        )
    real_div = diversity_metrics(texts["real_train"] or texts["test"], None, seed=seed)
    metrics.update({f"real_{k}": v for k, v in real_div.items()})
    mode = evaluate.get("student", "fast")
    confidence = None
    if evaluate.get("synthetic_weights", "label_margin") == "label_margin" and (
        "label_margin" in synthetic.columns and len(synthetic)
    ):
        confidence = np.exp(synthetic["label_margin"].to_numpy(dtype=np.float64))
    c = evaluate.get("student_c", "auto")
    if c == "auto":
        c = choose_student_c(emb["seeds"], labels["seeds"], seed=seed)
    metrics["student_c"] = float(c)
    for key, parts in STUDENT_SETS.items():
        train_emb = np.concatenate([emb[p] for p in parts])
        train_labels = [lab for p in parts for lab in labels[p]]
        train_texts = [t for p in parts for t in texts[p]]
        weights = None
        if parts == ("seeds", "synthetic"):
            weights = mixed_set_weights(
                len(texts["seeds"]),
                len(texts["synthetic"]),
                evaluate.get("seed_share", 0.5),
                confidence,
            )
        elif parts == ("synthetic",) and confidence is not None:
            weights = mixed_set_weights(0, len(texts["synthetic"]), None, confidence)
        if mode in ("fast", "both"):
            scores = fast_student_scores(
                train_emb,
                train_labels,
                emb["test"],
                labels["test"],
                seed=seed,
                c=c,
                sample_weight=weights,
            )
            metrics.update({f"student_{key}_{k}": v for k, v in scores.items()})
        if mode in ("full", "both"):
            scores = finetuned_student_scores(
                encoder,
                train_texts,
                train_labels,
                texts["test"],
                labels["test"],
                epochs=evaluate.get("student_epochs", 3),
                learning_rate=evaluate.get("student_learning_rate", 5e-5),
                batch_size=evaluate.get("student_batch_size", 16),
                seed=seed,
                sample_weight=weights,
            )
            metrics.update({f"student_full_{key}_{k}": v for k, v in scores.items()})
    metrics.update(label_agreement(emb, labels, c=1.0, seed=seed))
    metrics.update(nearest_seed_label_share(emb, labels))
    for prefix in ("student", "student_full"):
        for k in ("accuracy", "macro_f1"):
            mixed = metrics.get(f"{prefix}_seeds_plus_synthetic_{k}")
            if mixed is not None:
                metrics[f"{prefix}_gain_{k}"] = mixed - metrics[f"{prefix}_seeds_{k}"]
    return metrics, emb


def label_agreement(
    emb: dict[str, np.ndarray], labels: dict[str, list[str]], *, c: float, seed: int
) -> dict[str, float]:
    """Does a synthetic sample carry its label? The share of synthetic samples that the
    fast student trained on the REAL-TRAIN texts (a reference the generators never see;
    inverse penalty `c`, the evaluation uses 1) assigns to the sample's own label:
    `synthetic_label_agreement`, and per label `synthetic_label_agreement_<label>`. The same student's accuracy on the test split
    bounds how far the figure can be trusted. Empty without synthetic or real-train texts."""
    if not labels["synthetic"] or len(set(labels["real_train"])) < 2:
        return {}
    from sklearn.linear_model import LogisticRegression

    judge = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    judge.fit(unit_rows(emb["real_train"]), labels["real_train"])
    own = np.asarray(labels["synthetic"])
    agree = judge.predict(unit_rows(emb["synthetic"])) == own
    out = {"synthetic_label_agreement": float(agree.mean())}
    for label in sorted(set(labels["synthetic"])):
        out[f"synthetic_label_agreement_{label}"] = float(agree[own == label].mean())
    return out


def nearest_seed_label_share(
    emb: dict[str, np.ndarray], labels: dict[str, list[str]]
) -> dict[str, float]:
    """Are the samples variations of their own label's seeds? For each text, its nearest
    seed by cosine similarity of the embeddings; the share whose nearest seed has the text's
    label: `synthetic_nearest_seed_label_share`, beside `test_nearest_seed_label_share`, the
    same for the real test texts (what the seeds' topics tell about the label in real data).
    A synthetic share far above the test's says the samples stay on the topics of their
    label's seeds, so a student learns "this topic means this label" from them, which the
    real data does not hold (SynthLLM on TREC, per-label concepts: 0.95 against 0.48-0.56;
    docs/text_quality.md). Empty without seeds of two labels."""
    if len(set(labels["seeds"])) < 2:
        return {}
    seeds = unit_rows(emb["seeds"])
    seed_labels = np.asarray(labels["seeds"])
    out = {}
    for name in ("synthetic", "test"):
        if not labels[name]:
            continue
        nearest = (unit_rows(emb[name]) @ seeds.T).argmax(axis=1)
        share = seed_labels[nearest] == np.asarray(labels[name])
        out[f"{name}_nearest_seed_label_share"] = float(share.mean())
    return out


def sample_texts_table(synthetic: pd.DataFrame, per_label: int, seed: int) -> pd.DataFrame:
    """Up to `per_label` synthetic texts per label (seeded sample): columns label, text."""
    if synthetic.empty or per_label == 0:
        return pd.DataFrame({"label": [], "text": []})
    parts = [
        group.sample(n=min(per_label, len(group)), random_state=seed)
        for _, group in synthetic.groupby("label", sort=True)
    ]
    return pd.concat(parts)[["label", "text"]].reset_index(drop=True)
