"""Fingerprints of :mod:`fingerprint_mlp` (Morgan counts and the ``extra`` ones), with numpy and RDKit only: what
featurization worker processes import (:func:`fingerprint_arrays`, the encoder's ``featurize_arrays``), not torch."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from zoo.api import parse_smiles


@cache
def _generator(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits, includeChirality=True)


@cache
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


def fingerprint_arrays(smiles: str, radius: int = 2, n_bits: int = 2048, extra: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """:meth:`FingerprintMLP.featurize`'s attributes as numpy arrays: ``fp`` ``[1, width]`` float32 and ``num_nodes`` 1 (0-dim)."""
    return {"fp": fingerprint_vector(smiles, radius, n_bits, extra)[None, :], "num_nodes": np.array(1, dtype=np.int64)}
