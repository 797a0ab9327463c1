"""The small typed contracts every component implements.

Components are ``torch.nn.Module`` subclasses; these protocols document what the model
assembly in :mod:`zoo.model` relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import torch


@dataclass
class Encoded:
    """An encoder's output: pooled embeddings plus optional per-token / per-node states."""

    embedding: "torch.Tensor"  # [B, d]
    states: "torch.Tensor | None" = None  # [B, L, h] padded token or node states
    mask: "torch.Tensor | None" = None  # [B, L] True where a state is real


@dataclass
class Aligned:
    """An aligner's output: aligned embeddings, auxiliary losses (summed into the objective)
    and scalar metrics to log."""

    text: "torch.Tensor"
    molecule: "torch.Tensor"
    losses: dict[str, "torch.Tensor"] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class TextEncoder(Protocol):
    """Texts to ``[B, d]``.

    ``prepare(texts)`` turns raw strings into the model input (token ids, or cached frozen
    backbone features); ``forward(batch)`` returns :class:`Encoded`. ``cache_key`` identifies
    the frozen backbone's outputs for the on-disk cache (``None`` when nothing is cached).
    """

    dim: int
    frozen: bool

    def prepare(self, texts: Sequence[str]) -> Any: ...

    def forward(self, batch: Any) -> Encoded: ...


@runtime_checkable
class MoleculeEncoder(Protocol):
    """A PyG batch of featurized molecules to ``[B, d]``; ``featurizer`` names what it needs."""

    dim: int
    featurizer: str  # name/version of the featurization, e.g. "rdkit_graph/1": keys the on-disk cache

    def featurize(self, smiles: str) -> Any: ...  # one molecule -> torch_geometric.data.Data

    def forward(self, batch: Any) -> Encoded: ...


@runtime_checkable
class Aligner(Protocol):
    """Two embeddings (and states) to aligned embeddings plus auxiliary losses."""

    def forward(self, text: Encoded, molecule: Encoded) -> Aligned: ...


@runtime_checkable
class RetrievalLoss(Protocol):
    """``(text [B, d], molecule [B, d]) -> scalar``; row i of each is a positive pair."""

    def forward(self, text: "torch.Tensor", molecule: "torch.Tensor") -> "torch.Tensor": ...
