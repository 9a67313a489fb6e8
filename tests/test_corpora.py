"""Offline code and tool-spec corpora built from the standard library (synthloom.corpora)."""

from __future__ import annotations

import ast
import json

import pandas as pd
import pytest

from synthloom.corpora import (
    CODE_COLUMNS,
    DEFAULT_TOOL_MODULES,
    TOOL_COLUMNS,
    TOOL_SPEC_KEYS,
    main,
    stdlib_functions,
    stdlib_tool_specs,
    tool_spec_json,
    write_corpus,
)
from synthloom.ingest.inference import prepare_seed_table
from synthloom.ingest.sources import load_source
from synthloom.metrics.tools import tool_spec_errors


@pytest.fixture(scope="module")
def code_corpus() -> pd.DataFrame:
    return stdlib_functions()  # the full scan, a few seconds


@pytest.fixture(scope="module")
def tool_corpus() -> pd.DataFrame:
    return stdlib_tool_specs()


def test_code_corpus_is_large_clean_and_unique(code_corpus):
    assert tuple(code_corpus.columns) == CODE_COLUMNS
    assert len(code_corpus) > 1000
    assert code_corpus["code"].is_unique
    assert code_corpus["lines"].between(3, 30).all()
    assert (code_corpus["code"].str.len() <= 1200).all()
    for code, lines in zip(code_corpus["code"], code_corpus["lines"], strict=True):
        ast.parse(code)
        assert code.startswith(("def ", "async def ", "@")), code[:40]
        assert code.endswith("\n") and not code.endswith("\n\n")
        assert code.count("\n") == lines
    modules = set(code_corpus["module"])
    assert "json" in modules and "email.utils" in modules
    assert not any(m.split(".")[0] in {"test", "idlelib", "lib2to3", "tkinter"} for m in modules)
    assert not any(".test." in f".{m}." or ".tests." in f".{m}." for m in modules)


def test_code_corpus_keeps_decorators_and_async(code_corpus):
    decorated = code_corpus[code_corpus["code"].str.startswith("@")]
    assert len(decorated) > 0
    for code, name in zip(decorated["code"].head(20), decorated["name"].head(20), strict=True):
        fn = ast.parse(code).body[0]
        assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.decorator_list
        assert fn.name == name
    assert code_corpus["code"].str.startswith("async def ").any()


def test_code_corpus_known_function(code_corpus):
    row = code_corpus[(code_corpus["module"] == "heapq") & (code_corpus["name"] == "heappush")]
    assert len(row) == 1 and row["lines"].iloc[0] == 4
    assert row["code"].iloc[0] == (
        "def heappush(heap, item):\n"
        '    """Push item onto heap, maintaining the heap invariant."""\n'
        "    heap.append(item)\n"
        "    _siftdown(heap, 0, len(heap)-1)\n"
    )


def test_code_corpus_filters(tmp_path):
    # A small fake stdlib: nested functions and methods excluded, test dir and bad file skipped.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(
        "import functools\n\n@functools.cache\ndef a(x):\n    def inner():\n"
        "        return 1\n    return x\n\nclass C:\n    def m(self):\n        return 1\n"
    )
    (tmp_path / "pkg" / "mod.py").write_text(
        "async def b(x):\n    y = 'é'\n    return y  # é\n\ndef short(): return 1\n"
        "\ndef b2(x):\n    y = 'é'\n    return y  # é\n"  # same body, other name: kept
        "\nasync def b(x):\n    y = 'é'\n    return y  # é\n",  # identical: dropped
        encoding="utf-8",
    )
    (tmp_path / "test" / "t.py").write_text("def t():\n    pass\n    pass\n")
    (tmp_path / "broken.py").write_text("def broken(:\n")
    frame = stdlib_functions(root=tmp_path)
    assert frame[["module", "name", "lines"]].values.tolist() == [
        ["pkg", "a", 5],
        ["pkg.mod", "b", 3],
        ["pkg.mod", "b2", 3],
    ]
    assert frame["code"].iloc[0].startswith("@functools.cache\ndef a(x):")
    assert frame["code"].iloc[1] == "async def b(x):\n    y = 'é'\n    return y  # é\n"
    assert stdlib_functions(root=tmp_path, max_lines=4)["name"].tolist() == ["b", "b2"]
    assert stdlib_functions(root=tmp_path, max_chars=30).empty


