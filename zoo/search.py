"""``zoo search``: query a trained run with a description or a molecule.

A text query is ranked against molecules: the gallery of the run's task (ChEBI-20: every molecule
of train + validation + test), or a library index built by ``zoo index`` (:mod:`zoo.library`).
A SMILES query is ranked against the gallery's descriptions, or, with a library index, against
the library's molecules (molecule similarity in the shared embedding space). Scores are cosine
similarities of the L2-normalized embeddings.

The gallery is embedded once per checkpoint and cached in ``RUN/search/gallery.npz`` (embeddings,
CIDs, SMILES, descriptions; written atomically with a content hash and keyed by the checkpoint's
sha256 and the data's fingerprint, so new weights or other data are never matched against stale
embeddings). Later searches load that file and embed only the query: no data is read or
featurized again. Data other than the run's training data (other checksums) is refused.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.cache import content_hash, data_fingerprint, load_sealed_npz, save_sealed_npz, sha256_file
from zoo.data import check_same_data
from zoo.errors import DataError, IntegrityError, RunError, UnverifiedFileWarning
from zoo.evaluate import embed_texts
from zoo.gallery import prepare_gallery
from zoo.library import LibraryIndex, embed_smiles, load_index
from zoo.runs import TrainedRun, best_checkpoint, gallery_cache_path, indexes_dir, load_trained_run, run_checkpoint, training_data
from zoo.tasks import load_run_data, run_data_checksums

if TYPE_CHECKING:
    import numpy as np

    from zoo.taskdata import Dataset

GALLERY_FORMAT = "molzoo.search_gallery/2"
TEXT_BATCH = 64


@dataclass
class Gallery:
    """The gallery of the run's task, embedded: molecules (id, SMILES) and descriptions (id, text)."""

    molecule_embeddings: "np.ndarray"
    molecule_cids: "np.ndarray"
    molecule_smiles: "np.ndarray"
    text_embeddings: "np.ndarray"
    text_cids: "np.ndarray"
    descriptions: "np.ndarray"

    @classmethod
    def of(cls, data: "Dataset", molecule_embeddings: "np.ndarray", text_embeddings: "np.ndarray") -> "Gallery":
        """Embeddings of ``data.gallery`` and ``data.descriptions`` (in that order) with their CIDs, SMILES and texts."""
        import numpy as np

        return cls(np.asarray(molecule_embeddings), np.array([m.cid for m in data.gallery], dtype=str),
                   np.array([m.smiles for m in data.gallery], dtype=str), np.asarray(text_embeddings),
                   np.array([p.cid for p in data.descriptions], dtype=str),
                   np.array([p.description for p in data.descriptions], dtype=str))

    def cache(self, path: Path, key: str) -> bool:
        """:meth:`save`, a failure a warning (the next search embeds the gallery again). Returns whether it was saved."""
        try:
            self.save(path, key)
        except OSError as exc:
            warnings.warn(f"could not cache the gallery embeddings in {path} ({exc}); the next search embeds them again")
            return False
        return True

    def save(self, path: Path, key: str) -> None:
        import numpy as np

        save_sealed_npz(path, {"format": np.array(GALLERY_FORMAT), "key": np.array(key), **vars(self)})

    @classmethod
    def load(cls, path: Path, key: str) -> "Gallery | None":
        """The cached gallery if it exists, is intact and was embedded for ``key`` (:func:`gallery_key`)."""
        if not path.is_file():
            return None
        try:
            with warnings.catch_warnings():  # a cache without a content hash predates GALLERY_FORMAT /2: not used
                warnings.simplefilter("ignore", UnverifiedFileWarning)
                data = load_sealed_npz(path)
            if str(data.get("format")) != GALLERY_FORMAT or str(data.get("key")) != key:
                return None
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (IntegrityError, KeyError) as exc:  # a damaged cache: embed again
            warnings.warn(f"search cache {path} is unreadable ({exc}); embedding the gallery again")
            return None


def gallery_key(checkpoint_sha256: str, checksums: dict[str, str]) -> str:
    """What a cached gallery was embedded from: the checkpoint's sha256 and the data's checksums."""
    return content_hash(checkpoint_sha256, data_fingerprint(checksums))


