"""The downstream student: a classifier trained on one labelled text set, scored on real test data.

Fast mode (`fast_student_scores`): multinomial logistic regression (L2, lbfgs) on frozen,
L2-normalised MiniLM sentence embeddings, minimising
    C * sum_i w_i * CE(y_i, softmax(W x_i + b)) + ||W||^2 / 2.
Full mode (`finetuned_student_scores`): the MiniLM encoder itself fine-tuned with a linear
head on its mean-pooled output (cross-entropy weighted by w_i, AdamW, a few epochs), as in
the papers' DistilBERT students at CPU scale.

Fair comparison of training sets (`choose_student_c`, `mixed_set_weights`): C is chosen once,
by cross-validation on the SEEDS alone, and used for every training set; sample weights have
mean 1, and in a seeds + synthetic mix the seeds carry `seed_share` of the total weight, so
a large synthetic set cannot drown the real examples.

Both return {"accuracy", "macro_f1"} on the test set; macro-F1 averages the per-label F1
over the labels of the test set (a test label the student never saw scores F1 0).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.models.encoder import mean_pool

__all__ = [
    "STUDENT_C_GRID",
    "choose_student_c",
    "fast_student_scores",
    "finetuned_student_scores",
    "mixed_set_weights",
    "student_scores_from_predictions",
    "unit_rows",
]

# Inverse regularisation strengths `choose_student_c` picks from.
STUDENT_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def student_scores_from_predictions(
    test_labels: Sequence[str], predicted: Sequence[str]
) -> dict[str, float]:
    """{"accuracy", "macro_f1"} of `predicted` against `test_labels` (labels of the test set)."""
    truth = [str(t) for t in test_labels]
    pred = [str(p) for p in predicted]
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(
            f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0)
        ),
    }


def fast_student_scores(
    train_emb: np.ndarray,
    train_labels: Sequence[str],
    test_emb: np.ndarray,
    test_labels: Sequence[str],
    *,
    seed: int = 0,
    c: float = 1.0,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Logistic regression (inverse regularisation `c`, per-row `sample_weight`, default 1)
    on L2-normalised embeddings (rows renormalised here), trained on (train_emb,
    train_labels), scored on (test_emb, test_labels). A training set with a single label
    predicts that label everywhere; an empty one scores NaN."""
    train_labels = [str(t) for t in train_labels]
    if len(train_labels) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan")}
    if len(set(train_labels)) == 1:
        return student_scores_from_predictions(test_labels, train_labels[:1] * len(test_labels))
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(unit_rows(train_emb), train_labels, sample_weight=sample_weight)
    return student_scores_from_predictions(test_labels, model.predict(unit_rows(test_emb)))


def choose_student_c(
    emb: np.ndarray,
    labels: Sequence[str],
    *,
    grid: Sequence[float] = STUDENT_C_GRID,
    folds: int = 5,
    repeats: int = 4,
    seed: int = 0,
) -> float:
    """The C of `grid` with the highest mean held-out accuracy over `repeats` x stratified
    `folds`-fold cross-validation of the logistic-regression student on these rows alone
    (the seeds: never the test split). Folds shrink to the smallest label's count (at least
    2); ties go to the smaller C (the stronger penalty). With fewer than 2 rows of some
    label, returns 1.0. (Held-out log-likelihood picks the weakest penalty in the grid on
    10 seeds per label, and a student that weak fits synthetic label noise.)"""
    from sklearn.model_selection import RepeatedStratifiedKFold

    y = np.asarray([str(t) for t in labels])
    names, counts = np.unique(y, return_counts=True)
    if len(names) < 2 or counts.min() < 2:
        return 1.0
    x = unit_rows(emb)
    splits = list(
        RepeatedStratifiedKFold(
            n_splits=min(folds, int(counts.min())), n_repeats=repeats, random_state=seed
        ).split(x, y)
    )
    best_c, best = 1.0, -np.inf
    for c in sorted(grid):
        scores = []
        for train, held in splits:
            model = LogisticRegression(C=c, max_iter=2000).fit(x[train], y[train])
            scores.append(float(np.mean(model.predict(x[held]) == y[held])))
        if np.mean(scores) > best + 1e-9:
            best_c, best = float(c), float(np.mean(scores))
    return best_c


