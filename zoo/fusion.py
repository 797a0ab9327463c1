"""Score fusion: a model's learned similarity fused with other scorers, or finished runs fused together.

Members are :class:`zoo.api.Scorer` objects (``register_scorers``; a trained model is one through
:class:`ModelScorer`, a finished run through :class:`RunScorer`). Fusion is:

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

``zoo run`` fuses a composition's ``[[scorers]]`` with its learned similarity after training;
``zoo ensemble RUN RUN ... [--scorer NAME]`` fuses finished runs (:func:`build_ensemble`). Both
record ``fusion`` (members, weights, held-out MRR of each member alone and fused) in their
results; ``zoo eval`` and ``zoo search`` of such a folder use the fused scores with those weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.cache import content_hash, data_fingerprint, sha256_file
from zoo.data import check_same_data
from zoo.errors import ComponentError, RunError
from zoo.evals.leaderboard import seedless_spec_hash
from zoo.evals.ranking import Ranks, count_above_and_tied, retrieval_metrics
from zoo.evals.results import ENSEMBLE_SPEC_FORMAT, build_results, is_ensemble, read_results, write_results
from zoo.evaluate import embed_texts
from zoo.featurize import clean_smiles
from zoo.gallery import PreparedGallery, prepare_gallery
from zoo.library import embed_smiles
from zoo.registry import get_component
from zoo.rerank import DEFAULT_K, RerankedScores, RerankerMember, Stage, fit_stage, load_stage, reranker_member, save_stage, stage_record
from zoo.runs import eval_path, load_run, load_trained_run, results_path, training_data
from zoo.search import Searcher, _result, check_query, run_gallery, top_k
from zoo.taskdata import Dataset, Gallery, Pair
from zoo.tasks import get_task, holdout_seed, load_run_data, protocol_note, recorded_spec_task, task_block, task_title

if TYPE_CHECKING:
    import torch

    from zoo.spec import EnsembleSpec

#: candidate weights of every member but the first (whose weight is 1)
GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
#: coordinate-search passes over the members
ROUNDS = 2
#: the weight every member but the first starts at, one search per start (all equal; the first member alone)
STARTS: tuple[float, ...] = (1.0, 0.0)
#: queries scored per block (bounds memory: block x candidates floats per member)
CHUNK = 512
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


def ranks_of(scores: np.ndarray, true_index: Sequence[int]) -> "Ranks":
    """Where each row's true candidate ranks in ``scores`` (candidates above it and tied with it)."""
    import torch

    s = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    true = torch.as_tensor(np.asarray(true_index, dtype=np.int64))[:, None]
    greater, tied = count_above_and_tied(s, s.gather(1, true))
    return Ranks(greater, tied)


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


class RunScorer(ModelScorer):
    """The ``run`` scorer: a finished run's learned cosine similarity (its best weights; a fused run's
    own scorers are not included). Its gallery embeddings come from the run's search cache
    (``RUN/search/gallery.npz``, written on first use), like ``zoo search``."""

    def __init__(self, run: str = "", device: str = "auto") -> None:
        if not run:
            raise RunError("scorer 'run' needs the option run = \"RUN folder\" (a finished `zoo run`)")
        self.trained = load_trained_run(run, device)
        super().__init__(self.trained.model, self.trained.device, self.trained.spec.train.eval_batch_size)

    def prepare_gallery(self, data: "Dataset") -> tuple[np.ndarray, np.ndarray]:
        gallery = run_gallery(self.trained, sha256_file(self.trained.checkpoint), data=data, progress=False, log=lambda _m: None)
        return gallery.text_embeddings, gallery.molecule_embeddings


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
        self.reranked: RerankedScores | None = None  # a second stage over the fused scores (with_stage)

    def with_stage(self, stage: Stage) -> "GalleryScores":
        """These members (prepared rows shared) with ``stage`` re-ranking their fused scores' top k."""
        out = copy.copy(self)
        out.reranked = RerankedScores(None, self.data, stage)
        return out

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
        return out if self.reranked is None else self.reranked.apply(direction, query_rows, candidate_rows, out)

    def ranks(self, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None,
              true_index: Sequence[int], weights: Sequence[float], chunk: int = CHUNK) -> "Ranks":
        """Expected-rank bookkeeping of the fused scores, ``chunk`` queries at a time."""
        parts = [ranks_of(self.fused(direction, query_rows[s:s + chunk], candidate_rows, weights), true_index[s:s + chunk])
                 for s in range(0, len(query_rows), chunk)]
        return Ranks.cat(parts)


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


