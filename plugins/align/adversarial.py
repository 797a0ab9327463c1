"""Adversarial modality alignment (AMAN) and the identity aligner.

A modality discriminator (an MLP) predicts from an embedding whether it came from a text (0) or
a molecule (1); the encoders are trained to fool it, so the two embedding distributions become
indistinguishable. Two ways of training the min-max game inside one optimizer step:

``mode="grl"`` (default)
    Embeddings pass through a gradient reversal layer before the discriminator. One loss
    ``weight * BCE`` is minimised by the discriminator and, through the reversed gradient
    (scaled by ``grl_lambda``), maximised by the encoders (Ganin & Lempitsky, 2015).
``mode="minmax"``
    The GAN-style alternating game written as two terms summed into one loss: a
    discriminator term, ``BCE`` on *detached* embeddings (updates only the discriminator),
    and a generator term, ``BCE`` with *flipped* labels through a frozen (detached-parameter)
    copy of the discriminator (updates only the encoders). Both players step together in the
    same optimizer step, i.e. simultaneous rather than strictly alternating updates.

In eval mode the discriminator is skipped and no losses are returned.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from zoo.api import Aligned, Encoded

MODES = ("grl", "minmax")


class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    return GradientReversal.apply(x, scale)


class AdversarialAligner(nn.Module):
    """Embeddings pass through unchanged; adds ``losses["adversarial"]`` and ``metrics["disc_acc"]``."""

    needs_states = False  # pooled embeddings only; the assembly need not request node/token states

    def __init__(
        self,
        embed_dim: int,
        weight: float = 0.1,
        hidden_dim: int = 256,
        dropout: float = 0.1,
        grl_lambda: float = 1.0,
        mode: str = "grl",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"adversarial: mode={mode!r} must be one of {', '.join(MODES)}")
        if embed_dim < 1 or hidden_dim < 1:
            raise ValueError(f"adversarial: embed_dim={embed_dim} and hidden_dim={hidden_dim} must be >= 1")
        if weight < 0 or grl_lambda < 0:
            raise ValueError(f"adversarial: weight={weight} and grl_lambda={grl_lambda} must be >= 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"adversarial: dropout={dropout} must be in [0, 1)")
        self.weight, self.grl_lambda, self.mode = weight, grl_lambda, mode
        self.discriminator = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)
        )

    def forward(self, text: Encoded, molecule: Encoded) -> Aligned:
        t, m = text.embedding, molecule.embedding
        if not self.training:
            return Aligned(text=t, molecule=m)
        emb = torch.cat([t, m])
        labels = torch.cat([t.new_zeros(len(t)), m.new_ones(len(m))])  # text 0, molecule 1
        if self.mode == "grl":
            logits = self.discriminator(grad_reverse(emb, self.grl_lambda)).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
        else:
            logits = self.discriminator(emb.detach()).squeeze(-1)
            frozen = {k: p.detach() for k, p in self.discriminator.named_parameters()}
            fooled = functional_call(self.discriminator, frozen, (emb,)).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, labels) + F.binary_cross_entropy_with_logits(
                fooled, 1.0 - labels
            )
        acc = ((logits.detach() > 0).to(labels.dtype) == labels).float().mean().item()
        return Aligned(text=t, molecule=m, losses={"adversarial": self.weight * loss}, metrics={"disc_acc": acc})


class IdentityAligner(nn.Module):
    """No alignment: embeddings unchanged, no losses."""

    needs_states = False

    def __init__(self, embed_dim: int | None = None) -> None:
        super().__init__()

    def forward(self, text: Encoded, molecule: Encoded) -> Aligned:
        return Aligned(text=text.embedding, molecule=molecule.embedding)
