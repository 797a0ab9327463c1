"""``zoo serve``'s models: finished runs loaded once for many concurrent queries.

A :class:`Service` holds the served models (a run against its ChEBI-20 gallery or a library index
through :func:`zoo.scoring.open_searcher`: the folder's :class:`~zoo.protocols.ScoreSource`, or a run's library index),
each loaded, integrity-checked and warmed up once at start (its gallery embedded or read from the
search cache, a fused run's members prepared on the gallery). A query only reads them: no per-request
state is kept on a shared object, models run under ``torch.inference_mode``, and nothing is written
to disk (a long-lived OPSIN process parses chemical names, :class:`zoo.opsin.LongLivedOpsin`, keeping
new parses in memory). Input is bounded (:data:`MAX_QUERY_CHARS`, :data:`MAX_K`); bad input raises
:class:`ServeError` with an HTTP status and a one-line message. The HTTP layer is :mod:`zoo.webapp`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from zoo import __version__
from zoo.errors import OpsinError, RunError, ServeError, SmilesError
from zoo.featurize import clean_smiles, parse_smiles
from zoo.opsin import long_lived, parse_names, take_timed_out
from zoo.report_figures import molecule_svg
from zoo.runs import load_run
from zoo.scoring import open_searcher
from zoo.search import _result, top_k
from zoo.spans import candidate_spans

#: longest description or SMILES a query may hold (characters); longer ones are refused with 413
MAX_QUERY_CHARS = 4000
#: most results a query may ask for
MAX_K = 100
#: seconds a query's chemical names may take to parse before it is answered without them
NAME_TIMEOUT_S = 5.0
NAME_TIMEOUT_NOTE = "chemical-name parsing timed out after {timeout:g} s: answered without name evidence"


@lru_cache(maxsize=4096)
def depict(smiles: str) -> str:
    """An RDKit SVG drawing of ``smiles`` (``<svg class="mol">``); :class:`ServeError` 422 when RDKit cannot read it."""
    check_text(smiles, "smiles")
    try:
        parse_smiles(smiles)
    except (SmilesError, ValueError) as exc:
        raise ServeError(422, f"smiles {short(smiles)!r}: cannot read this molecule ({one_line(exc)})") from None
    return molecule_svg(smiles)


def one_line(exc: BaseException | str) -> str:
    """A message on one line."""
    return " ".join(str(exc).split())


def short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def check_text(text: str | None, what: str) -> str:
    """``text`` stripped; 422 when empty, 413 when over :data:`MAX_QUERY_CHARS`."""
    if text is None or not text.strip():
        raise ServeError(422, f"{what}: empty query; give a description (query) or a molecule (smiles)")
    if len(text) > MAX_QUERY_CHARS:
        raise ServeError(413, f"{what}: {len(text):,} characters, over the limit of {MAX_QUERY_CHARS:,}")
    return text.strip()


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise ServeError(422, f"k must be between 1 and {MAX_K} (got {k})")
    return k


# -- chemical names in a query ----------------------------------------------------------------------
def query_names(query: str) -> tuple[list[dict[str, Any]], str | None]:
    """The spans of ``query`` parsed as chemical names (longest first, none inside another), each with its
    character offsets and canonical SMILES, and a note when the parse was skipped or timed out."""
    spans = candidate_spans(query)
    take_timed_out()
    try:
        parses = parse_names(s.text for s in spans)
    except OpsinError as exc:
        return [], f"chemical names not parsed: {one_line(exc)}"
    note = NAME_TIMEOUT_NOTE.format(timeout=names_timeout()) if take_timed_out() else None
    starts = [m.start() for m in re.finditer(r"\S+", query)]
    ends = [m.end() for m in re.finditer(r"\S+", query)]
    found: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []
    for span in sorted((s for s in spans if parses.get(s.text)), key=lambda s: (-len(s.text), s.start)):
        if any(a <= span.start and span.end <= b for a, b in taken):
            continue
        taken.append((span.start, span.end))
        lo, hi = starts[span.start], ends[span.end - 1]
        at = query.find(span.text, lo, hi)  # the cleaned text (edge punctuation stripped) inside its tokens
        start = at if at >= 0 else lo
        found.append({"text": span.text, "start": start, "end": start + len(span.text) if at >= 0 else hi,
                      "smiles": parses[span.text]})
    found.sort(key=lambda n: n["start"])
    return found, note


def names_timeout() -> float:
    """The long-lived OPSIN's timeout (s), :data:`NAME_TIMEOUT_S` when none is running."""
    opsin = long_lived()
    return opsin.timeout if opsin is not None else NAME_TIMEOUT_S


def _uses_names(spec: dict) -> bool:
    """Whether a spec (a run's or an ensemble's) parses chemical names: a chem_names text encoder (alone or
    as a part) or a name scorer, named anywhere in its (nested) slots and scorers."""
    text = repr(spec)
    return any(name in text for name in ("chem_names", "structure_match", "relation_match"))


