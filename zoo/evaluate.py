"""Embedding texts and molecules with a trained model, and scoring a task's retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zoo.evals.ranking import Ranks, count_above_and_tied, rank_of_true, retrieval_metrics
from zoo.protocols import ScoreSource
from zoo.taskdata import Gallery, Pair

#: queries a :class:`~zoo.protocols.ScoreSource` scores per block (bounds memory: block x candidates floats)
CHUNK = 512


@torch.no_grad()
def embed_texts(model, items: Sequence[Any], batch_size: int, device: torch.device) -> torch.Tensor:
    """``[N, d]`` normalized text embeddings, on CPU."""
    model.eval()
    out = []
    for start in range(0, len(items), batch_size):
        batch = model.text_encoder.collate(items[start : start + batch_size]).to(device)
        with autocast(device):
            out.append(model.embed_text(batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.inference_mode()
def embed_molecules(model, graphs, indices: Sequence[int], batch_size: int, device: torch.device, progress: bool = False,
                    desc: str = "embedding molecules", cpu_bf16: bool = False) -> torch.Tensor:
    """``[N, d]`` normalized embeddings of ``graphs[indices]`` (a :class:`zoo.cache.PackedGraphs`), on CPU.

    Batches are sliced straight out of the packed tensors (:meth:`PackedGraphs.batch`), about 3x
    faster than collating one ``Data`` object per molecule. bf16 autocast runs on CUDA, and on
    CPU too with ``cpu_bf16=True`` (about 2x faster on CPUs with AMX/AVX512-BF16; embeddings
    within 1e-4 cosine of fp32, so ranks of near-ties may change: off by default).
    """
    from tqdm.auto import tqdm

    model.eval()
    order = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    out = []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
        batch = graphs.batch(order[start : start + batch_size]).to(device, non_blocking=True)
        with autocast(device, cpu_bf16):
            out.append(model.embed_molecules(batch).float().cpu())
    return torch.cat(out)


def autocast(device: torch.device, cpu_bf16: bool = False):
    """bf16 autocast on CUDA, and on the CPU too with ``cpu_bf16``; a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cpu_bf16)


