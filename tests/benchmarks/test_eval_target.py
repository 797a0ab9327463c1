"""The issue's evaluation target on the real data.

"Evaluating 3,300 test descriptions against the 33,008-molecule gallery, molecule encoding
included and featurization cached, takes ≤ 30 s on 2 CPU cores" — for ``aman``'s graph
transformer (default size: hidden 256, 4 layers, 8 heads) and its text head over cached frozen
MiniLM states. Timed: embedding all 33,008 molecules, embedding the 3,300 test descriptions, and
ranking text→molecule. Not timed (cached by ``zoo run``): featurized graphs and frozen text
states; a cold cache is filled once before timing (minutes on CPU).

The target is asserted for bf16 autocast (``zoo eval --bf16`` on CPU; always on for CUDA); the fp32
variant (the default of ``zoo run``/``zoo eval``) is measured and reported (``meets_target`` in
``extra_info``), not asserted: on the 2-core dev machine it takes about 40 s.

Run: ``ZOO_DATA_DIR=/path/to/chebi20 python -m pytest tests/benchmarks/test_eval_target.py --benchmark-only``.
Skipped when the data folder is missing. Threads: ``torch.set_num_threads(2)`` on CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

TARGET_S = 30.0
DEVICES = [
    pytest.param("cpu", id="cpu-2threads"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def _data_dir() -> Path:
    from tiny import shared_chebi20

    return shared_chebi20() or pytest.skip("ChEBI-20 data not found (set ZOO_DATA_DIR)")


@pytest.fixture(scope="module")
def setup():
    """The aman model (MiniLM substituted for SciBERT offline), the cached gallery graphs and test texts."""
    from zoo.cache import featurize_molecules
    from zoo.fitting import is_fittable
    from zoo.model import build_model
    from zoo.plugins.tasks.chebi20 import load_chebi20
    from zoo.spec import load_spec

    spec = load_spec("aman").resolve()
    data = load_chebi20(_data_dir(), holdout_fraction=spec.train.holdout_fraction, holdout_seed=0)
    model, _ = build_model(spec, allow_substitution=True)
    if hasattr(model.text_encoder, "set_mode"):
        model.text_encoder.set_mode("frozen")
    if is_fittable(model.text_encoder):  # aman's TF-IDF part, fitted on the training descriptions as `zoo run` does
        model.text_encoder.fit([p.description for p in data.train], seed=0)
    graphs = featurize_molecules([m.smiles for m in data.gallery], model.molecule_encoder.featurize,
                                 model.molecule_encoder.featurizer, progress=False)
    # the same text list as `zoo run` (every description), so the frozen-state cache is shared with it
    items = model.text_encoder.prepare([p.description for p in data.descriptions], progress=False)
    index = {p.cid: i for i, p in enumerate(data.descriptions)}
    mol_index = {m.cid: i for i, m in enumerate(data.gallery)}
    test_items = [items[index[p.cid]] for p in data.test]
    true = torch.tensor([mol_index[p.cid] for p in data.test])
    return model, graphs, test_items, true


@pytest.mark.parametrize("precision", ["fp32", "cpu_bf16"])
@pytest.mark.parametrize("device", DEVICES)
def test_eval_3300_texts_vs_33008_molecules(benchmark, setup, device, precision):
    """fp32 is what ``zoo run``/``zoo eval`` do; cpu_bf16 is ``embed_molecules(cpu_bf16=True)`` (same as fp32 on CUDA,
    where bf16 autocast is always on)."""
    from zoo.evals.ranking import rank_of_true
    from zoo.evaluate import embed_molecules, embed_texts

    model, graphs, test_items, true = setup
    threads = torch.get_num_threads()
    if device == "cuda" and precision == "cpu_bf16":
        pytest.skip("bf16 autocast is always on for CUDA")
    if device == "cpu":
        torch.set_num_threads(2)
    dev = torch.device(device)
    model.to(dev).eval()
    parts: dict[str, float] = {}

    def evaluate() -> torch.Tensor:
        t0 = time.perf_counter()
        mol = embed_molecules(model, graphs, range(len(graphs)), 256, dev, cpu_bf16=precision == "cpu_bf16")
        t1 = time.perf_counter()
        txt = embed_texts(model, test_items, 256, dev)
        t2 = time.perf_counter()
        ranks = rank_of_true(txt, mol, true, device=dev)
        parts.update(molecules_s=t1 - t0, texts_s=t2 - t1, rank_s=time.perf_counter() - t2)
        return ranks

    try:
        ranks = benchmark.pedantic(evaluate, rounds=3, iterations=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads)
        model.to("cpu")
    assert ranks.greater.shape == (len(test_items),) and len(graphs) >= 33_000
    benchmark.extra_info.update({k: round(v, 2) for k, v in parts.items()})
    benchmark.extra_info["mol_per_s"] = round(len(graphs) / parts["molecules_s"], 1)
    mean = benchmark.stats["mean"]
    benchmark.extra_info["meets_target"] = mean <= TARGET_S
    if precision == "cpu_bf16" or device == "cuda":  # the path that carries the target (`zoo eval --bf16` on CPU)
        assert mean <= TARGET_S, f"evaluation took {mean:.1f} s on average (target ≤ {TARGET_S} s): last round {parts}"
