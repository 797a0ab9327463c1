"""An MLP over Morgan count fingerprints (Text2Mol's MLP baseline, with counts instead of bits).

Featurization: RDKit's Morgan generator (``radius``, ``n_bits`` folded bits) gives a count
fingerprint per molecule; ``extra`` appends more RDKit fingerprints (:data:`EXTRA_FINGERPRINTS`:
``maccs`` keys, folded ``atompair`` and ``torsion`` counts, ``feature_morgan`` (FCFP-like
pharmacophoric-invariant Morgan counts of the same ``radius``), each ``n_bits`` wide except MACCS' 167).
Stereo (featurizer version 2): every generator runs with ``includeChirality=True``. The Morgan and
feature-Morgan counts then see CIP R/S labels and E/Z double bonds, atom pairs and torsions see
R/S only (RDKit's atom-pair and torsion generators have no bond stereo); MACCS keys are
stereo-blind by construction. Morgan adds a centre's R/S only from the first radius at which its
neighbours' environments all differ, so at ``radius=2`` a centre whose branches look alike for
two bonds stays hidden (and ``radius=0`` sees no stereo at all); atom pairs and torsions carry
the label regardless. Version 1 was stereo-blind. The vector is
stored raw as ``Data(fp=[1, width] float32)`` so that PyG batching stacks it to ``batch.fp``
``[B, width]``; there is no graph. ``num_nodes`` is set to a 0-dim
tensor ``1`` (one "node" per molecule): it keeps PyG from warning that it cannot infer the
number of nodes, and, being a tensor, it survives :class:`zoo.cache.PackedGraphs`.

Model: ``log1p(counts)`` then ``layers`` hidden blocks ``Linear -> LayerNorm -> GELU -> Dropout``
(the first from the fingerprint width to ``hidden_dim``) and a final ``Linear`` to ``embed_dim``.
With :attr:`return_states` set, the last hidden vector is returned as a single state per
molecule (``[B, 1, hidden_dim]``, mask all True) for aligners that want states.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from zoo.api import Encoded, check_dropout, check_ints, mlp_blocks, parse_smiles, with_single_state

FEATURIZER_VERSION = "2"  # bump when the fingerprint changes: it keys the on-disk cache (2: chirality)


@lru_cache(maxsize=None)
def _generator(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits, includeChirality=True)


@lru_cache(maxsize=None)
def _extra_generator(kind: str, radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator as gen

    if kind == "atompair":
        return gen.GetAtomPairGenerator(fpSize=n_bits, includeChirality=True)
    if kind == "torsion":
        return gen.GetTopologicalTorsionGenerator(fpSize=n_bits, includeChirality=True)
    if kind == "feature_morgan":
        return gen.GetMorganGenerator(radius=radius, fpSize=n_bits, includeChirality=True,
                                      atomInvariantsGenerator=gen.GetMorganFeatureAtomInvGen())
    raise ValueError(kind)


#: Fingerprints that ``extra`` may append to the Morgan counts.
EXTRA_FINGERPRINTS = ("maccs", "atompair", "torsion", "feature_morgan")


def morgan_counts(smiles: str, radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """The folded Morgan count fingerprint (with chirality) of one SMILES as a ``float32`` array ``[n_bits]``."""
    mol = parse_smiles(smiles)  # handles ChEBI-20's doubled backslashes; SmilesError if unparsable
    return _generator(radius, n_bits).GetCountFingerprintAsNumPy(mol).astype(np.float32)


def fingerprint_vector(smiles: str, radius: int = 2, n_bits: int = 2048, extra: Sequence[str] = ()) -> np.ndarray:
    """Morgan counts followed by each ``extra`` fingerprint, as one ``float32`` vector."""
    mol = parse_smiles(smiles)
    parts = [_generator(radius, n_bits).GetCountFingerprintAsNumPy(mol).astype(np.float32)]
    for kind in extra:
        if kind == "maccs":
            from rdkit.Chem import MACCSkeys

            parts.append(np.array(list(MACCSkeys.GenMACCSKeys(mol)), dtype=np.float32))
        else:
            parts.append(_extra_generator(kind, radius, n_bits).GetCountFingerprintAsNumPy(mol).astype(np.float32))
    return np.concatenate(parts)


def fingerprint_width(n_bits: int, extra: Sequence[str]) -> int:
    return n_bits + sum(167 if kind == "maccs" else n_bits for kind in extra)


class FingerprintMLP(nn.Module):
    """Morgan count (+ ``extra``) fingerprints (``batch.fp`` ``[B, width]``) to ``[B, embed_dim]`` embeddings."""

    def __init__(
        self,
        embed_dim: int,
        radius: int = 2,
        n_bits: int = 2048,
        hidden_dim: int = 512,
        layers: int = 2,
        dropout: float = 0.2,
        extra: Sequence[str] = (),
    ) -> None:
        super().__init__()
        check_ints("fingerprint_mlp", embed_dim=embed_dim, n_bits=n_bits, hidden_dim=hidden_dim, layers=layers)
        check_ints("fingerprint_mlp", minimum=0, radius=radius)
        check_dropout("fingerprint_mlp", dropout)
        if isinstance(extra, str) or not all(isinstance(k, str) for k in extra):
            raise ValueError(f"fingerprint_mlp: extra={extra!r} must be a list of names from {', '.join(EXTRA_FINGERPRINTS)}")
        unknown = [k for k in extra if k not in EXTRA_FINGERPRINTS]
        if unknown or len(set(extra)) != len(extra):
            raise ValueError(f"fingerprint_mlp: extra={list(extra)!r}: unknown or repeated fingerprint "
                             f"{', '.join(map(repr, unknown)) or ''}; choose from {', '.join(EXTRA_FINGERPRINTS)}")

        self.dim = embed_dim
        self.state_dim = hidden_dim
        self.radius, self.n_bits, self.extra = radius, n_bits, tuple(extra)
        self.width = fingerprint_width(n_bits, self.extra)
        self.featurizer = f"morgan_count/r{radius}/{n_bits}/{FEATURIZER_VERSION}" + "".join(f"+{k}" for k in self.extra)
        self.return_states = False

        self.hidden = mlp_blocks(self.width, hidden_dim, layers, dropout)
        self.out = nn.Linear(hidden_dim, embed_dim)

    def featurize(self, smiles: str) -> Any:
        """One SMILES to ``Data(fp=[1, width] float32 counts, num_nodes=tensor(1))``."""
        from torch_geometric.data import Data

        fp = torch.from_numpy(fingerprint_vector(smiles, self.radius, self.n_bits, self.extra)).unsqueeze(0)
        return Data(fp=fp, num_nodes=torch.tensor(1))

    def forward(self, batch: Any) -> Encoded:
        fp: Tensor = batch.fp
        if fp.dim() != 2 or fp.shape[-1] != self.width:
            raise ValueError(
                f"fingerprint_mlp: expected batch.fp of shape [B, {self.width}], got {tuple(fp.shape)} "
                f"(featurized with a different n_bits or extra?)"
            )
        h = self.hidden(torch.log1p(fp.to(self.out.weight.dtype)))
        embedding = self.out(h)
        return with_single_state(embedding, h, self.return_states)
