"""Small building blocks for components (part of the plugin API, :mod:`zoo.api`; imports torch)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.protocols import Encoded


def mlp_blocks(in_dim: int, hidden_dim: int, layers: int, dropout: float) -> nn.Sequential:
    """``layers`` blocks ``Linear -> LayerNorm -> GELU -> Dropout``, the first from ``in_dim``, all to ``hidden_dim``."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(),
                   nn.Dropout(dropout)]
    return nn.Sequential(*blocks)


class _MaskAndScale(torch.autograd.Function):
    """``x * keep * scale`` whose backward reuses the boolean mask (no float mask tensor is kept, and
    bf16 inputs stay bf16: ~3x cheaper than multiplying by a float mask under CPU bf16 autocast)."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with a cheaper random mask on CPU, for per-atom/per-token tensors.

    torch draws a CPU dropout mask element by element, 64 random bits each (MKL's vectorised
    Bernoulli sampler is used on Intel CPUs only): ~11 ms per million elements on one core, a tenth
    of an ``aman`` training step on the AMD machines we train on. Here 16 bits of one 64-bit draw
    decide each element (~2 ms per million): an element is dropped with probability ``p`` rounded
    to a multiple of 2^-16 (within 8e-6 of ``p``) and kept ones are scaled so that the expectation
    is unchanged; the boolean mask is applied by :class:`_MaskAndScale`. Elsewhere (CUDA, eval,
    ``p`` 0 or 1, ``inplace``) this is ``nn.Dropout``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.device.type != "cpu" or self.inplace or not 0.0 < self.p < 1.0:
            return super().forward(x)
        drop = round(self.p * 65536)  # of the 65,536 values of 16 random bits
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits random
        keep = words.view(torch.int16)[: x.numel()].view(x.shape) >= drop - 32768
        return _MaskAndScale.apply(x, keep, 65536 / (65536 - drop))


def with_single_state(embedding: Tensor, hidden: Tensor, return_states: bool) -> Encoded:
    """``Encoded`` for encoders without tokens or atoms: with ``return_states``, the last hidden vector is
    the one state of each item (``[B, 1, h]``, mask all True), for aligners that want states."""
    if not return_states:
        return Encoded(embedding)
    mask = torch.ones(hidden.shape[0], 1, dtype=torch.bool, device=hidden.device)
    return Encoded(embedding, hidden.unsqueeze(1), mask)
