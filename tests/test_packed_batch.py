"""PackedGraphs.batch (vectorized collation) must equal PyG's Batch.from_data_list."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from zoo.cache import PackedGraphs
from zoo.featurize import featurize

SMILES = ["CCO", "c1ccccc1O", "C", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]", "OC(=O)C1CCCCC1", "N#N"]


def _assert_same(fast: Batch, slow: Batch) -> None:
    for key in ("x", "edge_index", "edge_attr", "batch", "ptr", "fp"):
        if key in slow:
            assert torch.equal(fast[key], slow[key]), key
    assert fast.num_graphs == slow.num_graphs
    assert fast.num_nodes == slow.num_nodes


@pytest.mark.parametrize("indices", [[0, 1, 2, 3, 4, 5, 6], [3, 3, 0], [6, 2], [-1, 4], [2]])
def test_batch_matches_from_data_list(indices):
    packed = PackedGraphs.pack([featurize(s) for s in SMILES])
    _assert_same(packed.batch(indices), Batch.from_data_list(packed.select(indices)))
    _assert_same(packed.batch(torch.tensor(indices)), Batch.from_data_list(packed.select(indices)))


def test_batch_after_save_load_and_fingerprints(tmp_path):
    from zoo.registry import get_component

    encoder = get_component("molecule_encoder", "fingerprint_mlp").create(embed_dim=8, n_bits=64)
    packed = PackedGraphs.pack([encoder.featurize(s) for s in SMILES])
    packed.save(tmp_path / "fp.safetensors")
    loaded = PackedGraphs.load(tmp_path / "fp.safetensors")
    idx = [5, 0, 2]
    fast, slow = loaded.batch(idx), Batch.from_data_list(loaded.select(idx))
    _assert_same(fast, slow)
    assert fast.fp.shape == (3, 64)
    encoder.eval()
    assert torch.allclose(encoder(fast).embedding, encoder(slow).embedding)


def test_batch_rejects_bad_indices():
    packed = PackedGraphs.pack([featurize(s) for s in SMILES])
    with pytest.raises(IndexError, match="out of range"):
        packed.batch([0, 7])
    with pytest.raises(ValueError, match="zero graphs"):
        packed.batch([])
