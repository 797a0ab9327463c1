"""An MLP over Morgan count fingerprints (Text2Mol's MLP baseline, with counts instead of bits).

Featurization: RDKit's Morgan generator (``radius``, ``n_bits`` folded bits) gives a count
fingerprint per molecule, stored raw as ``Data(fp=[1, n_bits] float32)`` so that PyG batching
stacks it to ``batch.fp`` ``[B, n_bits]``; there is no graph. ``num_nodes`` is set to a 0-dim
tensor ``1`` (one "node" per molecule): it keeps PyG from warning that it cannot infer the
number of nodes, and, being a tensor, it survives :class:`zoo.cache.PackedGraphs`.

Model: ``log1p(counts)`` then ``layers`` hidden blocks ``Linear -> LayerNorm -> GELU -> Dropout``
(the first from ``n_bits`` to ``hidden_dim``) and a final ``Linear`` to ``embed_dim``.
With :attr:`return_states` set, the last hidden vector is returned as a single state per
molecule (``[B, 1, hidden_dim]``, mask all True) for aligners that want states.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo.featurize import parse_smiles
from zoo.plugins.checks import check_dropout, check_ints
from zoo.protocols import Encoded

FEATURIZER_VERSION = "1"  # bump when the fingerprint changes: it keys the on-disk cache


@lru_cache(maxsize=None)
def _generator(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_counts(smiles: str, radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """The folded Morgan count fingerprint of one SMILES as a ``float32`` array ``[n_bits]``."""
    mol = parse_smiles(smiles)  # handles ChEBI-20's doubled backslashes; SmilesError if unparsable
    return _generator(radius, n_bits).GetCountFingerprintAsNumPy(mol).astype(np.float32)


class FingerprintMLP(nn.Module):
    """Morgan count fingerprints (``batch.fp`` ``[B, n_bits]``) to ``[B, embed_dim]`` embeddings."""

    def __init__(
        self,
        embed_dim: int,
        radius: int = 2,
        n_bits: int = 2048,
        hidden_dim: int = 512,
        layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_ints("fingerprint_mlp", embed_dim=embed_dim, n_bits=n_bits, hidden_dim=hidden_dim, layers=layers)
        check_ints("fingerprint_mlp", minimum=0, radius=radius)
        check_dropout("fingerprint_mlp", dropout)

        self.dim = embed_dim
        self.state_dim = hidden_dim
        self.radius, self.n_bits = radius, n_bits
        self.featurizer = f"morgan_count/r{radius}/{n_bits}/{FEATURIZER_VERSION}"
        self.return_states = False

        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(n_bits if i == 0 else hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(),
                       nn.Dropout(dropout)]
        self.hidden = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden_dim, embed_dim)

    def featurize(self, smiles: str) -> Any:
        """One SMILES to ``Data(fp=[1, n_bits] float32 counts, num_nodes=tensor(1))``."""
        from torch_geometric.data import Data

        fp = torch.from_numpy(morgan_counts(smiles, self.radius, self.n_bits)).unsqueeze(0)
        return Data(fp=fp, num_nodes=torch.tensor(1))

    def forward(self, batch: Any) -> Encoded:
        fp: Tensor = batch.fp
        if fp.dim() != 2 or fp.shape[-1] != self.n_bits:
            raise ValueError(
                f"fingerprint_mlp: expected batch.fp of shape [B, {self.n_bits}], got {tuple(fp.shape)} "
                f"(featurized with a different n_bits?)"
            )
        h = self.hidden(torch.log1p(fp.to(self.out.weight.dtype)))
        embedding = self.out(h)
        if not self.return_states:
            return Encoded(embedding)
        return Encoded(embedding, h.unsqueeze(1), torch.ones(h.shape[0], 1, dtype=torch.bool, device=h.device))
