"""The second stage (:mod:`zoo.rerank`): re-ranking maths, re-rankers fitted on the training pairs and
weighed on the held-out pairs only (a re-ranker that sees test labels gets weight 0), the stage inside a
fused gallery, specs naming re-rankers, and a tiny ``zoo run`` / ``zoo eval`` / ``zoo search`` with the
built-in ``cross_encoder``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zoo.errors import SpecError, UnknownComponentError
from zoo.evaluate import evaluate_source
from zoo.fusion import FusedScores, GalleryScores, Member, fit_weights
from zoo.rerank import RerankedScores, RerankerMember, Stage, fit_stage, load_stage, rerank_rows, save_stage, stage_record, top_candidates
from zoo.spec import CompositionSpec, EnsembleSpec, load_composition


# -- the maths -------------------------------------------------------------------------------------
def test_rerank_rows_keeps_the_top_k_above_the_rest_and_is_the_first_stage_at_weight_zero():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(4, 30)).astype(np.float32)
    top = top_candidates(first, 5)
    assert top.shape == (4, 5)
    np.testing.assert_array_equal(top[:, 0], first.argmax(axis=1))
    part = rng.normal(size=(4, 5)).astype(np.float32)
    # weight 0: the same order as the first stage
    same = rerank_rows(first, top, [part], [0.0])
    np.testing.assert_array_equal(np.argsort(-same, axis=1, kind="stable"), np.argsort(-first, axis=1, kind="stable"))
    # a heavy re-ranker reorders the top 5 by its own scores; the other 25 keep their order below them
    moved = rerank_rows(first, top, [part], [100.0])
    order = np.argsort(-moved, axis=1, kind="stable")
    for q in range(4):
        assert set(order[q, :5]) == set(top[q])
        np.testing.assert_array_equal(order[q, :5], top[q][np.argsort(-part[q], kind="stable")])
        rest = [c for c in np.argsort(-first[q], kind="stable") if c not in set(top[q])]
        np.testing.assert_array_equal(order[q, 5:], rest)
    # k >= the number of candidates: every candidate is re-scored
    assert top_candidates(first, 100).shape == (4, 30)


# -- fitting on the training pairs, weighing on the held-out pairs ---------------------------------
@dataclass(frozen=True)
class P:
    cid: str
    smiles: str
    description: str


def toy_data(n_train: int = 30, n_select: int = 20, n_test: int = 20, n_extra: int = 20):
    """A task-shaped object: every pair's description and molecule are its CID."""
    pairs = [P(str(i), str(i), str(i)) for i in range(n_train + n_select + n_test)]
    gallery = [SimpleNamespace(cid=p.cid, smiles=p.smiles) for p in pairs] + \
        [SimpleNamespace(cid=f"x{i}", smiles=f"x{i}") for i in range(n_extra)]
    return SimpleNamespace(train=pairs[:n_train], select=pairs[n_train:n_train + n_select], test=pairs[n_train + n_select:],
                           descriptions=pairs, gallery=gallery)


def noisy(seed: int, signal: float):
    rng = np.random.default_rng(seed)
    table: dict = {}

    def fn(t, m):
        if (t, m) not in table:
            table[t, m] = rng.normal() + (signal if t == m else 0.0)
        return table[t, m]

    return fn


class ToyScorer:
    def __init__(self, fn):
        self.fn = fn

    def prepare_texts(self, texts):
        return list(texts)

    def prepare_molecules(self, smiles):
        return list(smiles)

    def score(self, texts, molecules):
        return np.array([[self.fn(t, m) for m in molecules] for t in texts], dtype=np.float32)


class ToyReranker:
    """Scores pairs with ``fn(description, smiles)``; records what it was fitted on and what it scored."""

    def __init__(self, fn):
        self.fn, self.fitted, self.scored, self.state = fn, set(), set(), None

    def fit(self, descriptions, candidates, positives, log=print):
        self.fitted.update(descriptions)
        assert all(group[p] == d for d, group, p in zip(descriptions, candidates, positives))  # the true one is in
        self.state = "fitted"
        return {"groups": len(descriptions)}

    def score_pairs(self, descriptions, smiles):
        self.scored.update(descriptions)
        return np.array([self.fn(d, s) for d, s in zip(descriptions, smiles)], dtype=np.float32)

    def save(self, folder):
        (Path(folder) / "state.json").write_text(json.dumps(self.state))

    def load(self, folder):
        self.state = json.loads((Path(folder) / "state.json").read_text())


