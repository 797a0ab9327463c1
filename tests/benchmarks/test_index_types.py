"""Query latency and recall of the library index types (``zoo index --index-type``).

Needs a finished exact index and the run that built it (its gallery cache supplies real text
queries: run ``zoo search RUN "anything"`` once first)::

    ZOO_BENCH_INDEX=/path/to/flat-index ZOO_BENCH_RUN=/path/to/run \\
        python -m pytest tests/benchmarks/test_index_types.py --benchmark-only

Each index type is built from the exact index's vectors with the parameters ``zoo index``
would use (:func:`zoo.library.choose_index`); ``extra_info`` records build seconds, size,
recall@10 against the exact top 10, and p50/p99 single-query latency over ``ZOO_BENCH_QUERIES``
(200) gallery descriptions.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

INDEX, RUN = os.environ.get("ZOO_BENCH_INDEX"), os.environ.get("ZOO_BENCH_RUN")
pytestmark = pytest.mark.skipif(not (INDEX and RUN), reason="set ZOO_BENCH_INDEX (an exact index folder) and ZOO_BENCH_RUN")
QUERIES, K = int(os.environ.get("ZOO_BENCH_QUERIES", "200")), 10


@pytest.fixture(scope="module")
def exact():
    import faiss

    index = faiss.read_index(str(Path(INDEX) / "index.faiss"))
    vectors = index.reconstruct_n(0, index.ntotal)
    with np.load(Path(RUN) / "search" / "gallery.npz") as cache:
        queries = np.ascontiguousarray(cache["text_embeddings"][:QUERIES])
    _, truth = index.search(queries, K)
    return vectors, queries, truth


@pytest.mark.parametrize("index_type", ["flat", "ivf-sq8", "ivf-pq", "hnsw"])
def test_index_type(benchmark, exact, index_type):
    import faiss

    from zoo.library import choose_index, training_fraction

    vectors, queries, truth = exact
    choice = choose_index(index_type, len(vectors), vectors.shape[1])
    started = time.perf_counter()
    index = faiss.index_factory(vectors.shape[1], choice.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        sample = vectors[np.random.default_rng(0).random(len(vectors)) < training_fraction(choice, len(vectors))]
        index.train(sample)
    index.add(vectors)
    build_s = time.perf_counter() - started
    for name, value in choice.search_params.items():
        faiss.ParameterSpace().set_index_parameter(index, name, value)
    _, found = index.search(queries, K)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None], K)
        latencies.append((time.perf_counter() - t0) * 1e3)
    benchmark.extra_info.update(factory=choice.factory, build_s=round(build_s, 2), recall_at_10=round(recall, 4),
                                index_mib=round(faiss.serialize_index(index).nbytes / 2**20, 1),
                                p50_ms=round(float(np.percentile(latencies, 50)), 3),
                                p99_ms=round(float(np.percentile(latencies, 99)), 3))
    benchmark(index.search, queries[:1], K)
