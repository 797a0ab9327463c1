"""Relations a description states to a named molecule, and which candidates satisfy them.

ChEBI descriptions relate the molecule to another, named one in a fixed phrasing: "It is a
conjugate base of 2,5-dichloro-4-oxohex-2-enedioic acid", "It is a conjugate acid of a
N-carbamoylaspartate(2-)", "It is an enantiomer of D-allothreonine", "It is a tautomer of X".
Such a relation pins the molecule down far more tightly than a similar structure does:

* :func:`stated_relations`: the ``(kind, name, charge)`` relations of one text; the name is what
  follows ``<kind> of [a|an|the]`` up to a clause break, cleaned like a name span
  (:func:`zoo.api.clean_span`), without a trailing charge ``(2-)``/``(1+)`` (OPSIN does not
  read it; it becomes ``charge``) or a trailing ``zwitterion``.
* :func:`description_relations`: every text's relations, their names parsed by OPSIN in one batch
  (:func:`zoo.api.parse_names`, cached on disk) and reduced to :class:`Keys`.
* :func:`molecule_keys`: the :class:`Keys` of candidate molecules, cached on disk.
* :func:`relation_match_scores`: per description and candidate, 1 when the candidate satisfies a
  stated relation exactly, 0.5 for a conjugate relation with the wrong charge, else 0.

Structure keys (:func:`structure_keys`) are computed on the molecule's charge parent (RDKit
``rdMolStandardize.ChargeParent``: largest fragment, neutralized), so a conjugate acid and base
share them: **conjugate acid/base of X**: same isomeric parent as X and a net charge (of the
largest fragment) one above/below X's; **enantiomer of X**: same non-isomeric parent, different
isomeric one; **tautomer of X**: same formula and heavy-atom connectivity (bond orders, charges and
hydrogens ignored), different isomeric parent.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from zoo.api import (
    IntegrityError,
    SmilesError,
    cache_root,
    clean_span,
    content_hash,
    load_sealed_npz,
    locked,
    map_in_processes,
    parse_names,
    parse_smiles,
    save_sealed_npz,
)
from zoo.plugins.chem.chemnames import MIN_CACHED_MOLECULES

#: bump when the keys change: it keys their disk cache
KEYS_VERSION = "1"
CONJUGATE_BASE, CONJUGATE_ACID, ENANTIOMER, TAUTOMER = "conjugate base", "conjugate acid", "enantiomer", "tautomer"
KINDS = (CONJUGATE_BASE, CONJUGATE_ACID, ENANTIOMER, TAUTOMER)
#: the net-charge change from the named molecule to the described one
CHARGE_STEP = {CONJUGATE_BASE: -1, CONJUGATE_ACID: +1}
#: the score of a conjugate relation whose charge does not match (same parent structure)
SAME_PARENT = 0.5
RELATION = re.compile(
    r"\b(" + "|".join(KINDS) + r") of (?:an? |the )?(.+?)"
    r"(?=[.;,]\s|[.;,]?$|\s(?:and|with|that|which|arising|obtained|resulting|formed|having)\s)")
CHARGE_SUFFIX = re.compile(r"\((\d*)([+-])\)$")
ZWITTERION = " zwitterion"


class Relation(NamedTuple):
    """A stated relation: the described molecule is ``kind`` of the molecule ``name``, whose net
    charge is ``charge`` when the name states it (``(2-)``), else ``None``."""

    kind: str
    name: str
    charge: int | None


class Keys(NamedTuple):
    """Hashed structure keys of a molecule's charge parent (see the module docs) and its net charge."""

    iso: int
    flat: int
    shape: int  # formula and heavy-atom connectivity
    charge: int


class Target(NamedTuple):
    """A relation of a description, resolved: its ``kind`` and the named molecule's :class:`Keys`."""

    kind: str
    keys: Keys


def stated_relations(text: str) -> list[Relation]:
    """The relations ``text`` states (see the module docs), in order."""
    out = []
    for match in RELATION.finditer(text):
        name, charge = clean_span(match.group(2).strip()), None
        suffix = CHARGE_SUFFIX.search(name)
        if suffix:
            charge = int(suffix.group(1) or 1) * (1 if suffix.group(2) == "+" else -1)
            name = name[:suffix.start()]
        elif name.endswith(ZWITTERION):
            name = name[:-len(ZWITTERION)]
        if name:
            out.append(Relation(match.group(1), name, charge))
    return out


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def structure_keys(smiles: str) -> Keys | None:
    """The :class:`Keys` of ``smiles``, or ``None`` where RDKit cannot parse it."""
    from rdkit import Chem
    from rdkit.Chem.MolStandardize import rdMolStandardize
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    try:
        mol = parse_smiles(smiles)
    except SmilesError:
        return None
    try:
        charge = Chem.GetFormalCharge(rdMolStandardize.FragmentParent(mol))
        parent = rdMolStandardize.ChargeParent(mol)
    except (RuntimeError, ValueError):  # RDKit refuses to standardize a few odd valences: use the molecule itself
        charge, parent = Chem.GetFormalCharge(mol), mol
    skeleton = Chem.RWMol(parent)
    for atom in skeleton.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNumExplicitHs(0)
        atom.SetNoImplicit(True)
    for bond in skeleton.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    skeleton.UpdatePropertyCache(strict=False)
    shape = CalcMolFormula(parent) + " " + Chem.MolToSmiles(skeleton, isomericSmiles=False)
    return Keys(_hash(Chem.MolToSmiles(parent)), _hash(Chem.MolToSmiles(parent, isomericSmiles=False)), _hash(shape), charge)


