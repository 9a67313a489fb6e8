"""Import rules of the project, read from the source with `ast` (nothing is imported):

(a) no module imports another project module's private (underscore) name;
(b) the import graph of synthloom/, tasks/, tracking/, flows/ and cli/ has no cycle, imports
    inside functions counted (a lazy import hides a circle from Python's import machinery,
    not from a reader);
(c) the core, synthloom/, never imports prefect, mlflow, tasks, tracking, flows or cli.

Each rule is a function over a source root, run here on the project and on a tiny fake
package in a tmp dir that breaks it, so a checker that cannot fail is caught too.
Not seen: imports by string (`importlib.import_module`, flows/registry.py's table).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from synthloom.code_fingerprint import imports, module_files

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("synthloom", "tasks", "tracking", "flows", "cli")  # the packages of the import graph
PRIVATE_RULE_DIRS = (*LAYERS, "benchmarks", "scripts")  # scripts may not take privates either
CORE = "synthloom"
FORBIDDEN_IN_CORE = ("prefect", "mlflow", "tasks", "tracking", "flows", "cli")

# Imports of an upper layer by the core that are allowed, (importing module, imported module)
# -> the reason. Only this one: `synthloom.run(...)` runs a pipeline, which needs Prefect, so
# it lives in flows/api.py; synthloom/__init__.py's `__getattr__` imports it when the
# attribute is first read, so `import synthloom` (or any core module) never imports flows,
# tasks or Prefect (tests/test_api.py checks that in a fresh interpreter).
ALLOWED_CORE_IMPORTS: dict[tuple[str, str], str] = {
    ("synthloom", "flows.api"): "synthloom.run is the flows' run, handed out lazily",
}

# Private imports that stay for now, each with the reason; a fixed one must leave the list.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports(root: Path, top_dirs: Iterable[str]) -> list[str]:
    """`file:line: module takes target` for each import of a private name (or through a
    private module) of another project module; a package may use its own private modules."""
    modules = module_files(root, top_dirs)
    tops = {m.split(".")[0] for m in modules}
    found = []
    for name, path in modules.items():
        for line, module, names in imports(name, path):
            if module.split(".")[0] not in tops:
                continue
            targets = [f"{module}.{n}" for n in names] if names else [module]
            for target in targets:
                parts = target.split(".")
                for i, part in enumerate(parts):
                    owner = ".".join(parts[:i])  # the module that holds the private name
                    if _is_private(part) and owner != name and not name.startswith(owner + "."):
                        if (name, target) not in KNOWN_PRIVATE_IMPORTS:
                            where = path.relative_to(root)
                            found.append(f"{where}:{line}: {name} takes {target}")
                        break
    return found


def import_graph(root: Path, top_dirs: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from pkg import mod` counts as mod when
    mod is a module, else as pkg); self-imports left out."""
    modules = module_files(root, top_dirs)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, module, names in imports(name, path):
            targets = [f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names]
            for target in targets or [module]:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def core_imports_of_upper_layers(
    root: Path,
    core: str,
    forbidden: Iterable[str],
    allowed: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """`file:line: module imports X` for each import under `core` (a directory under root)
    of a forbidden package or module, or of anything inside one, except the `allowed`
    (importing module, imported module) pairs."""
    found = []
    allowed = set(allowed)
    for name, path in module_files(root, [core]).items():
        for line, module, _ in imports(name, path):
            if (name, module) in allowed:
                continue
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(root)}:{line}: {name} imports {module}")
    return found


# ------------------------------------------------------------------------- the project


def test_no_module_imports_a_private_name_of_another():
    assert private_imports(REPO, PRIVATE_RULE_DIRS) == []


def test_known_private_imports_still_exist():
    """An entry of KNOWN_PRIVATE_IMPORTS that was fixed must be removed from it."""
    modules = module_files(REPO, PRIVATE_RULE_DIRS)
    present = {
        (name, f"{module}.{n}")
        for name, path in modules.items()
        for _, module, names in imports(name, path)
        for n in names
    }
    assert KNOWN_PRIVATE_IMPORTS <= present


def test_the_import_graph_has_no_cycle():
    assert import_cycles(import_graph(REPO, LAYERS)) == []


def test_the_core_imports_no_orchestration_tracking_or_upper_layer():
    assert core_imports_of_upper_layers(REPO, CORE, FORBIDDEN_IN_CORE, ALLOWED_CORE_IMPORTS) == []


def test_allowed_core_imports_still_exist():
    """An entry of ALLOWED_CORE_IMPORTS that is no longer needed must be removed from it."""
    present = {
        (name, module)
        for name, path in module_files(REPO, [CORE]).items()
        for _, module, _ in imports(name, path)
    }
    assert set(ALLOWED_CORE_IMPORTS) <= present


# ------------------------------------------------------- each checker can fail


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A package `pkg` that breaks every rule: a private import, a two-module circle through
    a lazy import, a three-module circle through relative imports, and an upper-layer
    import from its core `pkg.core`."""
    return write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import _helper, public\n",
            "pkg/b.py": "def public():\n    from pkg import a\n\ndef _helper(): ...\n",
            "pkg/c.py": "from . import d\n",
            "pkg/d.py": "from .e import thing\n",
            "pkg/e.py": "def thing():\n    import pkg.c\n",
            "pkg/own.py": "from pkg._impl import x\nimport pkg.sub._hidden\n",
            "pkg/_impl.py": "x = 1\n",
            "pkg/sub/__init__.py": "from ._hidden import y\nfrom .. import _impl\n",
            "pkg/sub/_hidden.py": "y = 2\n",
            "pkg/core/__init__.py": "",
            "pkg/core/model.py": "import prefect\n\ndef f():\n    from pkg.flows import x\n",
            "pkg/flows/__init__.py": "x = 1\n",
        },
    )


def test_private_import_checker_finds_every_kind(fake: Path):
    found = private_imports(fake, ["pkg"])
    # pkg.own and pkg.sub may use pkg._impl (their package's), pkg.sub its own ._hidden
    assert found == [
        "pkg/a.py:1: pkg.a takes pkg.b._helper",
        "pkg/own.py:2: pkg.own takes pkg.sub._hidden",
    ]


def test_cycle_checker_finds_lazy_and_relative_circles(fake: Path):
    graph = import_graph(fake, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d", "pkg.e"]]
    del graph["pkg.e"]  # break the three-module circle
    assert import_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_core_checker_finds_top_level_and_lazy_imports(fake: Path):
    found = core_imports_of_upper_layers(fake, "pkg/core", ["prefect", "pkg.flows"])
    assert found == [
        "pkg/core/model.py:1: pkg.core.model imports prefect",
        "pkg/core/model.py:4: pkg.core.model imports pkg.flows",
    ]
    allowed = [("pkg.core.model", "pkg.flows")]
    found = core_imports_of_upper_layers(fake, "pkg/core", ["prefect", "pkg.flows"], allowed)
    assert found == ["pkg/core/model.py:1: pkg.core.model imports prefect"]
