"""Score fusion: a model's learned similarity fused with other scorers, or finished runs fused together.

Members are :class:`zoo.api.Scorer` objects (``register_scorers``; a trained model is one through
:class:`ModelScorer`, a finished run through :class:`zoo.scoring.RunScorer`). Fusion is:

* **per-query z-scoring over the gallery**: each member's scores of one query against all its
  candidates, minus their mean, over their standard deviation (a member constant over a query's
  candidates contributes 0). Text->molecule rows are descriptions over molecules; molecule->text
  rows are molecules over descriptions (rows of the transposed description x molecule matrix);
* a **weighted sum** of the z-scored matrices.

Weights are fitted on the **held-out (select) pairs only**: their descriptions ranked against the
task's ``all`` gallery (the candidates the test uses), maximising the held-out text->molecule
expected-rank MRR by coordinate search over :data:`GRID` (the first member's weight fixed at 1,
:data:`ROUNDS` passes, ties going to the smaller weight, so a member that changes nothing gets 0),
once from equal weights and once from the first member alone (:data:`STARTS`), keeping the better
end point. Test pairs are never scored while fitting. The fit is deterministic.

``zoo run`` fuses a composition's ``[[scorers]]`` with its learned similarity after training
(:func:`fuse_composition`); ``zoo ensemble RUN RUN ... [--scorer NAME]`` fuses finished runs
(:mod:`zoo.fuse_runs`). Both record ``fusion`` (members, weights, held-out MRR of each member alone and
fused) in their results; :class:`FusedScores` is the fused :class:`~zoo.protocols.ScoreSource` that
:func:`zoo.scoring.open_scoring` rebuilds from such a folder for ``zoo eval``, ``search``, ``report`` and ``serve``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import ComponentError, RunError
from zoo.evals.ranking import retrieval_metrics
from zoo.evaluate import CHUNK, embed_texts, evaluate_source, ranks_of
from zoo.gallery import PreparedGallery, prepare_gallery
from zoo.library import embed_smiles
from zoo.registry import get_component
from zoo.rerank import RerankedScores, RerankerMember, fit_stage, save_stage, stage_record
from zoo.taskdata import Dataset, Pair

if TYPE_CHECKING:
    import torch

    from zoo.protocols import ScoreSource


#: candidate weights of every member but the first (whose weight is 1)
GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
#: coordinate-search passes over the members
ROUNDS = 2
#: the weight every member but the first starts at, one search per start (all equal; the first member alone)
STARTS: tuple[float, ...] = (1.0, 0.0)
#: the member label of a composition's own learned similarity
LEARNED = "learned"
METHOD = "per-query z-score over the gallery, weighted sum"
FITTED_ON = ("held-out (select) pairs only: their descriptions ranked against the 'all' gallery, "
             "text->molecule expected-rank MRR; test pairs never scored while fitting")

# -- the math ------------------------------------------------------------------------------------
def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (float32); a constant row becomes zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    safe = np.where(std > 1e-12, std, 1.0)
    return np.where(std > 1e-12, (scores - mean) / safe, 0.0).astype(np.float32)


def fuse(matrices: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_i weights[i] * zscore_rows(matrices[i])``: the fused ``[queries, candidates]`` scores."""
    return weighted_sum(matrices, weights, zscore=True)


def weighted_sum(matrices: Sequence[np.ndarray], weights: Sequence[float], zscore: bool = False) -> np.ndarray:
    """``sum_i weights[i] * matrices[i]`` over the members with a nonzero weight (each z-scored per row
    first with ``zscore``; without it the matrices are z-scored already)."""
    if len(matrices) != len(weights) or not matrices:
        raise ValueError(f"{len(matrices)} score matrices for {len(weights)} weights")
    out = np.zeros(np.shape(matrices[0]), dtype=np.float32)
    for matrix, weight in zip(matrices, weights):
        if weight:
            out += np.float32(weight) * (zscore_rows(matrix) if zscore else matrix)
    return out


def take(rows: Any, index: Sequence[int]) -> Any:
    """Rows ``index`` of a scorer's prepared rows (a list, a numpy array or a tensor)."""
    if isinstance(rows, list):
        return [rows[i] for i in index]
    return rows[np.asarray(index, dtype=np.int64)]



# -- members ---------------------------------------------------------------------------------------
@dataclass
class Member:
    """One fused scorer: its label (``learned``, a run folder, a scorer name), its registered scorer
    name and options (how to rebuild it), and the scorer itself."""

    label: str
    scorer_name: str
    options: dict[str, Any]
    scorer: Any

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "scorer": self.scorer_name, "options": dict(self.options)}


