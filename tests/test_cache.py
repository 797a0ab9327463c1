"""On-disk caches: PackedGraphs round trip, cache hits, atomic writes, content hashes."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from zoo import cache
from zoo.cache import (
    PackedGraphs,
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_text,
    cache_root,
    content_hash,
    featurize_molecules,
    graphs_cache_path,
)
from zoo.errors import FeaturizeError
from zoo.featurize import featurize

SMILES = ["CCO", "[Na+]", "c1ccccc1O", "C/C=C\\\\C", "CC(=O)[O-]"]


def _equal(a: Data, b: Data) -> bool:
    return sorted(a.keys()) == sorted(b.keys()) and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a.keys())


def test_pack_round_trip(tmp_path):
    graphs = [featurize(s) for s in SMILES]
    for i, g in enumerate(graphs):
        g.y = torch.tensor(float(i) + 0.5)  # 0-dim, non-binary float
    packed = PackedGraphs.pack(graphs)
    assert len(packed) == len(graphs)
    assert all(_equal(packed[i], g) for i, g in enumerate(graphs))
    assert packed[1].edge_index.shape == (2, 0)  # a single ion: no bonds
    assert _equal(packed[-1], graphs[-1])
    with pytest.raises(IndexError):
        packed[len(graphs)]
    path = tmp_path / "g.safetensors"
    packed.save(path, {"note": "x"})
    loaded = PackedGraphs.load(path)
    assert len(loaded) == len(graphs)
    assert all(_equal(loaded[i], g) for i, g in enumerate(graphs))
    assert [_equal(a, graphs[i]) for a, i in zip(loaded.select([3, 0]), [3, 0])] == [True, True]
    # edge_index stays per-graph (not offset) and getitem returns views
    assert loaded[4].edge_index.max() < loaded[4].x.shape[0]
    assert loaded[2].x.data_ptr() != loaded[3].x.data_ptr()
    assert loaded[2].x.untyped_storage().data_ptr() == loaded.data["x"].untyped_storage().data_ptr()


def test_pack_rejects_mismatched_keys():
    a, b = featurize("CCO"), featurize("CC")
    b.extra = torch.zeros(1)
    with pytest.raises(ValueError, match="graph 1"):
        PackedGraphs.pack([a, b])


def test_featurize_cache_hit(tmp_path):
    calls = []

    def counting(s: str) -> Data:
        calls.append(s)
        return featurize(s)

    first = featurize_molecules(SMILES, counting, "rdkit_graph/1", root=tmp_path, progress=False)
    assert len(calls) == len(SMILES)
    path = graphs_cache_path(SMILES, "rdkit_graph/1", tmp_path)
    assert path.is_file() and path.parent == tmp_path / "graphs"
    second = featurize_molecules(SMILES, counting, "rdkit_graph/1", root=tmp_path, progress=False)
    assert len(calls) == len(SMILES)  # no new calls
    assert all(_equal(first[i], second[i]) for i in range(len(SMILES)))
    featurize_molecules(SMILES, counting, "rdkit_graph/2", root=tmp_path, progress=False)
    assert len(calls) == 2 * len(SMILES)  # new featurizer key -> new cache entry
    assert not list((tmp_path / "graphs").glob("*.tmp"))


def test_featurize_failure_names_molecule(tmp_path):
    with pytest.raises(FeaturizeError, match=r"molecule 1 \(SMILES 'C1CC'\)"):
        featurize_molecules(["CC", "C1CC"], featurize, "k", root=tmp_path, progress=False)
    assert not (tmp_path / "graphs").exists() or not [p for p in (tmp_path / "graphs").iterdir() if not p.name.endswith(".lock")]


def test_atomic_write_failure_leaves_no_tmp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(cache.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    with pytest.raises(OSError):
        atomic_save_tensors({"a": torch.zeros(3)}, tmp_path / "t.safetensors")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "t.txt"]


def test_content_hash_stable_and_sensitive():
    h = content_hash("k", ["CCO", "CC"], {"b": 1, "a": 2})
    assert h == content_hash("k", ["CCO", "CC"], {"a": 2, "b": 1})  # dict key order irrelevant
    assert len(h) == 64 and h == content_hash("k", ["CCO", "CC"], {"b": 1, "a": 2})
    assert h != content_hash("k", ["CC", "CCO"], {"a": 2, "b": 1})
    assert h != content_hash("k2", ["CCO", "CC"], {"a": 2, "b": 1})
    assert content_hash("ab", "c") != content_hash("a", "bc")  # framed parts
    assert content_hash("a") != content_hash(b"a") != content_hash(["a"])
    # pinned: a change of encoding would silently invalidate every cache
    assert content_hash("k", ["CCO"], {"a": 1}) == "2e44dbaa7308686d58744971e97fdedff6f4cf4b966ded091a23f1a8b4dfaaa2"


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "z"))
    assert cache_root() == tmp_path / "z"
    monkeypatch.delenv("ZOO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "molzoo"
