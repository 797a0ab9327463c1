"""RDKit featurization of molecules into graphs with atom and bond features.

A molecule becomes ``torch_geometric.data.Data(x, edge_index, edge_attr)``: ``x`` is a float
one-hot/binary matrix ``[num_atoms, ATOM_FEATURE_DIM]``, ``edge_index`` lists each bond in both
directions, ``edge_attr`` is ``[num_edges, BOND_FEATURE_DIM]``. Bump ``FEATURIZER_VERSION``
whenever the features change: it keys the on-disk cache.

Stereochemistry (version 2) is in both: per atom, RDKit's chiral tag (CW/CCW, relative to the
SMILES neighbour order), its CIP label (R or S: order-independent, so enantiomers differ) and
whether the atom lies on an E or a Z double bond; per bond, the bond's stereo (E/Z, ...). The
atom-level copies let encoders that ignore ``edge_attr`` (``gcn``) tell R/S and E/Z apart too.
Version 1 had the chiral tag and bond stereo only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.errors import SmilesError

FEATURIZER_NAME = "rdkit_graph"
FEATURIZER_VERSION = "2"  # 2: CIP R/S and per-atom E/Z flags

ELEMENTS = [
    "C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si", "Se", "Na", "K", "Li", "Mg", "Ca",
    "Fe", "Zn", "Cu", "Co", "Mn", "Ni", "Al", "As", "Hg", "Sn", "Pt", "Ag", "Au", "Se", "Te",
    "Mo", "W", "V", "Cr", "Gd", "Ti", "Ge", "Sb", "Bi", "Pb", "Tl", "Ba", "Sr", "Cs", "Rb", "H",
    "*",
]
ELEMENTS = list(dict.fromkeys(ELEMENTS))  # keep order, drop repeats
DEGREES = [0, 1, 2, 3, 4, 5, 6]
FORMAL_CHARGES = [-2, -1, 0, 1, 2]
NUM_HS = [0, 1, 2, 3, 4]
HYBRIDIZATIONS = ["S", "SP", "SP2", "SP3", "SP3D", "SP3D2"]
CHIRALITIES = ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW"]
BOND_TYPES = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"]
BOND_STEREOS = ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"]
CIP_CODES = ["R", "S"]  # an atom's CIP label; no column for "none"
DOUBLE_BOND_STEREOS = ["STEREOE", "STEREOZ"]  # flags: the atom is on an E / a Z double bond


def _one_hot_size(choices: Sequence) -> int:
    return len(choices) + 1  # + "other"


ATOM_FEATURE_DIM = (
    _one_hot_size(ELEMENTS)
    + _one_hot_size(DEGREES)
    + _one_hot_size(FORMAL_CHARGES)
    + _one_hot_size(NUM_HS)
    + _one_hot_size(HYBRIDIZATIONS)
    + 2  # aromatic, in ring
    + _one_hot_size(CHIRALITIES)
    + len(CIP_CODES)
    + len(DOUBLE_BOND_STEREOS)
)
BOND_FEATURE_DIM = _one_hot_size(BOND_TYPES) + 2 + _one_hot_size(BOND_STEREOS)  # + conjugated, in ring
#: The stereo columns (the last ones) of ``x`` and ``edge_attr``: zero them for a stereo-blind graph.
ATOM_STEREO_COLUMNS = slice(ATOM_FEATURE_DIM - _one_hot_size(CHIRALITIES) - len(CIP_CODES) - len(DOUBLE_BOND_STEREOS),
                            ATOM_FEATURE_DIM)
BOND_STEREO_COLUMNS = slice(BOND_FEATURE_DIM - _one_hot_size(BOND_STEREOS), BOND_FEATURE_DIM)


def _one_hot(value, choices: Sequence) -> list[float]:
    out = [0.0] * (len(choices) + 1)
    try:
        out[choices.index(value)] = 1.0
    except ValueError:
        out[-1] = 1.0
    return out


def clean_smiles(smiles: str) -> str:
    """ChEBI-20 files double some stereo backslashes (``\\\\``); RDKit wants one."""
    return smiles.replace("\\\\", "\\")


def parse_smiles(smiles: str):
    """An RDKit ``Mol`` or :class:`SmilesError` naming the string."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(clean_smiles(smiles)) if smiles and smiles.strip() else None
    if mol is None or mol.GetNumAtoms() == 0:
        raise SmilesError(f"RDKit cannot parse SMILES {smiles!r}")
    return mol


def stereo_flags(atom) -> list[float]:
    """``[is R, is S, on an E double bond, on a Z double bond]`` from RDKit's stereo perception."""
    cip = atom.GetProp("_CIPCode") if atom.HasProp("_CIPCode") else ""
    bond_stereos = {str(bond.GetStereo()) for bond in atom.GetBonds()}
    return [float(cip == code) for code in CIP_CODES] + [float(stereo in bond_stereos) for stereo in DOUBLE_BOND_STEREOS]


def atom_features(atom) -> list[float]:
    return (
        _one_hot(atom.GetSymbol(), ELEMENTS)
        + _one_hot(atom.GetDegree(), DEGREES)
        + _one_hot(atom.GetFormalCharge(), FORMAL_CHARGES)
        + _one_hot(atom.GetTotalNumHs(), NUM_HS)
        + _one_hot(str(atom.GetHybridization()), HYBRIDIZATIONS)
        + [float(atom.GetIsAromatic()), float(atom.IsInRing())]
        + _one_hot(str(atom.GetChiralTag()), CHIRALITIES)
        + stereo_flags(atom)
    )


def bond_features(bond) -> list[float]:
    return (
        _one_hot(str(bond.GetBondType()), BOND_TYPES)
        + [float(bond.GetIsConjugated()), float(bond.IsInRing())]
        + _one_hot(str(bond.GetStereo()), BOND_STEREOS)
    )


def featurize_arrays(smiles: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x [N, A], edge_index [2, E], edge_attr [E, B])`` as numpy arrays."""
    mol = parse_smiles(smiles)
    x = np.asarray([atom_features(a) for a in mol.GetAtoms()], dtype=np.float32)
    src, dst, attrs = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        f = bond_features(bond)
        src += [i, j]
        dst += [j, i]
        attrs += [f, f]
    edge_index = np.asarray([src, dst], dtype=np.int64).reshape(2, -1)
    edge_attr = np.asarray(attrs, dtype=np.float32).reshape(-1, BOND_FEATURE_DIM)
    return x, edge_index, edge_attr


def graph_arrays(smiles: str) -> dict[str, np.ndarray]:
    """:func:`featurize`'s attributes as numpy arrays (``x``, ``edge_index``, ``edge_attr``), without torch:
    what featurization worker processes compute (``featurize_arrays`` of the graph encoders)."""
    x, edge_index, edge_attr = featurize_arrays(smiles)
    return {"x": x, "edge_index": edge_index, "edge_attr": edge_attr}


def featurize(smiles: str):
    """One molecule as a ``torch_geometric.data.Data`` graph."""
    import torch
    from torch_geometric.data import Data

    x, edge_index, edge_attr = featurize_arrays(smiles)
    return Data(x=torch.from_numpy(x), edge_index=torch.from_numpy(edge_index), edge_attr=torch.from_numpy(edge_attr))
