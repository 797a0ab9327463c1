"""Embedding texts and molecules with a trained model, and scoring ChEBI-20 retrieval."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from zoo.evals.ranking import rank_of_true, retrieval_metrics


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


@torch.no_grad()
def embed_molecules(model, graphs, indices: Sequence[int], batch_size: int, device: torch.device, progress: bool = False, desc: str = "embedding molecules") -> torch.Tensor:
    """``[N, d]`` normalized embeddings of ``graphs[indices]``, on CPU."""
    from torch_geometric.data import Batch
    from tqdm.auto import tqdm

    model.eval()
    out = []
    for start in tqdm(range(0, len(indices), batch_size), desc=desc, disable=not progress, unit="batch"):
        batch = Batch.from_data_list(graphs.select(indices[start : start + batch_size])).to(device)
        with autocast(device):
            out.append(model.embed_molecules(batch).float().cpu())
    return torch.cat(out)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def score_both_directions(text_emb: torch.Tensor, mol_emb: torch.Tensor, text_to_mol_true: torch.Tensor,
                          mol_queries: torch.Tensor, text_candidates: torch.Tensor, mol_to_text_true: torch.Tensor,
                          chunk_size: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Metrics for text->molecule and molecule->text."""
    t2m = retrieval_metrics(rank_of_true(text_emb, mol_emb, text_to_mol_true, chunk_size=chunk_size, device=device))
    m2t = retrieval_metrics(rank_of_true(mol_queries, text_candidates, mol_to_text_true, chunk_size=chunk_size, device=device))
    return {"text_to_molecule": t2m, "molecule_to_text": m2t}
