"""Throughput of the pieces of an evaluation (text encoding, molecule encoding, featurization,
ranking) and of training (optimizer steps of each shipped composition).

Run with ``python -m pytest tests/benchmarks/test_throughput.py --benchmark-only`` (the default
suite skips benchmarks; ``-k training`` runs the training ones alone, a few minutes on 2 cores).
Each benchmark stores its rate in ``extra_info`` (shown with ``--benchmark-columns=mean,ops`` or
in ``--benchmark-json``) and runs on CUDA too when present.
Inputs are the real ChEBI-20 test rows when ``$ZOO_DATA_DIR`` (or the shared data folder) has
them, else synthetic molecules and descriptions from ``tests/tiny.py``.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import pytest
import torch

from zoo.cache import PackedGraphs

EMBED_DIM = 256
N_MOLECULES = 1024
N_TEXTS_BACKBONE = 64
N_TEXTS_HEAD = 1024
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def _data_dir() -> Path | None:
    from tiny import shared_chebi20

    return shared_chebi20()


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """(SMILES, description) pairs: real test rows when available, else the tiny synthetic set, repeated."""
    data_dir = _data_dir()
    if data_dir is not None:
        with open(data_dir / "test.txt", newline="", encoding="utf-8") as fh:
            rows = [(r["SMILES"], r["description"]) for r in csv.DictReader(fh, delimiter="\t")]
    else:
        from tiny import GROUPS, LINKERS, RINGS

        rows = [(ring.format(link + group), f"The molecule is a {rn} derivative carrying a {gn} substituent {ln}.")
                for (rn, ring), (gn, group), (ln, link) in itertools.product(RINGS.items(), GROUPS.items(), LINKERS.items())]
    return list(itertools.islice(itertools.cycle(rows), max(N_MOLECULES, N_TEXTS_HEAD)))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rate(benchmark, n: int, unit: str) -> float:
    rate = n / benchmark.stats["mean"]
    benchmark.extra_info[unit] = round(rate, 1)
    return rate


# -- featurization --------------------------------------------------------------------------------
def test_featurize_graphs(benchmark, pairs):
    """RDKit graph featurization (atom + bond features), molecules per second (CPU only)."""
    from zoo.featurize import featurize

    smiles = [s for s, _ in pairs[:256]]
    graphs = benchmark.pedantic(lambda: [featurize(s) for s in smiles], rounds=3, iterations=1, warmup_rounds=1)
    assert len(graphs) == len(smiles)
    _rate(benchmark, len(smiles), "mol_per_s")


# -- molecule encoders (featurization cached) -----------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["graph_transformer", "gcn", "fingerprint_mlp"])
def test_molecule_encoding(benchmark, pairs, name, device):
    """Embedding pre-featurized molecules (PackedGraphs, batches of 256), molecules per second."""
    from zoo.registry import get_component

    component = get_component("molecule_encoder", name)
    encoder = component.create(embed_dim=EMBED_DIM, **component.config).to(device).eval()
    packed = PackedGraphs.pack([encoder.featurize(s) for s, _ in pairs[:N_MOLECULES]])
    order = torch.arange(len(packed))

    @torch.inference_mode()
    def embed() -> torch.Tensor:
        out = [encoder(packed.batch(order[i : i + 256]).to(device)).embedding for i in range(0, len(order), 256)]
        _sync(device)
        return torch.cat(out)

    emb = benchmark.pedantic(embed, rounds=3, iterations=1, warmup_rounds=1)
    assert emb.shape == (N_MOLECULES, EMBED_DIM)
    _rate(benchmark, N_MOLECULES, "mol_per_s")


# -- text encoder -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from zoo.registry import get_component

    component = get_component("text_encoder", "minilm")
    return component.create(embed_dim=EMBED_DIM, **{**component.config, "mode": "frozen"})


@pytest.mark.parametrize("device", DEVICES)
def test_text_backbone(benchmark, pairs, minilm, device):
    """Frozen MiniLM backbone over descriptions (what the frozen-state cache saves), texts per second."""
    texts = [d for _, d in pairs[:N_TEXTS_BACKBONE]]

    def encode():
        states = minilm.backbone_states(texts, progress=False, device=device)
        _sync(device)
        return states

    states = benchmark.pedantic(encode, rounds=3, iterations=1, warmup_rounds=1)
    minilm.backbone.to("cpu")
    assert len(states) == len(texts)
    _rate(benchmark, len(texts), "texts_per_s")


HEADS = {
    "minilm_defaults": {},  # the registered defaults: one transformer adapter layer, mean pooling
    "aman": {"adapter_layers": 0, "pooling": "attention", "lexical_dim": 256},  # aman.toml's SciBERT part
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", list(HEADS))
def test_text_head(benchmark, pairs, minilm, head, device):
    """The trainable head over cached backbone states (what evaluation runs per query), texts per second."""
    from zoo.plugins.text.hf_text import FrozenText
    from zoo.registry import get_component

    component = get_component("text_encoder", "minilm")
    encoder = component.create(embed_dim=EMBED_DIM, **{**component.config, "mode": "frozen", **HEADS[head]})
    texts = [d for _, d in pairs[:N_TEXTS_BACKBONE]]
    states = minilm.backbone_states(texts, progress=False)
    ids = minilm.tokenizer(texts, truncation=True, max_length=minilm.max_length)["input_ids"]
    distinct = [FrozenText(s, torch.tensor(i)) for s, i in zip(states, ids)]
    items = list(itertools.islice(itertools.cycle(distinct), N_TEXTS_HEAD))
    head = encoder.to(device).eval()

    @torch.inference_mode()
    def embed() -> torch.Tensor:
        out = [head(head.collate(items[i : i + 256]).to(device)).embedding for i in range(0, len(items), 256)]
        _sync(device)
        return torch.cat(out)

    emb = benchmark.pedantic(embed, rounds=3, iterations=1, warmup_rounds=1)
    assert emb.shape == (N_TEXTS_HEAD, EMBED_DIM)
    _rate(benchmark, N_TEXTS_HEAD, "texts_per_s")


# -- ranking harness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_rank_of_true(benchmark, device):
    """evals.ranking.rank_of_true: 1,024 queries against 33,008 candidates (d=256), scores per second."""
    from zoo.evals.ranking import rank_of_true

    gen = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(1024, EMBED_DIM, generator=gen), dim=1).to(device)
    candidates = torch.nn.functional.normalize(torch.randn(33_008, EMBED_DIM, generator=gen), dim=1).to(device)
    true = torch.randint(0, 33_008, (1024,), generator=gen)

    def rank():
        ranks = rank_of_true(queries, candidates, true)
        _sync(device)
        return ranks

    ranks = benchmark.pedantic(rank, rounds=5, iterations=1, warmup_rounds=1)
    assert ranks.greater.shape == (1024,) and int(ranks.greater.min()) >= 0 and int(ranks.tied.min()) >= 0
    _rate(benchmark, 1024 * 33_008, "scores_per_s")


# -- training steps -----------------------------------------------------------------------------------
COMPOSITIONS = ["aman", "gt_infonce", "text2mol_mlp", "text2mol_gcn", "text2mol_attention", "tfidf_fp"]
N_TRAIN = 256  # 4 optimizer steps of the shipped batch size (64) per round


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """A private molzoo cache (frozen text states are computed once per module) and an offline hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("zoo-cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def _training_epoch(name: str, device: str, pairs, reference: bool = False, cpu_bf16: bool | None = None):
    """``(epoch, optimizer)``: ``epoch()`` runs the optimizer steps of ``N_TRAIN`` pairs as ``zoo run``
    does per step (collate, forward, backward, clipping, optimizer step via ``zoo.train.train_step``),
    the text backbone frozen over cached states on CPU and fine-tuned on CUDA (``mode = "auto"``).

    ``reference=True`` trains as commit ea00f38 did, same model: dense gradients for the embedding
    tables and timm's AdamW, torch's dropout, no CPU bf16 autocast. ``cpu_bf16`` forces the CPU precision
    (default: the spec's ``train.cpu_bf16`` resolved for this machine, as ``zoo run`` does)."""
    from zoo.cache import PackedGraphs
    from zoo.evaluate import autocast
    from zoo.fitting import is_fittable
    from zoo.model import build_model
    from zoo.optim import build_optimizer, sparse_tables
    from zoo.precision import resolve_cpu_bf16
    from zoo.spec import load_spec
    from zoo.train import seed_everything, train_step

    dev = torch.device(device)
    seed_everything(0)
    model, report = build_model(load_spec(name), on_substitute=lambda _message: None)  # SciBERT offline: MiniLM
    cfg, text = report.spec.train, model.text_encoder
    if cpu_bf16 is None:
        cpu_bf16 = resolve_cpu_bf16(cfg.cpu_bf16) and not reference
    if reference:
        from timm.optim import create_optimizer_v2

        from zoo.layers import Dropout

        for table in sparse_tables(model):
            table.sparse = False
        for module in model.modules():
            if isinstance(module, Dropout):
                module.forward = torch.nn.Dropout.forward.__get__(module)
    finetune = device == "cuda" and report.spec.text_encoder.options.get("mode", "auto") in ("auto", "finetune")
    if hasattr(text, "set_mode"):
        text.set_mode("finetune" if finetune else "frozen")
    descriptions = [d for _, d in pairs[:N_TRAIN]]
    if is_fittable(text):  # tfidf's SVD (512 dims) needs more distinct texts than a few batches or the synthetic set
        fit_texts = [d for _, d in pairs]
        text.fit(fit_texts if len(set(fit_texts)) == len(fit_texts) else [f"{d} {i}" for i, d in enumerate(fit_texts)], seed=0)
    items = text.prepare(descriptions, progress=False, device=dev)
    graphs = PackedGraphs.pack([model.molecule_encoder.featurize(s) for s, _ in pairs[:N_TRAIN]])
    model.to(dev).train()
    if reference:
        optimizer = create_optimizer_v2(model, opt=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, dev,
                                    backbone=text.backbone if finetune else None, backbone_lr=cfg.backbone_lr)
    bs = cfg.batch_size
    with torch.no_grad(), autocast(dev):  # materialises lazy modules (the cross-attention aligner), as zoo run does
        model(text.collate(items[:bs]).to(dev), graphs.batch(list(range(bs))).to(dev))

    def epoch() -> dict[str, float]:
        for start in range(0, N_TRAIN, bs):
            logs = train_step(model, optimizer, text.collate(items[start : start + bs]).to(dev),
                              graphs.batch(list(range(start, start + bs))).to(dev), cfg.grad_clip, dev, cpu_bf16=cpu_bf16)
        _sync(device)
        return logs

    return epoch, optimizer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", COMPOSITIONS)
def test_training(benchmark, pairs, private_cache, name, device):
    """Training pairs per second of a shipped composition at its shipped size (see :func:`_training_epoch`)."""
    epoch, optimizer = _training_epoch(name, device, pairs)
    logs = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    assert all(math.isfinite(v) for v in logs.values())
    benchmark.extra_info["optimizer"] = type(optimizer).__name__
    _rate(benchmark, N_TRAIN, "pairs_per_s")


#: A regression floor, below the measured ~2.1x: the reference emulates ea00f38's optimizer, dropout and
#: precision but runs today's lexical pooling (one bmm), so it is faster than ea00f38 itself; the epoch
#: times of the two commits, back to back, are in results/README.md.
AMAN_SPEEDUP_FLOOR = 1.8


def test_aman_training_speedup_over_ea00f38(benchmark, pairs, private_cache):
    """``aman``'s CPU training steps against the same model trained as commit ea00f38 did (dense
    embedding-table gradients and AdamW, torch's dropout, fp32), one thread each, rounds interleaved;
    the ratio of process CPU seconds is the speed-up (``extra_info["speedup"]``)."""
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU seconds of one thread: the ratio does not depend on the machine's load
    try:
        from zoo.precision import detect_cpu_bf16

        shipped, _ = _training_epoch("aman", "cpu", pairs, cpu_bf16=detect_cpu_bf16().native)  # as `zoo run` here
        reference, _ = _training_epoch("aman", "cpu", pairs, reference=True)
        shipped(), reference()  # warm-up
        seconds = {"shipped": 0.0, "reference": 0.0}

        def both() -> None:
            for label, epoch in (("reference", reference), ("shipped", shipped)):
                start = time.process_time()
                epoch()
                seconds[label] += time.process_time() - start

        benchmark.pedantic(both, rounds=3, iterations=1)
    finally:
        torch.set_num_threads(threads)
    ratio = seconds["reference"] / seconds["shipped"]
    benchmark.extra_info.update({"speedup": round(ratio, 2), "shipped_pairs_per_s_1thread": round(3 * N_TRAIN / seconds["shipped"], 1),
                                 "reference_pairs_per_s_1thread": round(3 * N_TRAIN / seconds["reference"], 1)})
    assert ratio >= AMAN_SPEEDUP_FLOOR, f"aman training is {ratio:.2f}x the ea00f38 way, below the {AMAN_SPEEDUP_FLOOR}x floor"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_aman_training_step_precision(benchmark, pairs, private_cache, precision):
    """One ``aman`` optimizer step on the CPU (batch 64, as shipped) in fp32 and under bf16 autocast, and
    which one ``train.cpu_bf16 = "auto"`` picks on this machine (``extra_info``: ``auto_picks``, ``why``,
    ``step_ms``). On a CPU without native bf16 the bf16 step is many times slower; with AMX it is faster."""
    from zoo.precision import detect_cpu_bf16

    support = detect_cpu_bf16()  # the machine's own answer (tests/conftest.py pins fp32 for the other tests)
    epoch, _ = _training_epoch("aman", "cpu", pairs, cpu_bf16=precision == "bf16")
    epoch()  # warm-up
    logs = benchmark.pedantic(epoch, rounds=3, iterations=1)
    assert all(math.isfinite(v) for v in logs.values())
    steps = N_TRAIN // 64
    benchmark.extra_info.update({"step_ms": round(1e3 * benchmark.stats["mean"] / steps, 1),
                                 "auto_picks": "bf16" if support.native else "fp32", "why": support.why,
                                 "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    print(f"\naman training step, {precision}: {1e3 * benchmark.stats['mean'] / steps:.1f} ms; "
          f"train.cpu_bf16=auto picks {'bf16' if support.native else 'fp32'} here ({support.why})")


def test_load_chebi20(benchmark):
    """Loading and checking the shared ChEBI-20 files (33,008 gallery molecules, 3,300 test pairs): seconds
    per load (was a 30 s limit in tests/test_data.py; a time belongs in a benchmark)."""
    from zoo.plugins.tasks.chebi20 import load_chebi20

    folder = _data_dir()
    if folder is None:
        pytest.skip("shared ChEBI-20 files not present")
    data = benchmark.pedantic(load_chebi20, args=(folder,), rounds=2, iterations=1)
    assert len(data.gallery) == 33008
