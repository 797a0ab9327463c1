"""Chunked cross-modal retrieval ranking and metrics (DESIGN.md §6).

Scores are dot products of caller-normalised embeddings (cosine similarity),
computed as float32 matmuls over chunks of queries so that memory stays bounded
by ``chunk_size x n_candidates`` floats.

Tie policy ("optimistic"): the rank of a query is
``1 + #{candidates scored strictly higher than the true candidate}``, so a
candidate that ties with the true one never pushes it down. This is the most
favourable rank consistent with the scores and is the policy used for every
number molzoo reports.
"""

from __future__ import annotations

import torch

__all__ = ["rank_of_true", "retrieval_metrics", "evaluate_direction"]


def _validate(queries: torch.Tensor, candidates: torch.Tensor, true_index: torch.Tensor) -> None:
    """Raise ``ValueError`` for malformed ranking inputs."""
    if not isinstance(queries, torch.Tensor) or not isinstance(candidates, torch.Tensor):
        raise ValueError("queries and candidates must be torch.Tensor")
    if not isinstance(true_index, torch.Tensor):
        raise ValueError("true_index must be a torch.Tensor")
    if queries.dim() != 2 or candidates.dim() != 2:
        raise ValueError(
            f"queries and candidates must be 2-D [N, d]; got shapes "
            f"{tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"embedding dimension mismatch: queries d={queries.shape[1]}, "
            f"candidates d={candidates.shape[1]}"
        )
    if queries.shape[0] == 0:
        raise ValueError("no queries (queries has 0 rows)")
    if candidates.shape[0] == 0:
        raise ValueError("no candidates (candidates has 0 rows)")
    if queries.shape[1] == 0:
        raise ValueError("embedding dimension is 0")
    if true_index.dim() != 1 or true_index.shape[0] != queries.shape[0]:
        raise ValueError(
            f"true_index must have shape [{queries.shape[0]}] (one per query); "
            f"got {tuple(true_index.shape)}"
        )
    if true_index.dtype.is_floating_point or true_index.dtype.is_complex or true_index.dtype == torch.bool:
        raise ValueError(f"true_index must be an integer tensor; got dtype {true_index.dtype}")
    lo, hi = int(true_index.min()), int(true_index.max())
    if lo < 0 or hi >= candidates.shape[0]:
        raise ValueError(
            f"true_index out of range [0, {candidates.shape[0]}): min={lo}, max={hi}"
        )
    for name, t in (("queries", queries), ("candidates", candidates)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")


@torch.no_grad()
def rank_of_true(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    true_index: torch.Tensor,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Rank (1 = best) of each query's true candidate under the optimistic tie policy.

    Args:
        queries: ``[Q, d]`` query embeddings (already L2-normalised).
        candidates: ``[C, d]`` candidate embeddings (already L2-normalised).
        true_index: ``[Q]`` integer index into ``candidates`` of each query's match.
        chunk_size: number of queries scored per matmul.
        device: where to compute; defaults to ``queries.device``.

    Returns:
        ``LongTensor [Q]`` on CPU with ``rank = 1 + #(score > true score)``.
    """
    _validate(queries, candidates, true_index)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    dev = torch.device(device) if device is not None else queries.device
    cand = candidates.to(device=dev, dtype=torch.float32).contiguous()
    tidx = true_index.to(device=dev, dtype=torch.long)
    n_q = queries.shape[0]
    out = torch.empty(n_q, dtype=torch.long, device=dev)
    rows = min(chunk_size, n_q)
    # Reused buffers: fresh multi-hundred-MB allocations per chunk cost more than the matmul.
    score_buf = torch.empty(rows, cand.shape[0], dtype=torch.float32, device=dev)
    above_buf = torch.empty(rows, cand.shape[0], dtype=torch.bool, device=dev)
    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        n = stop - start
        q = queries[start:stop].to(device=dev, dtype=torch.float32)
        scores, above = score_buf[:n], above_buf[:n]
        torch.matmul(q, cand.T, out=scores)  # [n, C]
        # Read the true score out of the same matrix so that the comparison is
        # bit-consistent with the other candidates' scores.
        true_scores = scores.gather(1, tidx[start:stop, None])
        torch.gt(scores, true_scores, out=above)
        # Optimistic ties: only strictly higher scores count against the query.
        out[start:stop] = above.view(torch.uint8).sum(dim=1, dtype=torch.int32) + 1
    return out.cpu()


def retrieval_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """Summary metrics from 1-based ranks.

    Returns ``hits@1`` and ``hits@10`` (fractions in [0, 1]), ``mrr`` (mean of
    ``1/rank``, no cutoff), ``mean_rank``, ``median_rank`` and ``n_queries``.
    ``median_rank`` is the conventional median: the average of the two middle
    values when the number of queries is even (so it may be a half-integer).
    """
    if not isinstance(ranks, torch.Tensor) or ranks.dim() != 1:
        raise ValueError("ranks must be a 1-D tensor")
    if ranks.numel() == 0:
        raise ValueError("ranks is empty")
    r = ranks.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(r).all()) or bool((r < 1).any()):
        raise ValueError("ranks must be finite and >= 1")
    return {
        "hits@1": float((r <= 1).double().mean()),
        "hits@10": float((r <= 10).double().mean()),
        "mrr": float((1.0 / r).mean()),
        "mean_rank": float(r.mean()),
        "median_rank": float(torch.quantile(r, 0.5)),
        "n_queries": float(r.numel()),
    }


def evaluate_direction(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    true_index: torch.Tensor,
    **kw: object,
) -> dict[str, float]:
    """``retrieval_metrics(rank_of_true(queries, candidates, true_index, **kw))``."""
    return retrieval_metrics(rank_of_true(queries, candidates, true_index, **kw))  # type: ignore[arg-type]