def score_both_directions(text_emb: torch.Tensor, mol_emb: torch.Tensor, text_to_mol_true: torch.Tensor,
                          mol_queries: torch.Tensor, text_candidates: torch.Tensor, mol_to_text_true: torch.Tensor,
                          chunk_size: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Metrics for text->molecule and molecule->text."""
    t2m = retrieval_metrics(rank_of_true(text_emb, mol_emb, text_to_mol_true, chunk_size=chunk_size, device=device))
    m2t = retrieval_metrics(rank_of_true(mol_queries, text_candidates, mol_to_text_true, chunk_size=chunk_size, device=device))
    return {"text_to_molecule": t2m, "molecule_to_text": m2t}


def evaluate_pairs(model, pairs, data, graphs, mol_index: dict[str, int], text_items, text_index: dict[str, int],
                   galleries, batch_size: int, chunk_size: int, device: torch.device, progress: bool = False,
                   log=print, label: str = "test", cpu_bf16: bool = False):
    """Score ``pairs`` (queries) against each gallery in both directions (molecules embedded under bf16
    autocast on the CPU too with ``cpu_bf16``; always on CUDA).

    ``all``: every molecule of ``data.gallery`` / every description in ``text_items``;
    ``test``: the molecules and descriptions of ``pairs`` themselves; ``inbatch:N``: consecutive
    blocks of N pairs, each query ranked within its block (averaged over queries).
    Returns ``(scores, gallery_counts, embeddings)``; ``embeddings[gallery]`` holds the query and
    candidate embeddings with their CIDs, enough to recompute every metric.
    """
    import numpy as np

    query_cids = np.array([p.cid for p in pairs])
    text_q = embed_texts(model, [text_items[text_index[p.cid]] for p in pairs], batch_size, device)
    mols_q = [mol_index[p.cid] for p in pairs]
    scores, counts, embeddings = {}, {}, {}
    for parsed in map(Gallery.parse, galleries):  # a bad name: GalleryError (the callers check them first)
        gallery = str(parsed)
        if parsed.name == Gallery.ALL:
            mol_c = embed_molecules(model, graphs, list(range(len(data.gallery))), batch_size, device, progress=progress, cpu_bf16=cpu_bf16,
                                    desc="embedding gallery (all)")
            text_c = embed_texts(model, text_items, batch_size, device)
            mol_q = mol_c[torch.tensor(mols_q)]
            t2m_true = torch.tensor(mols_q)
            m2t_true = torch.tensor([text_index[p.cid] for p in pairs])
            mol_cids = np.array([m.cid for m in data.gallery])
            text_cids = np.array(sorted(text_index, key=text_index.get))
            scores[gallery] = score_both_directions(text_q, mol_c, t2m_true, mol_q, text_c, m2t_true, chunk_size, device)
        else:  # test, inbatch:N
            mol_c = embed_molecules(model, graphs, mols_q, batch_size, device, cpu_bf16=cpu_bf16)
            text_c, mol_q, mol_cids, text_cids = text_q, mol_c, query_cids, query_cids
            size = parsed.block or len(pairs)
            ranks_t2m, ranks_m2t = [], []
            for start in range(0, len(pairs), size):
                block = slice(start, start + size)
                true = torch.arange(len(text_q[block]))
                ranks_t2m.append(rank_of_true(text_q[block], mol_c[block], true, chunk_size=chunk_size, device=device))
                ranks_m2t.append(rank_of_true(mol_c[block], text_q[block], true, chunk_size=chunk_size, device=device))
            scores[gallery] = {"text_to_molecule": retrieval_metrics(Ranks.cat(ranks_t2m)),
                               "molecule_to_text": retrieval_metrics(Ranks.cat(ranks_m2t))}
        if parsed.is_inbatch:
            counts[gallery] = {"block_size": size, "queries": len(pairs)}
        else:
            counts[gallery] = {"text_to_molecule_candidates": len(mol_c), "molecule_to_text_candidates": len(text_c),
                               "queries": len(pairs)}
        embeddings[gallery] = {"query_cids": query_cids, "text_queries": text_q.numpy(), "molecule_queries": mol_q.numpy(),
                               "molecule_candidates": mol_c.numpy(), "molecule_candidate_cids": mol_cids,
                               "text_candidates": text_c.numpy(), "text_candidate_cids": text_cids}
        t2m, m2t = scores[gallery]["text_to_molecule"], scores[gallery]["molecule_to_text"]
        log(f"{label} gallery={gallery}: text->molecule MRR={t2m['mrr']:.4f} H@1={t2m['hits@1']:.3f} H@10={t2m['hits@10']:.3f} "
            f"mean rank={t2m['mean_rank']:.1f} ties={int(t2m['queries_with_ties'])} | molecule->text MRR={m2t['mrr']:.4f} "
            f"H@1={m2t['hits@1']:.3f} (expected over random tie-breaks)")
    return scores, counts, embeddings


# -- any score source ------------------------------------------------------------------------------
def ranks_of(scores: Any, true_index: Sequence[int]) -> Ranks:
    """Where each row's true candidate ranks in ``scores`` (candidates above it and tied with it)."""
    import numpy as np

    s = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    true = torch.as_tensor(np.asarray(true_index, dtype=np.int64))[:, None]
    greater, tied = count_above_and_tied(s, s.gather(1, true))
    return Ranks(greater, tied)


def source_ranks(source: ScoreSource, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None,
                 true_index: Sequence[int], chunk: int = CHUNK) -> Ranks:
    """Expected-rank bookkeeping of ``source``'s scores, ``chunk`` queries at a time."""
    parts = [ranks_of(source.scores(direction, query_rows[s:s + chunk], candidate_rows), true_index[s:s + chunk])
             for s in range(0, len(query_rows), chunk)]
    return Ranks.cat(parts)


def evaluate_source(source: ScoreSource, pairs: Sequence[Pair], galleries: Sequence[str], log=print, label: str = "test",
                    what: str = "fused") -> tuple[dict, dict]:
    """``source``'s metrics of ``pairs`` per gallery and direction, like :func:`evaluate_pairs`: ``all``
    (every gallery molecule / every description), ``test`` (the pairs themselves) and ``inbatch:N``.
    Returns ``(scores, gallery_counts)``; ``what`` names the scores in the log lines."""
    text_index = {p.cid: i for i, p in enumerate(source.descriptions)}
    mol_index = {m.cid: i for i, m in enumerate(source.molecules)}
    texts = [text_index[p.cid] for p in pairs]
    mols = [mol_index[p.cid] for p in pairs]
    scores, counts = {}, {}
    for parsed in map(Gallery.parse, galleries):  # a bad name: GalleryError (the callers check them first)
        name = str(parsed)
        if parsed.name == Gallery.ALL:
            t2m = source_ranks(source, "text_to_molecule", texts, None, mols)
            m2t = source_ranks(source, "molecule_to_text", mols, None, texts)
            counts[name] = {"text_to_molecule_candidates": len(source.molecules),
                            "molecule_to_text_candidates": len(source.descriptions), "queries": len(pairs)}
        else:  # test, inbatch:N
            size = parsed.block or len(pairs)
            parts_t2m, parts_m2t = [], []
            for s in range(0, len(pairs), size):
                block_t, block_m = texts[s:s + size], mols[s:s + size]
                diagonal = torch.arange(len(block_t)).tolist()
                parts_t2m.append(source_ranks(source, "text_to_molecule", block_t, block_m, diagonal))
                parts_m2t.append(source_ranks(source, "molecule_to_text", block_m, block_t, diagonal))
            t2m, m2t = Ranks.cat(parts_t2m), Ranks.cat(parts_m2t)
            counts[name] = ({"block_size": size, "queries": len(pairs)} if parsed.is_inbatch else
                            {"text_to_molecule_candidates": len(pairs), "molecule_to_text_candidates": len(pairs), "queries": len(pairs)})
        scores[name] = {"text_to_molecule": retrieval_metrics(t2m), "molecule_to_text": retrieval_metrics(m2t)}
        a, b = scores[name]["text_to_molecule"], scores[name]["molecule_to_text"]
        log(f"{label} gallery={name} ({what}): text->molecule MRR={a['mrr']:.4f} H@1={a['hits@1']:.3f} H@10={a['hits@10']:.3f} "
            f"ties={int(a['queries_with_ties'])} | molecule->text MRR={b['mrr']:.4f} H@1={b['hits@1']:.3f} (expected over random tie-breaks)")
    return scores, counts