def scorer_member(name: str, options: dict[str, Any] | None = None, label: str | None = None) -> Member:
    """The registered scorer ``name`` with ``options`` (unknown name or option: a one-line error with close matches)."""
    component = get_component("scorer", name)
    resolved = component.resolve_options(options or {})
    try:
        scorer = component.create(**resolved)
    except (ValueError, TypeError) as exc:
        raise ComponentError(f"scorer {name!r}: {exc}") from None
    return Member(label or name, name, resolved, scorer)


class ModelScorer:
    """A trained model's learned cosine similarity as a scorer (rows: L2-normalised embeddings).

    ``prepared`` (the run's :class:`~zoo.gallery.PreparedGallery`) makes :meth:`prepare_gallery`
    embed the task's gallery through the one gallery path."""

    def __init__(self, model, device: "torch.device", batch_size: int = 256, prepared: "PreparedGallery | None" = None):
        self.model, self.device, self.batch_size, self.prepared = model, device, batch_size, prepared

    def prepare_texts(self, texts: Sequence[str]) -> np.ndarray:
        items = self.model.text_encoder.prepare(list(texts), progress=False, device=self.device)
        return embed_texts(self.model, items, self.batch_size, self.device).numpy()

    def prepare_molecules(self, smiles: Sequence[str]) -> np.ndarray:
        embedded = embed_smiles(self.model, list(smiles), self.batch_size, self.device)
        if embedded.failures:
            position, reason = embedded.failures[0]
            raise RunError(f"cannot read molecule {list(smiles)[position]!r} ({reason})")
        return embedded.embeddings

    def prepare_gallery(self, data: "Dataset") -> tuple[np.ndarray, np.ndarray]:
        prepared = self.prepared if self.prepared is not None and self.prepared.data is data else \
            prepare_gallery(self.model, data, self.device, progress=False)
        texts = prepared.embed_texts(self.model, None, self.batch_size, self.device).numpy()
        molecules = prepared.embed_molecules(self.model, None, self.batch_size, self.device).numpy()
        return texts, molecules

    def score(self, texts: np.ndarray, molecules: np.ndarray) -> np.ndarray:
        return np.asarray(texts, dtype=np.float32) @ np.asarray(molecules, dtype=np.float32).T



# -- members on a gallery --------------------------------------------------------------------------
class GalleryScores:
    """Fusion members prepared on a task's gallery (every description, every gallery molecule; each
    side prepared once, when first needed) and scored per direction, z-scored per query row."""

    def __init__(self, members: Sequence[Member], data: "Dataset", log: Callable[[str], None] = lambda _m: None) -> None:
        self.members, self.data, self.log = list(members), data, log
        self.text_index = {p.cid: i for i, p in enumerate(data.descriptions)}
        self.mol_index = {m.cid: i for i, m in enumerate(data.gallery)}
        self._texts: dict[int, Any] = {}
        self._molecules: dict[int, Any] = {}

    def _prepare(self, i: int, side: str) -> None:
        """Prepare member ``i``'s ``side`` (``texts`` or ``molecules``; both at once through ``prepare_gallery``)."""
        scorer = self.members[i].scorer
        t0 = time.time()
        if hasattr(scorer, "prepare_gallery"):
            self._texts[i], self._molecules[i] = scorer.prepare_gallery(self.data)
            side = "descriptions and molecules"
        elif side == "texts":
            self._texts[i] = scorer.prepare_texts([p.description for p in self.data.descriptions])
        else:
            self._molecules[i] = scorer.prepare_molecules([m.smiles for m in self.data.gallery])
        self.log(f"fusion: {self.members[i].label} prepared the gallery's {side.replace('texts', 'descriptions')} "
                 f"({time.time() - t0:.1f}s)")

    def texts(self, i: int) -> Any:
        """Member ``i``'s rows of every description (``data.descriptions``)."""
        if i not in self._texts:
            self._prepare(i, "texts")
        return self._texts[i]

    def molecules(self, i: int) -> Any:
        """Member ``i``'s rows of every gallery molecule (``data.gallery``)."""
        if i not in self._molecules:
            self._prepare(i, "molecules")
        return self._molecules[i]

    def member_scores(self, i: int, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None) -> np.ndarray:
        """Member ``i``'s z-scored ``[queries, candidates]`` scores: ``text_to_molecule`` queries are
        description rows and candidates molecule rows; ``molecule_to_text`` the other way round
        (``None``: every candidate)."""
        scorer = self.members[i].scorer
        texts, molecules = self.texts(i), self.molecules(i)
        if direction == "text_to_molecule":
            cands = molecules if candidate_rows is None else take(molecules, candidate_rows)
            raw = scorer.score(take(texts, query_rows), cands)
        else:
            cands = texts if candidate_rows is None else take(texts, candidate_rows)
            raw = np.asarray(scorer.score(cands, take(molecules, query_rows))).T
        return zscore_rows(np.asarray(raw))

    def fused(self, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None,
              weights: Sequence[float]) -> np.ndarray:
        """The weighted sum of the members' z-scored scores (members with weight 0 are not scored)."""
        n_cands = (len(self.data.gallery) if direction == "text_to_molecule" else len(self.data.descriptions)) \
            if candidate_rows is None else len(candidate_rows)
        out = np.zeros((len(query_rows), n_cands), dtype=np.float32)
        for i, weight in enumerate(weights):
            if weight:
                out += np.float32(weight) * self.member_scores(i, direction, query_rows, candidate_rows)
        return out