# -- evaluation ------------------------------------------------------------------------------------
def evaluate_fused(gallery: GalleryScores, pairs: Sequence["Pair"], galleries: Sequence[str], weights: Sequence[float],
                   log: Callable[[str], None] = print, label: str = "test") -> tuple[dict, dict]:
    """Fused metrics of ``pairs`` per gallery and direction, like :func:`zoo.evaluate.evaluate_pairs`:
    ``all`` (every gallery molecule / every description), ``test`` (the pairs themselves) and
    ``inbatch:N``. Returns ``(scores, gallery_counts)``."""
    import torch

    texts = [gallery.text_index[p.cid] for p in pairs]
    mols = [gallery.mol_index[p.cid] for p in pairs]
    scores, counts = {}, {}
    for parsed in map(Gallery.parse, galleries):  # a bad name: GalleryError (the callers check them first)
        name = str(parsed)
        if parsed.name == Gallery.ALL:
            t2m = gallery.ranks("text_to_molecule", texts, None, mols, weights)
            m2t = gallery.ranks("molecule_to_text", mols, None, texts, weights)
            counts[name] = {"text_to_molecule_candidates": len(gallery.data.gallery),
                            "molecule_to_text_candidates": len(gallery.data.descriptions), "queries": len(pairs)}
        else:  # test, inbatch:N
            size = parsed.block or len(pairs)
            parts_t2m, parts_m2t = [], []
            for s in range(0, len(pairs), size):
                block_t, block_m = texts[s:s + size], mols[s:s + size]
                diagonal = torch.arange(len(block_t)).tolist()
                parts_t2m.append(gallery.ranks("text_to_molecule", block_t, block_m, diagonal, weights))
                parts_m2t.append(gallery.ranks("molecule_to_text", block_m, block_t, diagonal, weights))
            t2m, m2t = Ranks.cat(parts_t2m), Ranks.cat(parts_m2t)
            counts[name] = ({"block_size": size, "queries": len(pairs)} if parsed.is_inbatch else
                            {"text_to_molecule_candidates": len(pairs), "molecule_to_text_candidates": len(pairs), "queries": len(pairs)})
        scores[name] = {"text_to_molecule": retrieval_metrics(t2m), "molecule_to_text": retrieval_metrics(m2t)}
        a, b = scores[name]["text_to_molecule"], scores[name]["molecule_to_text"]
        log(f"{label} gallery={name} (fused): text->molecule MRR={a['mrr']:.4f} H@1={a['hits@1']:.3f} H@10={a['hits@10']:.3f} "
            f"ties={int(a['queries_with_ties'])} | molecule->text MRR={b['mrr']:.4f} H@1={b['hits@1']:.3f} (expected over random tie-breaks)")
    return scores, counts


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
    scored, reranked = (gallery, {}) if not rerankers else \
        rerank_fused(gallery, fit, data, rerankers, spec.rerank_k, spec.train.seed, run_dir, spec.eval.galleries, log)
    scores, counts = evaluate_fused(scored, data.test, spec.eval.galleries, fit.weights, log=log)
    return scores, counts, {"fusion": fusion_record(members, fit), **reranked}


def rerank_fused(gallery: GalleryScores, fit: Fit, data: "Dataset", rerankers: Sequence[RerankerMember], k: int, seed: int,
                 run_dir: str | Path | None, galleries: Sequence[str], log: Callable[[str], None]) -> tuple[GalleryScores, dict]:
    """The second stage over fused scores: ``rerankers`` fitted on the training pairs over the fused top ``k``,
    weighed on the held-out pairs (:func:`zoo.rerank.fit_stage`), saved in ``run_dir``. Returns the re-ranked
    gallery and the results fields ``rerank`` (the stage) and ``first_stage_scores`` (the fused scores alone, test)."""
    if run_dir is None:
        raise RunError("re-rankers need the run folder to keep their fitted state")
    stage, heldout = fit_stage(lambda d, q, c: gallery.fused(d, q, c, fit.weights), data, rerankers, k, seed=seed, log=log)
    save_stage(stage, run_dir)
    first_scores, _ = evaluate_fused(gallery, data.test, galleries, fit.weights, log=log, label="test, first stage")
    return gallery.with_stage(stage), {"rerank": stage_record(stage, heldout, "fused scores (fusion)"),
                                       "first_stage_scores": first_scores}


