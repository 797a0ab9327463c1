"""``zoo index``: embed a molecule library with a trained run and store it as a FAISS index.

The build streams the molecule file (:mod:`zoo.molfiles`) in chunks of ``chunk_size`` records.
Chunk ``i`` belongs to worker ``i % workers``; each worker loads the run's model, featurizes and
embeds its chunks, and writes each one atomically to ``OUT/chunks/chunk-NNNNNN.npz``
(embeddings, rows, IDs, SMILES, and the molecules it had to skip). Workers are local processes
started with :func:`torch.multiprocessing.spawn` (``workers=N``), or the ranks of a ``torchrun``
launch (``WORLD_SIZE`` set; rank 0 plans and merges, a gloo barrier waits for the others).
A chunk file that exists is never recomputed, so rerunning an interrupted build continues where
it stopped, with any number of workers; ``OUT/build.json`` pins what is being built (checkpoint
hash, input file hash, chunk size) and a rerun for anything else is refused unless ``fresh``.

The merge step adds the chunks in order to a FAISS index over inner product (embeddings are
L2-normalized, so scores are cosine similarities) and writes, each atomically and the manifest
last: ``index.faiss``, ``molecules.tsv`` (index row -> source row, ID, SMILES) with
``molecules.offsets.npy`` (byte offset of each line, so a search reads only the rows it
returns), ``skipped.tsv`` and ``manifest.json``. Then the chunks are removed.

Integrity: the manifest records the sha256 of each of those files and its own content hash
(:func:`zoo.cache.sealed_json`, as does ``build.json``), and chunks carry the content hash of their
arrays; :func:`load_index` checks them all, so a changed byte is a clear error naming the file and
the rebuild command. A damaged chunk found when resuming a build is embedded again.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.cache import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_sealed_bytes,
    load_sealed_npz,
    save_sealed_npz,
    sealed_json,
    sha256_file,
    unseal,
    warn_unverified,
)
from zoo.errors import DataError, IntegrityError, RunError
from zoo.evaluate import autocast
from zoo.molfiles import Record, count_records, iter_records, library_format, record_smiles
from zoo.runs import indexes_dir, load_run, load_trained_run, run_checkpoint

if TYPE_CHECKING:
    import numpy as np
    import torch

INDEX_FORMAT = "molzoo.library_index/1"
MANIFEST = "manifest.json"
BUILD_STATE = "build.json"
CHUNKS = "chunks"
INDEX_FILE = "index.faiss"
MOLECULES = "molecules.tsv"
OFFSETS = "molecules.offsets.npy"
SKIPPED = "skipped.tsv"
OWN_FILES = (MANIFEST, BUILD_STATE, CHUNKS, INDEX_FILE, MOLECULES, OFFSETS, SKIPPED)

INDEX_TYPES = ("auto", "flat", "ivf-sq8", "ivf-pq", "hnsw")
#: ``auto`` builds an exact index up to this many molecules, ``ivf-sq8`` above (see the README's scale figures:
#: at 1M molecules flat search was ~300x slower than ivf-sq8, whose recall@10 was 0.96; ivf-pq's was 0.49).
AUTO_EXACT_MAX = 200_000
DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128
PQ_MIN_COUNT = 10_000  # 256 centroids per PQ sub-quantizer want ~39 training vectors each
REPORT_LIMIT = 20
KEPT = "finished chunks are kept: the same command resumes the build"
HASHED_FILES = (INDEX_FILE, MOLECULES, OFFSETS, SKIPPED)  # their sha256 is recorded in the manifest


# -- identities -------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """Peak resident memory of this process and of its largest finished child, MiB (Linux ru_maxrss is KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (spawned workers)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))



# -- the build plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """Everything a worker needs (picklable: it is sent to spawned processes)."""

    run_dir: str
    source: str
    out_dir: str
    records: int
    chunk_size: int
    batch_size: int
    smiles_column: str | None
    id_column: str | None
    device: str
    progress: bool

    @property
    def chunks(self) -> int:
        return math.ceil(self.records / self.chunk_size)

    def chunk_path(self, chunk: int) -> Path:
        return Path(self.out_dir) / CHUNKS / f"chunk-{chunk:06d}.npz"

    def chunk_records(self, chunk: int) -> int:
        """How many records chunk ``chunk`` holds (the last one may be short)."""
        return min(self.chunk_size, self.records - chunk * self.chunk_size)

    def pending(self) -> list[int]:
        """The chunks not embedded yet."""
        return [c for c in range(self.chunks) if not self.chunk_path(c).is_file()]


