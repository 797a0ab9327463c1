"""GraphTransformer: shapes, gradients, determinism, readout weights, options, registration."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION
from zoo.plugins.molecule.graph_transformer import GraphTransformer
from zoo.protocols import Encoded, MoleculeEncoder

SMILES = ["CCO", "c1ccccc1O", "CC(=O)N[C@@H](C)C(=O)O", "C/C=C/Cl", "O=C1CCCN1"]
TINY = dict(hidden_dim=16, layers=2, heads=4, dropout=0.0, ffn_mult=2)


def batch(smiles=SMILES) -> Batch:
    model = GraphTransformer(embed_dim=8, **TINY)
    return Batch.from_data_list([model.featurize(s) for s in smiles])


@pytest.mark.parametrize("readout", ["attention", "mean", "attention+mean"])
def test_shapes_and_states(readout):
    model = GraphTransformer(embed_dim=8, readout=readout, **TINY)
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


def test_single_atom_molecule():
    model = GraphTransformer(embed_dim=8, **TINY).eval()
    out = model(batch(["[Na+]", "CCO"]))
    assert torch.isfinite(out.embedding).all()


@pytest.mark.parametrize("readout", ["attention", "attention+mean"])
def test_gradients_reach_every_parameter(readout):
    torch.manual_seed(0)
    model = GraphTransformer(embed_dim=8, readout=readout, **{**TINY, "dropout": 0.1})
    model.return_states = True
    out = model(batch())
    (out.embedding.pow(2).sum() + out.states.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = GraphTransformer(embed_dim=8, **TINY).eval()
        outs.append(model(batch()).embedding)
    assert torch.equal(outs[0], outs[1])


def test_readout_weights_sum_to_one_per_graph():
    model = GraphTransformer(embed_dim=8, **TINY).eval()
    b = batch()
    model(b)
    w = model.last_readout_weights
    assert w.shape == (b.num_nodes,) and (w >= 0).all()
    torch.testing.assert_close(scatter(w, b.batch, reduce="sum"), torch.ones(5))


@pytest.mark.parametrize(
    "options, word",
    [
        (dict(hidden_dim=30, heads=8), "heads"),
        (dict(layers=0), "layers"),
        (dict(readout="max"), "readout"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        GraphTransformer(embed_dim=8, **options)


def test_registered():
    from zoo.errors import PluginLoadWarning
    from zoo.registry import get_component, reset_registry

    reset_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        component = get_component("molecule_encoder", "graph_transformer")
    model = component.create(embed_dim=8, **component.resolve_options(TINY))
    assert isinstance(model, GraphTransformer)
    assert set(component.config) == {"hidden_dim", "layers", "heads", "dropout", "readout", "ffn_mult"}
    reset_registry()


def test_cpu_dropout_drops_at_the_rate_and_keeps_the_expectation():
    from zoo.layers import Dropout

    drop = Dropout(0.1)
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # seeded like torch's dropout
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.005  # 200,000 draws: ~7 standard deviations
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - round(0.1 * 65536))))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes through the kept elements, scaled alike
    half = torch.ones(64, 33, dtype=torch.bfloat16, requires_grad=True)  # under CPU bf16 autocast
    out = drop(half)
    out.float().sum().backward()
    assert out.dtype == half.grad.dtype == torch.bfloat16 and torch.equal(half.grad, out.detach())
    odd = torch.randn(7, 3)  # a size that is not a multiple of 4 (16 random bits of a 64-bit word each)
    assert drop(odd).shape == (7, 3)
    drop.eval()
    assert torch.equal(drop(odd), odd)
    assert torch.equal(Dropout(0.0)(odd), odd)