def is_fused(results: dict) -> bool:
    """Whether a results file records fusion (its scores are fused scores)."""
    return isinstance(results.get("fusion"), dict)


def recorded_members(run_dir: str | Path, results: dict, device: str = "auto", learned: Member | None = None) -> tuple[list[Member], list[float]]:
    """The members and weights a fused results file records, rebuilt (``learned``: the composition's
    own model where it is loaded already; else the run folder's best weights)."""
    members, weights = [], []
    for entry in results["fusion"]["members"]:
        options = dict(entry.get("options") or {})
        if entry["scorer"] == LEARNED:
            member = learned or Member(LEARNED, LEARNED, {}, RunScorer(str(run_dir), device))
        elif entry["scorer"] == "run":  # a member run's folder, relative to the fused folder (absolute in old files)
            options["run"] = str(Path(run_dir) / options.get("run", ""))
            member = scorer_member("run", {**options, "device": device}, label=entry.get("label"))
        else:
            member = scorer_member(entry["scorer"], options, label=entry.get("label"))
        members.append(member)
        weights.append(float(entry["weight"]))
    return members, weights


@dataclass
class FusedRun:
    """A fused results folder loaded for scoring: its members on the task's gallery and their weights."""

    run_dir: Path
    results: dict
    gallery: GalleryScores
    weights: list[float]
    labels: list[str] = field(default_factory=list)


def load_fused(run_dir: str | Path, data_dir: str | None = None, device: str = "auto",
               log: Callable[[str], None] = print, data: "Dataset | None" = None) -> FusedRun:
    """A fused folder's members rebuilt on its task's data (``data``, else loaded from ``data_dir``; checked
    against the data it was made on)."""
    run_dir = Path(run_dir)
    results = load_run(run_dir)
    if not is_fused(results):
        raise RunError(f"{run_dir} records no fusion: not a run with scorers or an ensemble")
    if data is None:
        data = load_run_data(results, data_dir)  # the task's options and data folder the folder recorded
    check_same_data(*training_data(results), data, f"{run_dir}", "pass its data folder with --data-dir")
    members, weights = recorded_members(run_dir, results, device)
    gallery = with_recorded_stage(GalleryScores(members, data, log), run_dir, results)
    return FusedRun(run_dir, results, gallery, weights, [m.label for m in members])


def with_recorded_stage(gallery: GalleryScores, run_dir: str | Path, results: dict) -> GalleryScores:
    """``gallery`` re-ranked by the second stage ``results`` records (its re-rankers loaded from ``run_dir``), if any."""
    if not isinstance(results.get("rerank"), dict):
        return gallery
    return gallery.with_stage(load_stage(run_dir, results["rerank"]))


def fused_query_parts(fused: FusedRun, direction: str, prepare: Callable[[Any], Any]) -> dict[str, np.ndarray]:
    """One free query's weighted, z-scored score row over the whole gallery per member with a weight (by
    label): ``prepare(scorer)`` gives the query's row. Their sum is the fused score (:func:`fused_query`)."""
    g = fused.gallery
    parts = {}
    for i, (member, weight) in enumerate(zip(g.members, fused.weights)):
        if not weight:
            continue
        row = prepare(member.scorer)
        raw = member.scorer.score(row, g.molecules(i)) if direction == "text_to_molecule" else \
            np.asarray(member.scorer.score(g.texts(i), row)).T
        parts[fused.labels[i]] = np.float32(weight) * zscore_rows(np.asarray(raw))[0]
    return parts