def default_index_dir(run_dir: str | Path, molecules: str | Path) -> Path:
    """``RUN/indexes/<file name without its extensions>``: ``library.smi`` and ``library.tsv.gz`` -> ``indexes/library``.

    An index folder named after the whole file name (``indexes/library.smi``, as earlier versions
    built it) is still used when it holds a build and the new-style folder does not exist.
    """
    name = Path(molecules).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    folder = indexes_dir(run_dir) / Path(name).stem
    legacy = indexes_dir(run_dir) / name
    if not folder.exists() and any((legacy / f).is_file() for f in (MANIFEST, BUILD_STATE)):
        return legacy
    return folder


def remove_partial_chunks(folder: Path) -> None:
    """Delete the temporary files of chunk writes a killed worker left unfinished (finished chunks stay)."""
    for leftover in (folder / CHUNKS).glob(".chunk-*.tmp"):
        leftover.unlink(missing_ok=True)


def _identity(run_dir: Path, source: Path, chunk_size: int, smiles_column: str | None, id_column: str | None) -> dict:
    checkpoint = run_checkpoint(run_dir)
    results = load_run(run_dir)
    return {
        "format": INDEX_FORMAT,
        "run": str(run_dir.resolve()),
        "checkpoint_sha256": sha256_file(checkpoint),
        "spec_hash": results.get("spec_hash"),
        "source": {"path": str(source.resolve()), "format": library_format(source), "bytes": source.stat().st_size,
                   "sha256": sha256_file(source)},
        "chunk_size": chunk_size,
        "smiles_column": smiles_column,
        "id_column": id_column,
    }


def _same_build(old: dict, new: dict) -> list[str]:
    """The fields in which two build identities differ (paths may move; content may not)."""
    differ = [k for k in ("format", "checkpoint_sha256", "chunk_size", "smiles_column", "id_column") if old.get(k) != new.get(k)]
    if {k: old.get("source", {}).get(k) for k in ("bytes", "sha256")} != {k: new["source"][k] for k in ("bytes", "sha256")}:
        differ.append("source file content")
    return differ


def clear_index_dir(folder: Path) -> None:
    """Remove what a build wrote into ``folder`` (only its own files), and the folder if then empty."""
    for name in OWN_FILES:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def prepare_build(run_dir: str | Path, molecules: str | Path, *, out: str | Path | None = None, index_type: str = "auto",
                  chunk_size: int = 4096, batch_size: int = 256, smiles_column: str | None = None,
                  id_column: str | None = None, fresh: bool = False, device: str = "auto", progress: bool = True,
                  log: Callable[[str], None] = print) -> BuildPlan:
    """Check the run, the molecule file and the output folder; write ``build.json``; return the plan.

    Nothing is written when a check fails. An unfinished build of the same inputs is resumed; one
    of other inputs, or a finished index, is refused unless ``fresh``.
    """
    if chunk_size < 1 or batch_size < 1:
        raise RunError(f"--chunk-size and --batch-size must be positive (got {chunk_size}, {batch_size})")
    run_dir, source = Path(run_dir), Path(molecules)
    folder = Path(out) if out else default_index_dir(run_dir, source)
    library_format(source)  # unknown extension: fail before reading anything
    if not source.is_file():
        raise DataError(f"{source}: molecule file not found" if not source.exists() else f"{source}: not a file")
    identity = _identity(run_dir, source, chunk_size, smiles_column, id_column)
    records = count_records(source, smiles_column, id_column)
    if records == 0:
        raise DataError(f"{source}: no molecules in the file")
    choose_index(index_type, records, 256)  # an index type this library cannot have fails before any work
    state_path = folder / BUILD_STATE
    if folder.exists() and not folder.is_dir():
        raise RunError(f"--out {folder} is a file, not a folder")
    if fresh and folder.is_dir():
        clear_index_dir(folder)
    elif (folder / MANIFEST).is_file():
        raise RunError(f"{folder} already holds a finished index; use --fresh to rebuild it or --out for another folder")
    elif state_path.is_file():
        try:
            old = read_sealed_json(state_path)
        except (OSError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, IntegrityError) else f"{state_path} is unreadable ({exc})"
            raise RunError(f"{reason}; use --fresh to start the build over") from None
        differ = _same_build(old, identity)
        if differ:
            raise RunError(f"{folder} holds an unfinished build of other inputs (different {', '.join(differ)}); "
                           f"use --fresh to discard it or --out for another folder")
        remove_partial_chunks(folder)
        done = sum(1 for p in (folder / CHUNKS).glob("chunk-*.npz") if p.is_file())
        log(f"resuming the build in {folder}: {done} of {math.ceil(records / chunk_size)} chunks already embedded")
    elif folder.is_dir() and any(folder.iterdir()):
        raise RunError(f"--out {folder} is a non-empty folder that is not a molzoo index; choose another folder")
    atomic_write_text(state_path, sealed_json({**identity, "records": records}, indent=2))
    return BuildPlan(str(run_dir), str(source), str(folder), records, chunk_size, batch_size, smiles_column, id_column,
                     device, progress)


