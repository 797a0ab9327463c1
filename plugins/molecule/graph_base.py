"""The shared base of the molecule encoders over RDKit graphs (``rdkit_graph`` featurization)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from zoo.api import FEATURIZER_NAME, FEATURIZER_VERSION, Encoded, check_dropout, check_ints, graph_arrays
from zoo.api import featurize as _featurize


def check_graph_options(name: str, dropout: float, **positive: int) -> None:
    """ValueErrors naming the component and the offending option."""
    check_ints(name, **positive)
    check_dropout(name, dropout)


class GraphEncoderBase(nn.Module):
    """What the graph encoders share: featurizer, featurize, and the Encoded output with optional node states."""

    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.dim = embed_dim
        self.state_dim = hidden_dim
        self.featurizer = f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}"  # one graph cache for all graph encoders
        self.featurize_arrays = graph_arrays  # torch-free, for featurization worker processes
        self.return_states = False

    def featurize(self, smiles: str) -> Any:
        """One SMILES to a ``torch_geometric.data.Data`` graph (see :mod:`zoo.featurize`)."""
        return _featurize(smiles)

    def _encoded(self, embedding: Tensor, h: Tensor, index: Tensor, size: int) -> Encoded:
        if not self.return_states:
            return Encoded(embedding)
        states, mask = to_dense_batch(h, index, batch_size=size)
        return Encoded(embedding, states, mask)
