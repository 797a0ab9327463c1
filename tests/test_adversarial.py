"""Adversarial aligner: losses, gradient reversal, min-max mode, eval mode, registration."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from zoo.plugins.align.adversarial import AdversarialAligner, IdentityAligner
from zoo.protocols import Aligned, Aligner, Encoded


def embeddings(b: int = 6, d: int = 8):
    torch.manual_seed(0)
    return torch.randn(b, d, requires_grad=True), (torch.randn(b, d) + 1.0).requires_grad_()


def test_outputs():
    t, m = embeddings()
    aligner = AdversarialAligner(embed_dim=8, hidden_dim=16)
    assert isinstance(aligner, Aligner)
    out = aligner(Encoded(t), Encoded(m))
    assert isinstance(out, Aligned) and out.text is t and out.molecule is m
    assert set(out.losses) == {"adversarial"} and out.losses["adversarial"].dim() == 0
    assert 0.0 <= out.metrics["disc_acc"] <= 1.0


def test_eval_mode_skips_discriminator():
    t, m = embeddings()
    out = AdversarialAligner(embed_dim=8).eval()(Encoded(t), Encoded(m))
    assert out.losses == {} and out.metrics == {} and out.text is t


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_gradient_reversal_flips_encoder_gradient(lam):
    t, m = embeddings()
    aligner = AdversarialAligner(embed_dim=8, hidden_dim=16, dropout=0.0, weight=0.3, grl_lambda=lam)
    aligner(Encoded(t), Encoded(m)).losses["adversarial"].backward()
    for p in aligner.discriminator.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    disc_grads = [p.grad.clone() for p in aligner.discriminator.parameters()]
    grl_t, grl_m = t.grad.clone(), m.grad.clone()

    # The same loss without reversal: what the discriminator descends on.
    t.grad = m.grad = None
    aligner.zero_grad()
    logits = aligner.discriminator(torch.cat([t, m])).squeeze(-1)
    labels = torch.cat([torch.zeros(6), torch.ones(6)])
    (0.3 * F.binary_cross_entropy_with_logits(logits, labels)).backward()
    torch.testing.assert_close(grl_t, -lam * t.grad)
    torch.testing.assert_close(grl_m, -lam * m.grad)
    assert grl_t.abs().sum() > 0
    for got, want in zip(disc_grads, (p.grad for p in aligner.discriminator.parameters())):
        torch.testing.assert_close(got, want)  # the discriminator itself is not reversed


def test_minmax_separates_players():
    t, m = embeddings()
    aligner = AdversarialAligner(embed_dim=8, hidden_dim=16, dropout=0.0, mode="minmax")
    out = aligner(Encoded(t), Encoded(m))
    out.losses["adversarial"].backward()
    labels = torch.cat([torch.zeros(6), torch.ones(6)])
    # Encoder side gets only the generator term (flipped labels through the discriminator).
    emb = torch.cat([t, m]).detach().requires_grad_()
    gen = F.binary_cross_entropy_with_logits(aligner.discriminator(emb).squeeze(-1), 1 - labels)
    (want,) = torch.autograd.grad(0.1 * gen, emb)
    torch.testing.assert_close(torch.cat([t.grad, m.grad]), want)
    # Discriminator side gets only the discriminator term (true labels on detached embeddings).
    aligner_grads = [p.grad.clone() for p in aligner.discriminator.parameters()]
    aligner.zero_grad()
    disc = F.binary_cross_entropy_with_logits(aligner.discriminator(emb.detach()).squeeze(-1), labels)
    (0.1 * disc).backward()
    for got, p in zip(aligner_grads, aligner.discriminator.parameters()):
        torch.testing.assert_close(got, p.grad)


def test_discriminator_learns_separable_modalities():
    torch.manual_seed(0)
    aligner = AdversarialAligner(embed_dim=4, hidden_dim=16, dropout=0.0, weight=1.0)
    opt = torch.optim.Adam(aligner.parameters(), lr=0.05)
    t, m = torch.randn(32, 4) - 2.0, torch.randn(32, 4) + 2.0  # fixed (no encoder to fool it)
    for _ in range(30):
        out = aligner(Encoded(t), Encoded(m))
        opt.zero_grad()
        out.losses["adversarial"].backward()
        opt.step()
    assert out.metrics["disc_acc"] > 0.95


def test_identity_aligner():
    t, m = embeddings()
    out = IdentityAligner(embed_dim=8)(Encoded(t), Encoded(m))
    assert out.text is t and out.molecule is m and out.losses == {}


@pytest.mark.parametrize("options, word", [(dict(mode="gan"), "mode"), (dict(dropout=1.0), "dropout")])
def test_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        AdversarialAligner(embed_dim=8, **options)


def test_registered():
    from zoo.errors import PluginLoadWarning
    from zoo.registry import get_component, reset_registry

    reset_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        adv = get_component("aligner", "adversarial")
        none = get_component("aligner", "none")
    assert isinstance(adv.create(embed_dim=8, **adv.resolve_options({"mode": "minmax"})), AdversarialAligner)
    assert isinstance(none.create(embed_dim=8, **none.resolve_options()), IdentityAligner)
    assert set(adv.config) == {"weight", "hidden_dim", "dropout", "grl_lambda", "mode"}
    reset_registry()
