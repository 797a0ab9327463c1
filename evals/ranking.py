"""Chunked cross-modal retrieval ranking and metrics, ties broken at random in expectation.

Scores are dot products of caller-normalised embeddings (cosine similarity),
computed as float32 matmuls over chunks of queries so that memory stays bounded
by ``chunk_size x n_candidates`` floats.

Tie policy ("expected"): a candidate *ties* with the true one when its score is within
:data:`TIE_TOLERANCE` of the true candidate's score (the same molecule embedded in another batch
may differ in the last bits). With ``g`` candidates scored strictly higher and ``t`` others tied,
a uniformly random tie-break puts the true candidate at a rank uniform on ``g+1 … g+t+1``, so

* ``E[rank] = g + 1 + t/2``,
* ``E[1/rank] = (H(g+t+1) − H(g)) / (t+1)`` (``H`` = harmonic numbers),
* ``P(rank ≤ k) = clip((k − g) / (t + 1), 0, 1)``,

and every reported metric is that expectation (median rank: the median of ``E[rank]``). A constant
scorer over ``n`` candidates thus gets MRR ``H(n)/n``, not 1. The optimistic MRR (ties never count
against the query, ``1/(g+1)``) is reported beside it as ``mrr_optimistic`` for comparison with
numbers written by the old rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "TIE_POLICY",
    "TIE_TOLERANCE",
    "Ranks",
    "count_above_and_tied",
    "rank_of_true",
    "retrieval_metrics",
    "evaluate_direction",
    "harmonic_numbers",
]

TIE_POLICY = "expected"
#: scores within this distance of the true candidate's score tie with it
TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Ranks:
    """Where each query's true candidate stands: ``greater[i]`` candidates scored strictly higher
    (beyond the tolerance) and ``tied[i]`` other candidates tied with it (both ``LongTensor [Q]``)."""

    greater: torch.Tensor
    tied: torch.Tensor

    @classmethod
    def from_ranks(cls, ranks: torch.Tensor) -> "Ranks":
        """Tie-free ranks (1 = best) as :class:`Ranks`."""
        ranks = torch.as_tensor(ranks).to("cpu", torch.long).reshape(-1)
        return cls(ranks - 1, torch.zeros_like(ranks))

    @classmethod
    def cat(cls, parts: "list[Ranks]") -> "Ranks":
        return cls(torch.cat([p.greater for p in parts]), torch.cat([p.tied for p in parts]))

    def __len__(self) -> int:
        return int(self.greater.numel())

    @property
    def expected(self) -> torch.Tensor:
        """``E[rank] = g + 1 + t/2`` (float64)."""
        return self.greater.double() + 1 + self.tied.double() / 2

    @property
    def optimistic(self) -> torch.Tensor:
        """``g + 1``: the rank if every tie broke in the query's favour."""
        return self.greater + 1

    def reciprocal(self) -> torch.Tensor:
        """``E[1/rank] = (H(g+t+1) − H(g)) / (t+1)`` (float64)."""
        g, t = self.greater, self.tied
        h = harmonic_numbers(int((g + t).max()) + 1)
        return (h[g + t + 1] - h[g]) / (t + 1).double()

    def hit_rate(self, k: int) -> torch.Tensor:
        """``P(rank ≤ k) = clip((k − g) / (t + 1), 0, 1)`` (float64)."""
        return ((k - self.greater).double() / (self.tied + 1).double()).clamp(0.0, 1.0)


def harmonic_numbers(n: int) -> torch.Tensor:
    """``[H(0), H(1), …, H(n)]`` in float64 (``H(0) = 0``)."""
    steps = 1.0 / torch.arange(1, n + 1, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)])


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


