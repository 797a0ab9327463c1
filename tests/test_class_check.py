"""The ``class_check`` re-ranker (plugins/rerankers/class_check.py): class phrases and parents a description
states, their structure checks on candidates, the fitted weights and their saved state.

OPSIN is replaced by a fixed name table here (``zoo.api.parse_names`` monkeypatched): no Java needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zoo.api
from zoo.plugins.rerankers import class_check
from zoo.plugins.rerankers.class_check import (
    FEATURES,
    NEUTRAL,
    RULE_NAMES,
    ClassCheckReranker,
    class_phrases,
    molecule_flags,
    stated_parents,
    stated_rules,
)

PALMITIC_ACID = "CCCCCCCCCCCCCCCC(=O)O"
PALMITATE = "CCCCCCCCCCCCCCCC(=O)[O-]"
METHYL_PALMITATE = "CCCCCCCCCCCCCCCC(=O)OC"
PROGESTERONE = "CC(=O)[C@H]1CC[C@H]2[C@@H]3CCC4=CC(=O)CC[C@]4(C)[C@H]3CC[C@]12C"
CHOLESTEROL = "CC(C)CCC[C@@H](C)[C@H]1CC[C@H]2[C@@H]3CC=C4C[C@@H](O)CC[C@]4(C)[C@H]3CC[C@]12C"
L_ALANINE = "C[C@H](N)C(=O)O"
APIGENIN = "O=c1cc(-c2ccc(O)cc2)oc2cc(O)cc(O)c12"
NARINGENIN = "O=C1C[C@@H](c2ccc(O)cc2)Oc2cc(O)cc(O)c12"
PHENYL_GLUCOSIDE = "OC[C@H]1O[C@@H](Oc2ccccc2)[C@H](O)[C@@H](O)[C@@H]1O"
GLUCOSE = "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O"
GLY_GLY = "NCC(=O)NCC(=O)O"
GLY_GLY_GLY = "NCC(=O)NCC(=O)NCC(=O)O"
BENZENE = "c1ccccc1"


@pytest.mark.parametrize("text, phrases", [
    ("The molecule is a steroid ester that is progesterone in which ... It is a 3-oxo-Delta(4) steroid, a member of "
     "flavones and a monocarboxylic acid anion. It has a role as a metabolite.",
     ["steroid ester", "3-oxo-delta(4) steroid", "flavones", "monocarboxylic acid anion"]),
    ("The molecule is an L-alpha-amino acid. It is a conjugate acid of a L-alaninate. It is an enantiomer of a D-alanine.",
     ["l-alpha-amino acid"]),
    ("The molecule is a member of the class of pterocarpans carrying two hydroxy substituents. "
     "It is a member of pterocarpans, a member of phenols and an aromatic ether.",
     ["pterocarpans", "pterocarpans", "phenols", "aromatic ether"]),
    ("It has a role as a plant metabolite.", []),
])
def test_class_phrases(text, phrases):
    assert class_phrases(text) == phrases


def test_stated_parents_split_lists_and_drop_articles():
    text = ("The molecule is a fatty acid methyl ester. It derives from a hexadecanoic acid. It is functionally related "
            "to a 1,2-dipalmitoyl-sn-glycerol and a glycerol. It has a parent hydride, a pregnane.")
    assert stated_parents(text)[:3] == ["hexadecanoic acid", "1,2-dipalmitoyl-sn-glycerol", "glycerol"]
    assert stated_parents("It has a role as a metabolite.") == []


def _names(rules) -> set[str]:
    return {RULE_NAMES[i] if i < NEUTRAL else "neutral" for i in rules}


def test_stated_rules_and_the_neutral_default():
    anion = _names(stated_rules("The molecule is a long-chain fatty acid anion. It is a conjugate base of palmitic acid."))
    assert {"anion", "fatty acid", "long-chain fatty acid"} <= anion and "neutral" not in anion
    assert "neutral" in _names(stated_rules("The molecule is a long-chain fatty acid."))
    assert _names(stated_rules("It has a role as a metabolite.")) == {"neutral"}  # no ion phrase: charge 0 expected


@pytest.mark.parametrize("rule, yes, no", [
    ("anion", PALMITATE, PALMITIC_ACID),
    ("neutral", PALMITIC_ACID, PALMITATE),
    ("monocarboxylic acid", PALMITATE, METHYL_PALMITATE),
    ("long-chain fatty acid", PALMITIC_ACID, "CCCCC(=O)O"),
    ("methyl ester", METHYL_PALMITATE, PALMITIC_ACID),
    ("steroid", CHOLESTEROL, PALMITIC_ACID),
    ("3-oxo-Delta(4) steroid", PROGESTERONE, CHOLESTEROL),
    ("3-hydroxy steroid", CHOLESTEROL, PROGESTERONE),
    ("alpha-amino acid", L_ALANINE, "CC(=O)O"),
    ("flavones", APIGENIN, NARINGENIN),
    ("flavanones", NARINGENIN, APIGENIN),
    ("glycoside", PHENYL_GLUCOSIDE, GLUCOSE),
    ("monosaccharide", GLUCOSE, BENZENE),
    ("dipeptide", GLY_GLY, GLY_GLY_GLY),
    ("tripeptide", GLY_GLY_GLY, GLY_GLY),
    ("zwitterion", "C[C@H]([NH3+])C(=O)[O-]", L_ALANINE),
    ("organochlorine compound", "Clc1ccccc1", BENZENE),
    ("phenols", APIGENIN, BENZENE),
])
def test_rule_checks_on_known_molecules(rule, yes, no):
    index = NEUTRAL if rule == "neutral" else RULE_NAMES.index(rule)
    assert molecule_flags(yes)[index] and not molecule_flags(no)[index]


def test_every_rule_compiles_and_runs():
    flags = molecule_flags(PROGESTERONE + ".[Na+].Cl")  # a salt: the rules see the largest fragment
    assert flags.shape == (len(RULE_NAMES) + 1,) and flags[RULE_NAMES.index("steroid")]
    assert molecule_flags("C1CC(") is None and molecule_flags("") is None


def _groups(n: int = 12):
    """Tiny training groups: "anion" descriptions whose positive is the anion, the rest neutral acids."""
    rng = np.random.default_rng(0)
    acids = ["CCCC(=O)O", "CCCCCC(=O)O", PALMITIC_ACID, "OC(=O)c1ccccc1", "CC(C)C(=O)O", "OCC(=O)O"]
    descriptions, candidates, positives = [], [], []
    for i in range(n):
        group = [acids[(i + j) % len(acids)] for j in range(5)]
        positive = int(rng.integers(len(group)))
        group[positive] = group[positive][:-1] + "[O-]"  # its conjugate base
        descriptions.append(f"The molecule is a monocarboxylic acid anion number {i}.")
        candidates.append(group)
        positives.append(positive)
    return descriptions, candidates, positives


def test_fit_learns_a_positive_weight_for_a_separating_feature():
    reranker = ClassCheckReranker(parents=False, C=1.0)
    record = reranker.fit(*_groups(), log=lambda *_: None)
    assert record["n_groups"] == 12 and record["n_pairs"] == 60 and record["n_positive"] == 12
    assert record["weights"]["rule: anion"] > 0.5
    json.dumps(record)  # JSON-able for the results file
    scores = reranker.score_pairs(["It is a carboxylic acid anion."] * 2, [PALMITATE, PALMITIC_ACID])
    assert scores.dtype == np.float32 and scores[0] > scores[1]


def test_fit_refuses_a_positive_outside_its_group():
    with pytest.raises(ValueError, match="positive index 7 of group 0"):
        ClassCheckReranker(parents=False).fit(["x"], [["C", "CC"]], [7], log=lambda *_: None)


def test_save_load_round_trip(tmp_path):
    reranker = ClassCheckReranker(parents=False, C=1.0)
    reranker.fit(*_groups(), log=lambda *_: None)
    reranker.save(tmp_path)
    again = ClassCheckReranker(parents=False)
    again.load(tmp_path)
    texts, mols = ["It is a monocarboxylic acid anion."] * 3, [PALMITATE, PALMITIC_ACID, BENZENE]
    assert np.array_equal(reranker.score_pairs(texts, mols), again.score_pairs(texts, mols))
    state = json.loads((tmp_path / class_check.STATE_FILE).read_text())
    state["rules_version"] = "0"
    (tmp_path / class_check.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ValueError, match="other rules") as error:
        again.load(tmp_path)
    assert "\n" not in str(error.value)


def test_unparsable_smiles_score_low_without_crashing():
    reranker = ClassCheckReranker(parents=False)
    text = "The molecule is a monocarboxylic acid anion."
    scores = reranker.score_pairs([text] * 3, [PALMITATE, "C1CC(", PALMITIC_ACID])
    assert scores[1] < scores[0] and scores[1] <= scores[2]
    row = reranker.features([text], ["not a smiles"])[0]
    assert row[FEATURES.index("fraction satisfied")] == 0 and row[FEATURES.index("rule: anion")] == -1


def test_parents_are_checked_on_the_candidate(monkeypatch):
    table = {"hexadecanoic acid": PALMITIC_ACID, "nonsense": None}
    monkeypatch.setattr(zoo.api, "parse_names", lambda names, **_: {n: table.get(n) for n in names}, raising=False)
    reranker = ClassCheckReranker()
    text = "The molecule is a fatty acid methyl ester. It derives from a hexadecanoic acid and a nonsense."
    rows = reranker.features([text] * 3, [METHYL_PALMITATE, BENZENE, "C1CC("])
    tanimoto, skeleton, exact = (FEATURES.index(f"parent {k}") for k in ("tanimoto", "skeleton", "substructure"))
    assert rows[0, tanimoto] > rows[1, tanimoto] and rows[0, skeleton] == rows[0, exact] == 1
    assert rows[1, skeleton] == rows[1, exact] == -1 and rows[2, skeleton] == -1
    no_parent = reranker.features(["It is a fatty acid methyl ester."], [METHYL_PALMITATE])[0]
    assert no_parent[skeleton] == no_parent[tanimoto] == 0


def test_each_unique_molecule_is_parsed_once_per_call(monkeypatch):
    calls = []
    real = class_check.facts_of
    monkeypatch.setattr(class_check, "facts_of", lambda s: calls.append(s) or real(s))
    reranker = ClassCheckReranker(parents=False)
    texts = ["It is a monocarboxylic acid anion.", "It is a steroid."] * 50
    reranker.score_pairs(texts, [PALMITATE, CHOLESTEROL] * 50)
    assert sorted(calls) == sorted([PALMITATE, CHOLESTEROL])
    reranker.score_pairs(texts, [PALMITATE, CHOLESTEROL] * 50)  # flags already known: no parse
    assert len(calls) == 2


@pytest.mark.parametrize("options, message", [
    ({"C": 0}, "option C must be a positive number"),
    ({"negatives": 0}, "option negatives must be an integer >= 1"),
    ({"parents": "yes"}, "option parents must be true or false"),
    ({"radius": 9}, "option radius must be an integer from 1 to 4"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message) as error:
        ClassCheckReranker(**options)
    assert "\n" not in str(error.value) and str(error.value).startswith("class_check:")
