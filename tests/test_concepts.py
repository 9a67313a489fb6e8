"""Concept extraction, the concept graph and the three combination levels on a tiny corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from synthloom.concepts.combine import coverage, sample_combinations, sample_label_combinations
from synthloom.concepts.extract import (
    extract_concepts_llm,
    extract_keyphrases,
    normalize_concept,
    parse_concept_list,
)
from synthloom.concepts.graph import (
    build_concept_graph,
    graph_from_tables,
    graph_stats,
    graph_to_tables,
    plot_degree_distribution,
    write_graphml,
)

# five documents' concepts: a chain of documents linked by one shared concept each
DOCS = [
    ["solar power", "battery", "grid"],
    ["battery", "electric car"],
    ["electric car", "highway", "traffic"],
    ["traffic", "city planning"],
    ["grid", "city planning", "solar power"],
]


def test_graph_nodes_edges_and_weights() -> None:
    graph = build_concept_graph(DOCS)
    assert graph.number_of_nodes() == 7
    assert graph.nodes["battery"]["doc_freq"] == 2
    assert graph.nodes["battery"]["documents"] == [0, 1]
    assert graph["solar power"]["grid"]["weight"] == 2  # together in documents 0 and 4
    assert graph["battery"]["grid"]["weight"] == 1
    assert not graph.has_edge("battery", "traffic")
    assert graph.number_of_edges() == 3 + 1 + 3 + 1 + 3 - 1  # (grid, solar power) counted once
    stats = graph_stats(graph, top=3)
    assert stats["components"] == 1 and stats["largest_component"] == 7
    assert stats["top_concepts"][0] == ["battery", 2]


def test_graph_round_trips_through_tables_and_graphml(tmp_path: Path) -> None:
    graph = build_concept_graph(DOCS)
    nodes, edges = graph_to_tables(graph)
    nodes.to_parquet(tmp_path / "nodes.parquet")
    edges.to_parquet(tmp_path / "edges.parquet")
    import pandas as pd

    again = graph_from_tables(
        pd.read_parquet(tmp_path / "nodes.parquet"), pd.read_parquet(tmp_path / "edges.parquet")
    )
    assert nx.utils.graphs_equal(graph, again)
    assert again.nodes["grid"]["documents"] == [0, 4]
    loaded = nx.read_graphml(write_graphml(graph, tmp_path / "g.graphml"))
    assert loaded["solar power"]["grid"]["weight"] == 2
    assert plot_degree_distribution(graph, tmp_path / "deg.png").stat().st_size > 0


@pytest.mark.parametrize("level", [1, 2, 3])
def test_each_level_draws_what_it_promises(level: int) -> None:
    graph = build_concept_graph(DOCS)
    doc_sets = [set(d) for d in DOCS]
    draw = sample_combinations(
        DOCS, graph, 60, rng=np.random.default_rng(level), level_mix={level: 1.0}, max_concepts=3
    )
    assert draw.counts[f"level{level}"] == len(draw.combinations) == 60
    for combo in draw.combinations:
        assert combo.level == level
        concepts = set(combo.concepts)
        assert len(concepts) == len(combo.concepts)
        inside = [i for i, s in enumerate(doc_sets) if concepts <= s]
        if level == 1:
            assert combo.concepts == tuple(DOCS[combo.documents[0]][:3])
        elif level == 2:
            assert combo.documents[0] in inside and len(concepts) >= 2
        else:
            assert inside == [], f"{combo.concepts} co-occur in document {inside}"
            assert 2 <= len(concepts) <= 3
            # the walk went along co-occurrence edges: the concepts form a connected subgraph
            assert nx.is_connected(graph.subgraph(concepts))
            assert set(combo.documents) == {
                d for c in concepts for d in graph.nodes[c]["documents"]
            }


def test_level_mix_and_unavailable_level3() -> None:
    graph = build_concept_graph(DOCS)
    draw = sample_combinations(
        DOCS, graph, 400, rng=np.random.default_rng(0), level_mix={1: 1, 2: 1, 3: 2}
    )
    levels = Counter(c.level for c in draw.combinations)
    assert abs(levels[3] / 400 - 0.5) < 0.08 and abs(levels[1] / 400 - 0.25) < 0.08
    # one document alone: every concept set co-occurs in it, so level 3 is impossible
    lonely = [["a", "b", "c"]]
    draw = sample_combinations(
        lonely, build_concept_graph(lonely), 5, rng=np.random.default_rng(0), level_mix={3: 1}
    )
    assert draw.combinations == [] and draw.counts["level3_unavailable"] == 5


def test_label_combinations_split_the_draws_and_stay_inside_each_label() -> None:
    labels = ["a", "a", "b", "b", "b"]
    draw = sample_label_combinations(
        DOCS, labels, 11, rng=np.random.default_rng(0), level_mix={1: 1, 2: 1}
    )
    by_label = Counter(c.label for c in draw.combinations)
    assert by_label == {"a": 6, "b": 5}  # 11 over 2 labels: the first (sorted) gets the extra
    for combo in draw.combinations:
        assert all(labels[d] == combo.label for d in combo.documents)
        assert set(combo.concepts) <= set().union(*(DOCS[d] for d in combo.documents))
    assert draw.counts["level1"] + draw.counts["level2"] == 11
    # the same draws as the per-label loop it replaces: one graph per label, one rng
    rng = np.random.default_rng(0)
    loop = []
    for label in ("a", "b"):
        own = [c if lab == label else [] for c, lab in zip(DOCS, labels, strict=True)]
        quota = 6 if label == "a" else 5
        loop += sample_combinations(
            DOCS,
            build_concept_graph(own),
            quota,
            rng=rng,
            level_mix={1: 1, 2: 1},
            documents=[i for i, lab in enumerate(labels) if lab == label],
            label=label,
        ).combinations
    assert loop == draw.combinations


def test_shared_concepts_write_every_labels_topics_under_every_label() -> None:
    labels = ["a", "a", "b", "b", "b"]
    kwargs = dict(rng=np.random.default_rng(0), level_mix={1: 1, 2: 1, 3: 1}, min_concepts=1)
    own = sample_label_combinations(DOCS, labels, 200, **kwargs)
    kwargs["rng"] = np.random.default_rng(0)
    shared = sample_label_combinations(DOCS, labels, 200, shared_concepts=True, **kwargs)
    drawn = sum(shared.counts[k] for k in ("level1", "level2", "level3", "level3_unavailable"))
    assert drawn == 200 and len(shared.combinations) == 200 - shared.counts["level3_unavailable"]
    for label in ("a", "b"):
        used = {d for c in own.combinations if c.label == label for d in c.documents}
        assert {labels[d] for d in used} == {label}  # per label: its own documents only
        pooled = {d for c in shared.combinations if c.label == label for d in c.documents}
        assert {labels[d] for d in pooled} == {"a", "b"}  # shared: both labels' documents
    for combo in shared.combinations:
        assert set(combo.concepts) <= set().union(*(DOCS[d] for d in combo.documents))
    # label a's own walks stay on its two documents' concepts; shared walks reach label b's
    b_only = set().union(*(DOCS[d] for d in (2, 3, 4))) - set(DOCS[0]) - set(DOCS[1])
    assert not any(set(c.concepts) & b_only for c in own.combinations if c.label == "a")
    assert any(set(c.concepts) & b_only for c in shared.combinations if c.label == "a")


def test_coverage_counts_nodes_and_edges() -> None:
    graph = build_concept_graph(DOCS)
    draw = sample_combinations(DOCS, graph, 1, rng=np.random.default_rng(0), level_mix={1: 1})
    cov = coverage(draw.combinations, graph)
    doc = DOCS[draw.combinations[0].documents[0]]
    assert cov["nodes_used"] == len(doc)
    assert cov["node_coverage"] == pytest.approx(len(doc) / 7)
    assert cov["edges_used"] == len(doc) * (len(doc) - 1) / 2
    full = sample_combinations(DOCS, graph, 300, rng=np.random.default_rng(0), level_mix={1: 1})
    assert coverage(full.combinations, graph)["edge_coverage"] == 1.0


def test_parse_and_normalize() -> None:
    assert normalize_concept("  The Solar   Power. ") == "solar power"
    text = 'Sure! ["Solar power", "the Grid", "grid", 3]'
    assert parse_concept_list(text, 5) is None  # a number in the list: invalid
    assert parse_concept_list('x ["Solar power", "the Grid", "grid"] y', 5) == [
        "solar power",
        "grid",
    ]
    assert parse_concept_list('[] then ["a", "b", "c"]', 2) == ["a", "b"]
    assert parse_concept_list("no list here", 5) is None


def test_llm_extraction_retries_then_drops_and_counts() -> None:
    calls: list[int] = []
    replies = {
        "alpha": iter(['["Alpha topic", "beta"]']),  # valid at once
        "gamma": iter(["not json", '["gamma"]']),  # valid on the first retry
        "delta": iter(["nope", "[1, 2]", "still nope"]),  # never valid: dropped
    }

    def fake_llm(prompts: list[str]) -> list[str]:
        calls.append(len(prompts))
        return [next(replies[p.rsplit("Text: ", 1)[1]]) for p in prompts]

    result = extract_concepts_llm(["alpha", "gamma", "delta"], fake_llm, max_retries=2)
    assert result.concepts == [["alpha topic", "beta"], ["gamma"], []]
    assert result.counts["invalid_outputs"] == 4
    assert result.counts["dropped_documents"] == 1
    assert result.counts["retried_documents"] == 3  # gamma + delta, then delta
    assert result.counts["llm_calls"] == 6 and calls == [3, 2, 1]


def test_keyphrases_are_deterministic_and_shared() -> None:
    docs = [
        "Solar panels charge the battery of an electric car.",
        "The electric car market grows as battery prices fall.",
        "Traffic jams slow every electric car on the highway.",
        "City planning reduces traffic on the highway.",
    ]
    first = extract_keyphrases(docs, max_concepts=3, min_df=2)
    assert first.concepts == extract_keyphrases(docs, max_concepts=3, min_df=2).concepts
    assert all(1 <= len(c) <= 3 for c in first.concepts)
    flat = Counter(c for cs in first.concepts for c in cs)
    assert all(n >= 2 for n in flat.values())  # min_df=2: every concept links documents
    assert "electric car" in flat and "car" not in first.concepts[0]  # bigram subsumes unigram


def test_llm_completer_on_a_tiny_model_counts_every_outcome(one_thread) -> None:

    from synthloom.concepts.extract import llm_completer
    from synthloom.models.tiny import tiny_causal_lm

    model, tokenizer = tiny_causal_lm(0)
    complete = llm_completer(model, tokenizer, temperature=1.0, max_new_tokens=8, seed=0)
    outputs = complete(["first document", "second document"])
    assert len(outputs) == 2 and all(o.startswith('["') for o in outputs)  # JSON start forced
    result = extract_concepts_llm(["a text", "b text"], complete, max_retries=1)
    counts = result.counts
    kept = sum(1 for c in result.concepts if c)
    assert kept + counts["dropped_documents"] == 2
    assert counts["llm_calls"] == 2 + counts["retried_documents"]
    assert counts["invalid_outputs"] == counts["retried_documents"] + counts["dropped_documents"]
