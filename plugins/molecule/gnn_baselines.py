"""Message-passing baselines over RDKit molecular graphs: a Text2Mol-style GCN and an edge-aware GINE.

Both read the same featurization as :class:`~zoo.plugins.molecule.graph_transformer.GraphTransformer`
(:mod:`zoo.featurize`, ``rdkit_graph/<version>``), so the on-disk graph cache is shared.

``gcn``
    Text2Mol's GCN baseline (Edwards et al., 2021): ``layers`` :class:`~torch_geometric.nn.GCNConv`
    layers on the atom features (bonds give the topology only), ReLU and dropout between layers,
    mean + max pooling, and a two-layer projection MLP to ``embed_dim``. GCNConv takes no bond
    features, so stereo reaches it through the atom features alone: each atom's CIP label (R/S)
    and whether it lies on an E or a Z double bond (see :mod:`zoo.featurize`), which is enough
    to tell R/S enantiomers and E/Z isomers apart.
``gine``
    An edge-aware GIN (Hu et al., 2020, "Strategies for Pre-training GNNs"): atoms embedded
    linearly, then ``layers`` :class:`~torch_geometric.nn.GINEConv` layers (bond features projected
    and added to the messages, a trainable epsilon, a two-layer MLP per layer), each followed by
    LayerNorm, ReLU, dropout and a residual connection; sum + mean pooling and a projection MLP.
    LayerNorm rather than BatchNorm so that a molecule's embedding does not depend on the other
    molecules in its batch (and a batch of one single-atom molecule trains fine).

With :attr:`return_states` set, both also return the last layer's node states, padded with
``to_dense_batch`` to ``[B, max_atoms, hidden_dim]`` (width :attr:`state_dim`), and their mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GINEConv
from torch_geometric.nn.pool import global_add_pool, global_max_pool, global_mean_pool

from zoo.api import ATOM_FEATURE_DIM, BOND_FEATURE_DIM, Dropout, Encoded
from zoo.plugins.molecule.graph_base import GraphEncoderBase, check_graph_options


def _projection(in_dim: int, hidden_dim: int, embed_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, embed_dim))


class GCN(GraphEncoderBase):
    """Text2Mol-style GCN: featurized molecules (a PyG ``Batch``) to ``[B, embed_dim]``."""

    def __init__(self, embed_dim: int, hidden_dim: int = 256, layers: int = 3, dropout: float = 0.1) -> None:
        check_graph_options("gcn", dropout, embed_dim=embed_dim, hidden_dim=hidden_dim, layers=layers)
        super().__init__(embed_dim, hidden_dim)
        self.convs = nn.ModuleList(
            GCNConv(ATOM_FEATURE_DIM if i == 0 else hidden_dim, hidden_dim) for i in range(layers)
        )
        self.drop = Dropout(dropout)  # per atom: the cheaper CPU mask (zoo.layers)
        self.project = _projection(2 * hidden_dim, hidden_dim, embed_dim, dropout)  # mean + max

    def forward(self, batch: Any) -> Encoded:
        index: Tensor = batch.batch
        size = int(batch.num_graphs)
        h = batch.x
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv(h, batch.edge_index)
            if i < last:  # as in Text2Mol: no activation after the last convolution
                h = self.drop(torch.relu(h))
        pooled = torch.cat([global_mean_pool(h, index, size), global_max_pool(h, index, size)], dim=-1)
        return self._encoded(self.project(pooled), h, index, size)


class GINE(GraphEncoderBase):
    """Edge-aware GIN with residual LayerNorm blocks: featurized molecules to ``[B, embed_dim]``."""

    def __init__(self, embed_dim: int, hidden_dim: int = 256, layers: int = 4, dropout: float = 0.1) -> None:
        check_graph_options("gine", dropout, embed_dim=embed_dim, hidden_dim=hidden_dim, layers=layers)
        super().__init__(embed_dim, hidden_dim)
        self.atom_embed = nn.Linear(ATOM_FEATURE_DIM, hidden_dim)
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(nn.Linear(hidden_dim, 2 * hidden_dim), nn.ReLU(), nn.Linear(2 * hidden_dim, hidden_dim)),
                train_eps=True,
                edge_dim=BOND_FEATURE_DIM,
            )
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(layers))
        self.drop = Dropout(dropout)  # per atom: the cheaper CPU mask (zoo.layers)
        self.project = _projection(2 * hidden_dim, hidden_dim, embed_dim, dropout)  # sum + mean

    def forward(self, batch: Any) -> Encoded:
        index: Tensor = batch.batch
        size = int(batch.num_graphs)
        h = self.atom_embed(batch.x)
        edge_attr = batch.edge_attr.to(h.dtype)
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.drop(torch.relu(norm(conv(h, batch.edge_index, edge_attr))))
        pooled = torch.cat([global_add_pool(h, index, size), global_mean_pool(h, index, size)], dim=-1)
        return self._encoded(self.project(pooled), h, index, size)
