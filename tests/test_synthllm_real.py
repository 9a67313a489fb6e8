"""SynthLLM end to end on real tweets and the real SmolLM2-135M / MiniLM models (a handful of
samples), plus prompt construction and generation on the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from synthloom.concepts.combine import Combination
from synthloom.concepts.generate import (
    SeedDocuments,
    combination_prompt,
    combination_prompts,
    generate_from_combinations,
)
from synthloom.methods.text.prompts import OPEN

SEEDS = SeedDocuments(
    texts=["Solar panels charge the car battery.", "Traffic on the highway again.", "Grid news."],
    labels=["pos", "neg", "pos"],
    concepts=[["solar panels", "battery"], ["traffic", "highway"], ["grid"]],
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_prompt_shows_label_examples_and_the_combination() -> None:
    combo = Combination(("battery", "grid", "traffic"), 3, (0, 1, 2), "pos")
    prompt = combination_prompt(
        combo, SEEDS, output="labelled", task="notes", num_examples=2, rng=np.random.default_rng(0)
    )
    assert prompt.endswith(f"Concepts: battery, grid, traffic\n{OPEN}\n")
    assert 'label "pos"' in prompt and "Traffic on the highway" not in prompt  # other label
    level1 = Combination(("traffic", "highway"), 1, (1,), "neg")
    first = combination_prompt(
        level1, SEEDS, output="labelled", task="notes", num_examples=1, rng=np.random.default_rng(0)
    )
    assert "Traffic on the highway again." in first  # level 1 shows its source document
    # another label's document (concept_source: all): its concepts, never its text
    foreign = Combination(("traffic", "highway"), 1, (1,), "pos")
    shared = combination_prompt(
        foreign,
        SEEDS,
        output="labelled",
        task="notes",
        num_examples=2,
        rng=np.random.default_rng(0),
    )
    assert "Traffic on the highway" not in shared
    assert shared.endswith(f"Concepts: traffic, highway\n{OPEN}\n")
    assert "Solar panels charge the car battery." in shared and "Grid news." in shared


def test_labelled_prompt_says_what_the_label_means_when_described() -> None:
    described = SeedDocuments(
        SEEDS.texts, SEEDS.labels, SEEDS.concepts, {"pos": "good news about energy."}
    )
    combo = Combination(("battery", "grid"), 2, (0,), "pos")
    rng = np.random.default_rng(0)
    prompt = combination_prompt(
        combo, described, output="labelled", task="notes", num_examples=1, rng=rng
    )
    assert 'Label "pos" means: good news about energy.\n' in prompt
    plain = combination_prompt(
        combo, SEEDS, output="labelled", task="notes", num_examples=1, rng=np.random.default_rng(0)
    )
    assert "means:" not in plain
    assert prompt.replace('Label "pos" means: good news about energy.\n', "") == plain
    other = Combination(("traffic", "highway"), 2, (1,), "neg")  # undescribed label
    assert "means:" not in combination_prompt(
        other, described, output="labelled", task="notes", num_examples=1, rng=rng
    )


def test_auto_token_budget_follows_the_seed_lengths() -> None:
    from synthloom.methods.text.prompts import token_budget
    from synthloom.models.tiny import tiny_causal_lm

    model, tokenizer = tiny_causal_lm(0)
    combos = [Combination(("battery", "grid"), 2, (0,), "pos")] * 2
    kwargs = dict(
        output="document",
        task="notes",
        num_examples=1,
        temperature=1.0,
        top_p=1.0,
        batch_size=2,
        seed=0,
    )
    auto = generate_from_combinations(
        combos, SEEDS, model, tokenizer, max_new_tokens="auto", **kwargs
    )
    budget = token_budget(tokenizer, SEEDS.texts, "auto")
    fixed = generate_from_combinations(
        combos, SEEDS, model, tokenizer, max_new_tokens=budget, **kwargs
    )
    assert auto.rows == fixed.rows and auto.generated_tokens == fixed.generated_tokens
    assert fixed.generated_tokens <= 2 * budget


def test_seed_openers_end_each_labelled_prompt_with_a_seed_of_its_label() -> None:
    combos = [Combination(("battery", "grid"), 2, (0,), "pos")] * 6 + [
        Combination(("traffic",), 2, (1,), "neg")
    ] * 3
    kwargs = dict(output="labelled", task="notes", num_examples=1, seed=0)
    with_openers = combination_prompts(combos, SEEDS, seed_openers=2, **kwargs)
    plain = combination_prompts(combos, SEEDS, **kwargs)
    allowed = {"pos": {"Solar panels", "Grid news."}, "neg": {"Traffic on"}}
    for combo, (prompt, opener), (plain_prompt, none) in zip(
        combos, with_openers, plain, strict=True
    ):
        assert opener in allowed[combo.label] and none == ""
        assert prompt == plain_prompt + opener  # the same examples, the opener appended
    assert {o for _, o in with_openers[:6]} == allowed["pos"]  # both pos seeds get drawn
    document = combination_prompts(
        combos, SEEDS, **{**kwargs, "output": "document"}, seed_openers=2
    )
    assert all(opener == "" for _, opener in document)  # openers are per label


def test_run_generator_runs_synthllm_from_a_seeds_frame() -> None:
    from synthloom.config import PipelineConfig
    from synthloom.methods.text.base import ModelBox
    from synthloom.methods.text.runner import run_generator
    from synthloom.models.tiny import tiny_causal_lm

    method = PipelineConfig.model_validate(
        {
            "data": {"source": "x.csv", "text_column": "text", "target": "label"},
            "method": {
                "name": "synthllm",
                "keyphrase_min_df": 1,
                "max_new_tokens": 8,
                "level_mix": {"level1": 1, "level2": 1, "level3": 0},  # 3 docs: no walks
            },
            "generate": {"num_rows": 6},
        }
    ).model_dump(mode="json")["method"]
    seeds = pd.DataFrame({"text": list(SEEDS.texts), "label": list(SEEDS.labels)})
    frame, stats = run_generator(
        method,
        seeds,
        6,
        ModelBox(lambda name: tiny_causal_lm(0)),
        seed=0,
        label_descriptions={"pos": "good news"},
    )
    assert list(frame.columns) == ["text", "label", "method", "model", "sample_index", "info"]
    assert stats["metrics"]["sampled"] == 6  # 3 combinations per label
    assert stats["decoder_dtypes"] == {"smollm2-135m-instruct": "float32"}  # as other methods
    assert len(frame) + stats["counts"]["unfinished"] + stats["counts"]["empty"] == 6
    assert set(frame["label"]) <= {"pos", "neg"} and (frame["method"] == "synthllm").all()
    for info in frame["info"]:
        assert {"level", "concepts", "documents"} <= set(json.loads(info))


def test_generation_records_concepts_and_level_with_a_tiny_model() -> None:
    from synthloom.models.tiny import tiny_causal_lm

    model, tokenizer = tiny_causal_lm(0)
    combos = [Combination(("battery", "grid"), 2, (0,), "pos")] * 3
    out = generate_from_combinations(
        combos,
        SEEDS,
        model,
        tokenizer,
        output="document",
        task="notes",
        num_examples=1,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=6,
        batch_size=2,
        seed=0,
    )
    assert len(out.rows) + out.counts["unfinished"] + out.counts["empty"] == 3
    assert out.generated_tokens > 0 and out.forward_passes >= 2  # two batches
    for row in out.rows:
        assert row["concepts"] == ["battery", "grid"] and row["level"] == 2


@pytest.mark.integration
def test_synthllm_pipeline_on_real_tweets(tmp_path: Path) -> None:
    from cli.main import main

    config = yaml.safe_load(Path("pipeline_configs/synthllm_text.yaml").read_text())
    config["data"] |= {"seeds_per_label": 20, "test_per_label": 30, "real_train_per_label": 30}
    config["generate"]["num_rows"] = 8
    config["method"] |= {"max_new_tokens": 32, "batch_size": 8}
    config["evaluate"] = {"mauve": False, "plots": False, "self_bleu_samples": 8}
    config["tracking"] = {"experiment": "synthllm-tests"}
    config["run"] = {"data_dir": str(tmp_path / "data"), "device": "cpu"}
    path = tmp_path / "synthllm.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--run-id", "s1"]) == 0

    run_dir = tmp_path / "data" / "runs" / "s1"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["completed"] * 7
    stats = json.loads((run_dir / "build_graph" / "graph_stats.json").read_text())
    assert stats["nodes"] > 10 and stats["edges"] > 0 and summary["top_concepts"]
    combos = pd.read_parquet(run_dir / "sample_combinations" / "combinations.parquet")
    assert len(combos) >= 6 and set(combos["level"]) <= {1, 2, 3}
    samples = pd.read_parquet(run_dir / "generate" / "samples.parquet")
    assert len(samples) >= 1 and samples["text"].str.len().min() > 0
    assert {"level", "concepts", "documents"} <= set(samples.columns)
    metrics = summary["metrics"]
    assert 0 < metrics["sampled_node_coverage"] <= 1 and 0 < metrics["sampled_edge_coverage"] <= 1
    assert metrics["build_graph_nodes"] == stats["nodes"]
    assert (run_dir / "build_graph" / "graph.graphml").is_file()
    assert (run_dir / "build_graph" / "degree_distribution.png").stat().st_size > 0
    assert summary["mlflow_run_id"]