# -- embedding --------------------------------------------------------------------------------
@dataclass
class Embedded:
    """Embeddings of the molecules that could be read, and why the others could not."""

    embeddings: "np.ndarray"  # [n, d] float32, L2-normalized
    kept: list[int]  # positions (in the input) of the embedded molecules
    smiles: list[str]  # their SMILES
    failures: list[tuple[int, str]]  # (position, reason) of the skipped ones


def embed_smiles(model, items: Sequence[str | Record], batch_size: int, device: "torch.device") -> Embedded:
    """Featurize and embed molecules (SMILES strings or file records); unreadable ones are reported, not fatal."""
    import numpy as np
    import torch
    from torch_geometric.data import Batch

    graphs, kept, smiles, failures = [], [], [], []
    for i, item in enumerate(items):
        try:
            text = record_smiles(item) if isinstance(item, Record) else item
            if not text or not text.strip():
                raise ValueError("empty SMILES")
            graphs.append(model.molecule_encoder.featurize(text))
        except Exception as exc:  # noqa: BLE001 - any featurizer failure means "cannot read this molecule"
            failures.append((i, str(exc) or type(exc).__name__))
            continue
        kept.append(i)
        smiles.append(text)
    out = []
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start : start + batch_size]).to(device)
            with autocast(device):
                out.append(model.embed_molecules(batch).float().cpu())
    dim = out[0].shape[1] if out else 0
    embeddings = torch.cat(out).numpy() if out else np.zeros((0, dim), dtype=np.float32)
    return Embedded(embeddings.astype(np.float32, copy=False), kept, smiles, failures)


def _chunks(records: Iterator[Record], size: int) -> Iterator[tuple[int, list[Record]]]:
    chunk: list[Record] = []
    number = 0
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield number, chunk
            number, chunk = number + 1, []
    if chunk:
        yield number, chunk


def _write_chunk(path: Path, records: list[Record], embedded: Embedded) -> None:
    import numpy as np

    kept = [records[i] for i in embedded.kept]
    skipped = [(records[i], reason) for i, reason in embedded.failures]
    save_sealed_npz(path, dict(embeddings=embedded.embeddings, rows=np.array([r.row for r in kept], dtype=np.int64),
                               ids=np.array([r.id for r in kept], dtype=str), smiles=np.array(embedded.smiles, dtype=str),
                               skipped_rows=np.array([r.row for r, _ in skipped], dtype=np.int64),
                               skipped_ids=np.array([r.id for r, _ in skipped], dtype=str),
                               skipped_reasons=np.array([reason for _, reason in skipped], dtype=str)))


def _chunk_done(path: Path) -> bool:
    """Whether chunk ``path`` is on disk and intact (a damaged one is removed, with a warning, to be embedded again)."""
    if not path.is_file():
        return False
    try:
        load_sealed_npz(path)
        return True
    except IntegrityError as exc:
        warnings.warn(f"{exc}; embedding that chunk again")
        path.unlink(missing_ok=True)
        return False