# -- models -----------------------------------------------------------------------------------------
@dataclass
class ServedModel:
    """One served run: its searcher and what ``GET /api/v1/models`` says of it."""

    name: str
    run_dir: Path
    searcher: Any
    results: dict
    index: str | None = None
    uses_names: bool = False
    _descriptions: dict[str, str] = field(default_factory=dict, repr=False)
    #: one query computes at a time per model, on all the cores torch is given: concurrent queries would only
    #: oversubscribe the cores (16 clients on 2 cores: a fifth of the throughput); the model is never written
    compute: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def source(self) -> Any:
        """The served :class:`~zoo.protocols.ScoreSource` (``None`` for a library index)."""
        return getattr(self.searcher, "source", None)

    @property
    def members(self) -> list[dict[str, Any]] | None:
        """A fusion's members (label, weight), ``None`` for one run's own similarity."""
        return None if self.source is None else self.source.record().get("members")

    def info(self) -> dict[str, Any]:
        r = self.results
        spec = r.get("spec", {})
        scores = r.get("scores", {})
        metrics = {gallery: {direction: {k: v for k, v in m.items() if isinstance(v, (int, float))}
                             for direction, m in by_direction.items() if isinstance(m, dict)}
                   for gallery, by_direction in scores.items() if isinstance(by_direction, dict)}
        info = {"name": self.name, "run": self.run_dir.name, "composition": spec.get("name"), "spec_hash": r.get("spec_hash"),
                "kind": "ensemble" if self.members else "run", "searched": self.searcher.searched,
                "index": self.index, "uses_names": self.uses_names, "test_metrics": metrics}
        if self.members:
            info["members"] = [{"label": m["label"], "weight": m["weight"]} for m in self.members]
        return info

    def describe(self, cid: str) -> str | None:
        return self._descriptions.get(cid)


def model_name(run_dir: Path, taken: Sequence[str]) -> str:
    """A served model's name: its run folder's name, its path where two share a name."""
    return run_dir.name if run_dir.name not in taken else str(run_dir)


def load_model(run_dir: str | Path, name: str, *, index: str | None = None, data_dir: str | None = None,
               device: str = "cpu", log: Callable[[str], None] = print) -> ServedModel:
    """A finished run loaded and checked (checkpoint and caches against their hashes, data against the run's)."""
    run_dir = Path(run_dir)
    results = load_run(run_dir)  # a missing, unfinished or damaged run: one line
    searcher = open_searcher(run_dir, index=index, data_dir=data_dir, device=device, progress=False, log=log)
    model = ServedModel(name, run_dir, searcher, results, index, _uses_names(results.get("spec", {})))
    if model.source is not None:
        model._descriptions = {p.cid: p.description for p in model.source.descriptions}
    return model


