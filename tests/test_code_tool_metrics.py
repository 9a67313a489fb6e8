"""Code and tool-spec metrics (synthloom.metrics.code, synthloom.metrics.tools) on hand-made data."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from synthloom.metrics.code import code_metrics, code_tokens, distinct_ngrams, embedding_mmd2
from synthloom.metrics.tools import name_entropy, parse_spec, tool_metrics, tool_spec_errors

# ---------------------------------------------------------------- code


def test_code_metrics_exact_values():
    real = ["def f(x):\n    return x\n", "def g():\n    pass\n"]
    synthetic = [
        "def f(x):\n    return x\n",  # copy of a real item
        # equal to item 0 after stripping (a duplicate and a copy), but the leading
        # indentation makes it unparseable
        "  def f(x):\n    return x\n\n",
        "def broken(:\n",  # does not parse
    ]
    m = code_metrics(synthetic, real)
    assert m["parse_rate"] == pytest.approx(1 / 3)
    assert m["duplicate_rate"] == pytest.approx(1 / 3)
    assert m["copy_rate"] == pytest.approx(2 / 3)
    assert m["n_synthetic"] == 3 and m["n_real"] == 2
    assert "embedding_mmd2" not in m


def test_parse_rate_two_of_three():
    m = code_metrics(["x = 1", "def f():\n    return 2\n", "def (:"], [])
    assert m["parse_rate"] == pytest.approx(2 / 3)
    assert m["duplicate_rate"] == 0 and m["copy_rate"] == 0


def test_duplicates_count_k_minus_one():
    m = code_metrics(["a = 1", "a = 1", "a = 1\n", "b = 2"], ["c = 3"])
    assert m["duplicate_rate"] == pytest.approx(2 / 4)


def test_tokens_and_distinct_ngrams():
    assert code_tokens("x = f(y)  # hi\n") == ["x", "=", "f", "(", "y", ")", "# hi"]
    # unbalanced bracket: tokenize fails -> whitespace split
    assert code_tokens("f(a b\n") == ["f(a", "b"]
    # tokens: [a, =, a] and [a, =, b]: 1-grams 6 total, distinct {a, =, b} = 3
    m = code_metrics(["a = a", "a = b"], [], ngram=3)
    assert m["distinct_ngrams_1"] == pytest.approx(3 / 6)
    assert m["distinct_ngrams_2"] == pytest.approx(3 / 4)  # (a,=) twice, (=,a), (=,b)
    assert m["distinct_ngrams_3"] == pytest.approx(2 / 2)
    assert set(m) >= {"distinct_ngrams_1", "distinct_ngrams_2", "distinct_ngrams_3"}
    assert "distinct_ngrams_4" not in m
    assert math.isnan(distinct_ngrams([["a"]], 2))
    with pytest.raises(ValueError):
        distinct_ngrams([["a"]], 0)


def test_empty_synthetic_gives_nan():
    m = code_metrics([], ["x = 1"])
    assert math.isnan(m["parse_rate"]) and math.isnan(m["duplicate_rate"])
    assert math.isnan(m["distinct_ngrams_4"])


def test_embedding_mmd2_known_values():
    x, y = np.array([[0.0]]), np.array([[1.0]])
    mmd2, h = embedding_mmd2(x, y)  # median heuristic: one pair at squared distance 1
    assert h == pytest.approx(1.0)
    assert mmd2 == pytest.approx(2 - 2 * math.exp(-1))
    mmd2, h = embedding_mmd2(x, y, bandwidth=2.0)
    assert (mmd2, h) == (pytest.approx(2 - 2 * math.exp(-0.5)), 2.0)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 4))
    assert embedding_mmd2(z, z)[0] == pytest.approx(0.0, abs=1e-12)
    assert embedding_mmd2(z, z + 3.0)[0] > embedding_mmd2(z, z + 0.1)[0] > 0
    assert math.isnan(embedding_mmd2(z[:0], z)[0])


def test_code_metrics_with_tiny_encoder():
    from synthloom.models.tiny import tiny_encoder

    encoder = tiny_encoder(seed=0)
    real = ["def f(x):\n    return x\n", "def g():\n    pass\n", "y = [1, 2, 3]\n"]
    same = code_metrics(real, real, encoder=encoder)
    assert same["embedding_mmd2"] == pytest.approx(0.0, abs=1e-9)
    assert same["embedding_mean_cosine_to_real"] == pytest.approx(1.0, abs=1e-5)
    other = code_metrics(["while True:\n    break\n"], real, encoder=encoder)
    assert other["embedding_mmd2"] > 0
    assert -1.0 <= other["embedding_mean_cosine_to_real"] < 1.0
    empty = code_metrics([], real, encoder=encoder)
    assert math.isnan(empty["embedding_mmd2"])


# ---------------------------------------------------------------- tools


def _spec(tool="json", api="dumps", params=("obj",), **extra) -> dict:
    spec = {
        "tool_name": tool,
        "tool_description": "JSON encoder and decoder.",
        "api_name": api,
        "api_description": "Serialize obj.",
        "parameters": [
            {
                "name": p,
                "kind": "positional_or_keyword",
                "default": None,
                "annotation": None,
                "required": True,
            }
            for p in params
        ],
    }
    spec.update(extra)
    return spec


def test_tool_spec_errors():
    assert tool_spec_errors(_spec()) == []
    assert tool_spec_errors(_spec(params=())) == []
    assert tool_spec_errors([1]) == ["expected a JSON object, got list"]
    bad = _spec(params=("a", "a", "b"))
    del bad["api_description"]
    bad["extra"] = 1
    bad["tool_name"] = ""
    bad["parameters"][2]["required"] = 1
    bad["parameters"][2]["kind"] = "whatever"
    bad["parameters"][2]["default"] = 3
    errors = tool_spec_errors(bad)
    assert errors == [
        "missing keys: api_description",
        "unexpected keys: extra",
        "tool_name: must not be empty",
        "parameters[1].name: duplicate parameter name 'a'",
        "parameters[2].kind: expected one of keyword_only, positional_only, "
        "positional_or_keyword, var_keyword, var_positional, got 'whatever'",
        "parameters[2].default: expected str or null, got int",
        "parameters[2].required: expected bool, got int",
    ]
    assert tool_spec_errors(_spec(parameters="x")) == ["parameters: expected list, got str"]
    assert tool_spec_errors(_spec(parameters=[{"name": "x"}])) == [
        "parameters[0]: missing keys: kind, default, annotation, required"
    ]
    assert tool_spec_errors(_spec(api_name=None)) == ["api_name: expected str, got null"]


def test_name_entropy():
    assert name_entropy(["a", "b", "c", "d"]) == pytest.approx(2.0)
    assert name_entropy(["x", "x", "x"]) == 0.0
    # p = (1/2, 1/4, 1/4): H = 0.5 + 0.5 + 0.5 = 1.5 bits
    assert name_entropy(["a", "a", "b", "c"]) == pytest.approx(1.5)
    assert math.isnan(name_entropy([]))


def test_tool_metrics_exact_values():
    real = [json.dumps(_spec()), json.dumps(_spec(tool="re", api="sub", params=("p", "r")))]
    near_copy = _spec(params=("obj", "indent"))  # same tool+api as a real spec, not identical
    invalid_schema = _spec(api="x")
    invalid_schema["parameters"][0]["required"] = "yes"
    synthetic = [
        json.dumps(_spec()),  # exact copy
        json.dumps(near_copy),
        json.dumps(_spec(tool="math", api="gcd", params=("a", "b"))),
        json.dumps(_spec(tool="math", api="gcd", params=("a", "b")), indent=2),  # duplicate
        json.dumps(invalid_schema),
        "{not json",
        "[1, 2]",  # JSON, not an object
        "  {not json  ",  # duplicate of the broken text after strip
    ]
    m = tool_metrics(synthetic, real)
    n = len(synthetic)
    assert m["n_synthetic"] == n and m["n_real"] == 2
    assert m["json_valid_rate"] == pytest.approx(5 / n)
    assert m["schema_valid_rate"] == pytest.approx(4 / n)
    assert m["n_schema_valid"] == 4
    assert m["duplicate_rate"] == pytest.approx(2 / n)
    assert m["copy_rate"] == pytest.approx(2 / n)
    assert m["exact_copy_rate"] == pytest.approx(1 / n)
    # valid: json/dumps(obj), json/dumps(obj, indent), math/gcd(a, b) twice
    assert m["distinct_tool_names"] == 2 and m["distinct_tool_names_share"] == 0.5
    assert m["distinct_api_names"] == 2 and m["distinct_api_names_share"] == 0.5
    assert m["mean_parameters"] == pytest.approx(7 / 4)
    # names: obj x2, indent, a x2, b x2 -> p = (2, 1, 2, 2) / 7
    p = np.array([2, 1, 2, 2]) / 7
    assert m["parameter_name_entropy"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert m["real_distinct_tool_names"] == 2 and m["real_mean_parameters"] == 1.5
    assert m["real_parameter_name_entropy"] == pytest.approx(math.log2(3))


def test_tool_metrics_edge_cases():
    m = tool_metrics([], [])
    assert math.isnan(m["json_valid_rate"]) and math.isnan(m["mean_parameters"])
    assert m["distinct_tool_names"] == 0
    # non-string names never match a real pair, and do not crash the lookup
    odd = copy.deepcopy(_spec())
    odd["tool_name"] = ["json"]
    m = tool_metrics([json.dumps(odd)], [json.dumps(_spec())])
    assert m["copy_rate"] == 0 and m["schema_valid_rate"] == 0 and m["json_valid_rate"] == 1
    assert parse_spec("3") is None and parse_spec('{"a": 1}') == {"a": 1}