def embed_shard(plan: BuildPlan, rank: int = 0, world: int = 1) -> int:
    """Embed the chunks ``i`` with ``i % world == rank`` that are not on disk yet; returns how many were embedded."""
    import torch
    from tqdm.auto import tqdm

    mine = [c for c in range(plan.chunks) if c % world == rank and not _chunk_done(plan.chunk_path(c))]
    if not mine:
        return 0
    device = plan.device
    if device == "auto" and torch.cuda.is_available():
        device = f"cuda:{rank % torch.cuda.device_count()}"
    if world > 1 and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    trained = load_trained_run(plan.run_dir, device)
    todo = set(mine)
    total = sum(plan.chunk_records(c) for c in mine)
    label = f"embedding molecules (worker {rank + 1}/{world})" if world > 1 else "embedding molecules"
    with tqdm(total=total, desc=label, unit="mol", disable=not plan.progress, position=rank, smoothing=0.1) as bar:
        for number, records in _chunks(iter_records(plan.source, plan.smiles_column, plan.id_column), plan.chunk_size):
            if number not in todo:
                continue
            try:
                embedded = embed_smiles(trained.model, records, plan.batch_size, trained.device)
                _write_chunk(plan.chunk_path(number), records, embedded)
            except Exception as exc:  # noqa: BLE001 - named with its chunk, the cause kept as __cause__
                where = f"worker {rank + 1}/{world} failed on" if world > 1 else "failed on"
                raise RunError(f"{where} chunk {number} (rows {records[0].row}-{records[-1].row} of {plan.source}): "
                               f"{_reason(exc)} ({KEPT})") from exc
            bar.update(len(records))
            todo.discard(number)
            if not todo:
                break
    if todo:
        raise DataError(f"{plan.source}: ended before chunk {min(todo)}: the file changed during the build")
    return len(mine)


def _reason(exc: BaseException) -> str:
    """An exception as one line: the message of the project's own errors, else ``Type: first line``."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if isinstance(exc, (RunError, DataError)) else f"{type(exc).__name__}: {text}".rstrip(": ")


def _worker_failure(rank: int, world: int, exc: BaseException) -> str:
    """A worker's error as the one-line message the parent raises."""
    reason = _reason(exc)
    return reason if reason.startswith(f"worker {rank + 1}/") else f"worker {rank + 1}/{world}: {reason}"


def _spawned_worker(rank: int, plan: BuildPlan, world: int, errors) -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # as the CLI does in the parent
    try:
        embed_shard(plan, rank, world)
    except Exception as exc:
        errors.put((rank, _worker_failure(rank, world, exc)))  # the parent reports it as a one-line error
        raise