def test_rerankers_fit_on_training_pairs_weights_on_heldout_and_a_test_oracle_gets_weight_zero():
    data = toy_data()
    test_cids = {p.cid for p in data.test}
    gallery = GalleryScores([Member("weak", "toy", {}, ToyScorer(noisy(0, 1.0)))], data)
    fit = fit_weights(gallery, data.select)
    oracle = ToyReranker(lambda d, s: (10.0 if d == s else 0.0) if d in test_cids else 1.0)
    helpful = ToyReranker(noisy(1, 3.0))
    members = [RerankerMember("oracle", "toy", {}, oracle), RerankerMember("helpful", "toy", {}, helpful)]
    first = FusedScores(gallery, fit.weights)
    stage, heldout = fit_stage(first, data, members, k=10, log=lambda _m: None)

    assert oracle.fitted == {p.cid for p in data.train}  # fitted on the training pairs only
    assert not (oracle.scored | helpful.scored) & test_cids  # no test description scored while fitting or weighing
    assert stage.weights[0] == 0.0 and stage.weights[1] > 0
    assert heldout["heldout_mrr"] > heldout["heldout_mrr_first_stage"]
    record = stage_record(stage, heldout, "fused")
    assert [r["label"] for r in record["rerankers"]] == ["oracle", "helpful"]
    assert record["k"] == 10 and record["rerankers"][1]["contribution"] > 0

    # on test: the stage helps, and the oracle at weight 0 changes nothing
    quiet = lambda _m: None  # noqa: E731
    alone, _ = evaluate_source(first, data.test, ["all", "test"], log=quiet)
    reranked = RerankedScores(first, stage)
    second, _ = evaluate_source(reranked, data.test, ["all", "test"], log=quiet)
    assert second["all"]["text_to_molecule"]["mrr"] > alone["all"]["text_to_molecule"]["mrr"]
    assert second["all"]["molecule_to_text"]["mrr"] >= alone["all"]["molecule_to_text"]["mrr"]  # both directions re-rank
    without_oracle = Stage(stage.members, [0.0, stage.weights[1]], stage.k)
    same, _ = evaluate_source(RerankedScores(first, without_oracle), data.test, ["all", "test"], log=quiet)
    assert same == second
    # one free query re-ranks like its row in the matrix
    row = reranked.scores("text_to_molecule", [data.descriptions.index(data.test[0])], None)[0]
    np.testing.assert_allclose(reranked.query_scores("text_to_molecule", data.test[0].description), row, rtol=1e-5, atol=1e-5)
    assert reranked.record()["kind"] == "reranked" and reranked.record()["first_stage"]["kind"] == "fused"


def test_a_stage_saves_and_loads_with_its_weights(tmp_path, monkeypatch):
    member = RerankerMember("toy", "toy", {}, ToyReranker(lambda d, s: 0.0))
    member.reranker.state = "fitted-7"
    stage = Stage([member], [1.5], 7, [{"groups": 3}])
    save_stage(stage, tmp_path)
    record = stage_record(stage, {"heldout_queries": 3, "heldout_mrr_first_stage": 0.1, "heldout_mrr": 0.2,
                                  "alone": [0.15], "without": [0.1]}, "fused")
    fresh = ToyReranker(lambda d, s: 0.0)
    monkeypatch.setattr("zoo.rerank.reranker_member", lambda name, options, label=None: RerankerMember(label, name, options, fresh))
    loaded = load_stage(tmp_path, record)
    assert loaded.weights == [1.5] and loaded.k == 7 and fresh.state == "fitted-7"


# -- specs -----------------------------------------------------------------------------------------
def test_specs_name_rerankers_and_keep_their_hashes_without_them():
    base = load_composition("tfidf_fp")
    data = base.to_dict()
    with_rr = CompositionSpec.from_dict({**data, "rerankers": [{"name": "cross_encoder", "epochs": 1}], "rerank_k": 50})
    assert with_rr.rerankers[0].name == "cross_encoder" and with_rr.rerank_k == 50
    assert with_rr.hash() != base.hash()
    assert CompositionSpec.from_dict(data).hash() == base.hash()  # no re-rankers: the hash as before
    resolved = with_rr.resolve()
    assert resolved.rerankers[0].options["epochs"] == 1 and "hidden_dim" in resolved.rerankers[0].options
    with pytest.raises(SpecError, match="rerank_k without"):
        CompositionSpec.from_dict({**data, "rerank_k": 50})
    with pytest.raises(SpecError, match="rerank_k must be an integer"):
        CompositionSpec.from_dict({**data, "rerankers": ["cross_encoder"], "rerank_k": 1})
    with pytest.raises(UnknownComponentError, match="cross_encoder"):
        CompositionSpec.from_dict({**data, "rerankers": ["cross_encodr"]}).resolve()

    ensemble = {"name": "e", "members": ["tfidf_fp", "tfidf_chem"], "train": {"seed": 0}}
    plain = EnsembleSpec.from_dict(ensemble)
    reranked = EnsembleSpec.from_dict({**ensemble, "rerankers": ["cross_encoder"]})
    assert reranked.rerank_k == 100 and reranked.hash() != plain.hash()
    assert EnsembleSpec.from_dict(reranked.to_dict()).hash() == reranked.hash()  # written and read back
