"""Metrics for synthetic tool specs (DiffLM's tool data kind, arXiv 2411.03250).

A tool spec is one JSON object with exactly the keys of
``synthloom.corpora.TOOL_SPEC_KEYS`` (see `tool_spec_errors` for the full contract)::

    {"tool_name": str, "tool_description": str, "api_name": str, "api_description": str,
     "parameters": [{"name": str, "kind": str, "default": str | null,
                     "annotation": str | null, "required": bool}, ...]}

`tool_metrics(synthetic, real)` returns, for lists of JSON texts:

* ``json_valid_rate``: share of synthetic items that ``json.loads`` accepts as an object;
* ``schema_valid_rate``: share of synthetic items that are objects with no `tool_spec_errors`;
* ``duplicate_rate``: share of synthetic items equal to an EARLIER synthetic item, comparing
  canonical JSON (``json.dumps(obj, sort_keys=True)``) when the item parses and the stripped
  text otherwise;
* ``copy_rate``: share of synthetic items whose (tool_name, api_name) pair is that of some real
  spec (items without both as strings never count), and ``exact_copy_rate``: share whose
  canonical JSON equals that of a real spec;
* diversity over the schema-valid synthetic specs (V of them): ``distinct_tool_names`` and
  ``distinct_api_names`` (counts of distinct values), ``distinct_tool_names_share`` and
  ``distinct_api_names_share`` (count / V), ``mean_parameters`` (mean length of
  ``parameters``) and ``parameter_name_entropy``, the Shannon entropy in bits of the pooled
  parameter names, H = -sum_k p_k log2 p_k with p_k = count_k / total; the same five for the
  schema-valid real specs with a ``real_`` prefix, for comparison;
* ``n_synthetic``, ``n_real``, ``n_schema_valid``.

Denominators are all synthetic items (invalid ones included) except for the diversity block.
Rates are NaN when `synthetic` is empty; diversity values are NaN when V is 0 (the entropy
also when there is no parameter name), counts are 0.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from synthloom.corpora import TOOL_SPEC_KEYS

__all__ = [
    "PARAMETER_KEYS",
    "PARAMETER_KINDS",
    "TOOL_SPEC_KEYS",
    "name_entropy",
    "parse_spec",
    "tool_metrics",
    "tool_spec_errors",
]

PARAMETER_KEYS = ("name", "kind", "default", "annotation", "required")
PARAMETER_KINDS = frozenset(
    {"positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"}
)


def parse_spec(text: str) -> dict[str, Any] | None:
    """The JSON object in `text`, or None when it is not valid JSON or not an object."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def tool_spec_errors(obj: Any) -> list[str]:
    """Every way `obj` (a parsed JSON value) breaks the tool-spec schema; [] when valid.

    Contract: `obj` is a dict with exactly the keys `TOOL_SPEC_KEYS`; ``tool_name`` and
    ``api_name`` are non-empty strings; ``tool_description`` and ``api_description`` are
    strings; ``parameters`` is a list of dicts, each with exactly the keys `PARAMETER_KEYS`:
    ``name`` a non-empty string, unique within the spec; ``kind`` one of `PARAMETER_KINDS`;
    ``default`` and ``annotation`` a string or null; ``required`` a bool (JSON true/false,
    not 0/1). Messages name the offending key, e.g. ``"parameters[2].required: expected
    bool, got int"``.
    """
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {_type_name(obj)}"]
    errors: list[str] = []
    missing = [k for k in TOOL_SPEC_KEYS if k not in obj]
    extra = sorted(str(k) for k in obj if k not in TOOL_SPEC_KEYS)
    if missing:
        errors.append(f"missing keys: {', '.join(missing)}")
    if extra:
        errors.append(f"unexpected keys: {', '.join(extra)}")
    for key in ("tool_name", "api_name"):
        if key in obj:
            errors.extend(_check_str(obj[key], key, non_empty=True))
    for key in ("tool_description", "api_description"):
        if key in obj:
            errors.extend(_check_str(obj[key], key))
    if "parameters" in obj:
        params = obj["parameters"]
        if not isinstance(params, list):
            errors.append(f"parameters: expected list, got {_type_name(params)}")
        else:
            names: set[str] = set()
            for i, param in enumerate(params):
                errors.extend(_parameter_errors(param, f"parameters[{i}]", names))
    return errors