def test_code_corpus_seeded_sample(tmp_path):
    body = "\n".join(f"def f{i}(x):\n    y = x + {i}\n    return y\n" for i in range(30))
    (tmp_path / "m.py").write_text(body)
    full = stdlib_functions(root=tmp_path)
    assert len(full) == 30
    a = stdlib_functions(root=tmp_path, limit=10, seed=1)
    pd.testing.assert_frame_equal(a, stdlib_functions(root=tmp_path, limit=10, seed=1))
    assert len(a) == 10 and a.index.tolist() == list(range(10))
    positions = [int(name[1:]) for name in a["name"]]
    assert positions == sorted(positions)  # original order kept
    assert not stdlib_functions(root=tmp_path, limit=10, seed=2)["name"].equals(a["name"])
    assert len(stdlib_functions(root=tmp_path, limit=100)) == 30
    with pytest.raises(ValueError):
        stdlib_functions(root=tmp_path, limit=-1)


def test_tool_specs_all_valid(tool_corpus):
    assert tuple(tool_corpus.columns) == TOOL_COLUMNS
    assert len(tool_corpus) > 400
    assert tool_corpus["tool_name"].nunique() >= 35
    assert set(tool_corpus["tool_name"]) <= set(DEFAULT_TOOL_MODULES)
    assert not tool_corpus.duplicated(["tool_name", "api_name"]).any()
    for row in tool_corpus.to_dict("records"):
        assert row["tool_description"] and row["api_description"]
        assert not row["api_name"].startswith("_")
        obj = json.loads(tool_spec_json(row))
        assert list(obj) == list(TOOL_SPEC_KEYS)
        assert tool_spec_errors(obj) == [], (row["tool_name"], row["api_name"])
        assert " at 0x" not in row["parameters"]


def test_tool_specs_known_values(tool_corpus):
    row = tool_corpus[(tool_corpus["tool_name"] == "json") & (tool_corpus["api_name"] == "dumps")]
    assert len(row) == 1
    spec = json.loads(tool_spec_json(row.iloc[0]))
    params = {p["name"]: p for p in spec["parameters"]}
    assert params["obj"] == {
        "name": "obj",
        "kind": "positional_or_keyword",
        "default": None,
        "annotation": None,
        "required": True,
    }
    assert params["indent"]["default"] == "None" and params["indent"]["required"] is False
    assert params["indent"]["kind"] == "keyword_only"
    assert params["kw"]["kind"] == "var_keyword" and params["kw"]["required"] is False
    assert spec["api_description"].startswith("Serialize ``obj`` to a JSON formatted ``str``")
    assert spec["tool_description"].startswith("JSON (JavaScript Object Notation)")
    # builtin (C) functions with a text signature are included, e.g. math.gcd / os.path.join
    names = set(zip(tool_corpus["tool_name"], tool_corpus["api_name"], strict=True))
    assert {("math", "isclose"), ("os.path", "join"), ("re", "sub")} <= names


def test_tool_specs_modules_and_limit():
    frame = stdlib_tool_specs(modules=["bisect", "no_such_module_xyz", "heapq"])
    assert list(dict.fromkeys(frame["tool_name"])) == ["bisect", "heapq"]
    assert frame[frame["tool_name"] == "bisect"]["api_name"].is_monotonic_increasing
    sample = stdlib_tool_specs(modules=["bisect", "heapq"], limit=3, seed=0)
    assert len(sample) == 3
    pd.testing.assert_frame_equal(sample, stdlib_tool_specs(modules=["bisect", "heapq"], limit=3))


def test_write_corpus_round_trips_through_ingest(tmp_path, code_corpus, tool_corpus):
    code = code_corpus.head(40)
    path = write_corpus(code, tmp_path / "sub" / "code.jsonl")
    loaded = load_source(str(path))
    pd.testing.assert_frame_equal(loaded, code, check_dtype=False)
    frame, schema = prepare_seed_table(
        loaded, source=str(path), target=None, drop_columns=["module", "name", "lines"]
    )
    assert [(c.name, c.kind.value) for c in schema.columns] == [("code", "text")]
    assert frame["code"].tolist() == code["code"].tolist()

    tools_path = write_corpus(tool_corpus, tmp_path / "tools.jsonl")
    _, schema = prepare_seed_table(
        load_source(str(tools_path)),
        source=str(tools_path),
        target=None,
        column_types={"api_name": "text"},
    )
    kinds = {c.name: c.kind.value for c in schema.columns}
    assert kinds["tool_name"] == "categorical" and kinds["parameters"] == "text"


def test_cli_writes_jsonl(tmp_path, capsys):
    out = tmp_path / "tools.jsonl"
    assert main(["tools", str(out), "--limit", "7", "--modules", "json", "re"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 7 and set(rows[0]) == set(TOOL_COLUMNS)
    assert "wrote 7 tools rows" in capsys.readouterr().err
