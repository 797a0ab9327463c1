"""One scoring path (:mod:`zoo.scoring`): a run and a fused folder open as one :class:`ScoreSource` interface, whose
scores reproduce the recorded results through the one evaluation, and only zoo.scoring tells the kinds apart."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from zoo.cli import main
from zoo.evals.results import read_results
from zoo.evaluate import evaluate_source
from zoo.protocols import DIRECTIONS, ScoreSource

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_cache(tiny_run):
    """The tiny run's cache (featurized graphs, frozen text states), so nothing is recomputed."""
    data_dir, _, _ = tiny_run
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(data_dir.parent / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def data(tiny_run):
    from zoo.plugins.tasks.chebi20 import load_chebi20

    data_dir, _, results = tiny_run
    return load_chebi20(data_dir, holdout_fraction=results["spec"]["train"]["holdout_fraction"])


def test_a_run_opens_as_a_score_source_that_reproduces_its_recorded_scores(tiny_run, tiny_cache, data):
    from zoo.scoring import open_scoring

    _, run_dir, results = tiny_run
    source = open_scoring(run_dir, data=data, device="cpu", log=lambda _m: None)
    assert isinstance(source, ScoreSource) and source.record()["kind"] == "run"
    assert [m.cid for m in source.molecules] == [m.cid for m in data.gallery]
    assert [p.cid for p in source.descriptions] == [p.cid for p in data.descriptions]
    block = source.scores("text_to_molecule", [0, 2, 1], None)
    assert block.shape == (3, len(data.gallery)) and block.dtype == np.float32
    # the two directions are one matrix: molecule rows over description columns are its transpose
    t2m = source.scores("text_to_molecule", [0, 1], [4, 2, 0])
    m2t = source.scores("molecule_to_text", [4, 2, 0], [0, 1])
    np.testing.assert_allclose(t2m, m2t.T, rtol=1e-6, atol=1e-6)
    scores, counts = evaluate_source(source, data.test, ["all"], log=lambda _m: None)
    assert counts["all"]["text_to_molecule_candidates"] == len(data.gallery)
    for direction in DIRECTIONS:
        recorded = results["scores"]["all"][direction]
        assert scores["all"][direction]["mrr"] == pytest.approx(recorded["mrr"], abs=1e-6)
    # one free query: a description's row over every molecule, as its gallery row scores
    description = data.descriptions[3].description
    np.testing.assert_allclose(source.query_scores("text_to_molecule", description), source.scores("text_to_molecule", [3])[0],
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="direction"):
        source.scores("sideways", [0])


def test_a_fused_folder_opens_as_a_score_source_with_its_members(tiny_run, tiny_cache, data, tmp_path):
    from zoo.scoring import open_scoring

    data_dir, run_dir, _ = tiny_run
    out = tmp_path / "ens"
    assert main(["ensemble", str(run_dir), "--scorer", "structure_match", "--data-dir", str(data_dir), "--out", str(out),
                 "--device", "cpu"]) == 0
    results = read_results(out / "results.json")
    source = open_scoring(out, data=data, device="cpu", log=lambda _m: None)
    assert isinstance(source, ScoreSource)
    record = source.record()
    assert record["kind"] == "fused" and [m["label"] for m in record["members"]] == ["run", "structure_match"]
    assert [m["weight"] for m in record["members"]] == [m["weight"] for m in results["fusion"]["members"]]
    scores, _ = evaluate_source(source, data.test, ["all", "test"], log=lambda _m: None)
    assert scores == results["scores"]  # the same fused scores, through the same evaluation
    parts = source.query_parts("text_to_molecule", data.descriptions[0].description)
    np.testing.assert_allclose(sum(parts.values()), source.query_scores("text_to_molecule", data.descriptions[0].description))


def test_only_the_scoring_module_tells_ensembles_and_fused_folders_apart():
    """No ``is_ensemble``/``is_fused`` anywhere but zoo.scoring (the leaderboard compares an ensemble's spec on its
    own keys by the spec's format)."""
    found = sorted(str(path.relative_to(ROOT)) for folder in ("zoo", "evals", "plugins", "registry")
                   for path in (ROOT / folder).rglob("*.py") if re.search(r"\bis_(ensemble|fused)\b", path.read_text()))
    assert found == ["zoo/scoring.py"]


def test_training_does_not_import_search_or_the_library_index():
    source = (ROOT / "zoo" / "train.py").read_text()
    assert not re.search(r"^from zoo\.(search|library) import|^import zoo\.(search|library)", source, re.M)
