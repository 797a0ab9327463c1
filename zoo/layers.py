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


def with_single_state(embedding: Tensor, hidden: Tensor, return_states: bool) -> Encoded:
    """``Encoded`` for encoders without tokens or atoms: with ``return_states``, the last hidden vector is
    the one state of each item (``[B, 1, h]``, mask all True), for aligners that want states."""
    if not return_states:
        return Encoded(embedding)
    mask = torch.ones(hidden.shape[0], 1, dtype=torch.bool, device=hidden.device)
    return Encoded(embedding, hidden.unsqueeze(1), mask)
