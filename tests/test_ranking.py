"""Tests for zoo.evals.ranking."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

from zoo.evals.ranking import evaluate_direction, rank_of_true, retrieval_metrics


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_hand_made_ranks() -> None:
    cands = torch.eye(3)
    queries = torch.tensor([[1.0, 0.5, 0.2], [1.0, 0.5, 0.2], [1.0, 0.5, 0.2]])
    ranks = rank_of_true(queries, cands, torch.tensor([0, 1, 2]))
    assert ranks.tolist() == [1, 2, 3]
    assert ranks.dtype == torch.long and ranks.device.type == "cpu"


def test_ties_are_optimistic() -> None:
    cands = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # q0/q1: true candidate tied with two others -> rank 1 (optimistic).
    # q2: true (index 0) scores 0, only candidate 3 (score 1) is above -> rank 2.
    # q3: true (index 3) scores 0.8 > 0.6 for the three tied ones -> rank 1.
    ranks = rank_of_true(queries, cands, torch.tensor([1, 2, 0, 3]))
    assert ranks.tolist() == [1, 1, 2, 1]
    # all candidates identical: every query gets rank 1
    ranks = rank_of_true(torch.ones(2, 2), torch.ones(5, 2), torch.tensor([4, 0]))
    assert ranks.tolist() == [1, 1]


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 1000])
def test_chunked_equals_unchunked(chunk_size: int) -> None:
    q, c = _unit(50, 16, 0), _unit(200, 16, 1)
    t = torch.randint(0, 200, (50,), generator=torch.Generator().manual_seed(2))
    full = rank_of_true(q, c, t, chunk_size=10_000)
    assert torch.equal(rank_of_true(q, c, t, chunk_size=chunk_size), full)
    scores = q @ c.T
    ref = 1 + (scores > scores.gather(1, t[:, None])).sum(1)
    assert torch.equal(full, ref)


def test_float64_inputs_and_device_arg() -> None:
    q, c = _unit(10, 8, 3).double(), _unit(30, 8, 4).double()
    t = torch.arange(10)
    r = rank_of_true(q, c, t, device="cpu", chunk_size=4)
    assert torch.equal(r, rank_of_true(q.float(), c.float(), t))


def test_metrics_match_torchmetrics() -> None:
    n_q, n_c = 40, 60
    q, c = _unit(n_q, 8, 5), _unit(n_c, 8, 6)
    t = torch.randperm(n_c, generator=torch.Generator().manual_seed(7))[:n_q]
    # torchmetrics (>= 1.x) treats preds <= 0 as "not retrieved", so shift the
    # cosine scores into (0, 3] (a monotone map that keeps the ranking).
    scores = q @ c.T + 2.0
    for row in scores:  # the cross-check assumes no ties
        assert row.unique().numel() == n_c
    m = evaluate_direction(q, c, t, chunk_size=16)
    preds = scores.flatten()
    target = torch.zeros(n_q, n_c, dtype=torch.bool)
    target[torch.arange(n_q), t] = True
    indexes = torch.arange(n_q)[:, None].expand(n_q, n_c).flatten()
    assert m["mrr"] == pytest.approx(RetrievalMRR()(preds, target.flatten(), indexes=indexes).item(), abs=1e-6)
    for k in (1, 10):
        hr = RetrievalHitRate(top_k=k)(preds, target.flatten(), indexes=indexes).item()
        assert m[f"hits@{k}"] == pytest.approx(hr, abs=1e-6)
    assert m["n_queries"] == n_q
    assert 0.0 < m["hits@10"] < 1.0  # non-trivial case


def test_retrieval_metrics_values() -> None:
    m = retrieval_metrics(torch.tensor([1, 2, 10, 11]))
    assert m["hits@1"] == 0.25
    assert m["hits@10"] == 0.75
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11) / 4)
    assert m["mean_rank"] == 6.0
    assert m["median_rank"] == 6.0  # average of the two middle values (2, 10)
    assert m["n_queries"] == 4
    assert retrieval_metrics(torch.tensor([3, 1, 7]))["median_rank"] == 3.0


@pytest.mark.parametrize(
    ("q", "c", "t", "match"),
    [
        (torch.ones(2, 3), torch.ones(4, 5), torch.tensor([0, 1]), "dimension mismatch"),
        (torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 4]), "out of range"),
        (torch.ones(2, 3), torch.ones(4, 3), torch.tensor([-1, 0]), "out of range"),
        (torch.ones(0, 3), torch.ones(4, 3), torch.tensor([], dtype=torch.long), "no queries"),
        (torch.ones(2, 3), torch.ones(0, 3), torch.tensor([0, 0]), "no candidates"),
        (torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0]), "one per query"),
        (torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0.0, 1.0]), "integer"),
        (torch.ones(3), torch.ones(4, 3), torch.tensor([0]), "2-D"),
        (torch.full((2, 3), float("nan")), torch.ones(4, 3), torch.tensor([0, 1]), "NaN"),
    ],
)
def test_validation(q: torch.Tensor, c: torch.Tensor, t: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rank_of_true(q, c, t)


def test_metric_validation() -> None:
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match=">= 1"):
        retrieval_metrics(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="chunk_size"):
        rank_of_true(torch.ones(1, 2), torch.ones(1, 2), torch.tensor([0]), chunk_size=0)
