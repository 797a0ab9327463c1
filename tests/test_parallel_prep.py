"""Every local core for one run: featurization, structure/relation keys and OPSIN parsing over processes
give byte-identical caches to one process, and processes filling one cold cache at once never lose or
corrupt an entry (speed: tests/benchmarks/test_prep_workers.py)."""

from __future__ import annotations

import multiprocessing
import os
import shutil

import numpy as np
import pytest

import zoo.cache
from zoo.cache import default_workers, featurize_molecules, graphs_cache_path, map_in_processes
from zoo.errors import FeaturizeError
from zoo.jobs import available_cpus

RINGS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "c1ccsc1", "c1ccoc1", "C1CCNCC1"]
GROUPS = ["O", "N", "Cl", "C(=O)O", "[N+](=O)[O-]", "C", "Br", "S", "C[C@H](N)C(=O)O", "/C=C/C"]
SMILES = [f"{ring}C{'C' * n}{group}" for ring in RINGS for group in GROUPS for n in range(3)]  # 180 molecules


@pytest.fixture
def small_pools(monkeypatch):
    """Let the tests' short, cheap lists use a process pool (it is skipped below PARALLEL_MIN_ITEMS items, and
    when the timed first PROBE_ITEMS items show that the rest takes under PARALLEL_MIN_SECONDS here)."""
    monkeypatch.setattr(zoo.cache, "PARALLEL_MIN_ITEMS", 1)
    monkeypatch.setattr(zoo.cache, "PARALLEL_MIN_SECONDS", 0.0)
    monkeypatch.setattr(zoo.cache, "PROBE_ITEMS", 2)


def _square(x: int) -> int:
    return x * x


def _fail_on_7(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def _pid(x: int) -> int:
    import os

    return os.getpid()


def test_map_in_processes_keeps_order_and_names_the_failing_item(small_pools):
    items = list(range(300))
    assert map_in_processes(_square, items, workers=2) == [x * x for x in items]
    with pytest.raises(RuntimeError, match=r"item 7 \(7\): seven"):  # in a worker
        map_in_processes(_fail_on_7, list(range(20)), workers=2)
    zoo.cache.PROBE_ITEMS = 10
    with pytest.raises(RuntimeError, match=r"item 7 \(7\): seven"):  # in the timed probe, here
        map_in_processes(_fail_on_7, list(range(20)), workers=2)


def test_a_cheap_map_stays_in_this_process(monkeypatch):
    """The timed probe: 2,000 trivial items would take far less than PARALLEL_MIN_SECONDS here, so no pool starts;
    made to look expensive (the threshold at 0), the same items go to worker processes."""
    import os

    items = list(range(2000))
    assert set(map_in_processes(_pid, items, workers=2)) == {os.getpid()}
    monkeypatch.setattr(zoo.cache, "PARALLEL_MIN_SECONDS", 0.0)
    pids = map_in_processes(_pid, items, workers=2)
    assert pids[:zoo.cache.PROBE_ITEMS] == [os.getpid()] * zoo.cache.PROBE_ITEMS and os.getpid() not in pids[zoo.cache.PROBE_ITEMS:]


def _graph_arrays_without_torch(smiles: str):
    import sys

    from zoo.featurize import graph_arrays

    return graph_arrays(smiles), "torch" in sys.modules


def test_array_featurizers_pack_like_featurize_and_keep_workers_torch_free(tmp_path, small_pools):
    """A molecule encoder's featurize_arrays gives the tensors of its featurize (the built-in graph and fingerprint
    featurizers), featurize_molecules over 2 workers with it writes the cache file of featurize in one process, and
    the workers computing it never import torch."""
    from zoo.cache import PackedGraphs
    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION, featurize, graph_arrays
    from zoo.plugins.molecule.fingerprint_mlp import FingerprintMLP

    fingerprints = FingerprintMLP(embed_dim=8, hidden_dim=8, extra=["maccs", "feature_morgan"])
    for as_data, as_arrays in ((featurize, graph_arrays), (fingerprints.featurize, fingerprints.featurize_arrays)):
        one, two = PackedGraphs.pack([as_data(s) for s in SMILES]), PackedGraphs.pack([as_arrays(s) for s in SMILES])
        assert one.keys == two.keys and one.scalar == two.scalar
        for key in one.keys:
            assert one.data[key].dtype == two.data[key].dtype and torch_equal(one.data[key], two.data[key])
            assert torch_equal(one.ptr[key], two.ptr[key])
    for name, as_data, as_arrays, key in (("graphs", featurize, graph_arrays, f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}"),
                                          ("fp", fingerprints.featurize, fingerprints.featurize_arrays, fingerprints.featurizer)):
        featurize_molecules(SMILES, as_data, key, root=tmp_path / f"{name}-data", progress=False, workers=1)
        featurize_molecules(SMILES, as_data, key, root=tmp_path / f"{name}-arrays", progress=False, workers=2, arrays=as_arrays)
        assert _same_safetensors(*(graphs_cache_path(SMILES, key, tmp_path / f"{name}-{how}") for how in ("data", "arrays")))
    found = map_in_processes(_graph_arrays_without_torch, SMILES, workers=2)
    assert not any(torch_loaded for _, torch_loaded in found[zoo.cache.PROBE_ITEMS:])


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()


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


def test_worker_results_hold_no_file_descriptors(tmp_path, small_pools):
    """A tensor sent back by a worker holds one open file descriptor in this process while it lives (torch's
    file_descriptor sharing): a gallery's Data objects (2-3 tensors per molecule) ran past the open-files limit, and
    the pool broke as if a worker had died. Workers send numpy arrays: under a limit of 200 more files, 180 molecules
    (540 tensors) featurize over 2 workers without a broken pool."""
    import resource
    import warnings

    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION, featurize

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 200, hard))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            packed = featurize_molecules(SMILES, featurize, f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}", root=tmp_path,
                                         progress=False, workers=2)  # no arrays: each worker's Data comes back as numpy
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(packed) == len(SMILES)
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]


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
    from zoo.plugins.chem.chemnames import candidate_bits
    from zoo.plugins.chem.chemrelations import molecule_keys

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
    assert default_workers() == available_cpus()  # every core this process may use
    monkeypatch.setenv("ZOO_WORKERS", "two")
    with pytest.raises(Exception, match="ZOO_WORKERS='two': expected a whole number"):
        default_workers()
