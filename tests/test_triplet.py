"""Triplet loss: margins, mining modes, distances, directions, errors, registration."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from zoo.plugins.loss.triplet import TripletLoss


def well_separated(b: int = 4, d: int = 8):
    """Pairs at distance ~0, negatives orthogonal (cosine distance 1, euclidean sqrt 2)."""
    text = torch.eye(b, d)
    return text, text + 0.01 * torch.eye(b, d).roll(1, dims=1)


@pytest.mark.parametrize("mining", ["hard", "semihard", "all"])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_zero_when_positives_far_closer(mining, distance):
    text, mol = well_separated()
    assert TripletLoss(margin=0.2, mining=mining, distance=distance)(text, mol).item() == 0.0


@pytest.mark.parametrize("mining", ["hard", "semihard", "all"])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_positive_and_differentiable_otherwise(mining, distance):
    torch.manual_seed(0)
    text, mol = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    loss = TripletLoss(margin=0.5, mining=mining, distance=distance)(text, mol)
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert torch.isfinite(text.grad).all() and text.grad.abs().sum() > 0 and mol.grad.abs().sum() > 0


def test_margin_matters():
    text, mol = well_separated()  # positive distance ~0, hardest negative ~0.99-1 (cosine)
    assert TripletLoss(margin=2.0)(text, mol).item() == pytest.approx(1.0, abs=0.02)


def test_hard_mining_by_hand():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    mol = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 1.0]])
    dist = 1 - F.normalize(text, dim=1) @ F.normalize(mol, dim=1).T
    want = torch.stack(
        [F.relu(dist[i, i] - min(dist[i, j] for j in range(3) if j != i) + 0.2) for i in range(3)]
    ).mean()
    got = TripletLoss(directions="text_to_molecule")(text, mol)
    torch.testing.assert_close(got, want)


def test_mining_orders():
    torch.manual_seed(1)
    text, mol = torch.randn(8, 4), torch.randn(8, 4)
    hard = TripletLoss(mining="hard")(text, mol)
    semi = TripletLoss(mining="semihard")(text, mol)
    assert hard >= semi  # the hardest negative gives the largest per-anchor loss


def test_semihard_picks_closest_farther_negative():
    # anchor 0: positive at distance 0.5; negatives at 0.1 (hard), 0.6 (semi-hard), 0.9 (easy).
    dist = torch.tensor([[0.5, 0.1, 0.6, 0.9]] + [[0.0] * 4] * 3)
    dist[1:, :] = 5.0
    dist[1, 1] = dist[2, 2] = dist[3, 3] = 0.0
    loss = TripletLoss(margin=0.2, mining="semihard")
    assert loss._mine(dist).item() == pytest.approx((0.5 - 0.6 + 0.2) / 4)
    assert TripletLoss(margin=0.2, mining="hard")._mine(dist).item() == pytest.approx((0.5 - 0.1 + 0.2) / 4)
    # batch-all: violators 0.1 (0.6), 0.6 (0.1); 0.9 does not violate.
    assert TripletLoss(margin=0.2, mining="all")._mine(dist).item() == pytest.approx((0.6 + 0.1) / 2)


def test_directions():
    torch.manual_seed(2)
    text, mol = torch.randn(5, 4), torch.randn(5, 4)
    one = TripletLoss(directions="text_to_molecule")
    both = TripletLoss(directions="both")(text, mol)
    torch.testing.assert_close(both, 0.5 * (one(text, mol) + one(mol, text)))


def test_euclidean_vs_cosine_scale_sensitivity():
    torch.manual_seed(3)
    text, mol = torch.randn(5, 4), torch.randn(5, 4)
    cos, euc = TripletLoss(distance="cosine"), TripletLoss(distance="euclidean")
    torch.testing.assert_close(cos(10 * text, mol), cos(text, mol))  # cosine is scale invariant
    assert not torch.allclose(euc(10 * text, 10 * mol), euc(text, mol))
    torch.testing.assert_close(euc.distances(text, mol), torch.cdist(text, mol), rtol=1e-4, atol=1e-4)


def test_errors():
    loss = TripletLoss()
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(3, 4), torch.randn(2, 4))
    for options, word in [({"mining": "easy"}, "mining"), ({"distance": "l1"}, "distance"),
                          ({"directions": "x"}, "directions"), ({"margin": -1}, "margin")]:
        with pytest.raises(ValueError, match=word):
            TripletLoss(**options)


def test_registered():
    from zoo.errors import PluginLoadWarning
    from zoo.registry import get_component, reset_registry

    reset_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        component = get_component("loss", "triplet")
    loss = component.create(embed_dim=8, **component.resolve_options({"mining": "all"}))
    assert isinstance(loss, TripletLoss) and loss.mining == "all"
    assert set(component.config) == {"margin", "distance", "mining", "directions"}
    reset_registry()
