"""Chemical names on the real ChEBI-20 data: the OPSIN batch and the structure-match scorer.

* ``test_opsin_one_batch``: every candidate name of the validation + test descriptions, parsed in
  one OPSIN call (cold cache: one JVM). ``extra_info``: unique spans, parsed, share of test
  descriptions with at least one structure.
* ``test_structure_match_scorer``: max-Tanimoto of the 3,300 test descriptions' structures
  against the 33,008-molecule ``all`` gallery (candidate fingerprints cached before timing).
  ``extra_info``: its text->molecule metrics (expected-rank tie rule) and the share of test
  queries whose true molecule scores 1.0.

Run: ``ZOO_DATA_DIR=/path/to/chebi20 python -m pytest tests/benchmarks/test_chem_names_data.py --benchmark-only``.
Skipped when the data folder is missing. No target is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _data_dir() -> Path:
    from tiny import shared_chebi20

    return shared_chebi20() or pytest.skip("ChEBI-20 data not found (set ZOO_DATA_DIR)")


@pytest.fixture(scope="module")
def data():
    from zoo.plugins.tasks.chebi20 import load_chebi20

    return load_chebi20(_data_dir(), holdout_fraction=0.1, holdout_seed=0)


def test_opsin_one_batch(benchmark, data, tmp_path_factory):
    from zoo.opsin import ParseCache, parse_names
    from zoo.plugins.chem.chemnames import candidate_spans

    texts = [p.description for p in data.descriptions]
    spans = sorted({s.text for text in texts for s in candidate_spans(text)})

    def cold():  # a fresh cache each round: every name goes to OPSIN
        return (spans,), {"cache": ParseCache(tmp_path_factory.mktemp("opsin"))}

    parsed = benchmark.pedantic(parse_names, setup=cold, rounds=1, iterations=1)
    test_ids = {p.cid for p in data.test}
    found = [any(parsed[s.text] for s in candidate_spans(p.description)) for p in data.descriptions if p.cid in test_ids]
    benchmark.extra_info.update(descriptions=len(texts), unique_spans=len(spans),
                                parsed=sum(v is not None for v in parsed.values()),
                                test_with_structure=round(sum(found) / len(found), 4))


@pytest.mark.parametrize("max_structures", [1, 4])
def test_structure_match_scorer(benchmark, data, max_structures):
    from zoo.evals.ranking import Ranks, count_above_and_tied, retrieval_metrics
    from zoo.plugins.chem.chemnames import candidate_bits, description_structures, structure_match_scores

    structures = description_structures([p.description for p in data.test], max_structures=max_structures)
    bits = candidate_bits([m.smiles for m in data.gallery])
    scores = benchmark.pedantic(structure_match_scores, args=(structures, bits), rounds=1, iterations=1)
    index = {m.cid: i for i, m in enumerate(data.gallery)}
    true = torch.tensor([index[p.cid] for p in data.test])
    scores = torch.from_numpy(scores)
    true_scores = scores.gather(1, true[:, None])
    metrics = retrieval_metrics(Ranks(*count_above_and_tied(scores, true_scores)))
    benchmark.extra_info.update({k: round(v, 4) for k, v in metrics.items()})
    benchmark.extra_info["true_tanimoto_1"] = round(float((true_scores >= 1 - 1e-6).double().mean()), 4)
    benchmark.extra_info["gallery"] = len(data.gallery)
    assert scores.shape == (len(data.test), len(data.gallery))