def run_gallery(trained: "TrainedRun", checkpoint_sha256: str, data_dir: str | None = None, progress: bool = True,
                log: Callable[[str], None] = print, data: "Dataset | None" = None) -> Gallery:
    """The run's embedded gallery: from ``RUN/search/gallery.npz`` when it was embedded with this
    checkpoint from the run's training data, else embedded and cached. Other data is refused.
    ``data``: the task's data, loaded already (else loaded from ``data_dir`` when the cache misses)."""
    path = gallery_cache_path(trained.run_dir)
    trained_on, trained_dir = training_data(trained.results)
    subject, fix = f"run {trained.run_dir}", "pass the run's data folder with --data-dir"
    if data is not None:
        check_same_data(trained_on, trained_dir, data, subject, fix)
    elif data_dir is not None:  # checked even when the cache answers: the data given must be the run's
        check_same_data(trained_on, trained_dir, run_data_checksums(trained.results, data_dir), subject, fix, data_dir)
    cached = Gallery.load(path, gallery_key(checkpoint_sha256, trained_on)) if trained_on else None
    if cached is not None:
        return cached
    model, spec, dev = trained.model, trained.spec, trained.device
    if data is None:
        data = load_run_data(trained.results, data_dir)  # the task's options and data folder the run recorded
        check_same_data(trained_on, trained_dir, data, subject, fix)
    key = gallery_key(checkpoint_sha256, data.checksums)
    log(f"embedding the gallery of {trained.run_dir} once: {len(data.gallery):,} molecules, "
        f"{len(data.descriptions):,} descriptions (cached in {path})")
    prepared = prepare_gallery(model, data, dev, progress=progress, desc="featurizing gallery")
    molecules = prepared.embed_molecules(model, None, spec.train.eval_batch_size, dev, progress=progress, desc="embedding gallery")
    texts = prepared.embed_texts(model, None, spec.train.eval_batch_size, dev)
    gallery = Gallery.of(data, molecules.numpy(), texts.numpy())
    gallery.cache(path, key)
    return gallery


def cache_evaluated_gallery(run_dir: str | Path, checkpoint: Path, data: "Dataset", embedded: dict[str, "np.ndarray"]) -> bool:
    """Seed ``RUN/search/gallery.npz`` with what a run's test evaluation on gallery ``all`` embedded with its
    best weights (every gallery molecule, every description: ``embedded`` is that gallery's entry of
    :func:`zoo.evaluate.evaluate_pairs`' embeddings), so ``zoo search`` and fusion reuse it instead of
    embedding the gallery again. Returns whether it was written (not when the order differs from the data's)."""
    if (list(map(str, embedded["molecule_candidate_cids"])) != [m.cid for m in data.gallery]
            or list(map(str, embedded["text_candidate_cids"])) != [p.cid for p in data.descriptions]):
        return False
    gallery = Gallery.of(data, embedded["molecule_candidates"], embedded["text_candidates"])
    return gallery.cache(gallery_cache_path(run_dir), gallery_key(sha256_file(checkpoint), data.checksums))


def seed_search_cache(run_dir: str | Path, data: "Dataset", embedded: dict[str, "np.ndarray"]) -> bool:
    """The step after a run's training (:attr:`zoo.train.RunOptions.after_test`): its test evaluation's gallery
    ``all`` embeddings (best weights) seed ``RUN/search/gallery.npz`` (:func:`cache_evaluated_gallery`)."""
    return cache_evaluated_gallery(run_dir, best_checkpoint(run_dir), data, embedded)


def embed_text_queries(trained: "TrainedRun", texts: Sequence[str]) -> "np.ndarray":
    """``[N, d]`` embeddings of free text queries with a run's model."""
    model, dev = trained.model, trained.device
    items = model.text_encoder.prepare(list(texts), progress=False, device=dev)
    return embed_texts(model, items, TEXT_BATCH, dev).numpy()


def embed_smiles_query(trained: "TrainedRun", smiles: str) -> "np.ndarray":
    """``[1, d]``: one free SMILES query embedded with a run's model (an unreadable one: :class:`RunError`)."""
    embedded = embed_smiles(trained.model, [smiles], 1, trained.device)
    if embedded.failures:
        raise RunError(f"--smiles {smiles!r}: cannot read this molecule ({embedded.failures[0][1]})")
    return embedded.embeddings


def top_k(scores: "np.ndarray", k: int) -> "np.ndarray":
    """Indices of the ``k`` highest scores, best first."""
    import numpy as np

    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def resolve_index(run_dir: str | Path, index: str | Path) -> Path:
    """``index`` as a folder, else ``RUN/indexes/<index>``; a clear error listing the run's indexes."""
    path = Path(index)
    if path.is_dir():
        return path
    named = indexes_dir(run_dir) / str(index)
    if named.is_dir():
        return named
    available = sorted(p.name for p in indexes_dir(run_dir).glob("*") if p.is_dir())
    listing = f"; this run has: {', '.join(available)}" if available else "; this run has none (build one with `zoo index`)"
    raise RunError(f"--index {index}: no such folder, and no index of that name in {indexes_dir(run_dir)}{listing}")


