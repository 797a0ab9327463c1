"""Tests for zoo.evals.ranking."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

from zoo.evals.ranking import Ranks, evaluate_direction, harmonic_numbers, rank_of_true, retrieval_metrics


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_hand_made_ranks() -> None:
    cands = torch.eye(3)
    queries = torch.tensor([[1.0, 0.5, 0.2], [1.0, 0.5, 0.2], [1.0, 0.5, 0.2]])
    ranks = rank_of_true(queries, cands, torch.tensor([0, 1, 2]))
    assert ranks.greater.tolist() == [0, 1, 2] and ranks.tied.tolist() == [0, 0, 0]
    assert ranks.expected.tolist() == [1.0, 2.0, 3.0]
    assert ranks.greater.dtype == torch.long and ranks.greater.device.type == "cpu"


def test_ties_are_broken_at_random_in_expectation() -> None:
    cands = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # q0/q1: true candidate tied with two others -> g=0, t=2: rank uniform on 1..3.
    # q2: true (index 0) scores 0, ties with 1 and 2; candidate 3 (score 1) is above -> g=1, t=2.
    # q3: true (index 3) scores 0.8 > 0.6 for the three tied ones -> g=0, t=0.
    ranks = rank_of_true(queries, cands, torch.tensor([1, 2, 0, 3]))
    assert ranks.greater.tolist() == [0, 0, 1, 0]
    assert ranks.tied.tolist() == [2, 2, 2, 0]
    assert ranks.expected.tolist() == [2.0, 2.0, 3.0, 1.0]
    m = retrieval_metrics(ranks)
    # E[1/rank]: (1 + 1/2 + 1/3)/3 twice, (1/2 + 1/3 + 1/4)/3, 1
    rr = [(1 + 1 / 2 + 1 / 3) / 3] * 2 + [(1 / 2 + 1 / 3 + 1 / 4) / 3, 1.0]
    assert m["mrr"] == pytest.approx(sum(rr) / 4, abs=1e-15)
    assert m["hits@1"] == pytest.approx((1 / 3 + 1 / 3 + 0 + 1) / 4, abs=1e-15)
    assert m["hits@10"] == 1.0
    assert m["mean_rank"] == 2.0 and m["median_rank"] == 2.0
    assert m["queries_with_ties"] == 3
    assert m["mrr_optimistic"] == pytest.approx((1 + 1 + 1 / 2 + 1) / 4)


@pytest.mark.parametrize("n", [1, 2, 5, 33])
def test_constant_scorer_gets_chance_level(n: int) -> None:
    """Every candidate scores the same: MRR = H(n)/n and Hits@1 = 1/n, not 1."""
    ranks = rank_of_true(torch.ones(3, 4), torch.ones(n, 4), torch.tensor([0, n - 1, n // 2]))
    m = retrieval_metrics(ranks)
    h_n = sum(1 / k for k in range(1, n + 1))
    assert m["mrr"] == pytest.approx(h_n / n, rel=1e-12)
    assert m["hits@1"] == pytest.approx(1 / n, rel=1e-12)
    assert m["hits@10"] == pytest.approx(min(10, n) / n, rel=1e-12)
    assert m["mean_rank"] == pytest.approx((n + 1) / 2)
    assert m["mrr_optimistic"] == 1.0
    assert m["queries_with_ties"] == (3 if n > 1 else 0)


def test_tie_tolerance_and_twins_in_the_gallery() -> None:
    """Scores within 1e-6 of the true one tie (the same molecule embedded twice may differ in the last bits);
    a gallery holding the same molecule twice is accepted and the twins tie."""
    true = torch.tensor([[1.0, 0.0]])
    near = torch.nn.functional.normalize(torch.tensor([[1.0, 1e-4]]), dim=1)  # cosine 1 - 5e-9: a tie
    far = torch.nn.functional.normalize(torch.tensor([[1.0, 3e-3]]), dim=1)  # cosine 1 - 4.5e-6: below
    cands = torch.cat([true, near, far, true])  # index 3 is a twin of index 0
    ranks = rank_of_true(true, cands, torch.tensor([0]))
    assert (ranks.greater.item(), ranks.tied.item()) == (0, 2)
    assert retrieval_metrics(ranks)["hits@1"] == pytest.approx(1 / 3)
    ranks = rank_of_true(true, cands, torch.tensor([2]))  # true = far (4.5e-6 lower): the other three are above
    assert (ranks.greater.item(), ranks.tied.item()) == (3, 0)


def test_expected_metrics_equal_the_average_over_all_tie_breaks() -> None:
    """Brute force: average the optimistic metrics over every permutation of the tied block."""
    import itertools

    for g, t in [(0, 0), (0, 3), (2, 1), (7, 4), (9, 2)]:
        positions = [g + 1 + i for i in range(t + 1)]  # every rank the true candidate can take
        m = retrieval_metrics(Ranks(torch.tensor([g]), torch.tensor([t])))
        perms = list(itertools.permutations(range(t + 1)))
        got = [positions[p.index(0)] for p in perms]  # where the true one (0) lands
        assert m["mrr"] == pytest.approx(sum(1 / r for r in got) / len(got), rel=1e-12)
        for k in (1, 10):
            assert m[f"hits@{k}"] == pytest.approx(sum(r <= k for r in got) / len(got), rel=1e-12)
        assert m["mean_rank"] == pytest.approx(sum(got) / len(got))


def test_harmonic_numbers() -> None:
    h = harmonic_numbers(4)
    assert h.tolist() == pytest.approx([0, 1, 1.5, 1.5 + 1 / 3, 1.5 + 1 / 3 + 0.25], abs=1e-15)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 1000])
def test_chunked_equals_unchunked(chunk_size: int) -> None:
    q, c = _unit(50, 16, 0), _unit(200, 16, 1)
    t = torch.randint(0, 200, (50,), generator=torch.Generator().manual_seed(2))
    full = rank_of_true(q, c, t, chunk_size=10_000)
    chunked = rank_of_true(q, c, t, chunk_size=chunk_size)
    assert torch.equal(chunked.greater, full.greater) and torch.equal(chunked.tied, full.tied)
    scores = q @ c.T
    ref = (scores > scores.gather(1, t[:, None]) + 1e-6).sum(1)
    assert torch.equal(full.greater, ref) and not full.tied.any()


def test_float64_inputs_and_device_arg() -> None:
    q, c = _unit(10, 8, 3).double(), _unit(30, 8, 4).double()
    t = torch.arange(10)
    r = rank_of_true(q, c, t, device="cpu", chunk_size=4)
    assert torch.equal(r.greater, rank_of_true(q.float(), c.float(), t).greater)


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
    assert m["queries_with_ties"] == 0 and m["mrr_optimistic"] == m["mrr"]
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
    with pytest.raises(ValueError, match=">= 0"):
        retrieval_metrics(Ranks(torch.tensor([0]), torch.tensor([-1])))
    with pytest.raises(ValueError, match="chunk_size"):
        rank_of_true(torch.ones(1, 2), torch.ones(1, 2), torch.tensor([0]), chunk_size=0)
