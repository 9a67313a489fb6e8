"""The concept graph (SynthLLM, arXiv 2503.19551): concepts linked by co-occurrence.

Nodes: normalised concepts, attribute `doc_freq` = number of documents that hold the concept.
Edges: two concepts that appear in the same document; attribute `weight` = number of documents
holding both. Stored as two Parquet tables (nodes: concept, doc_freq, documents; edges:
source, target, weight, sorted) and as GraphML (doc_freq and weight only).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd


def build_concept_graph(doc_concepts: Sequence[Sequence[str]]) -> nx.Graph:
    """Graph of the concepts of every document (see the module docstring).

    Node attribute `documents` lists the indices of the documents holding the concept."""
    graph = nx.Graph()
    pair_counts: Counter[tuple[str, str]] = Counter()
    for doc, concepts in enumerate(doc_concepts):
        unique = sorted(set(concepts))
        for concept in unique:
            if concept not in graph:
                graph.add_node(concept, doc_freq=0, documents=[])
            graph.nodes[concept]["doc_freq"] += 1
            graph.nodes[concept]["documents"].append(doc)
        pair_counts.update(itertools.combinations(unique, 2))
    for (a, b), count in pair_counts.items():
        graph.add_edge(a, b, weight=count)
    return graph


def graph_to_tables(graph: nx.Graph) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, edges) frames, sorted by concept / (source, target) for stable files."""
    nodes = pd.DataFrame(
        [
            {"concept": n, "doc_freq": int(d["doc_freq"]), "documents": list(d["documents"])}
            for n, d in graph.nodes(data=True)
        ],
        columns=["concept", "doc_freq", "documents"],
    )
    edges = pd.DataFrame(
        [
            {"source": min(a, b), "target": max(a, b), "weight": int(d["weight"])}
            for a, b, d in graph.edges(data=True)
        ],
        columns=["source", "target", "weight"],
    )
    return (
        nodes.sort_values("concept").reset_index(drop=True),
        edges.sort_values(["source", "target"]).reset_index(drop=True),
    )


def graph_from_tables(nodes: pd.DataFrame, edges: pd.DataFrame) -> nx.Graph:
    graph = nx.Graph()
    for row in nodes.itertuples(index=False):
        graph.add_node(
            row.concept, doc_freq=int(row.doc_freq), documents=[int(d) for d in row.documents]
        )
    for row in edges.itertuples(index=False):
        graph.add_edge(row.source, row.target, weight=int(row.weight))
    return graph


def write_graphml(graph: nx.Graph, path: str | Path) -> Path:
    """GraphML with doc_freq per node and weight per edge (document lists left out)."""
    plain = nx.Graph()
    plain.add_nodes_from((n, {"doc_freq": int(d["doc_freq"])}) for n, d in graph.nodes(data=True))
    plain.add_edges_from((a, b, {"weight": int(d["weight"])}) for a, b, d in graph.edges(data=True))
    path = Path(path)
    nx.write_graphml(plain, path)
    return path


def graph_stats(graph: nx.Graph, top: int = 20) -> dict[str, Any]:
    """Size, degree summary, connected components and the `top` concepts by doc_freq."""
    degrees = np.array([d for _, d in graph.degree()], dtype=float)
    components = sorted((len(c) for c in nx.connected_components(graph)), reverse=True)
    ranked = sorted(graph.nodes(data=True), key=lambda nd: (-nd[1]["doc_freq"], nd[0]))
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "components": len(components),
        "largest_component": components[0] if components else 0,
        "largest_component_share": components[0] / graph.number_of_nodes() if components else 0.0,
        "mean_degree": float(degrees.mean()) if degrees.size else 0.0,
        "max_degree": int(degrees.max()) if degrees.size else 0,
        "isolated_nodes": int((degrees == 0).sum()),
        "density": float(nx.density(graph)) if graph.number_of_nodes() > 1 else 0.0,
        "top_concepts": [[n, int(d["doc_freq"])] for n, d in ranked[:top]],
    }


def plot_degree_distribution(graph: nx.Graph, path: str | Path) -> Path:
    """Histogram of node degrees (log-count axis) and the doc_freq rank plot, one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    degrees = [d for _, d in graph.degree()]
    if degrees:
        left.hist(degrees, bins=min(40, max(degrees) + 1), color="#1f77b4")
        left.set_yscale("log")
    left.set_xlabel("degree (co-occurring concepts)")
    left.set_ylabel("concepts")
    left.set_title(f"{graph.number_of_nodes()} concepts, {graph.number_of_edges()} edges")
    freq = sorted((d["doc_freq"] for _, d in graph.nodes(data=True)), reverse=True)
    if freq:
        right.loglog(np.arange(1, len(freq) + 1), freq, color="#ff7f0e")
    right.set_xlabel("concept rank")
    right.set_ylabel("documents holding it")
    right.set_title("document frequency by rank")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100)
    return path