def count_above_and_tied(scores: torch.Tensor, true_scores: torch.Tensor, mask: torch.Tensor | None = None,
                         tolerance: float = TIE_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``scores [n, C]``: candidates above ``true_scores [n, 1] + tolerance`` and candidates
    within ``tolerance`` of it, the true one excluded (it always lies within). ``mask`` is an optional
    reusable ``bool [n, C]`` buffer."""
    if mask is None:
        mask = torch.empty_like(scores, dtype=torch.bool)
    torch.gt(scores, true_scores + tolerance, out=mask)
    greater = mask.view(torch.uint8).sum(dim=1, dtype=torch.int64)
    torch.ge(scores, true_scores - tolerance, out=mask)
    at_least = mask.view(torch.uint8).sum(dim=1, dtype=torch.int64)
    return greater, at_least - greater - 1


@torch.no_grad()
def rank_of_true(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    true_index: torch.Tensor,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> Ranks:
    """Where each query's true candidate ranks: candidates scored higher and tied (see module docs).

    Args:
        queries: ``[Q, d]`` query embeddings (already L2-normalised).
        candidates: ``[C, d]`` candidate embeddings (already L2-normalised).
        true_index: ``[Q]`` integer index into ``candidates`` of each query's match.
        chunk_size: number of queries scored per matmul.
        device: where to compute; defaults to ``queries.device``.

    Returns:
        :class:`Ranks` on CPU; ``retrieval_metrics`` turns it into expected metrics.
    """
    _validate(queries, candidates, true_index)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    dev = torch.device(device) if device is not None else queries.device
    cand = candidates.to(device=dev, dtype=torch.float32).contiguous()
    tidx = true_index.to(device=dev, dtype=torch.long)
    n_q = queries.shape[0]
    greater = torch.empty(n_q, dtype=torch.long, device=dev)
    tied = torch.empty(n_q, dtype=torch.long, device=dev)
    rows = min(chunk_size, n_q)
    # Reused buffers: fresh multi-hundred-MB allocations per chunk cost more than the matmul.
    score_buf = torch.empty(rows, cand.shape[0], dtype=torch.float32, device=dev)
    mask_buf = torch.empty(rows, cand.shape[0], dtype=torch.bool, device=dev)
    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        n = stop - start
        q = queries[start:stop].to(device=dev, dtype=torch.float32)
        scores = score_buf[:n]
        torch.matmul(q, cand.T, out=scores)  # [n, C]
        # Read the true score out of the same matrix so that the comparison is
        # bit-consistent with the other candidates' scores.
        true_scores = scores.gather(1, tidx[start:stop, None])
        greater[start:stop], tied[start:stop] = count_above_and_tied(scores, true_scores, mask_buf[:n])
    return Ranks(greater.cpu(), tied.cpu())


def retrieval_metrics(ranks: Ranks | torch.Tensor) -> dict[str, float]:
    """Expected summary metrics under random tie-breaking.

    ``ranks`` is a :class:`Ranks`, or a 1-D tensor of tie-free 1-based ranks. Returns ``hits@1`` and
    ``hits@10`` (fractions in [0, 1]), ``mrr`` (no cutoff), ``mean_rank``, ``median_rank`` (the median
    of the expected ranks: the average of the two middle values for an even count), ``n_queries``,
    ``queries_with_ties`` (queries whose true candidate ties with another) and ``mrr_optimistic``
    (ties never counted against the query).
    """
    if not isinstance(ranks, Ranks):
        if not isinstance(ranks, torch.Tensor) or ranks.dim() != 1:
            raise ValueError("ranks must be a 1-D tensor")
        if ranks.numel() == 0:
            raise ValueError("ranks is empty")
        r = ranks.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(r).all()) or bool((r < 1).any()) or bool((r != r.round()).any()):
            raise ValueError("ranks must be whole numbers >= 1")
        ranks = Ranks.from_ranks(ranks)
    if len(ranks) == 0:
        raise ValueError("ranks is empty")
    if bool((ranks.greater < 0).any()) or bool((ranks.tied < 0).any()):
        raise ValueError("rank counts must be >= 0")
    expected = ranks.expected
    return {
        "hits@1": float(ranks.hit_rate(1).mean()),
        "hits@10": float(ranks.hit_rate(10).mean()),
        "mrr": float(ranks.reciprocal().mean()),
        "mean_rank": float(expected.mean()),
        "median_rank": float(torch.quantile(expected, 0.5)),
        "n_queries": float(len(ranks)),
        "queries_with_ties": float((ranks.tied > 0).sum()),
        "mrr_optimistic": float((1.0 / ranks.optimistic.double()).mean()),
    }


def evaluate_direction(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    true_index: torch.Tensor,
    **kw: object,
) -> dict[str, float]:
    """``retrieval_metrics(rank_of_true(queries, candidates, true_index, **kw))``."""
    return retrieval_metrics(rank_of_true(queries, candidates, true_index, **kw))  # type: ignore[arg-type]
