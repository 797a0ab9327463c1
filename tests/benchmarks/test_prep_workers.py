"""One run's CPU-bound preprocessing at 1 and 2 worker processes, on real ChEBI-20 molecules and names.

* ``test_featurize``: RDKit graphs of the gallery molecules as a graph encoder's gallery is featurized
  (``zoo.cache.featurize_molecules`` with ``zoo.featurize.graph_arrays``, the encoders' ``featurize_arrays``);
* ``test_featurize_fingerprints``: the same for ``tfidf_fp``'s molecule encoder (Morgan + MACCS +
  feature-Morgan counts);
* ``test_relation_keys``: their relation keys (``zoo.plugins.chem.chemrelations.molecule_keys``: charge parent, skeleton);
* ``test_structure_bits``: their Morgan bits (``zoo.plugins.chem.chemnames.candidate_bits``);
* ``test_opsin``: the candidate name spans of ``N_DESCRIPTIONS`` descriptions parsed by OPSIN (one JVM per worker)
  and checked by RDKit.

Each on a cold cache every round; ``extra_info``: items and items/s. The results are the same at any
worker count (tests/test_parallel_prep.py). Run:
``ZOO_DATA_DIR=/path/to/chebi20 python -m pytest tests/benchmarks/test_prep_workers.py --benchmark-only``.
``ZOO_BENCH_MOLECULES`` (default: the whole gallery, 33,008 molecules), ``ZOO_BENCH_DESCRIPTIONS`` (600)
and ``ZOO_BENCH_ROUNDS`` (best of 2) size it. Skipped when the data folder is missing. No target is asserted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

N_MOLECULES = int(os.environ.get("ZOO_BENCH_MOLECULES", "0")) or None  # None: every gallery molecule
N_DESCRIPTIONS = int(os.environ.get("ZOO_BENCH_DESCRIPTIONS", "600"))
ROUNDS = int(os.environ.get("ZOO_BENCH_ROUNDS", "2"))


def _data_dir() -> Path:
    from tiny import shared_chebi20

    return shared_chebi20() or pytest.skip("ChEBI-20 data not found (set ZOO_DATA_DIR)")


@pytest.fixture(scope="module")
def data():
    from zoo.plugins.tasks.chebi20 import load_chebi20

    return load_chebi20(_data_dir(), holdout_fraction=0.1, holdout_seed=0)


def _measure(benchmark, tmp_path_factory, work, count: int, workers: int, unit: str):
    def cold():
        return (tmp_path_factory.mktemp("cold"),), {}

    benchmark.pedantic(lambda root: work(root, workers), setup=cold, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(workers=workers, items=count, unit=unit,
                                per_second=round(count / benchmark.stats.stats.min, 1), cpus=os.cpu_count())


@pytest.mark.parametrize("workers", [1, 2])
def test_featurize(benchmark, data, tmp_path_factory, workers):
    from zoo.cache import featurize_molecules
    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION, featurize, graph_arrays

    smiles = [m.smiles for m in data.gallery][:N_MOLECULES]
    key = f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}"
    _measure(benchmark, tmp_path_factory,
             lambda root, w: featurize_molecules(smiles, featurize, key, root=root, progress=False, workers=w, arrays=graph_arrays),
             len(smiles), workers, "molecules")


@pytest.mark.parametrize("workers", [1, 2])
def test_featurize_fingerprints(benchmark, data, tmp_path_factory, workers):
    from zoo.cache import featurize_molecules
    from zoo.plugins.molecule.fingerprint_mlp import FingerprintMLP

    encoder = FingerprintMLP(embed_dim=256, layers=1, hidden_dim=1024, extra=["maccs", "feature_morgan"])  # tfidf_fp's
    smiles = [m.smiles for m in data.gallery][:N_MOLECULES]
    _measure(benchmark, tmp_path_factory,
             lambda root, w: featurize_molecules(smiles, encoder.featurize, encoder.featurizer, root=root, progress=False,
                                                 workers=w, arrays=encoder.featurize_arrays),
             len(smiles), workers, "molecules")


@pytest.mark.parametrize("workers", [1, 2])
def test_relation_keys(benchmark, data, tmp_path_factory, workers):
    from zoo.plugins.chem.chemrelations import molecule_keys

    smiles = [m.smiles for m in data.gallery][:N_MOLECULES]
    _measure(benchmark, tmp_path_factory, lambda root, w: molecule_keys(smiles, root=root, workers=w),
             len(smiles), workers, "molecules")


@pytest.mark.parametrize("workers", [1, 2])
def test_structure_bits(benchmark, data, tmp_path_factory, workers):
    from zoo.plugins.chem.chemnames import candidate_bits

    smiles = [m.smiles for m in data.gallery][:N_MOLECULES]
    _measure(benchmark, tmp_path_factory, lambda root, w: candidate_bits(smiles, root=root, workers=w),
             len(smiles), workers, "molecules")


@pytest.mark.parametrize("workers", [1, 2])
def test_opsin(benchmark, data, tmp_path_factory, workers, monkeypatch):
    if shutil.which("java") is None:
        pytest.skip("java is not installed (OPSIN)")
    import zoo.opsin
    from zoo.opsin import ParseCache, parse_names
    from zoo.plugins.chem.chemnames import candidate_spans

    monkeypatch.setattr(zoo.opsin, "MIN_NAMES_PER_JVM", 500)
    texts = [p.description for p in data.descriptions][:N_DESCRIPTIONS]
    spans = sorted({s.text for text in texts for s in candidate_spans(text)})
    _measure(benchmark, tmp_path_factory, lambda root, w: parse_names(spans, cache=ParseCache(root), workers=w),
             len(spans), workers, "names")
