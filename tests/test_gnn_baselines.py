"""GCN and GINE baselines: shapes, states, gradients, determinism, options, registration."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.data import Batch

from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION
from zoo.plugins.molecule.gnn_baselines import GCN, GINE
from zoo.protocols import Encoded, MoleculeEncoder

SMILES = ["CCO", "c1ccccc1O", "CC(=O)N[C@@H](C)C(=O)O", "C/C=C/Cl", "O=C1CCCN1"]
TINY = dict(hidden_dim=16, layers=2, dropout=0.0)
MODELS = {"gcn": GCN, "gine": GINE}


def batch(smiles=SMILES) -> Batch:
    model = GCN(embed_dim=8, **TINY)
    return Batch.from_data_list([model.featurize(s) for s in smiles])


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_states(name):
    model = MODELS[name](embed_dim=8, **TINY)
    assert isinstance(model, MoleculeEncoder)
    assert model.featurizer == f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}" and model.dim == 8
    b = batch()
    out = model(b)
    assert isinstance(out, Encoded) and out.embedding.shape == (5, 8) and out.states is None
    model.return_states = True
    out = model(b)
    max_atoms = int(torch.bincount(b.batch).max())
    assert out.states.shape == (5, max_atoms, 16) and out.mask.shape == (5, max_atoms)
    assert out.mask.sum().item() == b.num_nodes


@pytest.mark.parametrize("name", MODELS)
def test_single_atom_molecules(name):
    model = MODELS[name](embed_dim=8, **TINY)
    out = model(batch(["[Na+]"]))  # a batch without any bond, in train mode
    assert out.embedding.shape == (1, 8) and torch.isfinite(out.embedding).all()
    out = model.eval()(batch(["[Na+]", "CCO"]))
    assert torch.isfinite(out.embedding).all()


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = MODELS[name](embed_dim=8, **{**TINY, "dropout": 0.1})
    model.return_states = True
    out = model(batch())
    (out.embedding.pow(2).sum() + out.states.sum()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_seed(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = MODELS[name](embed_dim=8, **TINY).eval()
        outs.append(model(batch()).embedding)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", MODELS)
def test_embedding_independent_of_batch(name):
    model = MODELS[name](embed_dim=8, **TINY).eval()
    together = model(batch()).embedding
    alone = torch.cat([model(batch([s])).embedding for s in SMILES])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_gine_uses_bond_features():
    torch.manual_seed(0)
    model = GINE(embed_dim=8, **TINY).eval()
    b = batch(["C/C=C/Cl"])
    plain = model(b).embedding
    b.edge_attr = torch.zeros_like(b.edge_attr)
    assert not torch.allclose(plain, model(b).embedding)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    "options, word",
    [(dict(layers=0), "layers"), (dict(hidden_dim=0), "hidden_dim"), (dict(dropout=1.0), "dropout"),
     (dict(dropout=-0.1), "dropout"), (dict(layers=2.5), "layers")],
)
def test_invalid_options(name, options, word):
    with pytest.raises(ValueError, match=rf"{name}: {word}="):
        MODELS[name](embed_dim=8, **options)


@pytest.mark.parametrize("name", MODELS)
def test_registered(fresh_registry, name):
    from zoo.errors import PluginLoadWarning
    from zoo.registry import get_component

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        component = get_component("molecule_encoder", name)
    model = component.create(embed_dim=8, **component.resolve_options(TINY))
    assert isinstance(model, MODELS[name]) and model(batch()).embedding.shape == (5, 8)
    assert set(component.config) == {"hidden_dim", "layers", "dropout"}
    defaults = {"gcn": {"hidden_dim": 256, "layers": 3, "dropout": 0.1},
                "gine": {"hidden_dim": 256, "layers": 4, "dropout": 0.1}}[name]
    assert dict(component.config) == defaults
