"""InfoNCE loss: value vs a direct cross-entropy, alignment, temperature, directions, errors, registration."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from zoo.plugins.loss.infonce import InfoNCELoss


def test_matches_direct_cross_entropy():
    torch.manual_seed(0)
    text, mol = torch.randn(6, 8), torch.randn(6, 8)
    logits = (F.normalize(text, dim=1) @ F.normalize(mol, dim=1).T) / 0.07
    target = torch.arange(6)
    t2m = F.cross_entropy(logits, target)
    m2t = F.cross_entropy(logits.T, target)
    torch.testing.assert_close(InfoNCELoss()(text, mol), 0.5 * (t2m + m2t))
    torch.testing.assert_close(InfoNCELoss(directions="text_to_molecule")(text, mol), t2m)
    # by hand, row 0: -log softmax(logits[0])[0]
    manual = -(logits[0, 0] - torch.logsumexp(logits[0], dim=0))
    torch.testing.assert_close(F.cross_entropy(logits[:1], target[:1]), manual)


def test_perfect_alignment_beats_random():
    torch.manual_seed(1)
    text = torch.randn(8, 16)
    loss = InfoNCELoss()
    aligned, random = loss(text, text.clone()), loss(text, torch.randn(8, 16))
    assert aligned < random
    assert random > 0.5 * math.log(8)  # near chance (log B) or worse
    assert loss(torch.eye(8), torch.eye(8)).item() < 1e-3  # orthogonal pairs at scale 1/0.07


def test_scale_invariant_inputs():
    torch.manual_seed(2)
    text, mol = torch.randn(5, 4), torch.randn(5, 4)
    loss = InfoNCELoss()
    torch.testing.assert_close(loss(10 * text, 0.1 * mol), loss(text, mol))


def test_temperature_gradient_when_learnable():
    torch.manual_seed(3)
    text = torch.randn(6, 8, requires_grad=True)
    mol = torch.randn(6, 8, requires_grad=True)
    loss_fn = InfoNCELoss(temperature=0.1)
    assert [n for n, _ in loss_fn.named_parameters()] == ["logit_scale"]
    assert loss_fn.temperature == pytest.approx(0.1)
    loss = loss_fn(text, mol)
    loss.backward()
    assert loss_fn.logit_scale.grad is not None and torch.isfinite(loss_fn.logit_scale.grad)
    assert loss_fn.logit_scale.grad.abs() > 0
    assert torch.isfinite(text.grad).all() and text.grad.abs().sum() > 0 and mol.grad.abs().sum() > 0


def test_no_temperature_gradient_when_fixed():
    torch.manual_seed(4)
    text = torch.randn(6, 8, requires_grad=True)
    loss_fn = InfoNCELoss(learnable=False)
    assert list(loss_fn.parameters()) == []
    assert "logit_scale" in loss_fn.state_dict()  # saved with checkpoints, never trained
    loss_fn(text, torch.randn(6, 8)).backward()
    assert loss_fn.logit_scale.grad is None and not loss_fn.logit_scale.requires_grad
    assert text.grad is not None


def test_logit_scale_capped_at_100():
    loss_fn = InfoNCELoss(temperature=0.01)
    with torch.no_grad():
        loss_fn.logit_scale.fill_(math.log(1000.0))
    assert loss_fn.scale.item() == pytest.approx(100.0)
    assert loss_fn.temperature == pytest.approx(0.01)
    torch.manual_seed(5)
    text, mol = torch.randn(4, 8), torch.randn(4, 8)
    logits = 100.0 * F.normalize(text, dim=1) @ F.normalize(mol, dim=1).T
    want = 0.5 * (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4)))
    torch.testing.assert_close(loss_fn(text, mol), want)


def test_deterministic():
    torch.manual_seed(6)
    text, mol = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.equal(InfoNCELoss()(text, mol), InfoNCELoss()(text, mol))


def test_errors():
    loss = InfoNCELoss()
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(3), torch.randn(3))
    for options, word in [({"directions": "x"}, "directions"), ({"temperature": 0}, "temperature"),
                          ({"temperature": -0.1}, "temperature"), ({"temperature": 0.001}, "temperature"),
                          ({"temperature": float("inf")}, "temperature"), ({"learnable": "yes"}, "learnable")]:
        with pytest.raises(ValueError, match=rf"infonce: {word}="):
            InfoNCELoss(**options)


def test_registered(fresh_registry):
    from zoo.errors import PluginLoadWarning
    from zoo.registry import get_component

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        component = get_component("loss", "infonce")
    loss = component.create(embed_dim=8, **component.resolve_options({"learnable": False}))
    assert isinstance(loss, InfoNCELoss) and not loss.learnable and loss.directions == "both"
    assert dict(component.config) == {"temperature": 0.07, "learnable": True, "directions": "both"}
