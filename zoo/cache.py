"""On-disk caches keyed by content hash, and atomic file writes.

Every write goes to a temporary file in the destination directory, is fsynced, then moved into
place with ``os.replace``: readers see either the old file or the complete new one, never a
partial file, and a failed write leaves no temporary file behind.

Files the zoo reads back record a content hash when written (:func:`atomic_save_tensors`,
:func:`sealed_json`, :func:`save_sealed_npz`): the sha256 of the file's own bytes, with the hash
field written as 64 zeros, stored in the file (safetensors metadata, a JSON key) or, for npz
files, the sha256 of the arrays. Readers verify it (:func:`read_safetensors`,
:func:`check_sealed_bytes`, :func:`load_sealed_npz`): a changed byte raises :class:`IntegrityError`,
which the callers turn into their one-line error (or, for caches, a recomputation); a file
written before hashes were recorded loads with an :class:`UnverifiedFileWarning`.

Featurized molecules are cached as one safetensors file per (featurizer key, SMILES list):
``cache_root()/graphs/<content_hash(featurizer_key, smiles)>.safetensors``, holding a
:class:`PackedGraphs` (all graphs concatenated per attribute plus per-attribute pointers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import FeaturizeError, IntegrityError, OutputPathError, UnverifiedFileWarning
from zoo.jobs import available_cpus

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch_geometric.data import Batch, Data

CACHE_ENV = "ZOO_CACHE_DIR"
#: processes for one run's preprocessing (:func:`default_workers`)
WORKERS_ENV = "ZOO_WORKERS"
PACKED_FORMAT = "molzoo.packed_graphs/1"


def folder_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used (or created) as a folder to write into, or ``None`` if it can."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe.parent != probe:  # the nearest existing folder decides
        probe = probe.parent
    if not probe.is_dir():
        return "it is a file, not a folder" if probe == path else f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "it is not writable" if probe == path else f"{probe} is not writable"
    return None


def _cache_location() -> tuple[Path, str]:
    """The cache folder and how it was chosen (for messages)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser(), f"{CACHE_ENV}={os.environ[CACHE_ENV]}"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base).expanduser() / "molzoo"
    return root, f"the cache folder {root}"


def cache_root() -> Path:
    """``$ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/molzoo``, else ``~/.cache/molzoo``; an
    :class:`OutputPathError` names the variable to change when that cannot be a folder."""
    root, how = _cache_location()
    problem = None if root.is_dir() else folder_problem(root)  # an existing folder may be read-only: reads still work
    if problem:
        raise OutputPathError(f"{how} is not a usable cache folder ({problem}); set {CACHE_ENV} to a folder you can write")
    return root


