"""The labelled-text pipeline: seed splitting, FewGen's bookkeeping, the flow end to end.

The flow runs with tiny random models saved as local checkpoints; because a random LM never
writes the closing delimiter, the flow test replaces FewGen's sampler with a scripted one
(the sampler itself is tested against a reference in test_text_sampling.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import synthloom.methods.text.fewgen as fewgen
from cli.main import main
from synthloom.config import load_config
from synthloom.errors import DataError
from synthloom.methods.registry import TEXT_STAGES
from synthloom.methods.text.base import ModelBox, SeedSet
from synthloom.methods.text.runner import text_model_box
from synthloom.methods.text.sampling import Continuations
from synthloom.metrics.student import STUDENT_C_GRID
from synthloom.models.device import frozen_model_dtype
from synthloom.models.tiny import tiny_causal_lm, tiny_encoder
from synthloom.runs import run_id_for
from synthloom.text_splits import text_splits

TOPICS = {
    "sports": ["match", "goal", "team", "coach", "league", "score", "season", "player"],
    "weather": ["rain", "storm", "sunny", "cloud", "wind", "forecast", "snow", "cold"],
    "food": ["pizza", "salad", "recipe", "dinner", "cheese", "bread", "soup", "spicy"],
}


def topic_table(per_label: int = 24) -> pd.DataFrame:
    rows = []
    for label, words in TOPICS.items():
        for i in range(per_label):
            picked = [words[(i + k * 3) % len(words)] for k in range(5)]
            rows.append(
                {"tweet": f"Today {' '.join(picked)} number {i} for {label}", "kind": label}
            )
    return pd.DataFrame(rows)


def test_text_splits_are_disjoint_stratified_and_seeded():
    table = topic_table()
    a = text_splits(
        table, source="t.csv", text_column="tweet", label_column="kind", seeds_per_label=4,
        test_per_label=10, real_train_per_label=5, seed=1,
    )  # fmt: skip
    b = text_splits(
        table, source="t.csv", text_column="tweet", label_column="kind", seeds_per_label=4,
        test_per_label=10, real_train_per_label=5, seed=1,
    )  # fmt: skip
    assert a.seeds.equals(b.seeds)
    assert a.seeds["label"].value_counts().to_dict() == dict.fromkeys(TOPICS, 4)
    assert a.test["label"].value_counts().to_dict() == dict.fromkeys(TOPICS, 10)
    assert a.real_train["label"].value_counts().to_dict() == dict.fromkeys(TOPICS, 5)
    sets = [set(f["text"]) for f in (a.seeds, a.test, a.real_train)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"text_column": "text"}, "data.text_column names column 'text'"),
        ({"label_column": "knd"}, "Did you mean 'kind'?"),
        ({"labels": ["sports", "cooking"]}, "data.labels lists ['cooking']"),
        ({"seeds_per_label": 30}, "lower data.seeds_per_label"),
    ],
)
def test_text_splits_errors_name_the_field_and_fix(kwargs, expected):
    args = {"text_column": "tweet", "label_column": "kind", **kwargs}
    with pytest.raises(DataError) as err:
        text_splits(topic_table(), source="t.csv", **args)
    assert "t.csv" in str(err.value) and expected in str(err.value) and "Fix:" in str(err.value)


def scripted_sampler(calls: list[str]):
    """Stands in for `sample_prompts`: per prompt, an echo of the prompt, a copy of a shown
    seed, topical texts for the prompt's label and (last) one unfinished row."""

    def sample(model, tokenizer, prompts, *, copies, generator, **kw):
        texts: list[str] = []
        finished: list[bool] = []
        for prompt, num in zip(prompts, copies, strict=True):
            calls.append(prompt)
            label = re.search(r'label "([^"]+)"', prompt).group(1)
            words = TOPICS[label]
            shown = re.findall(r"<text>\n(.*?)\n</text>", prompt)
            k = len(calls)
            rows = [
                f"Wow {words[(k + i) % 8]} and {words[(k + 2 * i + 1) % 8]} again, call {k} row {i}"
                for i in range(num)
            ]
            done = [True] * num
            rows[0] = f"Example 1: {label} text"
            rows[1] = shown[0]
            rows[-1], done[-1] = "an unfinished sample that ran out of tok", False
            texts += rows
            finished += done
        return Continuations(texts, finished, 10 * len(texts), 10, sum(map(len, prompts)))

    return sample


