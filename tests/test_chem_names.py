"""Chemical names in descriptions (:mod:`zoo.plugins.chem.chemnames`, :mod:`zoo.opsin`) and the ``chem_names`` text
encoder. Every parse runs the real OPSIN (Java, the jar bundled in py2opsin): nothing is mocked;
``subprocess.run`` is only wrapped to count JVM starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator, rdMolDescriptors

import zoo.opsin as opsin
from zoo.cache import unseal
from zoo.errors import OpsinError
from zoo.opsin import ParseCache, parse_names
from zoo.plugins.chem.chemnames import (
    Span,
    candidate_bits,
    candidate_spans,
    clean_span,
    description_structures,
    select_structures,
    structure_match_scores,
)

KNOWN = {  # name -> SMILES (any form; compared canonically)
    "benzoic acid": "OC(=O)c1ccccc1",
    "pyridine": "c1ccncc1",
    "L-alanine": "C[C@H](N)C(=O)O",
    "(2E)-but-2-enoic acid": "C/C=C/C(=O)O",
    "methyl 4-hydroxybenzoate": "COC(=O)c1ccc(O)cc1",
    "2,4-dinitrophenol": "Oc1ccc(cc1[N+](=O)[O-])[N+](=O)[O-]",
}
GARBAGE = ["qwertyuiop", "steroid ester", "substituted by oxo groups", "the molecule"]


class JvmCounter:
    """Wraps ``subprocess.run`` (the real call still happens) and records the input of each ``java`` started."""

    def __init__(self, monkeypatch):
        self.inputs: list[list[str]] = []
        real = subprocess.run

        def counted(command, *args, **kwargs):
            if isinstance(command, (list, tuple)) and command and Path(command[0]).name == "java":
                self.inputs.append(kwargs.get("input", "").splitlines())
            return real(command, *args, **kwargs)

        monkeypatch.setattr(opsin.subprocess, "run", counted)


def _without_java(monkeypatch, tmp_path):
    empty = tmp_path / "no-java-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


# -- OPSIN, one JVM per batch, the cache ------------------------------------------------------------
def test_one_jvm_parses_a_batch_and_the_cache_keeps_java_off(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    jvm = JvmCounter(monkeypatch)
    cache = ParseCache(tmp_path / "cache")
    names = [*KNOWN, *GARBAGE, "pregnane"]
    parsed = parse_names(names + ["pyridine"], cache=cache)  # a repeat is parsed once

    assert len(jvm.inputs) == 1 and sorted(jvm.inputs[0]) == sorted(names)  # ONE JVM for the whole batch
    for name, smiles in KNOWN.items():
        assert parsed[name] == Chem.CanonSmiles(smiles), name
    assert all(parsed[name] is None for name in GARBAGE)
    pregnane = Chem.MolFromSmiles(parsed["pregnane"])
    assert rdMolDescriptors.CalcMolFormula(pregnane) == "C21H36" and pregnane.GetRingInfo().NumRings() == 4
    assert list((tmp_path / "cwd").iterdir()) == []  # no temporary input file in the working directory
    assert "py2opsin" not in sys.modules  # its import would start a JVM (java -version)

    _without_java(monkeypatch, tmp_path)  # cached names need no Java at all
    assert parse_names(names, cache=ParseCache(tmp_path / "cache")) == {n: parsed[n] for n in names}
    assert len(jvm.inputs) == 1
    with pytest.raises(OpsinError):  # ... and a new name does
        parse_names([*names, "toluene"], cache=cache)


def test_only_new_names_go_to_opsin(tmp_path, monkeypatch):
    cache = ParseCache(tmp_path / "cache")
    cache.put({opsin.span_key("benzene", opsin.parser_id(opsin.opsin_jar())): "c1ccccc1"})
    jvm = JvmCounter(monkeypatch)
    assert parse_names(["benzene", "ethanol", "benzene"], cache=cache) == {"benzene": "c1ccccc1", "ethanol": "CCO"}
    assert jvm.inputs == [["ethanol"]]
    stored = {}
    for shard in (tmp_path / "cache").glob("*.json"):
        stored.update(unseal(json.loads(shard.read_text())))
    assert sorted(stored.values()) == ["CCO", "c1ccccc1"]
    assert parse_names([], cache=cache) == {} and len(jvm.inputs) == 1


def test_missing_java_is_a_one_line_error_naming_the_debian_package(tmp_path, monkeypatch):
    _without_java(monkeypatch, tmp_path)
    with pytest.raises(OpsinError) as err:
        parse_names(["benzene"], cache=ParseCache(tmp_path / "cache"))
    message = str(err.value)
    assert "\n" not in message and "java" in message and "default-jre-headless" in message
    assert not list((tmp_path / "cache").glob("*.json"))  # nothing half-written


def test_names_that_break_the_line_protocol_are_refused():
    with pytest.raises(ValueError, match="one name per line"):
        opsin.run_opsin(["benzene", "two\nlines"])


def test_missing_py2opsin_says_how_to_install(monkeypatch):
    monkeypatch.setattr(opsin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OpsinError, match="pip install py2opsin"):
        opsin.opsin_jar()


# -- names in descriptions -----------------------------------------------------------------------------
def test_candidate_spans():
    text = ("The molecule is a steroid ester that is methyl (17E)-pregna-4,17-dien-21-oate substituted by oxo groups "
            "at positions 3 and 11. It is a phosphate and diphosphate of coenzyme A. It derives from benzoic acid.")
    spans = [s.text for s in candidate_spans(text)]
    assert "methyl (17E)-pregna-4,17-dien-21-oate" in spans and "(17E)-pregna-4,17-dien-21-oate" in spans
    assert "coenzyme A" in spans and "benzoic acid" in spans and "acid" in spans  # trailing "." stripped
    assert not any(s.split()[0].lower() in {"the", "is", "a", "by"} or s.split()[-1] in {"by", "3", "11"} for s in spans)
    assert "phosphate and diphosphate" not in spans  # a stop-word inside: two names, not one
    assert "11. It" not in spans and not any("11" in s for s in spans)
    assert all(len(s.split()) <= 4 for s in spans) and candidate_spans(text) == candidate_spans(text)
    assert [s.text for s in candidate_spans(text, max_tokens=1)] == [s for s in spans if " " not in s]


@pytest.mark.parametrize("raw, clean", [("(benzene)", "benzene"), ("pregnane.", "pregnane"), ("(2E)-but-2-ene,", "(2E)-but-2-ene"),
                                        ("toluene)", "toluene"), ('"ethanol";', "ethanol"), ("(R)-(+)-limonene", "(R)-(+)-limonene"),
                                        ("[2H]ethanol).", "[2H]ethanol")])
def test_clean_span(raw, clean):
    assert clean_span(raw) == clean


def test_select_structures_longest_first_without_nested_or_repeated():
    parsed = [(Span(0, 1, "methyl"), "C"), (Span(0, 2, "methyl benzoate"), "COC(=O)c1ccccc1"),
              (Span(1, 2, "benzoate"), "O=C([O-])c1ccccc1"), (Span(5, 6, "toluene"), "Cc1ccccc1"),
              (Span(8, 9, "methylbenzene"), "Cc1ccccc1"), (Span(10, 11, "ethanol"), "CCO")]
    assert select_structures(parsed) == ["COC(=O)c1ccccc1", "Cc1ccccc1", "CCO"]  # nested spans and a repeat dropped
    assert select_structures(parsed, max_structures=2) == ["COC(=O)c1ccccc1", "Cc1ccccc1"]
    assert select_structures(list(reversed(parsed))) == select_structures(parsed)  # order of input does not matter
    assert select_structures([]) == []


def test_description_structures_in_one_batch(tmp_path, monkeypatch):
    jvm = JvmCounter(monkeypatch)
    texts = ["The molecule is a benzene derivative carrying a hydroxy substituent.",
             "The molecule is methyl 4-hydroxybenzoate. It derives from 4-hydroxybenzoic acid.",
             "Nothing to see here."]
    got = description_structures(texts, cache=ParseCache(tmp_path / "cache"))
    assert got == [["c1ccccc1"], [Chem.CanonSmiles("COC(=O)c1ccc(O)cc1"), Chem.CanonSmiles("OC(=O)c1ccc(O)cc1")], []]
    assert len(jvm.inputs) == 1


# -- the structure-match scorer ---------------------------------------------------------------------------
def _tanimoto(a: str, b: str) -> float:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048, includeChirality=True)
    return DataStructs.TanimotoSimilarity(gen.GetFingerprint(Chem.MolFromSmiles(a)), gen.GetFingerprint(Chem.MolFromSmiles(b)))


def test_structure_match_scores_hand_case(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    candidates = ["c1ccccc1", "Oc1ccccc1", "CCO", "C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O", "not a smiles"]
    queries = [["c1ccccc1"], [], ["CCO", "Oc1ccccc1"], ["C[C@H](N)C(=O)O"]]
    scores = structure_match_scores(queries, candidates)
    assert scores.shape == (4, 6) and scores.dtype == np.float32
    expected = np.array([[max((_tanimoto(q, c) for q in structures), default=0.0) if c != "not a smiles" else 0.0
                          for c in candidates] for structures in queries], dtype=np.float32)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-7)
    assert scores[0, 0] == 1.0 and scores[2, 1] == 1.0 and scores[2, 2] == 1.0 and not scores[1].any()
    assert scores[3, 3] == 1.0 and 0 < scores[3, 4] < 1  # chirality counts
    assert 0 < scores[0, 1] < 1 and scores[0, 2] == 0.0  # benzene vs phenol / ethanol
    # the candidate fingerprints were cached; small column chunks give the same scores
    assert len(list((tmp_path / "cache" / "chem_names" / "fingerprints").glob("*.npz"))) == 1
    bits = candidate_bits(candidates)
    np.testing.assert_array_equal(structure_match_scores(queries, bits, max_chunk_floats=5), scores)
    assert not structure_match_scores([[], []], candidates).any()
    with pytest.raises(ValueError, match="must be"):
        structure_match_scores(queries, bits[:, :100])


# -- the chem_names text encoder -----------------------------------------------------------------------------
def test_registered_defaults_match_the_constructor():
    import inspect

    from zoo.plugins.text.chem_names_text import ChemNamesText
    from zoo.registry import get_component

    component = get_component("text_encoder", "chem_names")
    params = inspect.signature(ChemNamesText).parameters
    assert {k: params[k].default for k in component.config} == dict(component.config)


def test_encoder_features_forward_and_gradients(tmp_path, monkeypatch):
    from zoo.plugins.chem.chemnames import morgan_count_matrix
    from zoo.plugins.text.chem_names_text import ChemNamesText

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    encoder = ChemNamesText(16, n_bits=256, hidden_dim=32, layers=2)
    texts = ["The molecule is a pyridine derivative.", "It is methyl benzoate or methanol; also benzene.", "No names."]
    items = encoder.prepare(texts)
    assert [tuple(i.shape) for i in items] == [(1, 256), (3, 256), (0, 256)] and items[0].dtype == torch.uint8
    assert torch.equal(items[0][0], torch.from_numpy(morgan_count_matrix(["c1ccncc1"], 2, 256)[0]))
    batch = encoder.collate(items).to("cpu")
    assert batch["fp"].shape == (3, 3, 256) and batch["count"].tolist() == [1, 3, 0]
    out = encoder(batch)
    assert out.embedding.shape == (3, 16) and torch.isfinite(out.embedding).all()
    out.embedding.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    encoder.return_states = True
    assert encoder(batch).states.shape == (3, 1, 32)
    with pytest.raises(ValueError, match="n_bits"):
        ChemNamesText(16, n_bits=0)


TINY_NAMES = ["text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32", "molecule_encoder.n_bits=256", "embed_dim=32",
              "train.batch_size=16", "train.lr=0.003", "train.holdout_fraction=0.15", "train.eval_batch_size=64",
              "train.warmup_epochs=1", "train.epochs=2"]


def _run(data_dir, out, *settings: str) -> dict:
    from zoo.cli import main

    args = ["run", "tfidf_fp", "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for item in settings:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())


def test_tiny_runs_alone_and_combined_then_eval_without_java(tiny_env, tmp_path, monkeypatch, capsys):
    from zoo.cli import main

    jvm = JvmCounter(monkeypatch)
    alone = _run(tiny_env, tmp_path / "alone", "text_encoder=chem_names", "text_encoder.n_bits=256", *TINY_NAMES)
    assert alone["spec"]["text_encoder"]["name"] == "chem_names"
    assert alone["scores"]["test"]["text_to_molecule"]["mrr"] > 0
    assert len(jvm.inputs) == 1  # every description's names in one JVM

    combined = _run(tiny_env, tmp_path / "combined", 'text_encoder=["tfidf","chem_names"]', "text_encoder.tfidf.svd_dim=16",
                    "text_encoder.chem_names.n_bits=256", *[s.replace("text_encoder.", "text_encoder.0.") for s in TINY_NAMES])
    assert [p["name"] for p in combined["spec"]["text_encoder"]["parts"]] == ["tfidf", "chem_names"]
    assert combined["scores"]["test"]["text_to_molecule"]["mrr"] > 0
    assert len(jvm.inputs) == 1  # the second run found every parse in the cache

    _without_java(monkeypatch, tmp_path)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "combined"), "--data-dir", str(tiny_env), "--no-progress"]) == 0
    again = json.loads((tmp_path / "combined" / "eval-test.json").read_text())
    assert again["scores"]["all"]["text_to_molecule"] == pytest.approx(combined["scores"]["all"]["text_to_molecule"], rel=1e-5)

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "empty-cache"))  # nothing cached and no Java: one clear line
    args = ["run", "tfidf_fp", "--data-dir", str(tiny_env), "--out", str(tmp_path / "nojava"), "--no-progress",
            "--set", "text_encoder=chem_names", *[x for s in TINY_NAMES for x in ("--set", s)]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "default-jre-headless" in err and "Traceback" not in err
    assert not (tmp_path / "nojava" / "results.json").exists()
