"""Which project code a module runs, read from the source, and a fingerprint of it.

A stage's cache key includes `code_fingerprint(<its task module>)`: sha256 over the source
of every project module the task module can import, so an edit to code a stage runs misses
its cache and an edit elsewhere (MLflow logging, another stage, the CLI) does not.

`module_closure(name)` follows, from module `name`, every import statement at any depth
(inside functions too: a lazy import still runs), the parent packages an import executes
(`import a.b.c` runs a/__init__.py and a/b/__init__.py), module names written as strings
(`"synthloom.methods.text.fewgen:FewGenGenerator"` in a registry), and, for a package whose
__init__ imports by computed name (`importlib.import_module`), every module of that package.
Only modules under `packages` (default: synthloom and tasks) count; the rest is the
environment (pinned packages), not project code.

The method registry (`DISPATCH_TABLES`) is the exception to the strings rule: it names every
method's generator, of which a stage runs the one its config picks. Its strings are not
followed; `stage_fingerprint(module, method)` adds the picked method's generator module and
its closure, so an edit to FewGen misses FewGen's cached stages and no table generator's.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("synthloom", "tasks")
# Modules whose "module:attr" strings are a dispatch table: one entry runs, chosen by the
# config (see the module docstring and `stage_fingerprint`).
DISPATCH_TABLES = frozenset({"synthloom.methods.registry"})
_DOTTED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::\w+)?$")


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file for every .py file under root/<package> (a package's
    __init__.py is the package itself)."""
    modules = {}
    for top in packages:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports(
    name: str, path: Path, tree: ast.AST | None = None
) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for every import statement of module
    `name` at any depth (functions included); relative imports are made absolute. `tree`:
    the file already parsed (else it is read and parsed here)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if tree is None:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module, [alias.name for alias in node.names]


def _named_in_strings(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """Project modules written as string constants ("pkg.mod" or "pkg.mod:attr")."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _DOTTED.match(node.value)
            if match and match.group(1) in modules:
                found.add(match.group(1))
    return found


def _with_parents(module: str, modules: dict[str, Path]) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules.keys()


def direct_dependencies(name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules module `name` can run directly (see the module docstring)."""
    path = modules[name]
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path))
    found: set[str] = set()
    for _, module, names in imports(name, path, tree):
        targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
        for target in [module, *targets]:
            found |= _with_parents(target, modules)
    for module in _named_in_strings(tree, modules) if name not in DISPATCH_TABLES else ():
        found |= _with_parents(module, modules)
    if path.name == "__init__.py" and "import_module" in source:
        found |= {m for m in modules if m.startswith(name + ".")}
    return found - {name}


def _reachable(
    name: str, modules: dict[str, Path], dependencies: Callable[[str], Iterable[str]]
) -> frozenset[str]:
    """`name`, its parent packages and every module reachable from them by `dependencies`."""
    todo = sorted(_with_parents(name, modules))
    seen: set[str] = set()
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(set(dependencies(current)) - seen)
    return frozenset(seen)


def module_closure(
    name: str, root: Path = REPO, packages: Iterable[str] = PACKAGES
) -> frozenset[str]:
    """`name`, its parent packages and every project module reachable from them."""
    modules = module_files(root, packages)
    return _reachable(name, modules, lambda current: direct_dependencies(current, modules))


def fingerprint_of(
    modules: Iterable[str], root: Path = REPO, packages: Iterable[str] = PACKAGES
) -> str:
    """sha256[:16] over the names and bytes of `modules`' files, in name order."""
    files = module_files(root, packages)
    digest = hashlib.sha256()
    for module in sorted(modules):
        digest.update(module.encode() + b"\0")
        digest.update(files[module].read_bytes())
    return digest.hexdigest()[:16]


@cache
def _project_graph() -> tuple[dict[str, Path], dict[str, frozenset[str]]]:
    """(module files, module -> its direct dependencies) of the whole project, each file
    parsed once per process."""
    modules = module_files(REPO, PACKAGES)
    return modules, {name: frozenset(direct_dependencies(name, modules)) for name in modules}


@cache
def _closure(module: str) -> frozenset[str]:
    """`module_closure(module)` over the project graph built once per process."""
    modules, graph = _project_graph()
    return _reachable(module, modules, graph.__getitem__)


@cache
def code_fingerprint(module: str) -> str:
    """The fingerprint of the project code module `module` can run: `module_closure` over
    a graph built once per process (the sources do not change under a running pipeline)."""
    return fingerprint_of(_closure(module))


def method_module(method_name: str | None) -> str | None:
    """The module of `method_name`'s generator class in the method registry, or None (no
    method, an unknown name, or a method whose stages import their own code)."""
    from synthloom.methods.registry import SPECS

    spec = SPECS.get(method_name) if isinstance(method_name, str) else None
    return spec.generator.partition(":")[0] if spec is not None and spec.generator else None


@cache
def stage_fingerprint(module: str, method_name: str | None = None) -> str:
    """The fingerprint of what a stage runs: the closure of its task module `module`, plus,
    when the stage runs method `method_name` through the registry, the closure of that
    method's generator module."""
    generator = method_module(method_name)
    if generator is None or generator not in _project_graph()[0]:
        return code_fingerprint(module)
    return fingerprint_of(_closure(module) | _closure(generator))