def _spawn_workers(plan: BuildPlan, workers: int) -> None:
    """Embed with ``workers`` local processes; a failing worker becomes one :class:`RunError` naming it and its chunk.

    When one worker fails, :func:`torch.multiprocessing.spawn` stops the others; chunks they
    finished are kept (the build resumes from them) and their half-written chunk files are removed.
    """
    import logging

    import torch.multiprocessing as mp

    errors = mp.get_context("spawn").SimpleQueue()
    # torch logs "Terminating process … via signal SIGTERM" when it stops the others after a failure:
    # the failure is reported below as one line instead
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)
    try:
        mp.spawn(_spawned_worker, args=(plan, workers, errors), nprocs=workers, join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
        reported = {}
        while not errors.empty():
            rank, message = errors.get()
            reported.setdefault(rank, message)
        remove_partial_chunks(Path(plan.out_dir))
        message = reported.get(exc.error_index) or next(iter(reported.values()), None) or _died(exc, workers)
        raise RunError(message if KEPT in message else f"{message} ({KEPT})") from None
    finally:
        spawn_log.setLevel(level)


def _died(exc, workers: int) -> str:
    """A worker that ended without a Python error (e.g. killed by the kernel's out-of-memory killer)."""
    signal = getattr(exc, "signal_name", None)
    if signal is None:
        return f"worker {exc.error_index + 1}/{workers} exited with code {getattr(exc, 'exit_code', '?')}"
    hint = ": out of memory? try fewer --workers or a smaller --batch-size" if signal == "SIGKILL" else ""
    return f"worker {exc.error_index + 1}/{workers} was killed by {signal}{hint}"


# -- merging ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexChoice:
    """A faiss index description: factory string, search parameters, IVF list count (0: not IVF)."""

    type: str
    factory: str
    search_params: dict[str, int]
    nlist: int = 0


def min_count(index_type: str) -> int:
    """The fewest vectors ``index_type`` can be trained on (ivf-pq's codebooks; the others adapt their list count)."""
    return PQ_MIN_COUNT if index_type == "ivf-pq" else 1


def choose_index(index_type: str, count: int, dim: int) -> IndexChoice:
    """What to build for ``index_type`` at ``count`` vectors of ``dim``.

    ``auto`` is exact (``Flat``) up to :data:`AUTO_EXACT_MAX`, ``ivf-sq8`` above. IVF indexes use
    ``sqrt(count)`` lists rounded up to a power of two (at least 39 training vectors per list);
    ``ivf-pq`` codes each vector in ``dim / 4`` bytes (at most 64).
    """
    if index_type == "auto":
        index_type = "flat" if count <= AUTO_EXACT_MAX else "ivf-sq8"
    nlist = max(1, min(2 ** math.ceil(math.log2(max(1.0, math.sqrt(count)))), count // 39))
    nprobe = {"nprobe": min(DEFAULT_NPROBE, nlist)}
    if index_type == "flat":
        return IndexChoice("flat", "Flat", {})
    if index_type == "hnsw":
        return IndexChoice("hnsw", "HNSW32", {"efSearch": DEFAULT_EF_SEARCH})
    if index_type == "ivf-sq8":
        return IndexChoice("ivf-sq8", f"IVF{nlist},SQ8", nprobe, nlist)
    if index_type == "ivf-pq":
        if count < min_count(index_type):
            raise RunError(f"--index-type ivf-pq needs at least {min_count(index_type):,} molecules to train its codebooks "
                           f"(this library has {count:,}); use flat or ivf-sq8")
        m = next(m for m in (dim // 4, dim // 8, dim // 16, 1) if m and m <= 64 and dim % m == 0)
        return IndexChoice("ivf-pq", f"IVF{nlist},PQ{m}", nprobe, nlist)
    raise RunError(f"--index-type {index_type!r}: choose from {', '.join(INDEX_TYPES)}")


def training_fraction(choice: IndexChoice, count: int) -> float:
    """The share of ``count`` vectors an IVF index trains its k-means on (>= 64 per list, >= 65,536 in all)."""
    return min(1.0, max(64 * choice.nlist, 65536) / count)


def _load_chunk(path: Path, *keys: str) -> dict:
    try:
        data = load_sealed_npz(path)
        return {k: data[k] for k in keys or data}
    except (IntegrityError, KeyError) as exc:
        raise RunError(f"chunk {path} is unreadable ({exc}); rerun the same command to embed it again") from None


def _clean(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _chunk_totals(plan: BuildPlan) -> tuple[int, int, list[tuple[int, str, str]]]:
    """How many vectors the chunks hold, their dimension, and the skipped molecules (row, id, reason)."""
    count, dim, skipped = 0, 0, []
    for c in range(plan.chunks):
        chunk = _load_chunk(plan.chunk_path(c), "embeddings", "skipped_rows", "skipped_ids", "skipped_reasons")
        count += len(chunk["embeddings"])
        dim = dim or (chunk["embeddings"].shape[1] if len(chunk["embeddings"]) else 0)
        skipped += zip(chunk["skipped_rows"].tolist(), chunk["skipped_ids"].tolist(), chunk["skipped_reasons"].tolist())
    return count, dim, skipped


def _index_for(plan: BuildPlan, index_type: str, count: int, dim: int, log: Callable[[str], None]) -> tuple[IndexChoice, str | None]:
    """The index to build for ``count`` vectors and a note when ``index_type`` had too few to train on
    (then the index that ``auto`` picks)."""
    if count >= min_count(index_type):
        return choose_index(index_type, count, dim), None
    choice = choose_index("auto", count, dim)
    note = (f"only {count:,} of the {plan.records:,} molecules could be read, fewer than the {min_count(index_type):,} "
            f"--index-type {index_type} needs to train; built a {choice.type} index instead")
    log(f"note: {note}")
    return choice, note


def _train_index(index, plan: BuildPlan, choice: IndexChoice, count: int, log: Callable[[str], None]) -> None:
    """IVF: k-means on a seeded random sample of the embeddings (nothing to do for an exact index)."""
    import numpy as np

    if index.is_trained:
        return
    rng = np.random.default_rng(0)
    share = training_fraction(choice, count)
    sample = []
    for c in range(plan.chunks):
        emb = _load_chunk(plan.chunk_path(c), "embeddings")["embeddings"]
        if len(emb):  # a chunk of only unreadable molecules has no vectors
            sample.append(emb[rng.random(len(emb)) < share])
    log(f"training {choice.factory} on {sum(len(s) for s in sample):,} of {count:,} embeddings")
    index.train(np.ascontiguousarray(np.concatenate(sample)))


def _write_index_files(plan: BuildPlan, index, count: int, skipped: list[tuple[int, str, str]]) -> None:
    """Add every chunk's vectors to ``index`` and write it, the molecule table with its row offsets, and
    the skipped molecules (each file atomically)."""
    import faiss
    import numpy as np

    folder = Path(plan.out_dir)
    offsets = np.zeros(count, dtype=np.int64)
    row = 0
    with atomic_path(folder / MOLECULES) as tmp, open(tmp, "wb") as out:
        out.write(b"row\tid\tsmiles\n")
        for c in range(plan.chunks):
            chunk = _load_chunk(plan.chunk_path(c))
            if len(chunk["rows"]):
                index.add(np.ascontiguousarray(chunk["embeddings"]))
            for source_row, ident, smiles in zip(chunk["rows"].tolist(), chunk["ids"].tolist(), chunk["smiles"].tolist()):
                offsets[row] = out.tell()
                out.write(f"{source_row}\t{_clean(ident)}\t{_clean(smiles)}\n".encode())
                row += 1
    with atomic_path(folder / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    buffer = io.BytesIO()
    np.save(buffer, offsets)
    atomic_write_bytes(folder / OFFSETS, buffer.getvalue())
    atomic_write_text(folder / SKIPPED, "row\tid\treason\n" + "".join(f"{r}\t{_clean(i)}\t{_clean(w)}\n" for r, i, w in skipped))


def _build_record(plan: BuildPlan, workers: int, embed_s: float, embed_cpu_s: float, merge_s: float, embedded: int) -> dict:
    """The manifest's ``build`` section: settings, timings and the throughput of this invocation's embedding
    (times kept to 0.1 ms, so that a small build's rate agrees with its recorded time)."""
    return {"workers": workers, "chunk_size": plan.chunk_size, "batch_size": plan.batch_size, "device": plan.device,
            "cpu_count": os.cpu_count(), "embed_s": round(embed_s, 4), "embed_cpu_s": round(embed_cpu_s, 4),
            "merge_s": round(merge_s, 2),
            # throughput of the embedding done by this invocation (a resumed build embedded only the rest)
            "molecules_embedded": embedded,
            "molecules_per_s": round(embedded / embed_s, 1) if embed_s > 0 and embedded else None,
            "cpu_ms_per_molecule": round(1e3 * embed_cpu_s / embedded, 3) if embedded else None,
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def merge_chunks(plan: BuildPlan, index_type: str = "auto", *, embed_s: float = 0.0, embed_cpu_s: float = 0.0,
                 embedded: int | None = None, workers: int = 1, log: Callable[[str], None] = print) -> dict:
    """Build the FAISS index and metadata from every chunk, write the manifest, remove the chunks.

    ``embed_s`` / ``embed_cpu_s`` are the wall and CPU time of the embedding this invocation did,
    ``embedded`` how many records it embedded (default: all; fewer when a build was resumed): the
    manifest's throughput is ``embedded / embed_s``. When fewer molecules could be read than
    ``index_type`` needs to train (ivf-pq), the index that ``auto`` picks is built instead, with a note.
    """
    import faiss

    started = time.time()
    folder = Path(plan.out_dir)
    missing = [c for c in range(plan.chunks) if not plan.chunk_path(c).is_file()]
    if missing:
        raise RunError(f"{folder}: {len(missing)} of {plan.chunks} chunks are not embedded yet (first: {missing[0]}); "
                       f"rerun the same command to finish them")
    count, dim, skipped = _chunk_totals(plan)
    if count == 0:
        first = "; ".join(f"row {r} ({i}): {why}" for r, i, why in skipped[:3])
        clear_index_dir(folder)
        raise DataError(f"{plan.source}: none of the {plan.records} molecules could be read ({first})")
    choice, note = _index_for(plan, index_type, count, dim, log)
    index = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
    _train_index(index, plan, choice, count, log)
    _write_index_files(plan, index, count, skipped)
    merge_s = time.time() - started
    try:
        identity = read_sealed_json(folder / BUILD_STATE)
    except (OSError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, IntegrityError) else f"{folder / BUILD_STATE} is unreadable ({exc})"
        raise RunError(f"{reason}; use --fresh to start the build over") from None
    manifest = {
        **identity,
        "files": {name: sha256_file(folder / name) for name in HASHED_FILES},
        "index": {"type": choice.type, "factory": choice.factory, "metric": "inner_product", "dim": dim, "count": count,
                  "search_params": choice.search_params, "bytes": (folder / INDEX_FILE).stat().st_size,
                  "requested_type": index_type, **({"note": note} if note else {})},
        "molecules": {"records": plan.records, "indexed": count, "skipped": len(skipped)},
        "build": _build_record(plan, workers, embed_s, embed_cpu_s, merge_s, plan.records if embedded is None else embedded),
    }
    atomic_write_text(folder / MANIFEST, sealed_json(manifest, indent=2))
    shutil.rmtree(folder / CHUNKS, ignore_errors=True)
    (folder / BUILD_STATE).unlink(missing_ok=True)
    if skipped:
        lines = [f"  row {r} ({i}): {why}" for r, i, why in skipped[:REPORT_LIMIT]]
        more = f"\n  and {len(skipped) - REPORT_LIMIT} more" if len(skipped) > REPORT_LIMIT else ""
        log(f"skipped {len(skipped)} of {plan.records} molecules (listed in {folder / SKIPPED}):\n" + "\n".join(lines) + more)
    return manifest


# -- the command ------------------------------------------------------------------------------
def _distributed_world() -> int:
    """The number of ranks when launched by ``torchrun`` (``WORLD_SIZE``), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def build_index(run_dir: str | Path, molecules: str | Path, *, out: str | Path | None = None, index_type: str = "auto",
                workers: int = 1, chunk_size: int = 4096, batch_size: int = 256, smiles_column: str | None = None,
                id_column: str | None = None, fresh: bool = False, device: str = "auto", progress: bool = True,
                log: Callable[[str], None] = print) -> Path | None:
    """Embed ``molecules`` with the run's model and build the index (see the module docstring).

    Returns the index folder (``None`` on torchrun ranks other than 0).
    """
    if index_type not in INDEX_TYPES:
        raise RunError(f"--index-type {index_type!r}: choose from {', '.join(INDEX_TYPES)}")
    if workers < 1:
        raise RunError(f"--workers must be at least 1 (got {workers})")
    options = dict(out=out, index_type=index_type, chunk_size=chunk_size, batch_size=batch_size, smiles_column=smiles_column, id_column=id_column,
                   fresh=fresh, device=device, progress=progress, log=log)
    if _distributed_world() > 1:
        return _build_distributed(run_dir, molecules, index_type, options, log)
    plan = prepare_build(run_dir, molecules, **options)
    embedded = sum(plan.chunk_records(c) for c in plan.pending())
    started, cpu_started = time.time(), cpu_seconds()
    if workers == 1:
        embed_shard(plan)
    else:
        log(f"embedding {plan.records:,} molecules in {plan.chunks} chunks with {workers} worker processes")
        _spawn_workers(plan, workers)
    return _finish(plan, index_type, time.time() - started, cpu_seconds() - cpu_started, embedded, workers, log)


def _finish(plan: BuildPlan, index_type: str, embed_s: float, embed_cpu_s: float, embedded: int, workers: int,
            log: Callable[[str], None]) -> Path:
    manifest = merge_chunks(plan, index_type, embed_s=embed_s, embed_cpu_s=embed_cpu_s, embedded=embedded, workers=workers,
                            log=log)
    index, build = manifest["index"], manifest["build"]
    if embedded:
        rate = (f"embedding {embedded:,} molecules {embed_s:.1f} s ({build['molecules_per_s'] or 0:,.0f} mol/s, "
                f"{build['cpu_ms_per_molecule']} CPU-ms/mol)")
    else:
        rate = "every chunk was embedded before"
    log(f"index: {plan.out_dir} ({index['factory']}, {index['count']:,} molecules, {index['bytes'] / 2**20:.1f} MiB); "
        f"{rate}, merge {build['merge_s']:.1f} s, peak memory {build['peak_rss_mib']:,.0f} MiB")
    return Path(plan.out_dir)


def _build_distributed(run_dir, molecules, index_type: str, options: dict, log: Callable[[str], None]) -> Path | None:
    """The torchrun path: rank 0 plans, every rank embeds its chunks, rank 0 merges after a gloo barrier."""
    from datetime import timedelta

    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(hours=24))
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        box: list[object] = [None]
        if rank == 0:
            try:
                plan = prepare_build(run_dir, molecules, **options)
                box = [(plan, sum(plan.chunk_records(c) for c in plan.pending()))]
            except (RunError, DataError) as exc:
                box = [exc]
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], BaseException):
            raise box[0]
        plan, embedded = box[0]  # type: ignore[misc]
        started, cpu_started = time.time(), cpu_seconds()
        failure = None
        try:
            embed_shard(plan, rank, world)
        except Exception as exc:  # noqa: BLE001 - every rank learns of it below instead of waiting at a barrier
            failure = _worker_failure(rank, world, exc)
        outcomes: list[object] = [None] * world
        dist.all_gather_object(outcomes, failure)
        failed = next((o for o in outcomes if o is not None), None)
        if failed is not None:
            if rank != 0:
                raise SystemExit(2)  # rank 0 alone prints the error
            raise RunError(failed if KEPT in failed else f"{failed} ({KEPT})")
        if rank != 0:
            return None
        return _finish(plan, index_type, time.time() - started, cpu_seconds() - cpu_started, embedded, world, log)  # rank 0's CPU
    finally:
        dist.destroy_process_group()


# -- loading ----------------------------------------------------------------------------------
def rebuild_hint(folder: Path, manifest: dict | None = None) -> str:
    """How to rebuild the index in ``folder`` (with the run and molecule file its manifest names)."""
    manifest = manifest if isinstance(manifest, dict) else {}
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    run, source = manifest.get("run", "RUN"), source.get("path", "FILE")
    return f"rebuild it with `zoo index {run} --molecules {source} --out {folder} --fresh`"


def read_sealed_json(path: Path) -> dict:
    """A JSON object written with :func:`zoo.cache.sealed_json`, checked against its content hash
    (``ValueError`` naming the file when it is damaged)."""
    data = path.read_bytes()
    verified = check_sealed_bytes(path, data, warn=False)  # IntegrityError is a ValueError
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if not verified:
        warn_unverified(path)
    return unseal(obj)


@dataclass
class LibraryIndex:
    """A built index: the FAISS index, its manifest, and row -> molecule lookups."""

    folder: Path
    manifest: dict
    index: object  # faiss.Index
    offsets: "np.ndarray"

    def __len__(self) -> int:
        return int(self.manifest["index"]["count"])

    def set_search_params(self, **params: int) -> None:
        """``nprobe`` (IVF) / ``efSearch`` (HNSW); ignored by exact indexes."""
        import faiss

        space = faiss.ParameterSpace()
        for name, value in params.items():
            if value is not None and name in self.manifest["index"]["search_params"]:
                space.set_index_parameter(self.index, name, int(value))

    def search(self, queries: "np.ndarray", k: int) -> tuple["np.ndarray", "np.ndarray"]:
        """``(scores, rows)`` of the ``k`` best molecules per query (rows of -1 pad short results)."""
        import numpy as np

        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self)))

    def molecules(self, rows: Sequence[int]) -> list[dict]:
        """``{"row", "id", "smiles"}`` of index rows (reads only those lines)."""
        out = []
        with open(self.folder / MOLECULES, "rb") as f:
            for r in rows:
                f.seek(int(self.offsets[r]))
                source_row, ident, smiles = f.readline().decode("utf-8").rstrip("\n").split("\t")
                out.append({"row": int(source_row), "id": ident, "smiles": smiles})
        return out


def load_index(folder: str | Path, checkpoint_sha256: str | None = None) -> LibraryIndex:
    """Open a finished index; :class:`RunError` for a missing, unfinished, corrupt or mismatched one."""
    import faiss
    import numpy as np

    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        if (folder / BUILD_STATE).is_file():
            raise RunError(f"{folder}: the index build is not finished; rerun the same `zoo index` command to resume it")
        raise RunError(f"{folder}: no library index here (no {MANIFEST}); build one with `zoo index RUN --molecules FILE`")
    try:
        manifest = read_sealed_json(manifest_path)
        count = int(manifest["index"]["count"])
    except IntegrityError as exc:
        raise RunError(f"{exc}; {rebuild_hint(folder)}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{manifest_path} is unreadable ({exc}); {rebuild_hint(folder)}") from None
    rebuild = rebuild_hint(folder, manifest)
    if manifest.get("format") != INDEX_FORMAT:
        raise RunError(f"{manifest_path}: format {manifest.get('format')!r}, expected {INDEX_FORMAT!r}")
    if checkpoint_sha256 and manifest.get("checkpoint_sha256") != checkpoint_sha256:
        raise RunError(f"{folder} was built with another checkpoint than the run's current best weights; {rebuild}")
    recorded = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}  # none: an older, unverified index
    for name, digest in recorded.items():
        if name not in HASHED_FILES or not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise RunError(f"{folder / name} is corrupt or missing: its sha256 differs from the one in {manifest_path}; {rebuild}")
    try:
        index = faiss.read_index(str(folder / INDEX_FILE))
        offsets = np.load(folder / OFFSETS, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError with its C++ message
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split("Error: ")[-1]
        raise RunError(f"{folder}: the index files are unreadable ({reason}); {rebuild}") from None
    if index.ntotal != count or len(offsets) != count:
        raise RunError(f"{folder}: the index holds {index.ntotal} vectors and {len(offsets)} molecules, the manifest says "
                       f"{count}; {rebuild}")
    library = LibraryIndex(folder, manifest, index, offsets)
    library.set_search_params(**manifest["index"].get("search_params", {}))
    return library

