"""One scoring path: every results folder opens as a :class:`~zoo.protocols.ScoreSource`.

A finished run's learned similarity (:class:`LearnedScores`), a composition fused with scorers and an
ensemble of runs (both :class:`zoo.fusion.FusedScores`) are all query x gallery scores behind one small
interface; :func:`open_scoring` reads a results folder and returns the right one. Evaluation
(:func:`zoo.evaluate.evaluate_source`), ``zoo search`` (:func:`open_searcher`), ``zoo report`` and
``zoo serve`` consume a source without asking what it is; a re-ranking stage wraps a source and is one
itself. This module is the one place that tells the kinds of results apart (:func:`is_fused`,
:func:`is_ensemble`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.cache import sha256_file
from zoo.data import check_same_data
from zoo.errors import RunError
from zoo.evals.results import ENSEMBLE_SPEC_FORMAT
from zoo.featurize import clean_smiles
from zoo.fusion import LEARNED, FusedScores, GalleryScores, Member, ModelScorer, scorer_member, take
from zoo.protocols import DIRECTIONS, ScoreSource
from zoo.rerank import RerankedScores, load_stage
from zoo.runs import TrainedRun, existing_best_checkpoint, load_run, load_trained_run, run_checkpoint, training_data
from zoo.search import (
    Gallery,
    LibrarySearcher,
    _result,
    check_query,
    embed_smiles_query,
    embed_text_queries,
    run_gallery,
    top_k,
)
from zoo.taskdata import Dataset, Molecule, Pair
from zoo.tasks import load_run_data, recorded_spec_task, task_title

__all__ = ["DIRECTIONS", "ScoreSource", "LearnedScores", "FusedScores", "RunScorer", "SourceSearcher", "open_scoring",
           "open_searcher", "is_fused", "is_ensemble", "kind", "require_weights", "recorded_members", "own_model",
           "fused_scores", "run_member"]


# -- what a results folder holds -------------------------------------------------------------------
def is_ensemble(results: Any) -> bool:
    """Whether ``results`` were written by ``zoo ensemble`` (fused member runs, no checkpoint of its own)."""
    spec = results.get("spec") if isinstance(results, dict) else None
    return isinstance(spec, dict) and spec.get("format") == ENSEMBLE_SPEC_FORMAT


def is_fused(results: dict) -> bool:
    """Whether a results file records fusion (its scores are fused scores: scorers, or an ensemble)."""
    return isinstance(results.get("fusion"), dict)


def kind(results: dict) -> str:
    """``ensemble`` (``zoo ensemble``: fused runs, no model of its own), ``fused`` (a run with scorers) or ``run``."""
    return "ensemble" if is_ensemble(results) else "fused" if is_fused(results) else "run"


def require_weights(run_dir: str | Path, results: dict, why: str) -> None:
    """Refuse, before any work, a folder whose own best weights are missing (an ensemble has none of its own:
    its members' are loaded)."""
    if not is_ensemble(results):
        existing_best_checkpoint(run_dir, why)


# -- a run's learned similarity --------------------------------------------------------------------
class LearnedScores:
    """A finished run's learned cosine similarity over its task's gallery: the gallery embedded once with its
    best weights (``RUN/search/gallery.npz``, :func:`zoo.search.run_gallery`), a free query embedded with the
    run's model."""

    def __init__(self, trained: TrainedRun, gallery: Gallery) -> None:
        self.trained, self.gallery = trained, gallery
        self.molecules = [Molecule(str(c), str(s)) for c, s in zip(gallery.molecule_cids, gallery.molecule_smiles)]
        smiles = {m.cid: m.smiles for m in self.molecules}
        self.descriptions = [Pair(str(c), smiles.get(str(c), ""), str(d)) for c, d in zip(gallery.text_cids, gallery.descriptions)]
        # the same strings, not fixed-width text (which held 200 MiB for ChEBI-20's SMILES)
        gallery.molecule_smiles = np.array([m.smiles for m in self.molecules], dtype=object)
        gallery.descriptions = np.array([p.description for p in self.descriptions], dtype=object)

    def scores(self, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None = None) -> np.ndarray:
        texts, molecules = self.gallery.text_embeddings, self.gallery.molecule_embeddings
        queries, candidates = (texts, molecules) if _direction(direction) == "text_to_molecule" else (molecules, texts)
        candidates = candidates if candidate_rows is None else take(candidates, candidate_rows)
        return np.asarray(take(queries, query_rows), dtype=np.float32) @ np.asarray(candidates, dtype=np.float32).T

    def query_scores(self, direction: str, query: str) -> np.ndarray:
        if _direction(direction) == "text_to_molecule":
            return self.gallery.molecule_embeddings @ embed_text_queries(self.trained, [query])[0]
        return self.gallery.text_embeddings @ embed_smiles_query(self.trained, query)[0]

    def record(self) -> dict[str, Any]:
        return {"kind": "run", "label": str(self.trained.run_dir), "run": str(self.trained.run_dir)}

    def molecule_embeddings(self) -> np.ndarray:
        """The gallery molecules' embeddings (for molecule neighbours)."""
        return self.gallery.molecule_embeddings


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: choose from {', '.join(DIRECTIONS)}")
    return direction


class RunScorer(ModelScorer):
    """The ``run`` scorer: a finished run's learned cosine similarity (its best weights; a fused run's
    own scorers are not included). Its gallery embeddings come from the run's search cache
    (``RUN/search/gallery.npz``, written on first use), like ``zoo search``."""

    def __init__(self, run: str = "", device: str = "auto") -> None:
        if not run:
            raise RunError("scorer 'run' needs the option run = \"RUN folder\" (a finished `zoo run`)")
        self.trained = load_trained_run(run, device)
        super().__init__(self.trained.model, self.trained.device, self.trained.spec.train.eval_batch_size)

    def prepare_gallery(self, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
        gallery = run_gallery(self.trained, sha256_file(self.trained.checkpoint), data=data, progress=False, log=lambda _m: None)
        return gallery.text_embeddings, gallery.molecule_embeddings


def run_member(label: str, run_dir: str | Path, recorded_as: str, device: str = "auto") -> Member:
    """A finished run as a fusion member (``recorded_as``: how the results record its folder)."""
    return Member(label, "run", {"run": recorded_as}, RunScorer(str(run_dir), device))


# -- fused folders -----------------------------------------------------------------------------------
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


# -- opening a folder ------------------------------------------------------------------------------
def own_model(run_dir: str | Path, results: dict, device: str = "auto") -> TrainedRun | None:
    """The folder's own model with its best weights, ``None`` for an ensemble (fused member runs, no model of its own)."""
    return None if is_ensemble(results) else load_trained_run(run_dir, device)


def fused_scores(run_dir: str | Path, results: dict, data: Dataset, device: str = "auto", log: Callable[[str], None] = print,
                 learned: Member | None = None) -> FusedScores | RerankedScores | None:
    """The fused scores a folder records (its members rebuilt on ``data`` with the recorded weights; re-ranked by
    the second stage it records, if any), ``None`` where its scores are its model's own similarity. ``learned``:
    a fused composition's model, loaded already."""
    if not is_fused(results):
        return None
    members, weights = recorded_members(run_dir, results, device, learned=learned)
    fused = FusedScores(GalleryScores(members, data, log), weights, label=str(run_dir))
    if not isinstance(results.get("rerank"), dict):
        return fused
    return RerankedScores(fused, load_stage(run_dir, results["rerank"]), label=str(run_dir))  # its second stage


def open_scoring(run_dir: str | Path, *, data: Dataset | None = None, data_dir: str | None = None, device: str = "auto",
                 progress: bool = True, log: Callable[[str], None] = print, learned: Member | None = None) -> ScoreSource:
    """The scores a results folder records: its members fused with the recorded weights (a run with scorers,
    an ensemble), else its learned similarity. ``data``: the task's data, loaded already (else loaded from
    ``data_dir`` where needed; either way checked against the data the folder was made on). ``learned``: a
    fused composition's own model, loaded already. A missing or unfinished folder: one line naming it."""
    run_dir = Path(run_dir)
    results = load_run(run_dir)
    if is_fused(results):
        if data is None:
            data = load_run_data(results, data_dir)  # the task's options and data folder the folder recorded
        check_same_data(*training_data(results), data, f"{run_dir}", "pass its data folder with --data-dir")
        return fused_scores(run_dir, results, data, device, log, learned)
    key = sha256_file(run_checkpoint(run_dir))  # an unfinished run fails here, before loading a model
    trained = load_trained_run(run_dir, device)
    return LearnedScores(trained, run_gallery(trained, key, data_dir, progress=progress, log=log, data=data))


# -- zoo search over a source ----------------------------------------------------------------------
class SourceSearcher:
    """``zoo search`` of a results folder's gallery: a query's scores from its :class:`ScoreSource` (the
    same interface as :class:`zoo.search.LibrarySearcher`: ``searched``, ``text(query, k)``, ``smiles(smiles, k)``)."""

    def __init__(self, source: ScoreSource, searched: str) -> None:
        self.source, self.searched = source, searched

    def text(self, query: str, k: int) -> dict:
        """The ``k`` gallery molecules with the highest scores for a description."""
        check_query(query, "query")
        started, cpu = time.perf_counter(), time.process_time()
        scores = self.source.query_scores("text_to_molecule", query)
        encoded, molecules = time.perf_counter(), self.source.molecules
        hits = [{"cid": molecules[i].cid, "smiles": clean_smiles(molecules[i].smiles), "score": float(scores[i])}
                for i in top_k(scores, k)]
        return _result("text", "molecules", self.searched, query, hits, started, encoded, cpu)

    def smiles(self, smiles: str, k: int) -> dict:
        """The ``k`` gallery descriptions with the highest scores for a molecule."""
        check_query(smiles, "--smiles")
        started, cpu = time.perf_counter(), time.process_time()
        scores = self.source.query_scores("molecule_to_text", smiles)
        encoded, texts = time.perf_counter(), self.source.descriptions
        hits = [{"cid": texts[i].cid, "description": texts[i].description, "score": float(scores[i])} for i in top_k(scores, k)]
        return _result("smiles", "descriptions", self.searched, smiles, hits, started, encoded, cpu)


def searched_gallery(run_dir: str | Path, results: dict, source: ScoreSource) -> str:
    """What a source's queries run against, in words (a fusion lists its weighted members)."""
    members = source.record().get("members")
    fused = "; fused: " + ", ".join(f"{m['label']} x{m['weight']:g}" for m in members) if members else ""
    return (f"{task_title(recorded_spec_task(results)[0])} gallery of {run_dir} ({len(source.molecules):,} molecules, "
            f"{len(source.descriptions):,} descriptions{fused})")


def open_searcher(run_dir: str | Path, *, index: str | Path | None = None, data_dir: str | None = None, device: str = "auto",
                  nprobe: int | None = None, progress: bool = True, log: Callable[[str], None] = print):
    """``zoo search``'s searcher: a :class:`SourceSearcher` over the folder's gallery, or with ``index`` a
    run's library index (:class:`zoo.search.LibrarySearcher`: FAISS over the run's molecule embeddings)."""
    results = load_run(run_dir)  # a missing or unfinished run fails here with one line
    if index is not None:
        if is_fused(results):
            raise RunError(f"--index: {run_dir} fuses several scorers; a library index holds one run's embeddings "
                           "(search a member run's index instead)")
        return LibrarySearcher(run_dir, index, device=device, nprobe=nprobe)
    source = open_scoring(run_dir, data_dir=data_dir, device=device, progress=progress, log=log)
    return SourceSearcher(source, searched_gallery(run_dir, results, source))
