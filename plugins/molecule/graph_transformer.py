"""A graph transformer over RDKit molecular graphs with bond features and attention readout.

This is AMAN's molecule encoder: atoms are embedded linearly, then ``layers`` blocks of
edge-aware multi-head attention over bonded neighbours (:class:`~torch_geometric.nn.TransformerConv`
with bond features added to keys and values, and a gated skip connection) each followed by a
position-wise feed-forward network, both post-norm residual. A gated attention readout
(:class:`~torch_geometric.nn.aggr.AttentionalAggregation`) learns which atoms matter; its last
per-atom weights are kept in :attr:`GraphTransformer.last_readout_weights` for inspection.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import TransformerConv
from torch_geometric.nn.aggr import AttentionalAggregation
from torch_geometric.nn.pool import global_mean_pool
from torch_geometric.utils import softmax

from zoo.api import ATOM_FEATURE_DIM, BOND_FEATURE_DIM, Dropout, Encoded
from zoo.plugins.molecule.graph_base import GraphEncoderBase, check_graph_options

READOUTS = ("attention", "mean", "attention+mean")


class _Block(nn.Module):
    """Edge-aware attention + FFN, each with residual and LayerNorm (post-norm)."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, ffn_mult: int) -> None:
        super().__init__()
        self.attn = TransformerConv(
            hidden_dim, hidden_dim // heads, heads=heads, edge_dim=BOND_FEATURE_DIM, beta=True, dropout=dropout
        )
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, ffn_mult * hidden_dim),
            nn.GELU(),
            Dropout(dropout),
            nn.Linear(ffn_mult * hidden_dim, hidden_dim),
        )
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.drop = Dropout(dropout)  # per atom: the cheaper CPU mask (zoo.layers)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h = self.norm1(h + self.drop(self.attn(h, edge_index, edge_attr)))
        return self.norm2(h + self.drop(self.ffn(h)))


class GraphTransformer(GraphEncoderBase):
    """Featurized molecules (a PyG ``Batch``) to ``[B, embed_dim]`` embeddings.

    ``states``/``mask`` (``[B, max_atoms, hidden_dim]`` node states from ``to_dense_batch``) are
    returned only when :attr:`return_states` is True; their width is :attr:`state_dim`.
    """

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int = 256,
        layers: int = 4,
        heads: int = 8,
        dropout: float = 0.1,
        readout: str = "attention",
        ffn_mult: int = 2,
    ) -> None:
        check_graph_options("graph_transformer", dropout, embed_dim=embed_dim, hidden_dim=hidden_dim, layers=layers,
                            heads=heads, ffn_mult=ffn_mult)
        if hidden_dim % heads:
            raise ValueError(f"graph_transformer: heads={heads} must divide hidden_dim={hidden_dim}")
        if readout not in READOUTS:
            raise ValueError(f"graph_transformer: readout={readout!r} must be one of {', '.join(READOUTS)}")
        super().__init__(embed_dim, hidden_dim)
        self.readout = readout
        self.last_readout_weights: Tensor | None = None  # [num_nodes], softmax per graph

        self.atom_embed = nn.Sequential(nn.Linear(ATOM_FEATURE_DIM, hidden_dim), nn.LayerNorm(hidden_dim))
        self.blocks = nn.ModuleList(_Block(hidden_dim, heads, dropout, ffn_mult) for _ in range(layers))
        self.attention_pool: AttentionalAggregation | None = None
        if "attention" in readout:
            gate = nn.Sequential(nn.Linear(hidden_dim, hidden_dim // 2), nn.GELU(), nn.Linear(hidden_dim // 2, 1))
            self.attention_pool = AttentionalAggregation(gate_nn=gate)
            gate.register_forward_hook(self._keep_gate)
        self._gate: Tensor | None = None
        pooled_dim = hidden_dim * (2 if readout == "attention+mean" else 1)
        self.project = nn.Sequential(
            nn.Linear(pooled_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, embed_dim)
        )

    def _keep_gate(self, _module: nn.Module, _inputs: Any, output: Tensor) -> None:
        self._gate = output.detach()

    def forward(self, batch: Any) -> Encoded:
        index: Tensor = batch.batch
        size = int(batch.num_graphs)
        h = self.atom_embed(batch.x)
        edge_attr = batch.edge_attr.to(h.dtype)
        for block in self.blocks:
            h = block(h, batch.edge_index, edge_attr)

        pooled = []
        if self.attention_pool is not None:
            pooled.append(self.attention_pool(h, index, dim_size=size))
            self.last_readout_weights = softmax(self._gate, index, num_nodes=size).squeeze(-1)
            self._gate = None
        if "mean" in self.readout:
            pooled.append(global_mean_pool(h, index, size))
        embedding = self.project(torch.cat(pooled, dim=-1) if len(pooled) > 1 else pooled[0])
        return self._encoded(embedding, h, index, size)

