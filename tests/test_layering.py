"""Import layering: the import-linter contracts in pyproject.toml hold, and zoo.* has no import cycle.

Checked from the repository root (zoo/plugins, zoo/registry, zoo/evals link to registry/, plugins/, evals/)
and on the installed layout, rebuilt in a temporary folder from the package-dir settings setuptools uses.
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

#: The layers that use finished runs: none of them may reach the training loop (zoo.train, zoo.loop sit above them).
USES_FINISHED_RUNS = ["eval_run : report : external : fuse_runs", "scoring", "search", "fusion", "library", "runs | plugins"]


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


def _layers() -> list[str]:
    [contract] = [c for c in _contracts() if c["type"] == "layers"]
    assert contract["containers"] == ["zoo"] and contract["exhaustive"] is True  # a new module must be placed
    return contract["layers"]


def test_the_training_loop_sits_above_everything_that_uses_finished_runs():
    layers = _layers()
    for layer in USES_FINISHED_RUNS:
        assert layers.index("loop") < layers.index(layer) and layers.index("train") < layers.index(layer)


def test_boundaries_forbid_every_zoo_module_but_the_named_ones():
    """The plugin, registry, evals and api boundaries forbid ``zoo.*``: a new module is forbidden there by default."""
    boundaries = {c["source_modules"][0]: c for c in _contracts() if c["type"] == "forbidden"}
    assert set(boundaries) == {"zoo.plugins", "zoo.registry", "zoo.evals", "zoo.api"}
    for contract in boundaries.values():
        assert contract["forbidden_modules"] == ["zoo.*"]


def test_zoo_links_the_installed_subpackages():
    """zoo/plugins, zoo/registry and zoo/evals link to the folders setuptools installs as those packages, so
    ``lint-imports`` run from the repository root sees the installed layout."""
    package_dir = PYPROJECT["tool"]["setuptools"]["package-dir"]
    for package, folder in package_dir.items():
        if package != "zoo":
            link = ROOT / "zoo" / package.split(".", 1)[1]
            assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), link


def test_lint_imports_from_the_repository_root():
    pytest.importorskip("importlinter", reason="pip install import-linter (in the dev extras)")
    done = subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_import_linter_contracts_hold_on_the_installed_layout(installed_tree):
    pytest.importorskip("importlinter", reason="pip install import-linter (in the dev extras)")
    done = _run(["-c", LINT, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], installed_tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


@pytest.mark.parametrize("where, code, broken", [
    ("zoo/brand_new.py", "import zoo.errors\n", "the stack"),  # not placed in a layer
    ("zoo/plugins/text/leaky.py", "import zoo.spec\n", "built-in plugins import only zoo.api"),
])
def test_a_new_module_is_checked_without_editing_the_contracts(tmp_path, where, code, broken):
    """A module the contracts do not name is still checked: unplaced in the layers, or past a boundary."""
    pytest.importorskip("importlinter", reason="pip install import-linter (in the dev extras)")
    tree = tmp_path / "tree"
    for package, source in _package_sources().items():
        dest = tree / Path(*package.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.py"):
            shutil.copy2(path, dest / path.name)
    (tree / where).write_text(code)
    done = _run(["-c", LINT, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], tree)
    assert done.returncode != 0 and broken in done.stdout and "BROKEN" in done.stdout, done.stdout


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
