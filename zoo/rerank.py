"""The second stage: re-rankers re-score the top ``k`` candidates of a first stage.

A first stage is any source of query x candidate scores (a run's learned similarity, a fused
composition, an ensemble). A re-ranker (``register_rerankers``, :class:`zoo.api.Reranker`) scores
(description, molecule) *pairs*, so it can afford to look closer than a first stage that ranks
every candidate: a cross-encoder reading both together, the classes and parents a description
states checked on the candidate's structure. In PyTerrier's terms a re-ranked run is
``(first % k) >> rerankers``: results in, results out.

Scores (per query row; :class:`Stage`)
    The first stage's ``k`` best candidates (ties at the cut broken by candidate order) are
    re-scored as ``z(first) + sum_r w_r * z(r)``, each z-scored over those ``k`` candidates; they
    stay above every other candidate, which keep their first-stage order. With every weight 0 the
    ranking is the first stage's. Both directions re-rank the same way: text->molecule queries are
    descriptions and candidates molecules, molecule->text the other way round (the re-ranker
    always receives ``(description, smiles)`` pairs).

Fitting (:func:`fit_stage`; the held-out and test pairs are never seen by a re-ranker's ``fit``)
    1. Each re-ranker's ``fit`` learns on the **training** pairs: every training description with the
       first stage's top ``k`` molecules (hard negatives; the true molecule is put in at a seeded
       position where the first stage missed it).
    2. The weights ``w_r`` are fitted on the **held-out** pairs (their descriptions against every
       gallery molecule, text->molecule expected MRR), by the same coordinate search as fusion's
       weights (:data:`GRID`). A re-ranker that does not help the held-out pairs gets weight 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import ComponentError, RunError
from zoo.evals.ranking import Ranks, count_above_and_tied, retrieval_metrics
from zoo.registry import get_component
from zoo.spec import DEFAULT_RERANK_K as DEFAULT_K

if TYPE_CHECKING:
    from zoo.protocols import ScoreSource
    from zoo.taskdata import Dataset

__all__ = ["DEFAULT_K", "GRID", "FITTED_ON", "RerankerMember", "reranker_member", "Stage", "top_candidates",
           "rerank_rows", "RerankedScores", "fit_stage", "load_stage", "stage_record", "STAGE_FOLDER"]

#: re-ranker weights tried (the first stage's weight is 1)
GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
ROUNDS = 2
FITTED_ON = ("re-rankers: fitted on the training pairs (the first stage's top k as hard negatives); weights: held-out "
             "(select) pairs only, their descriptions ranked against the 'all' gallery, text->molecule expected MRR")
#: the run folder's subfolder holding each re-ranker's fitted state (``rerankers/LABEL/``)
STAGE_FOLDER = "rerankers"
#: (description, smiles) pairs scored per call to a re-ranker
PAIR_CHUNK = 20_000



@dataclass
class RerankerMember:
    """One re-ranker of a stage: its label, registered name and options (how to rebuild it), the object."""

    label: str
    name: str
    options: dict[str, Any]
    reranker: Any

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "reranker": self.name, "options": dict(self.options)}


def reranker_member(name: str, options: dict[str, Any] | None = None, label: str | None = None) -> RerankerMember:
    """The registered re-ranker ``name`` with ``options`` (unknown name or option: one line with close matches)."""
    component = get_component("reranker", name)
    resolved = component.resolve_options(options or {})
    try:
        reranker = component.create(**resolved)
    except (ValueError, TypeError) as exc:
        raise ComponentError(f"reranker {name!r}: {exc}") from None
    return RerankerMember(label or name, name, resolved, reranker)


def _zscore(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    std = rows.std(axis=1, keepdims=True)
    return (rows - rows.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def top_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """``[Q, min(k, C)]`` column indices of each row's ``k`` best scores, best first (ties: lower index first)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k]