def test_fewgen_balances_labels_drops_unfinished_and_records_provenance(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(fewgen, "sample_prompts", scripted_sampler(calls))
    table = topic_table()
    seeds = SeedSet(tuple(table["tweet"]), tuple(table["kind"]))
    generator = fewgen.FewGenGenerator(
        {"num_examples": 2, "samples_per_prompt": 6, "task": "posts"}
    )
    batch = generator.generate(seeds, 10, models=ModelBox(lambda name: (None, None)), seed=0)
    labels = [s.label for s in batch.samples]
    assert {lab: labels.count(lab) for lab in TOPICS} == {"food": 4, "sports": 3, "weather": 3}
    # rows per prompt: ceil(1.25 x quota) = 5, 4, 4; all but the last usable: 3 prompts
    assert [c.count("<text>") for c in calls] == [3, 3, 3]  # 2 examples + the open one
    assert len(calls) == 3 and batch.stats.counts["unfinished"] == 3
    assert batch.stats.metrics["prompts"] == 3
    assert "surplus" not in batch.stats.counts
    assert batch.stats.metrics["rounds"] == 1  # the three prompts decode in one batch
    assert batch.stats.forward_passes == 10
    for sample in batch.samples:
        assert len(sample.info["seeds_shown"]) == 2
        assert all(
            seeds.labels[seeds.texts.index(t)] == sample.label for t in sample.info["seeds_shown"]
        )
    assert 'examples of posts, all with label "food"' in calls[0]


def test_fewgen_seed_openers_start_each_sample_with_a_seed_opening_of_its_label(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(fewgen, "sample_prompts", scripted_sampler(calls))
    table = topic_table()
    seeds = SeedSet(tuple(table["tweet"]), tuple(table["kind"]))
    method = {"num_examples": 2, "samples_per_prompt": 6, "task": "posts", "seed_openers": 3}
    batch = fewgen.FewGenGenerator(method).generate(
        seeds, 10, models=ModelBox(lambda name: (None, None)), seed=0
    )
    assert len(batch.samples) == 10
    for sample in batch.samples:
        opener = sample.info["opener"]
        # "Today <word> <word>": three words of one of this label's seeds
        assert len(opener.split()) == 3 and opener.startswith("Today ")
        assert any(t.startswith(opener) for t in seeds.for_label(sample.label))
        assert sample.text.startswith(opener) and len(sample.text) > len(opener)
    # every prompt ends with its opener, right after the open delimiter
    assert all(re.search(r"<text>\nToday \w+ \w+$", c) for c in calls)
    assert fewgen.FewGenGenerator({"task": "posts"}).seed_openers == 0  # off by default


def test_fewgen_rounds_are_capped_at_batch_rows(monkeypatch):
    calls: list[str] = []
    widths: list[int] = []
    sampler = scripted_sampler(calls)

    def recording(model, tokenizer, prompts, *, copies, **kw):
        widths.append(sum(copies))
        return sampler(model, tokenizer, prompts, copies=copies, **kw)

    monkeypatch.setattr(fewgen, "sample_prompts", recording)
    table = topic_table()
    seeds = SeedSet(tuple(table["tweet"]), tuple(table["kind"]))
    generator = fewgen.FewGenGenerator(
        {"num_examples": 2, "samples_per_prompt": 4, "batch_rows": 7, "task": "posts"}
    )
    reported: list[int] = []
    box = ModelBox(lambda name: (None, None), progress=reported.append)
    batch = generator.generate(seeds, 12, models=box, seed=0)
    assert max(widths) <= 7 and len(widths) >= 3
    # one progress report per round: the samples accepted so far, up to all of them
    assert len(reported) == len(widths) and reported == sorted(reported)
    assert reported[-1] == len(batch.samples) == 12 and reported[0] < 12
    labels = [s.label for s in batch.samples]
    assert {lab: labels.count(lab) for lab in TOPICS} == dict.fromkeys(TOPICS, 4)
    # labels take turns within a round: the first round holds more than one label
    first = [re.search(r'label "([^"]+)"', c).group(1) for c in calls[:2]]
    assert len(set(first)) == 2


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("tiny-text-models")
    lm, lm_tok = tiny_causal_lm()
    lm.save_pretrained(root / "lm")
    lm_tok.save_pretrained(root / "lm")
    enc, enc_tok = tiny_encoder()
    enc.save_pretrained(root / "enc")
    enc_tok.save_pretrained(root / "enc")
    return str(root / "lm"), str(root / "enc")


def test_text_model_box_loads_the_generator_in_the_method_s_decoder_dtype(
    tiny_checkpoints, tmp_path
):
    lm, enc = tiny_checkpoints
    for choice, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        box = text_model_box("cpu", str(tmp_path), enc, choice)
        model, _ = box.causal_lm(lm)
        assert model.dtype == dtype
        assert box.loaded_dtypes() == {lm: str(dtype).removeprefix("torch.")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One data dir for every flow run of this module: the CLI ties the in-process Prefect
    runtime to the first run's data dir, so later runs in the process must use the same."""
    return tmp_path_factory.mktemp("text-data")


def text_config(tmp_path: Path, checkpoints, data_dir: Path, **data) -> Path:
    csv = tmp_path / "posts.csv"
    topic_table().to_csv(csv, index=False)
    lm, enc = checkpoints
    config = {
        "data": {
            "source": str(csv),
            "text_column": "tweet",
            "target": "kind",
            "seeds_per_label": 4,
            "test_per_label": 10,
            **data,
        },
        "method": {"name": "fewgen", "model": lm, "samples_per_prompt": 6, "task": "posts"},
        "generate": {"num_rows": 12},
        # a random tiny encoder puts every text near every seed: no paraphrase check here
        "text_filter": {"seed_cosine": None},
        "evaluate": {"encoder": enc, "student": "both", "student_epochs": 1},
        "tracking": {"experiment": "text-tests"},
        "run": {"data_dir": str(data_dir), "device": "cpu"},
    }
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.integration
def test_text_flow_runs_every_stage_and_tracks(
    one_thread, tmp_path, tiny_checkpoints, data_dir, monkeypatch, mlflow_dataset_inputs
):
    monkeypatch.setattr(fewgen, "sample_prompts", scripted_sampler([]))
    path = text_config(tmp_path, tiny_checkpoints, data_dir)
    assert main(["run", str(path)]) == 0
    cfg = load_config(path)
    run_dir = Path(cfg.run.data_dir) / "runs" / run_id_for(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == list(TEXT_STAGES)
    assert all(s["status"] == "completed" for s in summary["stages"])
    samples = pd.read_parquet(run_dir / "generate" / "samples.parquet")
    assert len(samples) == 12
    generation = json.loads((run_dir / "generate" / "generation.json").read_text())
    auto = frozen_model_dtype("auto", "cpu")  # bfloat16 where this CPU measures it faster
    assert generation["decoder_dtypes"] == {cfg.method.model: str(auto).removeprefix("torch.")}
    assert {"text", "label", "method", "model", "info"} <= set(samples.columns)
    assert json.loads(samples["info"][0])["seeds_shown"]
    counts = summary["counts"]
    assert counts["removed_prompt_leakage"] >= 1 and counts["removed_seed_copy"] >= 1
    kept = pd.read_parquet(run_dir / "filter" / "kept.parquet")
    assert len(kept) == 12 - sum(v for k, v in counts.items() if k.startswith("removed_"))
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    for key in ("synthetic", "seeds", "seeds_plus_synthetic", "real_train"):
        assert 0 <= metrics[f"student_{key}_accuracy"] <= 1
        assert 0 <= metrics[f"student_full_{key}_accuracy"] <= 1
    assert metrics["prompt_leakage_rate"] == 0.0
    for key in ("distinct_2", "self_bleu", "vendi_score", "mmd2_to_real"):
        assert metrics[key] == metrics[key]  # not NaN
    assert (run_dir / "evaluate" / "embeddings.png").stat().st_size > 1000
    assert len(pd.read_csv(run_dir / "evaluate" / "sample_texts.csv")) >= 3
    assert summary["mlflow_run_id"]
    inputs = mlflow_dataset_inputs(data_dir, summary["mlflow_run_id"])
    rows = {context: n for context, (_, n) in inputs.items()}
    seeds = pd.read_parquet(run_dir / "ingest" / "seeds.parquet")
    assert rows == {"seed": len(seeds), "synthetic": len(kept)}  # what it learned from, made


@pytest.mark.integration
def test_text_flow_describes_labels_and_keeps_the_best_label_margins(
    one_thread, tmp_path, tiny_checkpoints, data_dir, monkeypatch
):
    calls: list[str] = []
    monkeypatch.setattr(fewgen, "sample_prompts", scripted_sampler(calls))
    path = text_config(
        tmp_path, tiny_checkpoints, data_dir, label_descriptions={"food": "posts about eating"}
    )
    config = yaml.safe_load(path.read_text())
    config["text_filter"].update(label_margin_keep=0.5, label_margin_score="generator")
    config["evaluate"]["student"] = "fast"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    food = [c for c in calls if 'label "food"' in c]
    assert food and all('Label "food" means: posts about eating.' in c for c in food)
    assert not any("means:" in c for c in calls if c not in food)
    cfg = load_config(path)
    run_dir = Path(cfg.run.data_dir) / "runs" / run_id_for(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counts"]["removed_low_label_margin"] >= 1
    kept = pd.read_parquet(run_dir / "filter" / "kept.parquet")
    assert kept["label_margin"].notna().all() and (kept["label_margin"] <= 0).all()
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["student_c"] in STUDENT_C_GRID
    assert metrics["student_gain_accuracy"] == pytest.approx(
        metrics["student_seeds_plus_synthetic_accuracy"] - metrics["student_seeds_accuracy"]
    )


@pytest.mark.integration  # runs the flow in process up to the failing ingest
def test_bad_text_column_is_a_clear_error(tmp_path, tiny_checkpoints, data_dir, capsys):
    """The CLI's own-process exit path is tested once, in test_pipeline.py; here the text
    ingest's message: it names the field, the missing column and the columns there are."""
    path = text_config(tmp_path, tiny_checkpoints, data_dir, text_column="body")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.text_column names column 'body'" in err and "tweet" in err
    assert "Traceback" not in err
    cfg = load_config(path)
    summary = json.loads(
        (Path(cfg.run.data_dir) / "runs" / run_id_for(cfg) / "summary.json").read_text()
    )
    assert summary["error"]["stage"] == "ingest"


@pytest.mark.integration  # runs the flow in process up to the failing generate stage
def test_generate_that_keeps_no_sample_fails_and_says_why(
    one_thread, tmp_path, tiny_checkpoints, data_dir, monkeypatch, capsys
):
    """A model that returns nothing usable (every sample cut short, as a cache passed under
    a name the installed transformers ignores did on the GPU machine) must fail the run at
    generate with the counts, not complete it with an empty synthetic set."""

    def cut_short(model, tokenizer, prompts, *, copies, generator, **kw):
        n = sum(copies)
        return Continuations(["cut sh"] * n, [False] * n, 4 * n, 4, sum(map(len, prompts)))

    monkeypatch.setattr(fewgen, "sample_prompts", cut_short)
    path = text_config(tmp_path, tiny_checkpoints, data_dir, seeds_per_label=3)
    assert main(["run", str(path)]) == 1  # a failed stage, as for any stage's failure
    err = capsys.readouterr().err
    assert "generate made 0 of 12 samples" in err and "unfinished" in err
    cfg = load_config(path)
    summary = json.loads(
        (Path(cfg.run.data_dir) / "runs" / run_id_for(cfg) / "summary.json").read_text()
    )
    assert summary["status"] == "failed" and summary["error"]["stage"] == "generate"


def test_text_method_without_text_column_fails_validation(
    tmp_path, tiny_checkpoints, data_dir, capsys
):
    path = text_config(tmp_path, tiny_checkpoints, data_dir)
    raw = yaml.safe_load(path.read_text())
    del raw["data"]["text_column"]
    path.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(path)]) == 2
    assert "data.text_column" in capsys.readouterr().err


REPO = Path(__file__).resolve().parent.parent
# per-method budget cuts: a handful of samples from each shipped config
SMALL_METHOD = {
    "cfg": ["method.sequences_per_label=2", "method.prompts_per_label=1"],
    "corrsynth": ["method.sequences_per_label=2", "method.prompts_per_label=1"],
    "bare": ["method.drafts_per_prompt=2"],
    # one cluster of 4 candidates per label fills a target of 2 (oversample 1)
    "synalign": [
        "method.samples_per_cluster=4",
        "method.oversample=1.0",
        "method.attribute_retries=1",
        "method.mmd_iterations=50",
    ],
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(SMALL_METHOD))
def test_shipped_text_config_runs_through_the_flow_on_real_models(one_thread, name, data_dir):
    """Each method's pipeline_configs/text_<method>.yaml, with the real SmolLM2 and MiniLM on
    real tweets (two labels, a cut budget): every stage completes, the samples carry the
    method's name, the filter accounts for every sample and the students are scored."""
    config = REPO / "pipeline_configs" / f"text_{name}.yaml"
    overrides = [
        "data.labels=[Twitter for Android, Twitter for iPhone]",
        "data.seeds_per_label=5",
        "data.test_per_label=20",
        "data.real_train_per_label=10",
        "generate.num_rows=4",
        "method.max_new_tokens=48",
        "tracking.experiment=text-tests",
        "run.device=cpu",
        *SMALL_METHOD[name],
    ]
    args = ["run", str(config), "--data-dir", str(data_dir), "--run-id", f"shipped-{name}"]
    for assignment in overrides:
        args += ["--set", assignment]
    assert main(args) == 0
    run_dir = data_dir / "runs" / f"shipped-{name}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == list(TEXT_STAGES)
    assert all(s["status"] == "completed" for s in summary["stages"])
    samples = pd.read_parquet(run_dir / "generate" / "samples.parquet")
    assert 1 <= len(samples) <= 4 and set(samples["method"]) == {name}
    assert set(samples["label"]) <= {"Twitter for Android", "Twitter for iPhone"}
    kept = pd.read_parquet(run_dir / "filter" / "kept.parquet")
    removed = sum(v for k, v in summary["counts"].items() if k.startswith("removed_"))
    assert len(kept) + removed == len(samples)
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    for key in ("seeds", "real_train"):
        assert 0 <= metrics[f"student_{key}_accuracy"] <= 1
    assert summary["mlflow_run_id"]


def test_fewgen_attribute_grid_asks_each_prompt_for_one_combination(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(fewgen, "sample_prompts", scripted_sampler(calls))
    table = topic_table()
    seeds = SeedSet(tuple(table["tweet"]), tuple(table["kind"]))
    grid = {"tone": ["calm", "angry"], "length": ["short"]}
    method = {"num_examples": 2, "samples_per_prompt": 6, "task": "posts", "attributes": grid}
    batch = fewgen.FewGenGenerator(method).generate(
        seeds, 10, models=ModelBox(lambda name: (None, None)), seed=0
    )
    asked = []
    for prompt in calls:
        tail = re.search(
            r"</text>\n\nTone of the next example: (\w+)\.\nLength of the next example: short\."
            r"\n<text>\n$",
            prompt,
        )
        assert tail, prompt[-120:]
        asked.append(tail.group(1))
    assert set(asked) <= {"calm", "angry"}
    assert all(s.info["attributes"]["length"] == "short" for s in batch.samples)
    assert {s.info["attributes"]["tone"] for s in batch.samples} <= {"calm", "angry"}
    plain: list[str] = []
    monkeypatch.setattr(fewgen, "sample_prompts", scripted_sampler(plain))
    fewgen.FewGenGenerator({**method, "attributes": {}}).generate(
        seeds, 10, models=ModelBox(lambda name: (None, None)), seed=0
    )
    assert not any("of the next example" in p for p in plain)
    with pytest.raises(ValueError, match="method.attributes.tone needs at least one"):
        fewgen.FewGenGenerator({**method, "attributes": {"tone": []}})