def mixed_set_weights(
    n_seeds: int,
    n_synthetic: int,
    seed_share: float | None,
    synthetic_confidence: np.ndarray | None = None,
) -> np.ndarray:
    """(n_seeds + n_synthetic,) sample weights, seeds first, with mean 1: the seeds carry
    `seed_share` of the total weight and the synthetic rows the rest, spread over them in
    proportion to `synthetic_confidence` (e.g. the label posterior exp(label_margin); evenly
    when None). `seed_share` None (or either part empty): the seeds weigh 1 each and the
    synthetic rows their confidence scaled to mean 1, a plain concatenation."""
    n = n_seeds + n_synthetic
    confidence = np.ones(n_synthetic)
    if synthetic_confidence is not None and n_synthetic:
        confidence = np.asarray(synthetic_confidence, dtype=np.float64)
        confidence = confidence / confidence.mean()
    if seed_share is None or n_seeds == 0 or n_synthetic == 0:
        return np.concatenate([np.ones(n_seeds), confidence])
    return np.concatenate(
        [
            np.full(n_seeds, seed_share * n / n_seeds),
            confidence * (1.0 - seed_share) * n / n_synthetic,
        ]
    )


def finetuned_student_scores(
    encoder: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    *,
    epochs: int = 3,
    learning_rate: float = 5e-5,
    batch_size: int = 16,
    max_length: int = 64,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Fine-tune a COPY of `encoder` (the caller's weights stay frozen) with a linear head on
    mean-pooled token states: logits = W mean_pool(h) + b, cross-entropy (each row's loss
    times its `sample_weight`, default 1, averaged over the batch), AdamW (weight decay
    0.01), shuffled batches; then predict the test texts. Deterministic in
    `seed`: head init, batch order and dropout masks all come from it, and the global torch
    RNG is left as it was. Runs in fp32 with gradients even inside a caller's autocast or
    no-grad context."""
    train_labels = [str(t) for t in train_labels]
    names = sorted(set(train_labels))
    if len(names) < 2:
        return fast_student_scores(
            np.zeros((len(train_labels), 1)),
            train_labels,
            np.zeros((len(test_texts), 1)),
            test_labels,
        )
    device_type = encoder[0].device.type
    # fp32 and gradients whatever the caller's context (an enclosing autocast would train in
    # bf16 and change the scores); the global RNG is restored afterwards
    with (
        torch.random.fork_rng(devices=[]),
        torch.autocast(device_type, enabled=False),
        torch.enable_grad(),
    ):
        torch.manual_seed(seed)  # dropout masks
        return _finetune_and_predict(
            encoder,
            names,
            train_labels,
            train_texts,
            test_texts,
            test_labels,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            sample_weight=sample_weight,
        )


def _finetune_and_predict(
    encoder: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    names: list[str],
    train_labels: list[str],
    train_texts: Sequence[str],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    seed: int,
    sample_weight: np.ndarray | None,
) -> dict[str, float]:
    base, tokenizer = encoder
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(base).train()
    head = torch.nn.Linear(model.config.hidden_size, len(names)).to(model.device)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.02, generator=generator)
        head.bias.zero_()
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    index = {name: i for i, name in enumerate(names)}
    targets = torch.tensor([index[t] for t in train_labels], device=model.device)
    weights = torch.ones(len(train_labels), device=model.device)
    if sample_weight is not None:
        weights = torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32).to(model.device)

    def logits_of(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(model.device)
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return head(mean_pool(hidden.last_hidden_state, batch["attention_mask"]))  # (B, K)

    texts = list(train_texts)
    for _ in range(epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            per_row = F.cross_entropy(
                logits_of([texts[i] for i in idx]), targets[idx], reduction="none"
            )
            loss = (per_row * weights[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    predicted: list[str] = []
    with torch.no_grad():
        test = list(test_texts)
        for start in range(0, len(test), 64):
            choice = logits_of(test[start : start + 64]).argmax(dim=-1).tolist()
            predicted.extend(names[c] for c in choice)
    return student_scores_from_predictions(test_labels, predicted)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64; all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
