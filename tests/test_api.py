"""zoo.api: the one module plugin authors import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import zoo.api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plugins" / "examples" / "molzoo-descriptors" / "molzoo_descriptors"


def test_every_exported_name_resolves():
    for name in zoo.api.__all__:
        assert getattr(zoo.api, name) is not None, name
    assert set(dir(zoo.api)) >= set(zoo.api.__all__)


def test_lazy_names_are_the_real_objects():
    from zoo import featurize, layers

    assert zoo.api.parse_smiles is featurize.parse_smiles
    assert zoo.api.ATOM_FEATURE_DIM == featurize.ATOM_FEATURE_DIM
    assert zoo.api.mlp_blocks is layers.mlp_blocks


def test_unknown_name_is_an_attribute_error():
    try:
        zoo.api.no_such_helper  # noqa: B018
    except AttributeError as exc:
        assert "no_such_helper" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_cheap():
    """Plugins' registration modules and `zoo list` may import zoo.api: no torch, numpy or RDKit."""
    code = ("import sys, zoo.api; heavy = [m for m in ('torch', 'numpy', 'rdkit', 'torch_geometric') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_example_plugin_imports_only_the_api():
    """The example a third-party author copies uses nothing of zoo beyond zoo.api and zoo.registry."""
    used = set()
    for path in EXAMPLE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "zoo":
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used.update(a.name for a in node.names if a.name.split(".")[0] == "zoo")
    assert used and used <= {"zoo.api", "zoo.registry"}, used


def test_chemistry_moved_to_the_plugin_names_its_new_module():
    """0.2 moved structure/relation matching into zoo.plugins.chem: the old zoo.api name says where it went."""
    for name, module in (("structure_match_scores", "zoo.plugins.chem.chemnames"), ("molecule_keys", "zoo.plugins.chem.chemrelations")):
        try:
            getattr(zoo.api, name)
        except AttributeError as exc:
            assert f"from {module} import {name}" in str(exc)
        else:
            raise AssertionError(f"zoo.api.{name} should be gone")
    from zoo import spans
    from zoo.plugins.chem import chemnames

    assert zoo.api.candidate_spans is spans.candidate_spans is chemnames.candidate_spans
    assert [s.text for s in zoo.api.candidate_spans("It is a conjugate base of benzoic acid.")] == ["base", "benzoic", "benzoic acid", "acid"]