# -- fitting ---------------------------------------------------------------------------------------
@dataclass
class Fit:
    """Fitted weights and held-out text->molecule MRRs (each member alone, fused)."""

    weights: list[float]
    member_mrr: list[float]
    fused_mrr: float
    n_queries: int
    grid: tuple[float, ...] = GRID
    rounds: int = ROUNDS


def fit_weights(gallery: GalleryScores, heldout: Sequence["Pair"], grid: Sequence[float] = GRID, rounds: int = ROUNDS,
                log: Callable[[str], None] = lambda _m: None) -> Fit:
    """Weights maximising the held-out text->molecule expected MRR of ``heldout``'s descriptions against
    every gallery molecule (see the module docs). Only ``heldout`` is ever scored."""
    if not heldout:
        raise RunError("no held-out pairs to fit the fusion weights on")
    queries = [gallery.text_index[p.cid] for p in heldout]
    true = [gallery.mol_index[p.cid] for p in heldout]
    n = len(gallery.members)
    z = [np.concatenate([gallery.member_scores(i, "text_to_molecule", queries[s:s + CHUNK], None)
                         for s in range(0, len(queries), CHUNK)]) for i in range(n)]  # z-scored once, here

    def mrr(weights: Sequence[float]) -> float:
        return retrieval_metrics(ranks_of(weighted_sum(z, weights), true))["mrr"]

    member_mrr = [mrr([1.0 if j == i else 0.0 for j in range(n)]) for i in range(n)]
    best: tuple[float, list[float]] | None = None
    for start in STARTS:  # coordinate search from each start; the best end point wins (the earlier start on a tie)
        weights = [1.0] + [start] * (n - 1)
        for _ in range(rounds if n > 1 else 0):
            for i in range(1, n):
                tried = [(mrr([*weights[:i], g, *weights[i + 1:]]), -g) for g in sorted(grid)]
                weights[i] = -max(tried)[1]
        score = mrr(weights)
        if best is None or score > best[0]:
            best = (score, weights)
    weights = best[1]
    fit = Fit([float(w) for w in weights], member_mrr, mrr(weights), len(heldout), tuple(grid), rounds)
    log("fusion: held-out MRR alone " + ", ".join(f"{m.label}={v:.4f}" for m, v in zip(gallery.members, member_mrr))
        + f"; fused {fit.fused_mrr:.4f} with weights " + ", ".join(f"{m.label}={w:g}" for m, w in zip(gallery.members, weights)))
    return fit


def fusion_record(members: Sequence[Member], fit: Fit) -> dict[str, Any]:
    """The ``fusion`` entry of a results file."""
    return {"method": METHOD, "fitted_on": FITTED_ON, "grid": list(fit.grid), "rounds": fit.rounds, "starts": list(STARTS),
            "heldout_queries": fit.n_queries, "heldout_mrr": fit.fused_mrr,
            "members": [{**m.record(), "weight": w, "heldout_mrr": mrr}
                        for m, w, mrr in zip(members, fit.weights, fit.member_mrr)]}



