"""Per-stage code fingerprints (synthloom/code_fingerprint.py): a stage's cache key covers
the project code its task module can run, and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthloom.code_fingerprint import REPO, code_fingerprint, fingerprint_of, module_closure

STAGE_MODULES = (
    "tasks.ingest",
    "tasks.fit",
    "tasks.generate",
    "tasks.filter",
    "tasks.evaluate",
    "tasks.difflm",
    "tasks.text",
    "tasks.synthllm",
    "tasks.scaling",
    "tasks.bench",
)


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_the_closure_holds_every_project_module_an_import_loads(module) -> None:
    """Importing the task module in a fresh interpreter loads only modules of its static
    closure (a module missing there would be code whose edit a cached stage ignores)."""
    script = (
        "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('synthloom', 'tasks'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, module],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert module in loaded
    assert loaded - module_closure(module) == set()


@pytest.mark.parametrize("module", ["tasks.filter", "tasks.text"])
def test_the_cached_fingerprint_is_the_closures(module) -> None:
    """code_fingerprint walks one project graph built per process; it must hash exactly
    module_closure's modules."""
    assert code_fingerprint(module) == fingerprint_of(module_closure(module))


def test_tracking_and_other_stages_are_outside_a_stage_and_its_code_inside() -> None:
    closure = module_closure("tasks.filter")
    assert {"tasks.filter", "tasks.runtime", "synthloom.filters.tabular"} <= closure
    assert not {"tasks.text", "tasks.difflm", "tasks.fit"} & closure
    # MLflow logging (tracking/), the flows and the CLI are no stage's code: outside the
    # fingerprinted packages, and no stage reaches tracking/ even when it is counted
    assert not any(m.split(".")[0] in ("tracking", "flows", "cli") for m in closure)
    for module in STAGE_MODULES:
        counted = module_closure(module, packages=("synthloom", "tasks", "tracking"))
        assert not any(m.split(".")[0] == "tracking" for m in counted), module
    # models load by computed name; the method registry's generator strings are not followed
    text = module_closure("tasks.text")
    assert "synthloom.models.causal_lm" in text
    assert not {"synthloom.methods.text.fewgen", "synthloom.methods.tabsyn.generator"} & text


def test_a_stage_covers_the_generator_of_its_method_and_no_other() -> None:
    """The registry names every generator; a stage's fingerprint covers the one its config
    runs: FewGen's generate stage hashes fewgen.py, not bare.py nor tabsyn, and the fit
    stage of tabsyn hashes tabsyn, not the text generators."""
    from synthloom.code_fingerprint import method_module, stage_fingerprint
    from tasks.runtime import method_of

    assert method_module("fewgen") == "synthloom.methods.text.fewgen"
    assert method_module("difflm") is None and method_module(None) is None
    assert method_of({"method": {"name": "bare"}}) == "bare"
    assert method_of({"method_name": "tabsyn", "seed": 0}) == "tabsyn"
    assert method_of({"seed": 0}) is None
    assert stage_fingerprint("tasks.text") == code_fingerprint("tasks.text")
    assert len({stage_fingerprint("tasks.text", m) for m in ("fewgen", "bare", None)}) == 3
    fit_tabsyn = stage_fingerprint("tasks.fit", "tabsyn")
    assert fit_tabsyn != stage_fingerprint("tasks.fit", "marginals")
    # what the fingerprint hashes: the two closures' union
    union = module_closure("tasks.fit") | module_closure("synthloom.methods.tabsyn.generator")
    assert fit_tabsyn == fingerprint_of(union)
    assert "synthloom.methods.tabsyn.vae" in union
    assert not any(m.startswith("synthloom.methods.text.") for m in union)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


def test_an_edit_changes_the_fingerprint_only_of_stages_that_can_run_it(tmp_path) -> None:
    _write(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/math.py": "def f():\n    return 1\n",
            "core/plugins/__init__.py": (
                "import importlib\n\ndef load(n):\n"
                "    return importlib.import_module(f'{__name__}.{n}')\n"
            ),
            "core/plugins/a.py": "X = 1\n",
            "core/registry.py": "TABLE = {'b': 'core.late:B'}\n",
            "core/late.py": "B = 2\n",
            "core/unused.py": "Y = 3\n",
            "stages/__init__.py": "",
            "stages/one.py": "def run():\n    from core.math import f\n    return f()\n",
            "stages/two.py": "from core import plugins, registry\n",
            "stages/log.py": "Z = 0\n",
        },
    )
    packages = ("core", "stages")

    def closure(module: str) -> frozenset[str]:
        return module_closure(module, tmp_path, packages)

    def fingerprint(module: str) -> str:
        return fingerprint_of(closure(module), tmp_path, packages)

    assert closure("stages.one") == {"stages", "stages.one", "core", "core.math"}
    assert closure("stages.two") == {
        "stages", "stages.two", "core", "core.plugins", "core.plugins.a",
        "core.registry", "core.late",
    }  # fmt: skip
    before = {m: fingerprint(m) for m in ("stages.one", "stages.two")}
    (tmp_path / "stages/log.py").write_text("Z = 1\n")  # in neither closure
    (tmp_path / "core/unused.py").write_text("Y = 4\n")
    assert {m: fingerprint(m) for m in before} == before
    (tmp_path / "core/math.py").write_text("def f():\n    return 2\n")  # a lazy import of one
    assert fingerprint("stages.one") != before["stages.one"]
    assert fingerprint("stages.two") == before["stages.two"]
    (tmp_path / "core/late.py").write_text("B = 3\n")  # named in a string registry
    assert fingerprint("stages.two") != before["stages.two"]