def _encode(part: object) -> bytes:
    if isinstance(part, bytes):
        tag, payload = b"b", part
    elif isinstance(part, str):
        tag, payload = b"s", part.encode("utf-8")
    elif isinstance(part, Path):
        tag, payload = b"p", str(part).encode("utf-8")
    else:  # numbers, None, lists, tuples, dicts: canonical JSON
        tag = b"j"
        payload = json.dumps(part, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return tag + str(len(payload)).encode() + b":" + payload


def data_fingerprint(checksums: Mapping[str, str]) -> str:
    """A short name for a set of data files (the ``data=`` of leaderboard tables): 12 hex digits of
    the sha256 of their checksums as sorted JSON."""
    return hashlib.sha256(json.dumps(dict(checksums), sort_keys=True).encode()).hexdigest()[:12]


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_hash(*parts: object) -> str:
    """sha256 hex digest over a stable, length-framed encoding of ``parts``.

    Strings, bytes and paths are hashed as such; anything else as JSON with sorted keys
    (a non-JSON-serializable part raises ``TypeError``).
    """
    h = hashlib.sha256()
    for part in parts:
        h.update(_encode(part))
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file next to ``path`` to write to (the usual permissions, not mkstemp's 0600);
    fsynced and moved into place when the block succeeds, removed when it fails."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        problem = folder_problem(path.parent) or exc.strerror or str(exc)
        root, how = _cache_location()
        fix = f"set {CACHE_ENV} to a folder you can write ({how})" if path.is_relative_to(root) else "choose a location you can write"
        raise OutputPathError(f"cannot write {path}: {problem}; {fix}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # after writing: some writers (safetensors) replace the file with a 0600 one
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def lock_path_of(path: str | Path) -> Path:
    """``DIR/.NAME.lock``: the lock file of cache file ``DIR/NAME`` (kept: removing a lock file races with its users)."""
    return Path(path).with_name(f".{Path(path).name}.lock")


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (``.NAME.lock`` beside it, ``fcntl.flock``) for a
    read-modify-write of a shared cache file: processes started at once (a sweep's workers, torchrun
    ranks) then merge their entries one after another instead of the last writer dropping the others'.
    Plain writes need no lock: they are atomic (:func:`atomic_path`). Where ``fcntl`` is missing the
    block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    lock_path = lock_path_of(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temp file next to ``path``, fsync it, then ``os.replace``."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_tensors(tensors: dict[str, "torch.Tensor"], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` to ``path`` atomically (tensors made contiguous), its content
    hash recorded in the metadata (see :func:`read_safetensors`)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**(metadata or {}), **_SEAL_FIELDS}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=meta)
        _seal_safetensors(tmp)

    _atomic(path, write)


# -- content hashes -----------------------------------------------------------------------------
HASH_KEY = "content_sha256"
SCHEME_KEY = "molzoo_integrity"
SCHEME = "content_sha256 is the sha256 of this file with content_sha256 written as 64 zeros"
_ZEROS = b"0" * 64
_SEAL_FIELDS = {HASH_KEY: _ZEROS.decode(), SCHEME_KEY: SCHEME}
_HASH_FIELD = re.compile(rb'"content_sha256"\s*:\s*"([^"]*)"')
_MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit


def _zeroed(head: bytes) -> tuple[bytes, str | None]:
    """``head`` with its recorded hash written as zeros, and that hash (None where none is recorded)."""
    m = _HASH_FIELD.search(head)
    if m is None:
        return head, None
    return head[: m.start(1)] + _ZEROS + head[m.end(1) :], m.group(1).decode("ascii", "replace")


def _is_sealed(head: bytes) -> bool:
    """Whether ``head`` claims a recorded hash (either seal key present: one flipped key name is still caught)."""
    return f'"{HASH_KEY}"'.encode() in head or f'"{SCHEME_KEY}"'.encode() in head


def warn_unverified(path: str | Path, hint: str = "") -> None:
    """The one-line warning about a file written before content hashes were recorded."""
    warnings.warn(f"{path} has no recorded content hash (written before molzoo recorded them): loading it unverified{hint}",
                  UnverifiedFileWarning, stacklevel=3)


def _verify(path: Path, head: bytes, rest: Iterable[bytes], unverified_hint: str | None = "") -> bool:
    """Check ``head + rest`` (a file's bytes) against the hash recorded in ``head``: True when verified,
    False when no hash is recorded (an older file; warns, adding ``unverified_hint``, unless it is
    None), :class:`IntegrityError` when they differ."""
    zeroed, recorded = _zeroed(head)
    if recorded is None:
        if _is_sealed(head):
            raise IntegrityError(f"{path} is corrupt: its content hash record is damaged")
        if unverified_hint is not None:
            warn_unverified(path, unverified_hint)
        return False
    h = hashlib.sha256(zeroed)
    for block in rest:
        h.update(block)
    if h.hexdigest() != recorded:
        raise IntegrityError(f"{path} is corrupt: its bytes do not match the content sha256 recorded in it")
    return True


def check_sealed_bytes(path: str | Path, data: bytes, warn: bool = True) -> bool:
    """Verify a sealed text file's bytes (see :func:`sealed_json`); True when verified, False when it
    records no hash (warns, unless ``warn`` is false), :class:`IntegrityError` when it does not match."""
    return _verify(Path(path), data, (), "" if warn else None)


def sealed_json(obj: Mapping[str, Any], **dumps: Any) -> str:
    """``json.dumps`` of ``obj`` and a newline, with its content hash as the first keys (``dumps``: e.g. ``indent=2``)."""
    if HASH_KEY in obj or SCHEME_KEY in obj:
        obj = unseal(obj)
    data = (json.dumps({**_SEAL_FIELDS, **obj}, **dumps) + "\n").encode("utf-8")
    digest = hashlib.sha256(data).hexdigest().encode()
    m = _HASH_FIELD.search(data)
    assert m is not None
    return (data[: m.start(1)] + digest + data[m.end(1) :]).decode("utf-8")


def unseal(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without the content-hash keys."""
    return {k: v for k, v in obj.items() if k not in (HASH_KEY, SCHEME_KEY)}


def _seal_safetensors(path: Path) -> None:
    """Write the content hash over the zero placeholder in the header of a just-written file."""
    with open(path, "r+b") as f:
        prefix = f.read(8)
        head = prefix + f.read(int.from_bytes(prefix, "little"))
        m = _HASH_FIELD.search(head)
        assert m is not None and m.group(1) == _ZEROS
        h = hashlib.sha256(head)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        f.seek(m.start(1))
        f.write(h.hexdigest().encode())


#: Appended to the warning about a cache file without a recorded hash.
CACHE_UNVERIFIED_HINT = " (delete it to have it recomputed with one)"


def read_safetensors(path: str | Path, tensors: bool = True,
                     unverified_hint: str = "") -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
    """The tensors (none with ``tensors=False``) and metadata (content-hash keys removed) of a
    safetensors file, after checking its bytes against the hash recorded by
    :func:`atomic_save_tensors`. :class:`IntegrityError` for a changed, truncated or foreign
    file; a file without a recorded hash loads with an :class:`UnverifiedFileWarning`."""
    path = Path(path)
    try:
        return _read_safetensors(path, tensors, unverified_hint)
    except OSError as exc:
        raise IntegrityError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _read_safetensors(path: Path, tensors: bool, unverified_hint: str) -> tuple[dict[str, "torch.Tensor"], dict[str, str]]:
    from safetensors import safe_open

    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 2 <= n <= min(size - 8, _MAX_SAFETENSORS_HEADER):
            raise IntegrityError(f"{path} is not a readable safetensors file (corrupt or truncated: {size} bytes)")
        head = prefix + f.read(n)
        try:
            header = json.loads(head[8:])
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
        except ValueError as exc:
            raise IntegrityError(f"{path} is not a readable safetensors file (corrupt header: {exc})") from None
        _verify(path, head, iter(lambda: f.read(1 << 20), b""), unverified_hint)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            loaded = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types (only unverified files get here)
        raise IntegrityError(f"{path} is not a readable safetensors file ({_first_line(exc)})") from None
    return loaded, unseal(meta)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def arrays_sha256(arrays: Mapping[str, "np.ndarray"]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(_encode(name) + _encode([a.dtype.str, list(a.shape)]) + _encode(a.tobytes()))
    return h.hexdigest()


def save_sealed_npz(path: str | Path, arrays: Mapping[str, "np.ndarray"]) -> None:
    """``np.savez`` to ``path`` atomically with the arrays' content hash (see :func:`load_sealed_npz`)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{HASH_KEY: np.array(arrays_sha256(arrays))})
    atomic_write_bytes(path, buffer.getvalue())


def load_sealed_npz(path: str | Path) -> dict[str, "np.ndarray"]:
    """Every array of an npz file written by :func:`save_sealed_npz`, after checking their content
    hash; :class:`IntegrityError` for a changed or unreadable file (one without a hash warns)."""
    import numpy as np

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - zipfile/numpy raise many types for a damaged file
        raise IntegrityError(f"{path} is not a readable npz file ({_first_line(exc)})") from None
    recorded = arrays.pop(HASH_KEY, None)
    if recorded is None:
        warn_unverified(path)
    elif str(recorded) != arrays_sha256(arrays):
        raise IntegrityError(f"{path} is corrupt: its arrays do not match their recorded content sha256")
    return arrays


def _cat_dim(key: str) -> int:
    return 1 if key == "edge_index" or key.endswith("_index") else 0


class PackedGraphs:
    """Many torch_geometric ``Data`` graphs packed as concatenated tensors + pointers.

    Each tensor attribute ``key`` is concatenated over graphs (``*_index`` along dim 1, kept
    per-graph, i.e. not offset; everything else along dim 0) with ``ptr[key]`` of length
    ``n + 1``. ``graphs[i]`` returns a ``Data`` whose tensors are views (no copy). Saved as one
    safetensors file.
    """

    def __init__(self, data: dict[str, "torch.Tensor"], ptr: dict[str, "torch.Tensor"], scalar: Iterable[str] = ()):
        self.data = data
        self.ptr = ptr
        self.scalar = frozenset(scalar)  # keys whose per-graph values were 0-dim tensors
        self.keys = sorted(data)
        self._ptr = {k: p.tolist() for k, p in ptr.items()}
        lengths = {len(p) - 1 for p in self._ptr.values()}
        if len(lengths) > 1:
            raise ValueError(f"PackedGraphs pointers disagree on the number of graphs: {sorted(lengths)}")
        self._n = lengths.pop() if lengths else 0

    @classmethod
    def pack(cls, graphs: Sequence["Data | Mapping[str, Any]"]) -> "PackedGraphs":
        """Pack graphs that all have the same tensor attributes: ``Data`` or mappings of attribute to tensor or
        numpy array (:func:`featurize_molecules`'s ``arrays``); the same graphs give the same tensors either way."""
        import numpy as np
        import torch

        graphs = [{k: torch.from_numpy(v if v.flags.c_contiguous else v.copy()) if isinstance(v, np.ndarray) else v for k, v in g.items()}
                  if isinstance(g, Mapping) else g for g in graphs]

        if not graphs:
            return cls({}, {})
        keys = sorted(graphs[0].keys())
        data, ptr, scalar = {}, {}, set()
        for i, g in enumerate(graphs):
            if sorted(g.keys()) != keys:
                raise ValueError(f"graph {i} has attributes {sorted(g.keys())}, graph 0 has {keys}")
        for key in keys:
            dim = _cat_dim(key)
            parts = []
            for i, g in enumerate(graphs):
                t = g[key]
                if not isinstance(t, torch.Tensor):
                    raise TypeError(f"graph {i} attribute {key!r} is {type(t).__name__}, not a tensor")
                if t.dim() == 0:
                    scalar.add(key)
                    t = t.reshape(1)
                parts.append(t)
            sizes = torch.tensor([0] + [p.shape[dim] for p in parts], dtype=torch.int64)
            data[key] = torch.cat(parts, dim=dim)
            ptr[key] = torch.cumsum(sizes, 0)
        return cls(data, ptr, scalar)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> "Data":
        from torch_geometric.data import Data

        n = self._n
        if not -n <= i < n:
            raise IndexError(f"graph index {i} out of range for {n} graphs")
        i %= n
        out = {}
        for key in self.keys:
            a, b = self._ptr[key][i], self._ptr[key][i + 1]
            t = self.data[key]
            t = t[:, a:b] if _cat_dim(key) == 1 else t[a:b]
            out[key] = t.reshape(()) if key in self.scalar else t
        return Data(**out)

    def select(self, indices: Iterable[int]) -> list["Data"]:
        """The graphs at ``indices``, in that order."""
        return [self[int(i)] for i in indices]

    def batch(self, indices: Sequence[int] | "torch.Tensor") -> "Batch":
        """``Batch.from_data_list(self.select(indices))``, built by slicing the packed tensors directly.

        One ``index_select`` per attribute instead of one ``Data`` per graph: the same tensors
        (``*_index`` offset by the nodes before each graph, ``batch`` and ``ptr`` vectors, 0-dim
        attributes stacked to ``[B]``, ``num_nodes`` summed) at a small fraction of the cost,
        which dominates embedding a 33k-molecule gallery. Node counts come from a stored
        ``num_nodes`` attribute, else from ``x``; packs with neither fall back to PyG.
        """
        import torch
        from torch_geometric.data import Batch

        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        n = self._n
        if idx.numel() == 0:
            raise ValueError("cannot batch zero graphs")
        if bool(((idx < -n) | (idx >= n)).any()):
            raise IndexError(f"graph index out of range for {n} graphs: {idx[(idx < -n) | (idx >= n)][:5].tolist()}")
        idx = torch.where(idx < 0, idx + n, idx)
        if "num_nodes" in self.scalar:
            node_counts = self.data["num_nodes"].index_select(0, idx).to(torch.long)
        elif "x" in self.data:
            node_counts = self.ptr["x"][idx + 1] - self.ptr["x"][idx]
        else:
            return Batch.from_data_list(self.select(idx.tolist()))
        node_offsets = torch.cumsum(node_counts, 0) - node_counts
        out: dict[str, torch.Tensor] = {}
        for key in self.keys:
            if key == "num_nodes":
                continue
            ptr = self.ptr[key]
            starts = ptr[idx]
            counts = ptr[idx + 1] - starts
            # rows of graph j: starts[j] .. starts[j] + counts[j], concatenated
            shift = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
            rows = torch.arange(int(counts.sum()), dtype=torch.long) + shift
            dim = _cat_dim(key)
            t = self.data[key].index_select(dim, rows)
            if dim == 1:  # per-graph node indices -> batch node indices
                t = t + torch.repeat_interleave(node_offsets, counts).to(t.dtype)
            out[key] = t
        graph_ids = torch.arange(idx.numel(), dtype=torch.long)
        batch = Batch(**out, batch=torch.repeat_interleave(graph_ids, node_counts),
                      ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(node_counts, 0)]))
        if "num_nodes" in self.scalar:
            batch.num_nodes = int(node_counts.sum())
        return batch

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Save atomically as one safetensors file (``metadata`` is stored alongside).

        Float tensors holding only 0/1 (one-hot features) are stored as uint8 and restored to
        their dtype by :meth:`load`.
        """
        import torch

        tensors, binary = {}, {}
        for k, v in self.data.items():
            if v.is_floating_point() and v.numel() and bool(((v == 0) | (v == 1)).all()):
                binary[k], v = str(v.dtype).removeprefix("torch."), v.to(torch.uint8)  # one-hot: 4x smaller
            tensors[f"data.{k}"] = v
        tensors.update({f"ptr.{k}": v for k, v in self.ptr.items()})
        meta = dict(metadata or {})
        meta.update(format=PACKED_FORMAT, num_graphs=str(self._n), scalar=json.dumps(sorted(self.scalar)),
                    binary=json.dumps(binary, sort_keys=True))
        atomic_save_tensors(tensors, path, meta)

    @classmethod
    def load(cls, path: str | Path) -> "PackedGraphs":
        """Load a file written by :meth:`save` (checked against its content hash: :class:`IntegrityError`)."""
        import torch

        tensors, meta = read_safetensors(path, unverified_hint=CACHE_UNVERIFIED_HINT)
        if meta.get("format") != PACKED_FORMAT:
            raise ValueError(f"{path}: not a PackedGraphs file (format {meta.get('format')!r})")
        data = {k[5:]: v for k, v in tensors.items() if k.startswith("data.")}
        for k, dtype in json.loads(meta.get("binary", "{}")).items():
            data[k] = data[k].to(getattr(torch, dtype))
        ptr = {k[4:]: v for k, v in tensors.items() if k.startswith("ptr.")}
        return cls(data, ptr, json.loads(meta.get("scalar", "[]")))


def graphs_cache_path(smiles: Sequence[str], featurizer_key: str, root: Path | None = None) -> Path:
    """Where :func:`featurize_molecules` caches these molecules."""
    return Path(root or cache_root()) / "graphs" / f"{content_hash(featurizer_key, list(smiles))}.safetensors"


def default_workers() -> int:
    """Processes for one run's CPU-bound preprocessing (RDKit featurization, OPSIN-name and relation keys):
    ``$ZOO_WORKERS`` (``zoo run --workers``; the launchers set it to each run's share of the cores), else
    every core this process may use. :func:`map_in_processes` still stays in one process where a pool
    would not pay for itself (few items, or a timed first batch that says the rest is quick)."""
    given = os.environ.get(WORKERS_ENV, "").strip()
    if not given:
        return available_cpus()
    try:
        return max(1, int(given))
    except ValueError:
        raise OutputPathError(f"{WORKERS_ENV}={given!r}: expected a whole number of processes") from None


#: below this many items a process pool costs more than it saves
PARALLEL_MIN_ITEMS = 512
#: the first :data:`PROBE_ITEMS` items run here, timed; when the rest would take less than this many
#: seconds in one process it stays here (starting a worker that imports RDKit costs ~0.3-1 s on a busy machine)
PARALLEL_MIN_SECONDS = 3.0
PROBE_ITEMS = 64
_POOL_FUNCTION: list[Callable[[Any], Any]] = []


@dataclass(frozen=True)
class _ChunkError:
    index: int
    item: Any
    message: str


def _pool_chunk(chunk: tuple[int, Sequence[Any]]) -> list[Any]:
    start, items = chunk
    function = _POOL_FUNCTION[0]
    out = []
    for offset, item in enumerate(items):
        try:
            out.append(function(item))
        except Exception as exc:  # noqa: BLE001 - named with its global index, raised in the parent
            return [_ChunkError(start + offset, item, str(exc) or type(exc).__name__)]
    return out


def _here(function: Callable[[Any], Any], chunk: tuple[int, Sequence[Any]]) -> list[Any]:
    _POOL_FUNCTION[:] = [function]
    try:
        return _pool_chunk(chunk)
    finally:
        _POOL_FUNCTION.clear()


def _pool_worker(function: Callable[[Any], Any]) -> None:
    """A pool worker: one thread (the pool is the parallelism), ``function`` for every chunk."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _POOL_FUNCTION[:] = [function]


def _failed(out: list[Any]) -> bool:
    return bool(out) and isinstance(out[0], _ChunkError)


def map_in_processes(function: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None,
                     on_error: Callable[[int, Any, str], Exception] | None = None,
                     progress: Callable[[int], None] | None = None) -> list[Any]:
    """``[function(x) for x in items]`` over ``workers`` processes (default :func:`default_workers`), in
    order, so the result is the one of a single process. It runs here with one worker, fewer than
    :data:`PARALLEL_MIN_ITEMS` items, or when the first :data:`PROBE_ITEMS` items, timed here, show that
    the rest would take less than :data:`PARALLEL_MIN_SECONDS` in this process. The workers come from a
    fork server (a fresh process, not a fork of this one: a fork of a process whose threads hold locks —
    torch's OpenMP pool, tqdm — can hang), so ``function`` (a module-level function, a bound method of a
    picklable object) and the items and results must pickle; ``function`` is sent once per worker, and
    whatever unpickling it imports (torch: seconds) each worker imports: give a function from a module
    with light imports, returning numpy arrays rather than tensors (a tensor travels through a shared-memory
    file descriptor each). The first failing item raises ``on_error(index, item, message)`` (default: a
    ``RuntimeError``); ``progress(n)`` is called with the number of items finished after each chunk."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    workers = default_workers() if workers is None else max(1, workers)
    chunks_out: list[list[Any]] = []
    if workers == 1 or len(items) < PARALLEL_MIN_ITEMS:
        chunks_out.append(_here(function, (0, items)))
        rest: Sequence[Any] = ()
    else:  # the probe: the first items here, timed (after the first, which pays for lazy imports and set-up)
        chunks_out.append(_here(function, (0, items[:1])))
        started = time.perf_counter()
        if not _failed(chunks_out[0]):
            chunks_out.append(_here(function, (1, items[1:PROBE_ITEMS])))
        per_item = (time.perf_counter() - started) / max(1, min(PROBE_ITEMS, len(items)) - 1)
        if progress:
            progress(sum(map(len, chunks_out)))
        rest = () if any(map(_failed, chunks_out)) else items[PROBE_ITEMS:]
        if per_item * len(rest) < PARALLEL_MIN_SECONDS:
            chunks_out.append(_here(function, (PROBE_ITEMS, rest)))
            rest = ()
    if rest:
        offset = len(items) - len(rest)
        size = max(64, -(-len(rest) // (workers * 8)))  # ~8 chunks per worker: balanced, little overhead
        chunks = [(offset + start, rest[start:start + size]) for start in range(0, len(rest), size)]
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        done = 0
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_pool_worker, initargs=(function,))
        processes: dict = {}
        try:
            for out in pool.map(_pool_chunk, chunks):
                processes.update(getattr(pool, "_processes", None) or {})  # to name a dead worker's exit code
                chunks_out.append(out)
                done += 1
                if progress:
                    progress(len(out))
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory) or a result could not be read
            codes = sorted({p.exitcode for p in processes.values()} - {None, 0})
            lines = [line for line in str(exc.__cause__ or "").splitlines() if line.strip() not in ("", "'''")]
            cause = f"; {lines[-1].strip()}" if lines else ""  # e.g. OSError: [Errno 24] Too many open files
            warnings.warn(f"preprocessing worker processes failed ({exc}{cause}; exit codes {codes or 'none'}); "
                          f"finishing the remaining {len(chunks) - done} of {len(chunks)} chunks in this process")
            for chunk in chunks[done:]:
                chunks_out.append(_here(function, chunk))
                if progress:
                    progress(len(chunks_out[-1]))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    results: list[Any] = []
    for out in chunks_out:
        if _failed(out):
            error = out[0]
            raise (on_error or (lambda i, item, m: RuntimeError(f"item {i} ({item!r}): {m}")))(error.index, error.item, error.message)
        results.extend(out)
    return results


@dataclass(frozen=True)
class _DataAsArrays:
    """``featurize(smiles)``'s ``Data`` as ``{attribute: numpy array}`` (cheaper to pack, and to send back from
    a worker process than tensors, which torch moves through one shared-memory file descriptor each)."""

    featurize: Callable[[str], "Data"]

    def __call__(self, smiles: str) -> dict[str, Any]:
        graph = self.featurize(smiles)
        return {key: _as_numpy(graph[key]) for key in graph.keys()}


def _as_numpy(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and value.dtype != torch.bfloat16:  # numpy has no bfloat16: sent as a tensor
        return value.numpy()
    return value


def featurize_molecules(
    smiles: list[str],
    featurize: Callable[[str], "Data"],
    featurizer_key: str,
    root: Path | None = None,
    progress: bool = True,
    desc: str = "featurizing",
    workers: int | None = None,
    arrays: Callable[[str], Mapping[str, "np.ndarray"]] | None = None,
) -> PackedGraphs:
    """Featurize ``smiles`` into a :class:`PackedGraphs`, cached on disk.

    The cache key covers ``featurizer_key`` (name + version of the featurizer) and the exact
    SMILES list; a hit is loaded without calling ``featurize``. An unreadable cache file is
    recomputed (with a warning). A failing molecule raises :class:`FeaturizeError`. A miss is
    featurized over ``workers`` processes (default :func:`default_workers`), byte-identical
    to one process. ``arrays`` (a molecule encoder's optional ``featurize_arrays``) computes the same
    attributes as numpy arrays without torch: it is used instead of ``featurize`` when given (workers
    that import neither torch nor PyG; without it, each worker's ``Data`` comes back as numpy arrays).
    Processes asking at once wait for the one computing it (a lock on the file).
    """
    from tqdm.auto import tqdm

    path = graphs_cache_path(smiles, featurizer_key, root)
    with locked(path):  # runs started at once on a cold cache: one featurizes, the others load its file
        if path.exists():
            try:
                packed = PackedGraphs.load(path)
                if len(packed) == len(smiles):
                    return packed
                warnings.warn(f"graph cache {path} holds {len(packed)} graphs, expected {len(smiles)}; recomputing")
            except Exception as e:  # corrupt or foreign file: recompute
                warnings.warn(f"graph cache {path} is unreadable ({e}); recomputing")
        with tqdm(total=len(smiles), desc=desc, disable=not progress, unit="mol") as bar:
            graphs = map_in_processes(
                arrays or _DataAsArrays(featurize), smiles, workers, progress=bar.update,
                on_error=lambda i, s, m: FeaturizeError(f"cannot featurize molecule {i} (SMILES {s!r}): {m}"))
            bar.update(len(smiles) - bar.n)
        packed = PackedGraphs.pack(graphs)
        packed.save(path, {"featurizer_key": featurizer_key, "content_hash": path.stem})
        return packed
