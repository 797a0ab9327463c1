"""The ``class_check`` re-ranker's scoring speed on the real ChEBI-20 data, at the size a re-ranking stage asks:
the 3,300 test descriptions x 100 candidates = 330,000 pairs (candidates drawn at random from the 33,008-molecule
gallery, seeded: more unique molecules than a first stage's top 100 has, so an upper bound).

The named parents' OPSIN parses are cached before timing (``zoo.opsin``'s disk cache); each round starts from a
fresh re-ranker (no molecule flags memoized). Target: under 2 minutes on a 2-core CPU. ``extra_info``: pairs,
unique molecules, seconds.

Run: ``ZOO_DATA_DIR=/path/to/chebi20 python -m pytest tests/benchmarks/test_class_check_speed.py --benchmark-only``.
Skipped when the data folder is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _data_dir() -> Path:
    from tiny import shared_chebi20

    return shared_chebi20() or pytest.skip("ChEBI-20 data not found (set ZOO_DATA_DIR)")


def test_class_check_330k_pairs(benchmark):
    from zoo.api import parse_names
    from zoo.plugins.rerankers.class_check import ClassCheckReranker, stated_parents
    from zoo.plugins.tasks.chebi20 import load_chebi20

    data = load_chebi20(_data_dir(), holdout_fraction=0.1, holdout_seed=0)
    texts = [p.description for p in data.test]
    gallery = [m.smiles for m in data.gallery]
    rng = np.random.default_rng(0)
    picks = rng.integers(len(gallery), size=(len(texts), 100))
    descriptions = [t for t in texts for _ in range(picks.shape[1])]
    smiles = [gallery[j] for j in picks.ravel()]
    parse_names(name for text in texts for name in stated_parents(text))  # OPSIN cache warm before timing

    scores = benchmark.pedantic(lambda: ClassCheckReranker().score_pairs(descriptions, smiles), rounds=1, iterations=1)
    assert scores.shape == (len(descriptions),) and np.isfinite(scores).all()
    benchmark.extra_info.update(pairs=len(descriptions), unique_molecules=len(set(smiles)), descriptions=len(texts))
