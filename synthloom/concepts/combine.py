"""Concept combinations at three levels (SynthLLM, arXiv 2503.19551, step 2).

- level 1: one document: its concepts (up to `max_concepts`), and the document itself is
  the prompt's reference;
- level 2: several concepts of one document: a random subset of `min_concepts`..
  `max_concepts` of its concepts (at least 2 when it has 2), no reference document;
- level 3 (reconstructed; the paper names a graph random walk): a weighted random walk on the
  concept graph: the start concept drawn in proportion to its document frequency, each step
  to a neighbour in proportion to the co-occurrence weight (a visited concept adds nothing),
  until `k` distinct concepts are collected (k >= 3: two concepts joined by an edge co-occurred
  in a document by definition, so a pair can never qualify). The walk is accepted only when NO single
  document holds all `k` concepts (the intersection of their document sets is empty): every
  consecutive pair co-occurred somewhere, the combination as a whole never did. Up to
  `max_walks` walks are tried; when none qualifies the sample is not drawn and counted
  (`level3_unavailable`).

`sample_combinations` draws the level of each sample from `level_mix` (weights normalised).
`sample_label_combinations` spreads `num` draws evenly over the labels (the first
`num % labels` labels, sorted, get one more), each label's from a graph of its own documents,
or, with `shared_concepts`, every label's from one graph of ALL the documents: a topic of
one label's seeds is then written under every label, so topic and label are not tied
(ours; a student that learns "this topic means this label" from the samples learns what the
real data does not hold).
Each `Combination` records its concepts, level, the documents it came from and its label.
`coverage` = the share of graph nodes and edges that a set of combinations uses (an edge is
used when both of its concepts appear in one combination).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from synthloom.concepts.graph import build_concept_graph


@dataclass(frozen=True)
class Combination:
    concepts: tuple[str, ...]
    level: int
    documents: tuple[int, ...]
    label: str | None = None


@dataclass
class CombinationDraw:
    combinations: list[Combination]
    counts: dict[str, int] = field(default_factory=dict)


def sample_combinations(
    doc_concepts: Sequence[Sequence[str]],
    graph: nx.Graph,
    num: int,
    *,
    rng: np.random.Generator,
    level_mix: Mapping[int, float],
    min_concepts: int = 2,
    max_concepts: int = 4,
    documents: Sequence[int] | None = None,
    label: str | None = None,
    max_walks: int = 50,
) -> CombinationDraw:
    """`num` draws (some may be unavailable, see the module docstring) from the documents
    `documents` (default all) and the graph built from them."""
    assert 1 <= min_concepts <= max_concepts
    pool = [d for d in (documents if documents is not None else range(len(doc_concepts)))]
    usable = [d for d in pool if len(set(doc_concepts[d])) > 0]
    levels = sorted(k for k, w in level_mix.items() if w > 0)
    weights = np.array([level_mix[k] for k in levels], dtype=float)
    weights /= weights.sum()
    concept_docs = {n: set(graph.nodes[n]["documents"]) for n in graph.nodes}
    out: list[Combination] = []
    counts = {"level1": 0, "level2": 0, "level3": 0, "level3_unavailable": 0, "no_documents": 0}
    for _ in range(num):
        level = int(rng.choice(levels, p=weights))
        if not usable:
            counts["no_documents"] += 1
            continue
        if level in (1, 2):
            doc = int(usable[rng.integers(len(usable))])
            concepts = list(dict.fromkeys(doc_concepts[doc]))
            if level == 1:
                chosen = concepts[:max_concepts]
            else:
                k = int(
                    rng.integers(
                        min(min_concepts, len(concepts)), min(max_concepts, len(concepts)) + 1
                    )
                )
                picked = sorted(rng.choice(len(concepts), size=k, replace=False).tolist())
                chosen = [concepts[i] for i in picked]
            out.append(Combination(tuple(chosen), level, (doc,), label))
            counts[f"level{level}"] += 1
            continue
        k = int(rng.integers(max(min_concepts, 3), max(max_concepts, 3) + 1))
        walk = _cross_document_walk(graph, concept_docs, k, rng, max_walks)
        if walk is None:
            counts["level3_unavailable"] += 1
            continue
        docs = sorted(set().union(*(concept_docs[c] for c in walk)))
        out.append(Combination(tuple(walk), 3, tuple(docs), label))
        counts["level3"] += 1
    return CombinationDraw(out, counts)


def sample_label_combinations(
    doc_concepts: Sequence[Sequence[str]],
    labels: Sequence[str],
    num: int,
    *,
    rng: np.random.Generator,
    level_mix: Mapping[int, float],
    min_concepts: int = 2,
    max_concepts: int = 4,
    max_walks: int = 50,
    shared_concepts: bool = False,
) -> CombinationDraw:
    """`num` draws spread evenly over the labels (see the module docstring); the counts are
    summed over the labels. `shared_concepts`: every label draws from all the documents."""
    names = sorted(set(labels))
    out = CombinationDraw([], {})
    shared_graph = build_concept_graph(doc_concepts) if shared_concepts else None
    for i, label in enumerate(names):
        quota = num // len(names) + (i < num % len(names))
        if shared_graph is not None:
            graph, documents = shared_graph, list(range(len(labels)))
        else:
            own = [c if lab == label else [] for c, lab in zip(doc_concepts, labels, strict=True)]
            graph = build_concept_graph(own)
            documents = [d for d, lab in enumerate(labels) if lab == label]
        draw = sample_combinations(
            doc_concepts,
            graph,
            quota,
            rng=rng,
            level_mix=level_mix,
            min_concepts=min_concepts,
            max_concepts=max_concepts,
            documents=documents,
            label=label,
            max_walks=max_walks,
        )
        out.combinations.extend(draw.combinations)
        for key, n in draw.counts.items():
            out.counts[key] = out.counts.get(key, 0) + n
    return out


def _cross_document_walk(
    graph: nx.Graph,
    concept_docs: Mapping[str, set[int]],
    k: int,
    rng: np.random.Generator,
    max_walks: int,
) -> list[str] | None:
    """A weighted walk collecting k distinct concepts that no single document holds together."""
    nodes = [n for n in sorted(graph.nodes) if graph.degree(n) > 0]
    if len(nodes) < k:
        return None
    start_p = np.array([graph.nodes[n]["doc_freq"] for n in nodes], dtype=float)
    start_p /= start_p.sum()
    for _ in range(max_walks):
        current = nodes[int(rng.choice(len(nodes), p=start_p))]
        visited = [current]
        shared = set(concept_docs[current])
        for _step in range(8 * k):
            neighbours = sorted(graph.neighbors(current))
            w = np.array([graph.edges[current, n]["weight"] for n in neighbours], dtype=float)
            current = neighbours[int(rng.choice(len(neighbours), p=w / w.sum()))]
            if current in visited:
                continue
            visited.append(current)
            shared &= concept_docs[current]
            if len(visited) == k:
                break
        if len(visited) == k and not shared:
            return visited
    return None


def coverage(combinations: Sequence[Combination], graph: nx.Graph) -> dict[str, float]:
    """Share of the graph's nodes and edges that `combinations` use, and the counts."""
    nodes: set[str] = set()
    edges: set[tuple[str, str]] = set()
    for combo in combinations:
        present = [c for c in combo.concepts if c in graph]
        nodes.update(present)
        for a, b in itertools.combinations(sorted(set(present)), 2):
            if graph.has_edge(a, b):
                edges.add((a, b))
    n_nodes, n_edges = graph.number_of_nodes(), graph.number_of_edges()
    return {
        "node_coverage": len(nodes) / n_nodes if n_nodes else 0.0,
        "edge_coverage": len(edges) / n_edges if n_edges else 0.0,
        "nodes_used": float(len(nodes)),
        "edges_used": float(len(edges)),
    }