def fused_query(fused: FusedRun, direction: str, prepare: Callable[[Any], Any], query: str | None = None) -> np.ndarray:
    """One free query's fused scores over the whole gallery: ``prepare(scorer)`` gives the query's row; a run
    with re-rankers re-ranks its top k with ``query`` (the description, or the SMILES for molecule->text)."""
    scores = sum(fused_query_parts(fused, direction, prepare).values())
    reranked = fused.gallery.reranked
    return scores if reranked is None or query is None else reranked.query(direction, query, scores)


class FusedSearcher:
    """``zoo search`` of a fused folder (a run with scorers, an ensemble): a query's fused scores over the
    task's gallery, with the recorded weights (the same interface as :class:`zoo.search.Searcher`)."""

    def __init__(self, run_dir: str | Path, *, data_dir: str | None = None, device: str = "auto",
                 log: Callable[[str], None] = print) -> None:
        self.fused = load_fused(run_dir, data_dir, device, log)

    @property
    def searched(self) -> str:
        data = self.fused.gallery.data
        title = task_title(recorded_spec_task(self.fused.results)[0])
        return (f"{title} gallery of {self.fused.run_dir} ({len(data.gallery):,} molecules, {len(data.descriptions):,} "
                f"descriptions; fused: {', '.join(f'{label} x{w:g}' for label, w in zip(self.fused.labels, self.fused.weights))})")

    def text(self, query: str, k: int) -> dict:
        """The ``k`` gallery molecules with the highest fused scores for a description."""
        check_query(query, "query")
        started, cpu = time.perf_counter(), time.process_time()
        scores = fused_query(self.fused, "text_to_molecule", lambda scorer: scorer.prepare_texts([query]), query)
        encoded, gallery = time.perf_counter(), self.fused.gallery.data.gallery
        hits = [{"cid": gallery[i].cid, "smiles": clean_smiles(gallery[i].smiles), "score": float(scores[i])}
                for i in top_k(scores, k)]
        return _result("text", "molecules", self.searched, query, hits, started, encoded, cpu)

    def smiles(self, smiles: str, k: int) -> dict:
        """The ``k`` gallery descriptions with the highest fused scores for a molecule."""
        check_query(smiles, "--smiles")
        started, cpu = time.perf_counter(), time.process_time()
        scores = fused_query(self.fused, "molecule_to_text", lambda scorer: scorer.prepare_molecules([smiles]), smiles)
        encoded, texts = time.perf_counter(), self.fused.gallery.data.descriptions
        hits = [{"cid": texts[i].cid, "description": texts[i].description, "score": float(scores[i])} for i in top_k(scores, k)]
        return _result("smiles", "descriptions", self.searched, smiles, hits, started, encoded, cpu)


def open_searcher(run_dir: str | Path, *, index: str | Path | None = None, data_dir: str | None = None, device: str = "auto",
                  nprobe: int | None = None, progress: bool = True, log: Callable[[str], None] = print):
    """``zoo search``'s searcher: :class:`FusedSearcher` for a fused folder, else :class:`zoo.search.Searcher`."""
    if is_fused(load_run(run_dir)):  # a missing or unfinished run fails here with one line
        if index is not None:
            raise RunError(f"--index: {run_dir} fuses several scorers; a library index holds one run's embeddings "
                           "(search a member run's index instead)")
        return FusedSearcher(run_dir, data_dir=data_dir, device=device, log=log)
    return Searcher(run_dir, index=index, data_dir=data_dir, device=device, nprobe=nprobe, progress=progress, log=log)


# -- zoo ensemble ----------------------------------------------------------------------------------
def _member_entry(run_dir: Path, results: dict) -> dict[str, Any]:
    spec = results.get("spec", {})
    return {"run": str(run_dir), "composition": spec.get("name", "?"), "spec_hash": results.get("spec_hash"),
            "config_hash": seedless_spec_hash(spec), "seed": results.get("seeds", {}).get("seed")}