class LibrarySearcher:
    """A run's library index (``zoo index``) loaded for queries: a query embedded with the run's model, its
    nearest library molecules by FAISS (a search of the run's own gallery goes through its
    :class:`~zoo.protocols.ScoreSource`, :func:`zoo.scoring.open_searcher`)."""

    def __init__(self, run_dir: str | Path, index: str | Path, *, device: str = "auto", nprobe: int | None = None) -> None:
        run_dir = Path(run_dir)
        key = sha256_file(run_checkpoint(run_dir))  # an unknown/unfinished run fails here, before loading a model
        folder = resolve_index(run_dir, index)
        self.trained = load_trained_run(run_dir, device)  # a corrupt checkpoint is named before an index is compared with it
        self.library: LibraryIndex = load_index(folder, checkpoint_sha256=key)
        self.library.set_search_params(nprobe=nprobe, efSearch=nprobe)

    @property
    def searched(self) -> str:
        """What the queries run against, in words."""
        return f"library index {self.library.folder} ({len(self.library):,} molecules)"

    def text(self, query: str, k: int) -> dict:
        """The ``k`` library molecules closest to a description."""
        check_query(query, "query")
        started, cpu = time.perf_counter(), time.process_time()
        vector = embed_text_queries(self.trained, [query])
        encoded = time.perf_counter()
        return _result("text", "molecules", self.searched, query, self._library_hits(vector, k), started, encoded, cpu)

    def smiles(self, smiles: str, k: int) -> dict:
        """The ``k`` library molecules closest to a molecule (molecule similarity in the shared embedding space)."""
        check_query(smiles, "--smiles")
        started, cpu = time.perf_counter(), time.process_time()
        vector = embed_smiles_query(self.trained, smiles)
        encoded = time.perf_counter()
        return _result("smiles", "molecules", self.searched, smiles, self._library_hits(vector, k), started, encoded, cpu)

    def _library_hits(self, vector: "np.ndarray", k: int) -> list[dict]:
        scores, rows = self.library.search(vector, k)
        found = [(float(s), int(r)) for s, r in zip(scores[0], rows[0]) if r >= 0]
        molecules = self.library.molecules([r for _, r in found])
        return [{"cid": m["id"], "smiles": m["smiles"], "score": s, "source_row": m["row"]} for (s, _), m in zip(found, molecules)]


def check_query(query: str, what: str = "query") -> None:
    """A clear error for an empty query (call before loading anything)."""
    if not query or not query.strip():
        raise RunError(f"{what}: empty query; give a description to find molecules, or --smiles SMILES to find descriptions")


#: Longest query echoed in full by the text output and in results (JSON); a longer one is cut
#: (``zoo search "$(cat file)"``), with its length in ``query_chars``.
ECHO_CHARS = 80
RESULT_QUERY_CHARS = 1000


def short_query(query: str, limit: int = ECHO_CHARS, length: int | None = None) -> str:
    """``query`` cut to ``limit`` characters plus its length (``length``, else ``len(query)``) when longer."""
    length = len(query) if length is None else length
    return query if length <= limit else f"{query[:limit]}… ({length} chars)"


def _result(kind: str, target: str, searched: str, query: str, hits: list[dict], started: float, encoded: float,
            cpu_started: float) -> dict:
    """The JSON-able result; ``timing_ms`` holds wall times and the CPU time of the whole query (all threads)."""
    done, cpu = time.perf_counter(), time.process_time()
    for rank, hit in enumerate(hits, start=1):
        hit["rank"] = rank
    return {"query": short_query(query, RESULT_QUERY_CHARS), "query_chars": len(query), "query_type": kind, "target": target,
            "searched": searched, "results": hits,
            "timing_ms": {"encode": (encoded - started) * 1e3, "search": (done - encoded) * 1e3, "total": (done - started) * 1e3,
                          "cpu": (cpu - cpu_started) * 1e3}}


def read_queries(path: str | Path) -> list[str]:
    """One text query per non-blank line of a UTF-8 file."""
    path = Path(path)
    try:
        queries = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: queries file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable queries file ({exc})") from None
    if not queries:
        raise DataError(f"{path}: no queries (one description per line)")
    return queries


def latency_summary(results: Sequence[dict]) -> dict[str, dict[str, float]]:
    """p50/p99/mean per timing (ms) over many query results."""
    import numpy as np

    out = {}
    for part in ("encode", "search", "total", "cpu"):
        values = np.array([r["timing_ms"][part] for r in results])
        out[part] = {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)), "mean": float(values.mean())}
    return out


def format_result(result: dict) -> str:
    """A result as a plain-text table."""
    query = short_query(result["query"], ECHO_CHARS, result.get("query_chars"))
    lines = [f"{result['query_type']} query {query!r} -> {result['target']} in the {result['searched']}"]
    for hit in result["results"]:
        what = hit.get("smiles") if result["target"] == "molecules" else hit.get("description")
        lines.append(f"{hit['rank']:>4}  {hit['score']:.4f}  {hit['cid']:<12} {what}")
    return "\n".join(lines)
