"""The ``cross_encoder`` re-ranker: substructure tokens, learning to tell a description's molecule from hard
negatives, save/load, unparsable SMILES and bad options."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ComponentError
from zoo.plugins.rerankers.cross_encoder import substructure_tokens
from zoo.rerank import reranker_member

ACIDS = {
    "The molecule is a monocarboxylic acid with a long saturated chain.": "CCCCCCCCCCCCCCCC(=O)O",
    "The molecule is an aromatic amine, an aniline carrying a nitro group.": "Nc1ccc([N+](=O)[O-])cc1",
    "The molecule is a primary alcohol, a short aliphatic alcohol.": "CCCCO",
    "The molecule is a sulfonic acid attached to a benzene ring.": "OS(=O)(=O)c1ccccc1",
    "The molecule is a phosphate ester of glycerol.": "OCC(O)COP(=O)(O)O",
    "The molecule is a thiol with a short chain.": "CCCS",
}


def test_substructure_tokens_are_hashed_sorted_by_radius_and_capped():
    tokens = substructure_tokens("CCO", radius=2, vocab=100, limit=50)
    assert tokens and all(1 <= t <= 100 for t in tokens)
    assert len(substructure_tokens("CCCCCCCCCCCCCCCC(=O)O", radius=2, vocab=100, limit=5)) == 5
    assert substructure_tokens("not a smiles((", radius=2, vocab=100, limit=50) == []


def test_it_learns_to_rank_the_described_molecule_first_and_round_trips(tmp_path):
    member = reranker_member("cross_encoder", {"hidden_dim": 32, "epochs": 30, "negatives": 3, "batch_size": 6, "lr": 0.01})
    reranker = member.reranker
    texts, smiles = list(ACIDS), list(ACIDS.values())
    candidates = [[smiles[i], *(smiles[j] for j in range(len(smiles)) if j != i)] for i in range(len(smiles))]
    reranker.prepare(texts, smiles)
    record = reranker.fit(texts, candidates, [0] * len(texts), log=lambda _m: None)
    assert record["groups"] == len(texts) and record["history"][-1]["loss"] < record["history"][0]["loss"]
    pairs_t = [t for t in texts for _ in smiles]
    pairs_s = [s for _ in texts for s in smiles]
    scores = reranker.score_pairs(pairs_t, pairs_s).reshape(len(texts), len(smiles))
    assert scores.dtype == np.float32
    assert (scores.argmax(axis=1) == np.arange(len(texts))).mean() >= 0.8  # the training pairs, learned

    reranker.save(tmp_path)
    again = reranker_member("cross_encoder", member.options).reranker
    again.load(tmp_path)
    np.testing.assert_allclose(again.score_pairs(pairs_t, pairs_s).reshape(scores.shape), scores, rtol=1e-5, atol=1e-5)
    # an unparsable candidate is scored (no substructures), not an error
    assert np.isfinite(again.score_pairs([texts[0]], ["C1CC"])).all()


def test_bad_options_are_one_line_errors():
    with pytest.raises(ComponentError, match="cross_encoder.*hidden_dim"):
        reranker_member("cross_encoder", {"hidden_dim": 30, "heads": 4})
    with pytest.raises(ComponentError, match="epochs"):
        reranker_member("cross_encoder", {"epochs": 0})