class Service:
    """The served models by name (the first is the default) and the queries against them."""

    def __init__(self, models: Sequence[ServedModel], *, names_available: bool = True) -> None:
        if not models:
            raise RunError("zoo serve needs at least one run folder")
        self.models = {m.name: m for m in models}
        self.default = models[0].name
        self.names_available = names_available
        self.started = time.time()

    @classmethod
    def load(cls, run_dirs: Sequence[str | Path], *, index: str | None = None, data_dir: str | None = None,
             device: str = "cpu", names_available: bool = True, log: Callable[[str], None] = print) -> "Service":
        resolved = [Path(d).resolve() for d in run_dirs]
        repeated = sorted({str(d) for d, r in zip(run_dirs, resolved) if resolved.count(r) > 1})
        if repeated:
            raise RunError(f"run folder given more than once: {', '.join(repeated)}")
        models: list[ServedModel] = []
        for run_dir in run_dirs:
            models.append(load_model(run_dir, model_name(Path(run_dir), [m.name for m in models]), index=index,
                                     data_dir=data_dir, device=device, log=log))
            log(f"serve: {models[-1].name} loaded ({models[-1].searcher.searched})")
        service = cls(models, names_available=names_available)
        service.warm_up()
        return service

    def warm_up(self) -> None:
        """One query of each kind per model, so that lazily prepared parts are ready before the first request."""
        for model in self.models.values():
            self.search(query="The molecule is a monocarboxylic acid that is acetic acid substituted by a methyl group.",
                        k=1, model=model.name)
            self.search(smiles="CC(=O)O", k=1, model=model.name)

    def model(self, name: str | None) -> ServedModel:
        if name is None:
            return self.models[self.default]
        if name not in self.models:
            from difflib import get_close_matches

            close = get_close_matches(name, list(self.models), n=3, cutoff=0.5)
            hint = f" (served: {', '.join(self.models)})" + (f"; did you mean {', '.join(close)}?" if close else "")
            raise ServeError(404, f"model {name!r} is not served{hint}")
        return self.models[name]

    def search(self, *, query: str | None = None, smiles: str | None = None, k: int = 10, model: str | None = None,
               names: bool | None = None, depict_hits: bool = False) -> dict[str, Any]:
        """A description's closest molecules, or a molecule's closest descriptions (library molecules with an index).
        ``names``: also parse the query's chemical names (default: when the model uses names)."""
        import torch

        if (query is None) == (smiles is None):
            raise ServeError(422, "give exactly one of: query (a description) or smiles (a molecule)")
        served = self.model(model)
        k = check_k(k)
        text = check_text(query if smiles is None else smiles, "query" if smiles is None else "smiles")
        names = served.uses_names if names is None else names

        take_timed_out()  # this thread's flag starts clear
        evidence, note = ([], None)
        if smiles is None and names:
            evidence, note = query_names(text) if self.names_available else ([], "chemical names not parsed: OPSIN (Java) is not available")
        with served.compute, torch.inference_mode():
            try:
                result = self._text(served, text, k) if smiles is None else self._smiles(served, text, k)
            except (RunError, SmilesError) as exc:
                if smiles is not None and "cannot read" in str(exc):
                    raise ServeError(422, one_line(str(exc).replace("--smiles ", "smiles ", 1))) from None
                raise
        if take_timed_out() and not note:  # the model's own name parse timed out
            note = NAME_TIMEOUT_NOTE.format(timeout=names_timeout())
        result.update({"model": served.name, "k": k})
        if smiles is None:
            result["names"] = evidence
            result["names_parsed"] = bool(names) and note is None
        if note:
            result["notes"] = [note]
        for hit in result["results"]:
            if "smiles" in hit and "description" not in hit:
                described = served.describe(hit["cid"])
                if described is not None:
                    hit["description"] = described
            if depict_hits and "smiles" in hit:
                hit["svg"] = depict(hit["smiles"])
        return result

    def _text(self, served: ServedModel, query: str, k: int) -> dict:
        if not hasattr(served.source, "query_parts"):
            return served.searcher.text(query, k)
        return self._parts(served, "text_to_molecule", query, k)

    def _smiles(self, served: ServedModel, smiles: str, k: int) -> dict:
        if not hasattr(served.source, "query_parts"):
            return served.searcher.smiles(smiles, k)
        return self._parts(served, "molecule_to_text", smiles, k)

    @staticmethod
    def _parts(served: ServedModel, direction: str, query: str, k: int) -> dict:
        """The top ``k`` of a source made of parts (a fusion) with each part's (weighted, z-scored) contribution per hit."""
        started, cpu = time.perf_counter(), time.process_time()
        source = served.source
        parts = source.query_parts(direction, query)
        scores = sum(parts.values())
        encoded = time.perf_counter()
        hits = []
        for i in top_k(scores, k):
            contributions = {label: float(row[i]) for label, row in parts.items()}
            if direction == "text_to_molecule":
                m = source.molecules[i]
                hits.append({"cid": m.cid, "smiles": clean_smiles(m.smiles), "score": float(scores[i]), "contributions": contributions})
            else:
                p = source.descriptions[i]
                hits.append({"cid": p.cid, "description": p.description, "score": float(scores[i]), "contributions": contributions})
        kind, target = ("text", "molecules") if direction == "text_to_molecule" else ("smiles", "descriptions")
        return _result(kind, target, served.searcher.searched, query, hits, started, encoded, cpu)

    def molecule(self, cid: str, *, model: str | None = None, k: int = 10) -> dict[str, Any]:
        """A gallery molecule: its SMILES, drawing, description, the ``k`` molecules nearest to it in the model's
        molecule embedding space (gallery runs) and its ``k`` closest descriptions."""
        import numpy as np
        import torch

        served, k = self.model(model), check_k(k)
        check_text(cid, "cid")
        embeddings = cids = smiles_of = None
        source = served.source
        if source is not None:
            cids, smiles_of = [m.cid for m in source.molecules], [m.smiles for m in source.molecules]
            # a learned similarity's molecule embeddings (a fusion's weighted learned member: prepared at start)
            embeddings = source.molecule_embeddings() if hasattr(source, "molecule_embeddings") else None
            embeddings = None if embeddings is None else np.asarray(embeddings)
        if cids is None:
            raise ServeError(404, f"model {served.name!r} searches a library index: molecule views need a run's gallery")
        try:
            row = cids.index(cid)
        except ValueError:
            raise ServeError(404, f"molecule {short(cid)!r} is not in the gallery of {served.name!r}") from None
        smiles = clean_smiles(smiles_of[row])
        neighbours = []
        if embeddings is not None:
            scores = embeddings @ embeddings[row]
            for i in top_k(scores, k + 1):
                if int(i) != row and len(neighbours) < k:
                    neighbours.append({"cid": cids[i], "smiles": clean_smiles(smiles_of[i]), "score": float(scores[i]),
                                       "description": served.describe(cids[i]), "svg": depict(clean_smiles(smiles_of[i]))})
            for rank, hit in enumerate(neighbours, 1):
                hit["rank"] = rank
        with torch.inference_mode():
            described = self.search(smiles=smiles, k=k, model=served.name)
        return {"model": served.name, "cid": cid, "smiles": smiles, "svg": depict(smiles), "description": served.describe(cid),
                "neighbours": neighbours, "descriptions": described["results"]}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "models": list(self.models), "default_model": self.default,
                "names_available": self.names_available, "uptime_s": round(time.time() - self.started, 1),
                "limits": {"max_query_chars": MAX_QUERY_CHARS, "max_k": MAX_K, "name_timeout_s": names_timeout()}}

