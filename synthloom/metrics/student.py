"""The downstream student: a classifier trained on one labelled text set, scored on real test data.

Fast mode (`fast_student_scores`): multinomial logistic regression (L2, C = 1, lbfgs) on
frozen, L2-normalised MiniLM sentence embeddings. Full mode (`finetuned_student_scores`): the
MiniLM encoder itself fine-tuned with a linear head on its mean-pooled output (cross-entropy,
AdamW, a few epochs), as in the papers' DistilBERT students at CPU scale.

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

__all__ = ["fast_student_scores", "finetuned_student_scores", "student_scores_from_predictions"]


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
) -> dict[str, float]:
    """Logistic regression on L2-normalised embeddings (rows renormalised here), trained on
    (train_emb, train_labels), scored on (test_emb, test_labels). A training set with a
    single label predicts that label everywhere; an empty one scores NaN."""
    train_labels = [str(t) for t in train_labels]
    if len(train_labels) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan")}
    if len(set(train_labels)) == 1:
        return student_scores_from_predictions(test_labels, train_labels[:1] * len(test_labels))
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    model.fit(_unit_rows(train_emb), train_labels)
    return student_scores_from_predictions(test_labels, model.predict(_unit_rows(test_emb)))


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
) -> dict[str, float]:
    """Fine-tune a COPY of `encoder` (the caller's weights stay frozen) with a linear head on
    mean-pooled token states: logits = W mean_pool(h) + b, cross-entropy, AdamW
    (weight decay 0.01), shuffled batches; then predict the test texts. Deterministic in
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
            loss = F.cross_entropy(logits_of([texts[i] for i in idx]), targets[idx])
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


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
