"""Import layering: the import-linter contracts in pyproject.toml hold, and zoo.* has no import cycle.

Both are checked on the installed layout (zoo.registry, zoo.plugins and zoo.evals live in registry/,
plugins/ and evals/, mapped by pyproject's package-dir), rebuilt in a temporary folder from the same
pyproject settings setuptools uses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: What each contract's source may import of zoo (everything else is in its forbidden list).
ALLOWED = {
    "zoo.plugins": {"zoo.api", "zoo.registry"},
    "zoo.registry": {"zoo.errors"},
    "zoo.evals": {"zoo.cache", "zoo.errors", "zoo.registry"},
    "zoo.api": {"zoo.cache", "zoo.checks", "zoo.chemnames", "zoo.chemrelations", "zoo.errors", "zoo.featurize", "zoo.layers", "zoo.opsin",
                "zoo.jobs", "zoo.protocols", "zoo.registry"},
}

#: Modules that use finished runs (evaluate, search, index, report) and the run-folder, checkpoint and
#: device modules they rely on: none of them may import the training loop (pyproject's contract (e)).
NEVER_TRAIN = {"zoo.eval_run", "zoo.evaluate", "zoo.search", "zoo.library", "zoo.report", "zoo.report_figures",
               "zoo.runs", "zoo.checkpoints", "zoo.devices", "zoo.fitting", "zoo.tasks", "zoo.gallery", "zoo.fusion"}

#: What contract (e) forbids them: the run assembly (zoo.train) and its epoch loop (zoo.loop).
TRAINING_LOOP = ["zoo.train", "zoo.loop"]


def _contracts() -> list[dict]:
    return PYPROJECT["tool"]["importlinter"]["contracts"]


def _package_sources() -> dict[str, Path]:
    """Each installed package (``zoo.plugins.text``) and its source folder (``plugins/text``)."""
    setup = PYPROJECT["tool"]["setuptools"]
    package_dir = setup["package-dir"]
    out = {}
    for package in setup["packages"]:
        parts = package.split(".")
        for i in range(len(parts), 0, -1):
            base = ".".join(parts[:i])
            if base in package_dir:
                out[package] = ROOT / package_dir[base] / Path(*parts[i:])
                break
    return out


def _top_level_modules() -> set[str]:
    """``zoo.<name>`` for every module and subpackage directly under zoo."""
    sources = _package_sources()
    modules = {f"zoo.{f.stem}" for f in sources["zoo"].glob("*.py") if f.stem != "__init__"}
    return modules | {p for p in sources if p.count(".") == 1}


@pytest.fixture(scope="module")
def installed_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("installed")
    for package, source in _package_sources().items():
        dest = tree / Path(*package.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.py"):
            shutil.copy2(path, dest / path.name)
    return tree


def _run(code_or_args: list[str], tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the tree's zoo shadows the editable install
    return subprocess.run([sys.executable, *code_or_args], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_list_every_other_module():
    """A new zoo module must be placed: forbidden to each contract's source, or allowed here on purpose."""
    contracts = {c["source_modules"][0]: c for c in _contracts() if c["forbidden_modules"] != TRAINING_LOOP}
    assert set(contracts) == set(ALLOWED)
    modules = _top_level_modules()
    for source, contract in contracts.items():
        assert "ignore_imports" not in contract
        forbidden = set(contract["forbidden_modules"])
        assert forbidden <= modules, f"{source}: no such module {sorted(forbidden - modules)}"
        unplaced = modules - forbidden - ALLOWED[source] - {source}
        assert not unplaced, f"contract for {source}: add {sorted(unplaced)} to forbidden_modules (or to ALLOWED)"


def test_evaluation_search_index_and_report_never_import_training():
    """Using a finished run never loads the training loop: contract (e) names exactly :data:`NEVER_TRAIN`."""
    [contract] = [c for c in _contracts() if c["forbidden_modules"] == TRAINING_LOOP]
    assert set(contract["source_modules"]) == NEVER_TRAIN
    assert NEVER_TRAIN <= _top_level_modules()
    assert not contract.get("allow_indirect_imports", False)  # not through another module either


def test_import_linter_contracts_hold(installed_tree):
    pytest.importorskip("importlinter", reason="pip install import-linter (in the dev extras)")
    done = _run(["-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
                 "--config", str(ROOT / "pyproject.toml"), "--no-cache"], installed_tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


CYCLES = """
import json, sys
import grimp

graph = grimp.build_graph("zoo", cache_dir=None)  # function-level (lazy) imports count
assert {"zoo.registry.plugins", "zoo.plugins.text", "zoo.evals.ranking"} <= graph.modules, "not the installed layout"
edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
index, low, stack, on_stack, cycles = {}, {}, [], set(), []

def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            component.append(w)
            if w == v:
                break
        if len(component) > 1:
            cycles.append(sorted(component))

sys.setrecursionlimit(10000)
for module in sorted(graph.modules):
    if module not in index:
        visit(module)
print(json.dumps(sorted(cycles)))
"""


def test_no_import_cycles(installed_tree):
    """Strongly connected components of zoo.*'s import graph (grimp), lazy imports inside functions included."""
    pytest.importorskip("grimp", reason="pip install import-linter (in the dev extras; brings grimp)")
    done = _run(["-c", CYCLES], installed_tree)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
