"""GReaT (Borisov et al. 2023, arXiv 2210.06280) through the `be-great` package.

Each training row becomes a sentence "col is value, col is value, ..." with the columns in a
random order (every time a row is drawn), and a causal LM is fine-tuned on those sentences
(all weights, HF Trainer, `max_steps` optimiser steps of `batch_size` rows; `epochs` caps
it). Sampling starts every sequence with "<target> is <value>," (the value drawn from the
target's training distribution; the last column when there is no target), lets the model
write the rest, and parses "col is value" pairs back.

The LM defaults to the same local SmolLM2-135M-Instruct weights as DiffLM's decoder: the
built-in alias is converted once to a safetensors directory under the model cache
(`$SYNTHLOOM_MODEL_CACHE`, else `<$SYNTHLOOM_DATA_DIR or ./data>/models`) and GReaT loads
that directory; a local model directory works too.

Sampling is this adapter's loop around be-great's pieces (start sampler, text parser), so
that it is bounded and counted: it decodes with special tokens removed (be-great 0.0.14
only strips GPT-2's <|endoftext|>, which would drop the left-padded start column with other
tokenizers) and keeps a generation only when every column was parsed. It stops at
`num_rows` complete rows or `max_attempts_factor * num_rows` generations, and reports the
generations it tried in `last_attempts` (so valid-row rate = kept / tried).
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synthloom.methods.peers.availability import require_peer
from synthloom.methods.peers.frames import from_peer_frame, to_peer_frame
from synthloom.runs import model_cache_dir
from synthloom.schema import TableSchema

MODEL_DIR = "model"
STATE_FILE = "great.json"
_STATE_KEYS = ("columns", "num_cols", "conditional_col", "conditional_col_dist", "col_stats")


def to_json(value: Any) -> Any:
    """`value` as JSON-ready data that `from_json` turns back into an equal value: numpy
    scalars and arrays become Python numbers and lists, and a dict with a non-string key
    (be-great's target distribution of an integer column, e.g. diamonds' price) becomes
    {"__items__": [[key, value], ...]} so its keys keep their type."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and "__items__" not in value:
            return {k: to_json(v) for k, v in value.items()}
        return {"__items__": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_json(value: Any) -> Any:
    """The inverse of `to_json` (lists stay lists)."""
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {from_json(k): from_json(v) for k, v in value["__items__"]}
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def resolve_llm(llm: str) -> str:
    """A built-in alias -> its converted safetensors directory; anything else unchanged."""
    from synthloom.models.causal_lm import BUILTIN_CAUSAL_LMS, builtin_copy

    if llm in BUILTIN_CAUSAL_LMS:
        return str(builtin_copy(llm, model_cache_dir()))
    return llm


class GReaTGenerator:
    """Fine-tuned causal LM over textual rows; see the module docstring for every knob."""

    name: ClassVar[str] = "great"

    def __init__(
        self,
        llm: str = "smollm2-135m-instruct",
        max_steps: int = 200,
        epochs: int = 100,
        batch_size: int = 8,
        learning_rate: float = 5e-5,
        float_precision: int | None = None,
        temperature: float = 0.7,
        sample_batch_size: int = 64,
        max_length: int | None = None,
        max_attempts_factor: float = 5.0,
    ) -> None:
        self.params = {
            "llm": llm,
            "max_steps": max_steps,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "float_precision": float_precision,
            "temperature": temperature,
            "sample_batch_size": sample_batch_size,
            "max_length": max_length,
            "max_attempts_factor": max_attempts_factor,
        }
        self.schema: TableSchema | None = None
        self.great: Any = None
        self.state: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []

    def fit(self, train: pd.DataFrame, schema: TableSchema, *, seed: int = 0) -> GReaTGenerator:
        """Fine-tune the LM on the training rows as GReaT sentences (be-great's trainer)."""
        require_peer(self.name)
        from be_great import GReaT

        from synthloom.models.device import set_seed

        set_seed(seed)
        self.schema = schema
        frame = to_peer_frame(train, schema)
        p = self.params
        with tempfile.TemporaryDirectory(prefix="great-trainer-") as scratch:
            self.great = GReaT(
                resolve_llm(p["llm"]),
                experiment_dir=scratch,
                epochs=p["epochs"],
                batch_size=p["batch_size"],
                float_precision=p["float_precision"],
                max_steps=p["max_steps"],
                learning_rate=p["learning_rate"],
                save_strategy="no",
                logging_steps=max(1, p["max_steps"] // 20),
                seed=seed,
                data_seed=seed,
            )
            trainer = self.great.fit(
                frame, conditional_col=schema.target, random_conditional_col=False
            )
        self.history = [
            {"step": float(e["step"]), "loss": float(e["loss"])}
            for e in trainer.state.log_history
            if "loss" in e
        ]
        self.state = {k: getattr(self.great, k) for k in _STATE_KEYS}
        self.state["max_length"] = p["max_length"] or self._auto_max_length(frame)
        return self

    def _auto_max_length(self, frame: pd.DataFrame) -> int:
        """Longest training sentence in tokens (sampled rows) x 1.25 + 8: room for one row."""
        tok = self.great.tokenizer
        rows = frame.sample(min(len(frame), 200), random_state=0)
        lengths = [
            len(tok(", ".join(f"{c} is {v}" for c, v in row.items()))["input_ids"])
            for _, row in rows.iterrows()
        ]
        return int(max(lengths) * 1.25) + 8

    def sample(self, num_rows: int, *, seed: int = 0) -> pd.DataFrame:
        """Up to `num_rows` complete rows from at most max_attempts_factor x num_rows tries."""
        assert self.schema is not None and self.great is not None, "fit or load first"
        import torch
        from be_great.great_utils import _convert_text_to_tabular_data

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        great, p = self.great, self.params
        tok, model = great.tokenizer, great.model.eval()
        device = next(model.parameters()).device
        start = great._get_start_sampler(None, None)
        budget = max(1, int(np.ceil(p["max_attempts_factor"] * num_rows)))
        kept: list[pd.DataFrame] = []
        done = tried = 0
        while done < num_rows and tried < budget:
            k = min(p["sample_batch_size"], budget - tried)
            ids = torch.tensor(start.get_start_tokens(k), device=device)
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=(ids != tok.pad_token_id).long(),
                    max_length=self.state["max_length"],
                    do_sample=True,
                    temperature=p["temperature"],
                    pad_token_id=tok.pad_token_id,
                )
            texts = [t.replace("\n", " ") for t in tok.batch_decode(out, skip_special_tokens=True)]
            parsed = _convert_text_to_tabular_data(texts, great.columns)
            complete = parsed[~(parsed == "placeholder").any(axis=1)]
            kept.append(complete)
            done += len(complete)
            tried += k
        self.last_attempts = tried
        frame = pd.concat(kept, ignore_index=True).head(num_rows) if kept else pd.DataFrame()
        return from_peer_frame(frame, self.schema)

    def save(self, directory: Path) -> None:
        assert self.schema is not None and self.great is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.great.model.save_pretrained(directory / MODEL_DIR)  # safetensors
        self.great.tokenizer.save_pretrained(directory / MODEL_DIR)
        payload = {
            "params": self.params,
            "schema": self.schema.to_dict(),
            "state": self.state,
            "history": self.history,
        }
        (directory / STATE_FILE).write_text(json.dumps(to_json(payload)), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> GReaTGenerator:
        require_peer(cls.name)
        from be_great import GReaT

        payload = from_json(json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8")))
        model = cls(**payload["params"])
        model.schema = TableSchema.from_dict(payload["schema"])
        model.state = payload["state"]
        model.history = payload["history"]
        model.great = GReaT(str(Path(directory) / MODEL_DIR))
        for key in _STATE_KEYS:
            setattr(model.great, key, model.state[key])
        return model

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"llm": self.params["llm"]}
        if self.great is not None:
            facts["num_parameters"] = sum(p.numel() for p in self.great.model.parameters())
        if self.history:
            facts["final_loss"] = self.history[-1]["loss"]
            facts["steps"] = int(self.history[-1]["step"])
        if "max_length" in self.state:
            facts["max_length"] = self.state["max_length"]
        return facts
