"""Relations a description states to a named molecule (zoo.plugins.chem.chemrelations) and the relation_match scorer.

The OPSIN parts run the real parser (Java), like tests/test_chem_names.py."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

import zoo.plugins.chem.chemrelations as chemrelations
from zoo.opsin import ParseCache
from zoo.plugins.chem.chemrelations import (
    Relation,
    Target,
    description_relations,
    molecule_keys,
    relation_match_scores,
    stated_relations,
    structure_keys,
)


@pytest.mark.parametrize("text, relations", [
    ("The molecule is X. It is a conjugate acid of a N-carbamoylaspartate(2-).",
     [Relation("conjugate acid", "N-carbamoylaspartate", -2)]),
    ("It is a conjugate base of Photinus luciferin; major species at pH 7.3.",
     [Relation("conjugate base", "Photinus luciferin", None)]),
    ("It is an enantiomer of D-allothreonine zwitterion and a tautomer of (R)-nicotinium(1+).",
     [Relation("enantiomer", "D-allothreonine", None), Relation("tautomer", "(R)-nicotinium", 1)]),
    ("It is a conjugate base of 2,5-dichloro-4-oxohex-2-enedioic acid, obtained by deprotonation.",
     [Relation("conjugate base", "2,5-dichloro-4-oxohex-2-enedioic acid", None)]),
    ("It is a conjugate acid of an ornithinium(2+) and a conjugate base of (acetic acid)",
     [Relation("conjugate acid", "ornithinium", 2), Relation("conjugate base", "acetic acid", None)]),
    ("It derives from a hydride of a pregnane. It has a role as a metabolite.", []),
])
def test_stated_relations(text, relations):
    assert stated_relations(text) == relations


def test_structure_keys_relate_conjugates_enantiomers_and_tautomers():
    acid, base, salt = (structure_keys(s) for s in ("CC(=O)O", "CC(=O)[O-]", "[Na+].CC(=O)[O-]"))
    assert acid.iso == base.iso == salt.iso and (acid.charge, base.charge, salt.charge) == (0, -1, -1)
    l_ala, d_ala = structure_keys("C[C@H](N)C(=O)O"), structure_keys("C[C@@H](N)C(=O)O")
    assert l_ala.flat == d_ala.flat and l_ala.iso != d_ala.iso
    enol, ketone, aldehyde = (structure_keys(s) for s in ("CC(O)=C", "CC(=O)C", "CCC=O"))
    assert enol.shape == ketone.shape != aldehyde.shape  # same formula; propanal is connected differently
    assert enol.iso != ketone.iso and structure_keys("not a smiles") is None


@pytest.fixture(params=["scan", "index"])
def candidate_lookup(request, monkeypatch):
    """Both ways candidates are found: scanning the key columns (a few relations) and indexing them (many)."""
    import zoo.plugins.chem.chemrelations

    if request.param == "index":
        monkeypatch.setattr(zoo.plugins.chem.chemrelations, "SCAN_TARGETS", 0)
    return request.param


def test_relation_match_scores_hand_case(candidate_lookup):
    gallery = ["CC(=O)[O-]", "CC(=O)O", "C[C@@H](N)C(=O)O", "C[C@H](N)C(=O)O", "CC(=O)C", "CCC=O", "CC(=O)[O-].[Na+]"]
    keys = np.array([structure_keys(s) for s in gallery])
    queries = [
        [Target("conjugate base", structure_keys("CC(=O)O"))],  # acetate and its salt exactly, acetic acid half
        [Target("conjugate acid", structure_keys("CC(=O)[O-]"))],
        [Target("enantiomer", structure_keys("C[C@H](N)C(=O)O"))],  # D-alanine, not L-alanine itself
        [Target("tautomer", structure_keys("CC(O)=C"))],  # acetone, not propanal
        [],
    ]
    scores = relation_match_scores(queries, keys)
    assert scores.dtype == np.float32 and scores.shape == (5, 7)
    np.testing.assert_array_equal(scores, [
        [1, 0.5, 0, 0, 0, 0, 1],
        [0.5, 1, 0, 0, 0, 0, 0.5],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ])
    unparsable = np.zeros((1, 4), dtype=np.int64)  # molecule_keys' row for a SMILES RDKit refuses
    assert not relation_match_scores(queries, unparsable).any()
    assert not relation_match_scores([[], []], keys).any()


def test_molecule_keys_are_cached_and_a_damaged_cache_is_recomputed(tmp_path, monkeypatch):
    smiles = ["CC(=O)O", "not a smiles", "c1ccccc1"]
    keys = molecule_keys(smiles, root=tmp_path)
    assert keys.shape == (3, 4) and keys.dtype == np.int64 and not keys[1].any()
    assert tuple(keys[0]) == tuple(structure_keys("CC(=O)O"))
    monkeypatch.setattr(chemrelations, "structure_keys", lambda s: pytest.fail("recomputed a cached key"))
    np.testing.assert_array_equal(molecule_keys(smiles, root=tmp_path), keys)
    monkeypatch.undo()
    (cached,) = (tmp_path / "chem_names" / "relation_keys").glob("*.npz")
    cached.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="unreadable"):
        np.testing.assert_array_equal(molecule_keys(smiles, root=tmp_path), keys)


def test_description_relations_parse_names_with_opsin_and_score(tmp_path):
    texts = ["The molecule is a monocarboxylic acid anion. It is a conjugate base of acetic acid.",
             "The molecule is an amino acid. It is an enantiomer of L-alanine.",
             "It is a conjugate acid of a qwertyuiop(1-).",  # OPSIN cannot parse it: no target
             "Nothing stated."]
    targets = description_relations(texts, cache=ParseCache(tmp_path / "cache"))
    assert [[t.kind for t in per_text] for per_text in targets] == [["conjugate base"], ["enantiomer"], [], []]
    assert targets[0][0].keys == structure_keys("CC(=O)O")
    gallery = [Chem.CanonSmiles(s) for s in ("CC(=O)[O-]", "CC(=O)O", "C[C@@H](N)C(=O)O", "C[C@H](N)C(=O)O")]
    scorer_scores = relation_match_scores(targets, molecule_keys(gallery, root=tmp_path))
    np.testing.assert_array_equal(scorer_scores, [[1, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_relation_match_is_a_registered_scorer(tmp_path, monkeypatch):
    from zoo.registry import get_component

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    scorer = get_component("scorer", "relation_match").create()
    texts = scorer.prepare_texts(["It is a conjugate acid of acetate."])
    scores = scorer.score(texts, scorer.prepare_molecules(["CC(=O)O", "CC(=O)[O-]", "CCO"]))
    np.testing.assert_array_equal(scores, [[1, 0.5, 0]])