def description_relations(texts: Sequence[str], cache=None, workers: int | None = None) -> list[tuple[Target, ...]]:
    """Per text, its relations whose name OPSIN parses, as :class:`Target` s. All texts' names are
    parsed by OPSIN together (cached names excluded; one JVM per worker)."""
    relations = [stated_relations(text) for text in texts]
    parses = parse_names((r.name for per_text in relations for r in per_text), cache=cache, workers=workers)
    keys = {smiles: structure_keys(smiles) for smiles in set(parses.values()) if smiles is not None}
    out = []
    for per_text in relations:
        targets = []
        for relation in per_text:
            found = keys.get(parses[relation.name])
            if found is not None:
                charge = found.charge if relation.charge is None else relation.charge
                targets.append(Target(relation.kind, found._replace(charge=charge)))
        out.append(tuple(targets))
    return out


def molecule_keys(smiles: Sequence[str], root: Path | None = None, workers: int | None = None) -> np.ndarray:
    """``[N, 4]`` int64: the :class:`Keys` of each molecule (a row of zeros where RDKit cannot parse
    it), computed over ``workers`` processes (default :func:`zoo.api.default_workers`; the same array as one) and cached on
    disk by the SMILES list; processes asking at once wait for the one computing it (a single molecule, a
    search query, is not cached)."""
    if len(smiles) < MIN_CACHED_MOLECULES:
        return _keys_of(structure_keys(s) for s in smiles)
    key = content_hash("relation-keys", list(smiles), KEYS_VERSION)
    path = Path(root or cache_root()) / "chem_names" / "relation_keys" / f"{key}.npz"
    with locked(path):
        if path.exists():
            try:
                keys = load_sealed_npz(path)["keys"]  # checked against its content hash
                if keys.shape == (len(smiles), len(Keys._fields)):
                    return keys
            except (IntegrityError, KeyError) as exc:  # damaged: recompute and rewrite
                warnings.warn(f"relation-key cache {path} is unreadable ({exc}); recomputing")
        keys = _keys_of(map_in_processes(structure_keys, list(smiles), workers))
        save_sealed_npz(path, {"keys": keys})
        return keys


def _keys_of(found_keys) -> np.ndarray:
    rows = list(found_keys)
    keys = np.zeros((len(rows), len(Keys._fields)), dtype=np.int64)
    for i, found in enumerate(rows):
        if found is not None:
            keys[i] = found
    return keys


#: up to this many relations, candidates are found by scanning their key columns instead of indexing them
SCAN_TARGETS = 64


def _index(column: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(column, kind="stable")
    values, starts = np.unique(column[order], return_index=True)
    return dict(zip(values.tolist(), np.split(order, starts[1:])))


def relation_match_scores(targets: Sequence[Sequence[Target]], candidates: np.ndarray) -> np.ndarray:
    """``[Q, C]`` float32: 1 where candidate ``c`` satisfies a relation of description ``q`` exactly,
    :data:`SAME_PARENT` for a conjugate relation with the wrong net charge, else 0 (the module docs
    define each relation). ``candidates``: :func:`molecule_keys` rows."""
    candidates = np.asarray(candidates, dtype=np.int64).reshape(-1, len(Keys._fields))
    scores = np.zeros((len(targets), len(candidates)), dtype=np.float32)
    if not any(targets) or not len(candidates):
        return scores
    iso, flat, shape, charge = candidates.T  # an unparsable candidate's keys are 0, which no hash of a target is
    columns = {"iso": iso, ENANTIOMER: flat, TAUTOMER: shape}
    none = np.zeros(0, dtype=np.int64)
    if sum(len(t) for t in targets) > SCAN_TARGETS:  # many relations (an evaluation): index each key column once
        indexes = {name: _index(column) for name, column in columns.items()}

        def rows(name: str, value: int) -> np.ndarray:
            return indexes[name].get(value, none)
    else:  # a few (a search query): scanning a column is cheaper than indexing it

        def rows(name: str, value: int) -> np.ndarray:
            return np.flatnonzero(columns[name] == value)
    for q, per_query in enumerate(targets):
        for kind, keys in per_query:
            if kind in CHARGE_STEP:
                cols = rows("iso", keys.iso)
                value = np.where(charge[cols] == keys.charge + CHARGE_STEP[kind], 1.0, SAME_PARENT)
            else:
                cols = rows(kind, keys.flat if kind == ENANTIOMER else keys.shape)
                cols = cols[iso[cols] != keys.iso]
                value = np.ones(len(cols))
            scores[q, cols] = np.maximum(scores[q, cols], value)
    return scores