def _parameter_errors(param: Any, where: str, names: set[str]) -> list[str]:
    if not isinstance(param, dict):
        return [f"{where}: expected object, got {_type_name(param)}"]
    errors: list[str] = []
    missing = [k for k in PARAMETER_KEYS if k not in param]
    extra = sorted(str(k) for k in param if k not in PARAMETER_KEYS)
    if missing:
        errors.append(f"{where}: missing keys: {', '.join(missing)}")
    if extra:
        errors.append(f"{where}: unexpected keys: {', '.join(extra)}")
    if "name" in param:
        name_errors = _check_str(param["name"], f"{where}.name", non_empty=True)
        errors.extend(name_errors)
        if not name_errors:
            if param["name"] in names:
                errors.append(f"{where}.name: duplicate parameter name {param['name']!r}")
            names.add(param["name"])
    if "kind" in param and param["kind"] not in PARAMETER_KINDS:
        errors.append(
            f"{where}.kind: expected one of {', '.join(sorted(PARAMETER_KINDS))}, "
            f"got {param['kind']!r}"
        )
    for key in ("default", "annotation"):
        if key in param and param[key] is not None and not isinstance(param[key], str):
            errors.append(f"{where}.{key}: expected str or null, got {_type_name(param[key])}")
    if "required" in param and not isinstance(param["required"], bool):
        errors.append(f"{where}.required: expected bool, got {_type_name(param['required'])}")
    return errors


def _check_str(value: Any, where: str, *, non_empty: bool = False) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: expected str, got {_type_name(value)}"]
    if non_empty and not value.strip():
        return [f"{where}: must not be empty"]
    return []


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def name_entropy(names: Sequence[str]) -> float:
    """Shannon entropy in bits of the empirical distribution of `names`; NaN when empty.

    H = -sum_k p_k log2 p_k, p_k = count_k / len(names); 0 for one distinct name, log2(K)
    for K equally frequent names.
    """
    if not names:
        return math.nan
    total = len(names)
    h = -sum((c / total) * math.log2(c / total) for c in Counter(names).values())
    return h + 0.0  # -0.0 -> 0.0


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def _diversity(specs: list[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    """The diversity block (module docstring) over schema-valid `specs`."""
    v = len(specs)
    tools = {s["tool_name"] for s in specs}
    apis = {s["api_name"] for s in specs}
    names = [p["name"] for s in specs for p in s["parameters"]]
    n_params = sum(len(s["parameters"]) for s in specs)
    return {
        f"{prefix}distinct_tool_names": float(len(tools)),
        f"{prefix}distinct_tool_names_share": len(tools) / v if v else math.nan,
        f"{prefix}distinct_api_names": float(len(apis)),
        f"{prefix}distinct_api_names_share": len(apis) / v if v else math.nan,
        f"{prefix}mean_parameters": n_params / v if v else math.nan,
        f"{prefix}parameter_name_entropy": name_entropy(names),
    }


def tool_metrics(synthetic: Sequence[str], real: Sequence[str]) -> dict[str, float]:
    """Validity, duplication, copying and diversity of synthetic tool specs (module docstring).

    `synthetic` and `real` are lists of JSON texts (real ones as written by
    ``synthloom.corpora.tool_spec_json``). Returns a flat dict of floats (counts as floats).
    """
    synthetic = [str(s) for s in synthetic]
    n = len(synthetic)
    parsed = [parse_spec(s) for s in synthetic]
    valid = [p for p in parsed if p is not None and not tool_spec_errors(p)]

    real_parsed = [p for p in (parse_spec(str(r)) for r in real) if p is not None]
    real_valid = [p for p in real_parsed if not tool_spec_errors(p)]
    real_pairs = {
        (p.get("tool_name"), p.get("api_name"))
        for p in real_parsed
        if isinstance(p.get("tool_name"), str) and isinstance(p.get("api_name"), str)
    }
    real_canonical = {_canonical(p) for p in real_parsed}

    seen: set[str] = set()
    duplicates = copies = exact = 0
    for text, obj in zip(synthetic, parsed, strict=True):
        key = _canonical(obj) if obj is not None else _canonical_or_text(text)
        duplicates += key in seen
        seen.add(key)
        if obj is not None:
            exact += key in real_canonical
            pair = (obj.get("tool_name"), obj.get("api_name"))
            copies += all(isinstance(v, str) for v in pair) and pair in real_pairs

    def rate(count: int) -> float:
        return count / n if n else math.nan

    out: dict[str, float] = {
        "n_synthetic": float(n),
        "n_real": float(len(real)),
        "n_schema_valid": float(len(valid)),
        "json_valid_rate": rate(sum(p is not None for p in parsed)),
        "schema_valid_rate": rate(len(valid)),
        "duplicate_rate": rate(duplicates),
        "copy_rate": rate(copies),
        "exact_copy_rate": rate(exact),
    }
    out.update(_diversity(valid))
    out.update(_diversity(real_valid, prefix="real_"))
    return out


def _canonical_or_text(text: str) -> str:
    """Canonical JSON of any JSON value in `text` (e.g. a list), else the stripped text."""
    try:
        return _canonical(json.loads(text))
    except (json.JSONDecodeError, ValueError, RecursionError):
        return text.strip()