def rerank_rows(first: np.ndarray, top: np.ndarray, parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Re-ranked ``[Q, C]`` scores: the ``top`` columns scored ``z(first) + sum w * part`` above the rest
    (which keep ``first``'s scores and order); ``parts``: each re-ranker's ``[Q, k]`` scores, z-scored."""
    first = np.asarray(first, dtype=np.float32)
    combined = _zscore(np.take_along_axis(first, top, axis=1))
    for part, weight in zip(parts, weights):
        if weight:
            combined = combined + np.float32(weight) * part
    out = first.copy()
    if top.shape[1] < first.shape[1]:  # lift the top k above every other candidate, per row
        rest = first.copy()
        np.put_along_axis(rest, top, -np.inf, axis=1)
        shift = rest.max(axis=1, keepdims=True) - combined.min(axis=1, keepdims=True) + 1.0
        combined = combined + shift
    np.put_along_axis(out, top, combined.astype(np.float32), axis=1)
    return out


@dataclass
class Stage:
    """Fitted re-rankers, their weights (the first stage's is 1) and ``k``."""

    members: list[RerankerMember]
    weights: list[float]
    k: int = DEFAULT_K
    fits: list[dict] = field(default_factory=list)  # each re-ranker's fit record

    @property
    def active(self) -> bool:
        return any(self.weights)


class RerankedScores:
    """A first stage (any :class:`~zoo.protocols.ScoreSource`) re-ranked by a :class:`Stage`: a score source
    itself, so evaluation, search, reports and the service consume it like any other."""

    def __init__(self, first: "ScoreSource", stage: Stage, label: str = "reranked") -> None:
        self.first, self.stage, self.label = first, stage, label
        self.molecules, self.descriptions = first.molecules, first.descriptions
        self.data = getattr(first, "data", None)  # the task's data, where the first stage has it
        self.texts = [p.description for p in first.descriptions]
        self.smiles = [m.smiles for m in first.molecules]
        self._prepared = False

    def _prepare(self) -> None:
        """Let each re-ranker with weight prepare the task's descriptions and molecules at once (once)."""
        if not self._prepared:
            prepare_rerankers([m for m, w in zip(self.stage.members, self.stage.weights) if w], self.texts, self.smiles)
            self._prepared = True

    def scores(self, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None = None) -> np.ndarray:
        first = np.asarray(self.first.scores(direction, query_rows, candidate_rows), dtype=np.float32)
        if not self.stage.active:
            return first
        self._prepare()
        top = top_candidates(first, self.stage.k)
        cols = np.asarray(candidate_rows if candidate_rows is not None else np.arange(first.shape[1]))[top]
        rows = np.repeat(np.asarray(query_rows)[:, None], top.shape[1], axis=1)
        text_rows, mol_rows = (rows, cols) if direction == "text_to_molecule" else (cols, rows)
        parts = self.parts([self.texts[i] for i in text_rows.ravel()], [self.smiles[j] for j in mol_rows.ravel()], top.shape)
        return rerank_rows(first, top, parts, self.stage.weights)

    def query_scores(self, direction: str, query: str) -> np.ndarray:
        """One free query (a description for text->molecule, a SMILES for molecule->text) re-ranked over the whole gallery."""
        first = np.asarray(self.first.query_scores(direction, query), dtype=np.float32)[None, :]
        if not self.stage.active:
            return first[0]
        self._prepare()
        top = top_candidates(first, self.stage.k)
        if direction == "text_to_molecule":
            texts, smiles = [query] * top.shape[1], [self.smiles[j] for j in top[0]]
        else:
            texts, smiles = [self.texts[j] for j in top[0]], [query] * top.shape[1]
        return rerank_rows(first, top, self.parts(texts, smiles, top.shape), self.stage.weights)[0]

    def parts(self, texts: Sequence[str], smiles: Sequence[str], shape: tuple[int, int]) -> list[np.ndarray]:
        """Each re-ranker's z-scored scores of the pairs (``shape`` rows of ``k``; zeros for weight 0)."""
        return [_zscore(_pair_scores(m.reranker, texts, smiles).reshape(shape)) if w else np.zeros(shape, np.float32)
                for m, w in zip(self.stage.members, self.stage.weights)]

    def record(self) -> dict[str, Any]:
        return {"kind": "reranked", "label": self.label, "k": self.stage.k, "first_stage": self.first.record(),
                "rerankers": [{**m.record(), "weight": w} for m, w in zip(self.stage.members, self.stage.weights)]}

    def molecule_embeddings(self):
        """The first stage's gallery embeddings, where it has them (molecule neighbours in reports)."""
        embeddings = getattr(self.first, "molecule_embeddings", None)
        return embeddings() if embeddings is not None else None


def prepare_rerankers(members: Sequence[RerankerMember], texts: Sequence[str], smiles: Sequence[str]) -> None:
    """Call the optional ``prepare(descriptions, smiles)`` of each re-ranker with the task's whole gallery."""
    for m in members:
        if hasattr(m.reranker, "prepare"):
            m.reranker.prepare(texts, smiles)


def _pair_scores(reranker: Any, texts: Sequence[str], smiles: Sequence[str]) -> np.ndarray:
    out = [np.asarray(reranker.score_pairs(texts[s:s + PAIR_CHUNK], smiles[s:s + PAIR_CHUNK]), dtype=np.float32).reshape(-1)
           for s in range(0, len(texts), PAIR_CHUNK)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# -- fitting -------------------------------------------------------------------------------------
def _top_of(first: "ScoreSource", query_rows: Sequence[int], k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(top [Q, k], first-stage scores of those [Q, k])`` of text->molecule queries against every molecule."""
    tops, scores = [], []
    for s in range(0, len(query_rows), chunk):
        rows = np.asarray(first.scores("text_to_molecule", list(query_rows[s:s + chunk]), None), dtype=np.float32)
        top = top_candidates(rows, k)
        tops.append(top)
        scores.append(np.take_along_axis(rows, top, axis=1))
    return np.concatenate(tops), np.concatenate(scores)


def _training_groups(top: np.ndarray, true: Sequence[int], seed: int) -> tuple[np.ndarray, list[int]]:
    """Each training query's candidates with its true molecule in them (put at a seeded position where the
    first stage missed it) and that position."""
    rng = np.random.default_rng(seed)
    groups, positives = top.copy(), []
    for i, t in enumerate(true):
        hit = np.flatnonzero(groups[i] == t)
        if hit.size:
            positives.append(int(hit[0]))
        else:
            pos = int(rng.integers(groups.shape[1]))
            groups[i, pos] = t
            positives.append(pos)
    return groups, positives


def fit_stage(first: "ScoreSource", data: "Dataset", members: Sequence[RerankerMember], k: int = DEFAULT_K, *,
              grid: Sequence[float] = GRID, rounds: int = ROUNDS, seed: int = 0,
              log: Callable[[str], None] = print) -> tuple[Stage, dict]:
    """Fit each re-ranker on the training pairs (the first stage's top ``k`` as hard negatives), then the
    weights on the held-out pairs. Returns the stage and its held-out record (MRR of the first stage, of
    the stage, and of the stage without each re-ranker)."""
    if not members:
        raise RunError("no re-rankers to fit")
    if k < 2:
        raise RunError(f"rerank k must be at least 2, got {k}")
    if not data.train or not data.select:
        raise RunError("re-rankers need training pairs (to fit) and held-out pairs (to weigh them)")
    text_index = {p.cid: i for i, p in enumerate(data.descriptions)}
    mol_index = {m.cid: i for i, m in enumerate(data.gallery)}
    texts = [p.description for p in data.descriptions]
    smiles = [m.smiles for m in data.gallery]

    t0 = time.time()
    prepare_rerankers(members, texts, smiles)
    log(f"rerank: re-rankers prepared {len(texts)} descriptions and {len(smiles)} molecules ({time.time() - t0:.1f}s)")
    t0 = time.time()
    train_rows = [text_index[p.cid] for p in data.train]
    top, _ = _top_of(first, train_rows, k)
    groups, positives = _training_groups(top, [mol_index[p.cid] for p in data.train], seed)
    log(f"rerank: first-stage top {top.shape[1]} of {len(train_rows)} training descriptions ({time.time() - t0:.1f}s); "
        f"true molecule among them for {sum(int((top[i] == mol_index[p.cid]).any()) for i, p in enumerate(data.train))}")
    fits = []
    for m in members:
        t1 = time.time()
        record = m.reranker.fit([texts[i] for i in train_rows], [[smiles[j] for j in row] for row in groups], positives, log=log)
        fits.append(dict(record or {}))
        log(f"rerank: {m.label} fitted on {len(train_rows)} training groups ({time.time() - t1:.1f}s)")

    # held-out: the first stage's top k, each re-ranker's scores of those pairs once, then the weights
    select_rows = [text_index[p.cid] for p in data.select]
    true = np.array([mol_index[p.cid] for p in data.select])
    t2 = time.time()
    full = np.concatenate([np.asarray(first.scores("text_to_molecule", select_rows[s:s + 256], None), dtype=np.float32)
                           for s in range(0, len(select_rows), 256)])
    top = top_candidates(full, k)
    pair_texts = [texts[i] for i in np.repeat(select_rows, top.shape[1])]
    pair_smiles = [smiles[j] for j in top.ravel()]
    parts = [_zscore(_pair_scores(m.reranker, pair_texts, pair_smiles).reshape(top.shape)) for m in members]
    log(f"rerank: {len(select_rows)} held-out descriptions x {top.shape[1]} candidates scored ({time.time() - t2:.1f}s)")

    def mrr(weights: Sequence[float]) -> float:
        return _ranks_mrr(rerank_rows(full, top, parts, weights), true)

    n = len(members)
    first_mrr = mrr([0.0] * n)
    best: tuple[float, list[float]] | None = None
    for start in (1.0, 0.0):
        weights = [start] * n
        for _ in range(rounds):
            for i in range(n):
                tried = [(mrr([*weights[:i], g, *weights[i + 1:]]), -g) for g in sorted(grid)]
                weights[i] = -max(tried)[1]
        score = mrr(weights)
        if best is None or score > best[0]:
            best = (score, weights)
    stage_mrr, weights = best
    alone = [mrr([1.0 if j == i else 0.0 for j in range(n)]) for i in range(n)]
    without = [mrr([0.0 if j == i else w for j, w in enumerate(weights)]) for i in range(n)]
    log(f"rerank: held-out MRR first stage {first_mrr:.4f}; re-ranked {stage_mrr:.4f} with weights "
        + ", ".join(f"{m.label}={w:g}" for m, w in zip(members, weights)))
    record = {"heldout_queries": len(select_rows), "heldout_mrr_first_stage": first_mrr, "heldout_mrr": stage_mrr,
              "alone": alone, "without": without}
    return Stage(list(members), [float(w) for w in weights], k, fits), record


def _ranks_mrr(scores: np.ndarray, true: np.ndarray) -> float:
    import torch

    s = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    t = torch.as_tensor(true, dtype=torch.long)[:, None]
    greater, tied = count_above_and_tied(s, s.gather(1, t))
    return retrieval_metrics(Ranks(greater, tied))["mrr"]


# -- records and folders ---------------------------------------------------------------------------
def stage_record(stage: Stage, heldout: dict, first_stage: str) -> dict[str, Any]:
    """The ``rerank`` entry of a results file: the first stage, ``k``, each re-ranker's weight, its fit and
    its held-out contribution (the stage's held-out MRR without it)."""
    return {"first_stage": first_stage, "k": stage.k, "fitted_on": FITTED_ON, "grid": list(GRID), "rounds": ROUNDS,
            "heldout_queries": heldout["heldout_queries"], "heldout_mrr_first_stage": heldout["heldout_mrr_first_stage"],
            "heldout_mrr": heldout["heldout_mrr"],
            "rerankers": [{**m.record(), "weight": w, "heldout_mrr_alone": a, "heldout_mrr_without": wo,
                           "contribution": heldout["heldout_mrr"] - wo, "fit": fit, "state": f"{STAGE_FOLDER}/{m.label}"}
                          for m, w, a, wo, fit in zip(stage.members, stage.weights, heldout["alone"], heldout["without"], stage.fits)]}


def save_stage(stage: Stage, run_dir: str | Path) -> None:
    """Each re-ranker's fitted state under ``RUN/rerankers/LABEL/``."""
    for m in stage.members:
        folder = Path(run_dir) / STAGE_FOLDER / m.label
        folder.mkdir(parents=True, exist_ok=True)
        m.reranker.save(folder)


def load_stage(run_dir: str | Path, record: dict) -> Stage:
    """The stage a results file's ``rerank`` entry records, its re-rankers' fitted states loaded from the run folder."""
    members, weights = [], []
    for entry in record["rerankers"]:
        member = reranker_member(entry["reranker"], entry.get("options") or {}, label=entry.get("label"))
        folder = Path(run_dir) / entry.get("state", f"{STAGE_FOLDER}/{member.label}")
        if float(entry["weight"]):
            if not folder.is_dir():
                raise RunError(f"{run_dir}: re-ranker {member.label!r} has no fitted state at {folder}")
            member.reranker.load(folder)
        members.append(member)
        weights.append(float(entry["weight"]))
    return Stage(members, weights, int(record["k"]), [e.get("fit", {}) for e in record["rerankers"]])