def _member_names(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Members by composition; where several share one, with their configuration (seedless spec hash) and/or
    seed where those differ: ``tfidf_fp/s0+tfidf_fp/s1``, ``tfidf_fp@1a2b3c4d5e6f+tfidf_fp@…``."""
    names = []
    for e in entries:
        same = [o for o in entries if o["composition"] == e["composition"]]
        name = e["composition"]
        if len({o["config_hash"] for o in same}) > 1:
            name += f"@{e['config_hash']}"
        if len({o["seed"] for o in same}) > 1:
            name += f"/s{e['seed']}"
        names.append(name)
    return names


def ensemble_spec(run_dirs: Sequence[Path], member_results: Sequence[dict], scorers: Sequence[Member],
                  composition: "EnsembleSpec | None" = None, rerankers: Sequence[RerankerMember] = (),
                  rerank_k: int = DEFAULT_K) -> dict[str, Any]:
    """The spec an ensemble is made from: member configurations (composition, seedless spec hash), scorers and
    task settings. Where every member has one seed it is the ensemble's ``train.seed`` (so ensembles of the same
    configurations over several seeds make one leaderboard row, mean ± std); else each member names its seed.
    An ensemble ``composition`` names it (and is recorded); else its name lists the members."""
    first = member_results[0]["spec"]
    entries = [_member_entry(d, r) for d, r in zip(run_dirs, member_results)]
    seeds = {e["seed"] for e in entries}
    common = next(iter(seeds)) if len(seeds) == 1 and isinstance(next(iter(seeds)), int) else None
    listed = "+".join([*_member_names(entries), *(m.label for m in scorers)])
    name = composition.name if composition is not None else f"ensemble({listed})"
    train = {"holdout_fraction": first.get("train", {}).get("holdout_fraction", 0.1)}
    return {"format": ENSEMBLE_SPEC_FORMAT, "name": name,
            **({"composition": {k: v for k, v in composition.to_dict().items() if k != "train"}}  # seedless: one row
               if composition is not None else {}),
            "description": (f"{composition.description} — " if composition is not None and composition.description else "")
                           + "fused " + ", ".join(f"{e['composition']} ({e['run']})" for e in entries)
                           + "".join(f" + scorer {m.label}" for m in scorers)
                           + (f"; top {rerank_k} re-ranked by " + ", ".join(m.label for m in rerankers) if rerankers else ""),
            "members": [{"composition": e["composition"], "config_hash": e["config_hash"],
                         **({} if common is not None else {"seed": e["seed"]})} for e in entries],
            "scorers": [m.record() for m in scorers],
            **({"rerankers": [m.record() for m in rerankers], "rerank_k": rerank_k} if rerankers else {}),
            "train": {**train, **({"seed": common} if common is not None else {})},
            "eval": {"task": first.get("eval", {}).get("task", "chebi20"),
                     "galleries": list(first.get("eval", {}).get("galleries", ["all", "test"]))},
            **({"task": dict(first["task"])} if first.get("task") else {})}  # the members' task options


def _check_same_task_and_data(run_dirs: Sequence[Path], member_results: Sequence[dict]) -> None:
    tasks = [r["spec"].get("eval", {}).get("task", "chebi20") for r in member_results]
    if len(set(tasks)) > 1:
        raise RunError("runs of different tasks cannot be fused: " + ", ".join(f"{d} ({t})" for d, t in zip(run_dirs, tasks)))
    prints = [data_fingerprint(training_data(r)[0] or {}) for r in member_results]
    if len(set(prints)) > 1:
        raise RunError("runs made on different data cannot be fused: " + ", ".join(f"{d} (data {p})" for d, p in zip(run_dirs, prints))
                       + "; fuse runs trained on the same data")
    options = [r["spec"].get("task", {}) for r in member_results]
    if any(o != options[0] for o in options):
        raise RunError("runs of one task with different task options (e.g. another hold-out seed) cannot be fused: "
                       + ", ".join(f"{d} ({o or 'defaults'})" for d, o in zip(run_dirs, options)))
    holdouts = [r["spec"].get("train", {}).get("holdout_fraction") for r in member_results]
    if len(set(holdouts)) > 1:
        raise RunError("runs with different held-out splits cannot be fused (their train.holdout_fraction: "
                       + ", ".join(f"{d}={h}" for d, h in zip(run_dirs, holdouts)) + ")")


def default_ensemble_dir(spec_hash: str, root: str | Path = "runs") -> Path:
    return Path(root) / f"ensemble-{spec_hash}"


def _member_runs(dirs: Sequence[Path], scorers: Sequence[object]) -> list[dict]:
    """The results of the member runs: at least two members (runs and scorers), no folder twice, every
    run finished and not itself an ensemble, all on one task and data."""
    if not dirs:
        raise RunError("zoo ensemble needs at least one run folder")
    if len(dirs) == 1 and not scorers:
        raise RunError("one run alone is not an ensemble: give more runs or a --scorer (see `zoo list scorer`)")
    resolved = [d.resolve() for d in dirs]
    repeated = sorted({str(d) for d, r in zip(dirs, resolved) if resolved.count(r) > 1})
    if repeated:
        raise RunError(f"run folder given more than once: {', '.join(repeated)}")
    member_results = [load_run(d) for d in dirs]  # a missing or unfinished run: one line naming it
    for d, r in zip(dirs, member_results):
        if is_ensemble(r):
            raise RunError(f"{d} is an ensemble: fuse its member runs instead")
    _check_same_task_and_data(dirs, member_results)
    return member_results


def _finished(out_dir: Path, spec_hash: str, fresh: bool, log: Callable[[str], None]) -> bool:
    """Whether ``out_dir`` already holds this ensemble, finished (reused unless ``fresh``); refused when it is
    a file, holds a run's results, another ensemble's (unless ``fresh``) or unreadable ones (unless ``fresh``)."""
    path = results_path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir} is a file: give a folder")
    if not path.exists():
        return False
    try:
        previous = read_results(path)
    except ValueError as exc:
        if not fresh:
            raise RunError(f"{exc}; rerun with --fresh") from None
        return False
    if not is_ensemble(previous):
        raise RunError(f"{path} holds the results of a run, not of an ensemble: give --out a new folder")
    if fresh:
        return False
    if previous.get("spec_hash") == spec_hash:
        log(f"ensemble {out_dir} is finished with these members (spec hash {spec_hash}): reused (--fresh to redo it)")
        return True
    raise RunError(f"{path} holds another ensemble (spec hash {previous.get('spec_hash')}, this one {spec_hash}); "
                   "use another --out or --fresh to replace it")


def build_ensemble(run_dirs: Sequence[str | Path], scorers: Sequence[str | Member] = (), *, out: str | Path | None = None,
                   fresh: bool = False, data_dir: str | None = None, device: str = "auto",
                   composition: "EnsembleSpec | None" = None, rerankers: Sequence[str | RerankerMember] = (),
                   rerank_k: int = DEFAULT_K, log: Callable[[str], None] = print) -> Path:
    """``zoo ensemble``: fuse finished runs (and ``scorers``: registered names, or members built by
    :func:`scorer_member`) with weights fitted on the held-out pairs; write ``OUT/results.json`` (a run's
    schema plus ``fusion`` and ``member_scores``; member runs recorded relative to ``OUT``). A finished
    ensemble of the same members is reused unless ``fresh``. ``composition``: the ensemble composition
    being run (names the ensemble). Returns the results path."""
    started = time.time()
    dirs = [Path(d) for d in run_dirs]
    member_results = _member_runs(dirs, scorers)
    scorers = [s if isinstance(s, Member) else scorer_member(s) for s in scorers]  # unknown scorer: close matches
    rerankers = [r if isinstance(r, RerankerMember) else reranker_member(r) for r in rerankers]
    spec = ensemble_spec(dirs, member_results, scorers, composition, rerankers, rerank_k)
    # the exact members (spec hash and seed of each) and scorers: an ensemble of other runs is another ensemble
    entries = [_member_entry(d, r) for d, r in zip(dirs, member_results)]
    spec_hash = content_hash(ENSEMBLE_SPEC_FORMAT, [[e["spec_hash"], e["seed"]] for e in entries], spec["scorers"],
                             *([spec["rerankers"], rerank_k] if rerankers else []))[:12]
    out_dir = Path(out) if out else default_ensemble_dir(spec_hash)
    path = results_path(out_dir)
    if _finished(out_dir, spec_hash, fresh, log):
        return path

    trained_on, trained_dir = training_data(member_results[0])
    task = get_task(spec["eval"]["task"])
    data = load_run_data(member_results[0], data_dir)  # the members' task options and data folder
    for d, r in zip(dirs, member_results):
        check_same_data(*training_data(r), data, f"run {d}", "pass the runs' data folder with --data-dir")
    log(f"ensemble of {', '.join(map(str, dirs))}" + (f" + {', '.join(m.label for m in scorers)}" if scorers else "")
        + f": {len(data.select)} held-out pairs fit the weights, {len(data.test)} test pairs are scored")
    names = [d.name for d in dirs]  # labels: folder names, or full paths where two folders share a name
    labels = [d.name if names.count(d.name) == 1 else str(d) for d in dirs]
    members = [Member(label, "run", {"run": _relative(d, out_dir)}, RunScorer(str(d), device)) for label, d in zip(labels, dirs)]
    members += scorers
    gallery = GalleryScores(members, data, log)
    fit = fit_weights(gallery, data.select, log=log)
    galleries = spec["eval"]["galleries"]
    scored, reranked = (gallery, {}) if not rerankers else \
        rerank_fused(gallery, fit, data, rerankers, rerank_k, spec["train"].get("seed", 0), out_dir, galleries, log)
    scores, counts = evaluate_fused(scored, data.test, galleries, fit.weights, log=log)
    member_scores = {}
    for i, member in enumerate(members):
        alone = [1.0 if j == i else 0.0 for j in range(len(members))]
        member_scores[member.label], _ = evaluate_fused(gallery, data.test, galleries, alone, log=lambda _m: None)
    results = build_results(
        spec=spec, spec_hash=spec_hash,
        components=[{"member": m.label, "scorer": m.scorer_name, "options": m.options} for m in members],
        task=task_block(spec["eval"]["task"], data, "test", counts, spec.get("task"),
                        fingerprint=data_fingerprint(data.checksums)),
        scores=scores, timings={"total_s": time.time() - started},
        seeds={**({"seed": spec["train"]["seed"]} if "seed" in spec["train"] else {}),
               "holdout_seed": holdout_seed(spec["eval"]["task"], spec.get("task") or {}),
               "members": [e["seed"] for e in entries]},
        notes=[protocol_note(task, data.protocol), f"ensemble: {METHOD}; weights fitted on {FITTED_ON}"],
        extra={**({"requested_spec_hash": composition.hash()} if composition is not None else {}),  # the hash `zoo run` printed
               "fusion": fusion_record(members, fit), **reranked, "member_scores": member_scores,
               "ensemble": {"runs": [{"run": _relative(d, out_dir), "spec_hash": e["spec_hash"], "seed": e["seed"]}
                                     for d, e in zip(dirs, entries)], "training_data_dir": trained_dir}},
    )
    write_results(path, results)
    log(f"results: {path} (ensemble {spec['name']}, spec hash {spec_hash})")
    return path


def _relative(run_dir: Path, fused_dir: Path) -> str:
    """``run_dir`` relative to the fused folder (how the folder records its member runs: the two move together)."""
    import os

    return Path(os.path.relpath(run_dir.resolve(), fused_dir.resolve())).as_posix()


def evaluate_ensemble(run_dir: str | Path, results: dict, *, split: str = "test", galleries: Sequence[str] = ("all", "test"),
                      data_dir: str | None = None, device: str = "auto", out: str | Path | None = None,
                      log: Callable[[str], None] = print) -> Path:
    """``zoo eval ENSEMBLE``: its members fused with the recorded weights on ``split``; writes ``ENSEMBLE/eval-SPLIT.json``."""
    started = time.time()
    fused = load_fused(run_dir, data_dir, device, log)
    data = fused.gallery.data
    pairs = data.test if split == "test" else data.select
    scores, counts = evaluate_fused(fused.gallery, pairs, list(galleries), fused.weights, log=log, label=split)
    results = build_results(
        spec=results["spec"], spec_hash=results["spec_hash"], components=results["components"],
        task={**results["task"], "split": split, "galleries": counts}, scores=scores,
        timings={"total_s": time.time() - started}, seeds=results["seeds"],
        notes=[f"re-evaluation of ensemble {run_dir} with its recorded weights"],
        extra={"evaluated_run": str(run_dir), "fusion": results["fusion"],
               **({"rerank": results["rerank"]} if "rerank" in results else {})})
    path = Path(out) if out else eval_path(run_dir, split)
    write_results(path, results)
    log(f"results: {path}")
    return path
