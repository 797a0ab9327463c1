"""Every local core for one run: featurization, structure/relation keys and OPSIN parsing over processes
give byte-identical caches to one process, and processes filling one cold cache at once never lose or
corrupt an entry (speed: tests/benchmarks/test_prep_workers.py)."""

from __future__ import annotations

import multiprocessing
import shutil

import numpy as np
import pytest

import zoo.cache
from zoo.cache import default_workers, featurize_molecules, graphs_cache_path, map_in_processes
from zoo.errors import FeaturizeError

RINGS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "c1ccsc1", "c1ccoc1", "C1CCNCC1"]
GROUPS = ["O", "N", "Cl", "C(=O)O", "[N+](=O)[O-]", "C", "Br", "S", "C[C@H](N)C(=O)O", "/C=C/C"]
SMILES = [f"{ring}C{'C' * n}{group}" for ring in RINGS for group in GROUPS for n in range(3)]  # 180 molecules


@pytest.fixture
def small_pools(monkeypatch):
    """Let the tests' short lists use a process pool (it is skipped below PARALLEL_MIN_ITEMS items)."""
    monkeypatch.setattr(zoo.cache, "PARALLEL_MIN_ITEMS", 1)


def _square(x: int) -> int:
    return x * x


def _fail_on_7(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def test_map_in_processes_keeps_order_and_names_the_failing_item(small_pools):
    items = list(range(300))
    assert map_in_processes(_square, items, workers=2) == [x * x for x in items]
    with pytest.raises(RuntimeError, match=r"item 7 \(7\): seven"):
        map_in_processes(_fail_on_7, list(range(20)), workers=2)


def test_featurization_over_processes_is_byte_identical(tmp_path, small_pools):
    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION, featurize

    key = f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}"
    one = featurize_molecules(SMILES, featurize, key, root=tmp_path / "one", progress=False, workers=1)
    two = featurize_molecules(SMILES, featurize, key, root=tmp_path / "two", progress=False, workers=2)
    assert len(one) == len(two) == len(SMILES)
    files = [graphs_cache_path(SMILES, key, tmp_path / name) for name in ("one", "two")]
    assert _same_safetensors(*files)
    with pytest.raises(FeaturizeError, match=r"molecule 5 \(SMILES 'not a smiles'\)"):
        bad = SMILES[:5] + ["not a smiles"] + SMILES[5:]
        featurize_molecules(bad, featurize, key, root=tmp_path / "bad", progress=False, workers=2)


def _same_safetensors(a, b) -> bool:
    """Every tensor byte-identical (dtype, shape, raw bytes) and the same metadata. The files themselves are not
    compared: safetensors writes its metadata in hash-map order, which differs between any two writes."""
    import torch
    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        meta_a, meta_b = ({k: v for k, v in f.metadata().items() if k != "content_sha256"} for f in (fa, fb))
        if meta_a != meta_b or sorted(fa.keys()) != sorted(fb.keys()):
            return False
        for key in fa.keys():
            x, y = fa.get_tensor(key), fb.get_tensor(key)
            if x.dtype != y.dtype or x.shape != y.shape or x.view(torch.uint8).numpy().tobytes() != y.view(torch.uint8).numpy().tobytes():
                return False
    return True


def test_structure_and_relation_keys_over_processes_are_byte_identical(tmp_path, small_pools):
    from zoo.chemnames import candidate_bits
    from zoo.chemrelations import molecule_keys

    smiles = SMILES + ["not a smiles"]  # a row of zeros either way
    for compute, folder in ((candidate_bits, "fingerprints"), (molecule_keys, "relation_keys")):
        one = compute(smiles, root=tmp_path / "one", workers=1)
        two = compute(smiles, root=tmp_path / "two", workers=2)
        assert one.dtype == two.dtype and np.array_equal(one, two)
        (a,), (b,) = ((tmp_path / name / "chem_names" / folder).glob("*.npz") for name in ("one", "two"))
        assert a.read_bytes() == b.read_bytes()


NAMES = ["benzene", "4-hydroxybenzoic acid", "methyl 4-hydroxybenzoate", "not a chemical at all", "L-alanine",
         "D-allothreonine", "2,5-dichloro-4-oxohex-2-enedioic acid", "pregnane", "ethanol", "coenzyme A", "glycine",
         "(2E)-but-2-ene"]


def test_opsin_over_several_jvms_parses_like_one(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("java is not installed (OPSIN); .ci/run installs default-jre-headless")
    from zoo.opsin import ParseCache, parse_names, run_opsin, run_opsin_parallel

    assert run_opsin_parallel(NAMES, workers=3, min_per_jvm=1) == run_opsin(NAMES)
    one = parse_names(NAMES, cache=ParseCache(tmp_path / "one"), workers=1)
    two = parse_names(NAMES, cache=ParseCache(tmp_path / "two"), workers=2)
    assert one == two and one["benzene"] == "c1ccccc1" and one["not a chemical at all"] is None
    shards = [sorted((tmp_path / name).glob("*.json")) for name in ("one", "two")]
    assert [p.name for p in shards[0]] == [p.name for p in shards[1]]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(*shards))


def _forked() -> None:
    """A forked test process stays out of the OpenMP pool its parent (pytest, after other tests) used: it would hang."""
    import torch

    torch.set_num_threads(1)


def _put_many(root, worker: int) -> None:
    from zoo.opsin import ParseCache

    _forked()
    cache = ParseCache(root)
    for batch in range(10):  # many read-merge-write rounds of the same 16 shards
        cache.put({f"{c}{worker:02d}{batch:02d}{i:03d}": f"C{worker}" for c in "0123456789abcdef" for i in range(3)})


def _featurize_cold(root, queue) -> None:
    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION, featurize

    _forked()
    packed = featurize_molecules(SMILES, featurize, f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}", root=root, progress=False,
                                 workers=1)
    queue.put(packed.data["x"].sum().item() if hasattr(packed, "data") else len(packed))


def test_processes_on_one_cold_cache_lose_nothing_and_agree(tmp_path):
    """Parsed-name shards are read, merged and rewritten under a lock: four processes writing at once keep every
    entry. Four processes featurizing the same molecules into one cold cache get the same graphs and leave one
    valid file."""
    from zoo.cache import PackedGraphs
    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION
    from zoo.opsin import ParseCache

    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_put_many, args=(tmp_path / "opsin", w)) for w in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    keys = [f"{c}{w:02d}{b:02d}{i:03d}" for w in range(4) for b in range(10) for c in "0123456789abcdef" for i in range(3)]
    found = ParseCache(tmp_path / "opsin").get(keys)
    assert len(found) == len(keys)

    queue = context.Queue()
    readers = [context.Process(target=_featurize_cold, args=(tmp_path / "graphs", queue)) for _ in range(4)]
    for p in readers:
        p.start()
    for p in readers:
        p.join(120)
        assert p.exitcode == 0
    assert len({queue.get(timeout=5) for _ in readers}) == 1
    path = graphs_cache_path(SMILES, f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}", tmp_path / "graphs")
    assert len(PackedGraphs.load(path)) == len(SMILES)
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == [path.name]  # no temp file left


def test_default_workers_follows_the_environment(monkeypatch):
    monkeypatch.setenv("ZOO_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.delenv("ZOO_WORKERS")
    assert default_workers() == 1  # one process unless asked: more were slower on the 2-core machines measured
    monkeypatch.setenv("ZOO_WORKERS", "two")
    with pytest.raises(Exception, match="ZOO_WORKERS='two': expected a whole number"):
        default_workers()