# -- the fused score source ------------------------------------------------------------------------
class FusedScores:
    """Members on a gallery fused with ``weights``: a :class:`~zoo.protocols.ScoreSource` (a composition
    with scorers, an ensemble of runs). Members with weight 0 are never scored."""

    def __init__(self, gallery: GalleryScores, weights: Sequence[float], label: str = "fused") -> None:
        self.gallery, self.weights, self.label = gallery, [float(w) for w in weights], label
        self.labels = [m.label for m in gallery.members]
        self.data = gallery.data
        self.molecules, self.descriptions = gallery.data.gallery, gallery.data.descriptions

    def scores(self, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None = None) -> np.ndarray:
        return self.gallery.fused(direction, query_rows, candidate_rows, self.weights)

    def query_parts(self, direction: str, query: str) -> dict[str, np.ndarray]:
        """One free query's weighted, z-scored score row over the whole gallery per member with a weight (by
        label); their sum is :meth:`query_scores`."""
        g = self.gallery
        parts = {}
        for i, (member, weight) in enumerate(zip(g.members, self.weights)):
            if not weight:
                continue
            if direction == "text_to_molecule":
                raw = member.scorer.score(member.scorer.prepare_texts([query]), g.molecules(i))
            else:
                raw = np.asarray(member.scorer.score(g.texts(i), member.scorer.prepare_molecules([query]))).T
            parts[self.labels[i]] = np.float32(weight) * zscore_rows(np.asarray(raw))[0]
        return parts

    def query_scores(self, direction: str, query: str) -> np.ndarray:
        return sum(self.query_parts(direction, query).values())

    def record(self) -> dict[str, Any]:
        return {"kind": "fused", "label": self.label,
                "members": [{**m.record(), "weight": w} for m, w in zip(self.gallery.members, self.weights)]}

    def molecule_embeddings(self) -> np.ndarray | None:
        """The gallery molecules' embeddings of the first weighted member that prepares the whole gallery (a
        learned similarity), for molecule neighbours; ``None`` without one."""
        g = self.gallery
        learned = next((i for i, (m, w) in enumerate(zip(g.members, self.weights)) if w and hasattr(m.scorer, "prepare_gallery")), None)
        return None if learned is None else np.asarray(g.molecules(learned))


def evaluate_fused(gallery: GalleryScores, pairs: Sequence["Pair"], galleries: Sequence[str], weights: Sequence[float],
                   log: Callable[[str], None] = print, label: str = "test") -> tuple[dict, dict]:
    """Fused metrics of ``pairs`` per gallery and direction (:func:`zoo.evaluate.evaluate_source` of the
    members fused with ``weights``). Returns ``(scores, gallery_counts)``."""
    return evaluate_source(FusedScores(gallery, weights), pairs, galleries, log=log, label=label)


# -- fused folders (a composition with scorers, an ensemble) ---------------------------------------
def learned_member(model, prepared: "PreparedGallery", device, batch_size: int) -> Member:
    """A composition's own learned similarity (its model in memory, its gallery prepared already)."""
    return Member(LEARNED, LEARNED, {}, ModelScorer(model, device, batch_size, prepared))


def fuse_composition(model, prepared: "PreparedGallery", scorers: Sequence[Member], data: "Dataset", spec, device,
                     log: Callable[[str], None] = print, rerankers: Sequence[RerankerMember] = (),
                     run_dir: str | Path | None = None) -> tuple[dict, dict, dict]:
    """``zoo run`` of a spec with scorers or re-rankers: fit the weights of the learned similarity and ``scorers``
    on the held-out pairs (then ``rerankers`` over their top ``spec.rerank_k``, states saved in ``run_dir``),
    evaluate on the test pairs. Returns ``(scores, gallery_counts, extra results fields)``."""
    members = [learned_member(model, prepared, device, spec.train.eval_batch_size), *scorers]
    gallery = GalleryScores(members, data, log)
    fit = fit_weights(gallery, data.select, log=log)
    source, reranked = rerank_source(FusedScores(gallery, fit.weights), data, rerankers, spec.rerank_k, spec.train.seed,
                                     run_dir, spec.eval.galleries, log)
    scores, counts = evaluate_source(source, data.test, spec.eval.galleries, log=log)
    return scores, counts, {"fusion": fusion_record(members, fit), **reranked}


def rerank_source(first: "ScoreSource", data: "Dataset", rerankers: Sequence[RerankerMember], k: int, seed: int,
                  run_dir: str | Path | None, galleries: Sequence[str], log: Callable[[str], None]) -> tuple["ScoreSource", dict]:
    """``first`` as is without ``rerankers``; else the second stage over it: the re-rankers fitted on the training
    pairs over its top ``k`` and weighed on the held-out pairs (:func:`zoo.rerank.fit_stage`), their states saved
    in ``run_dir``. Returns the source to evaluate and the results fields ``rerank`` (the stage) and
    ``first_stage_scores`` (the first stage alone on the test pairs)."""
    if not rerankers:
        return first, {}
    if run_dir is None:
        raise RunError("re-rankers need the run folder to keep their fitted state")
    stage, heldout = fit_stage(first, data, rerankers, k, seed=seed, log=log)
    save_stage(stage, run_dir)
    first_scores, _ = evaluate_source(first, data.test, galleries, log=log, label="test, first stage")
    return RerankedScores(first, stage, label=str(run_dir)), {"rerank": stage_record(stage, heldout, first.record()["kind"]),
                                                             "first_stage_scores": first_scores}

