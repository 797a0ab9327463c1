"""The ``chebi20`` task: the ChEBI-20 loader (text-molecule pairs) with strict input checks.

Files (tab separated, first line a header, no quoting):
``train.txt`` / ``validation.txt`` / ``test.txt`` with columns ``CID SMILES description``, and,
where the train descriptions are unavailable, ``train_molecules.tsv`` with ``CID SMILES``.

Where the data is looked for: an explicit ``data_dir``, then ``$ZOO_DATA_DIR``, then the user
cache (:func:`default_cache_data_dir`); a directory qualifies if it holds ``validation.txt`` and
``test.txt``. With ``download=True`` the canonical MolT5 files are fetched into the user cache
(checksums verified; a failed download leaves nothing behind).

Protocols:

* ``canonical`` (``train.txt`` present): train on train pairs, select models on validation.
* ``offline-low-data`` (only ``train_molecules.tsv``): train on the validation pairs minus a
  seeded hold-out (``holdout_fraction``, ``holdout_seed``) used for selection. Not comparable
  with results trained on the 26,407 train pairs.

K-fold cross-validation (``folds=K``, ``fold=i``; ``zoo sweep/ablate --folds K``): the selection set
is fold ``i`` of ``K`` seeded (``holdout_seed``) folds of the training pairs (offline: the validation
pairs; canonical: the train pairs), training on the other ``K - 1`` (``holdout_fraction`` unused).

Test pairs are never in ``train``/``select`` (a train/validation pair whose CID is also in test is
dropped and recorded in ``skipped``). The "all" gallery is every molecule of train + validation +
test, de-duplicated by CID (first occurrence wins), in that order.

Bad input policy: a missing file, a wrong header, a row with the wrong number of fields, an
empty CID/SMILES/description, or a CID repeated within one file raises :class:`DataError`
naming the file, the 1-based line number and the field. A SMILES that RDKit cannot parse
(checked with :func:`zoo.api.parse_smiles`) is not fatal: the row is skipped, recorded in
``ChEBI20.skipped`` and reported in a single :class:`DataWarning` per load.
"""

from __future__ import annotations

import csv
import os
import random
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zoo.api import (
    DataError,
    Molecule,
    Pair,
    SmilesError,
    TaskBase,
    TaskData,
    atomic_write_text,
    cache_root,
    cv_fold,
    parse_smiles,
    sha256_file,
    warn_skipped,
)

DATA_ENV = "ZOO_DATA_DIR"
BASE_URL = "https://raw.githubusercontent.com/blender-nlp/MolT5/main/ChEBI-20_data/"
SPLIT_FILES = ("train.txt", "validation.txt", "test.txt")
TRAIN_MOLECULES = "train_molecules.tsv"
PAIR_COLUMNS = ("CID", "SMILES", "description")
MOLECULE_COLUMNS = ("CID", "SMILES")
PUBLISHED_SHA256 = {
    "validation.txt": "f410b58e6825986577d01b4f0c14b59ed61c1343a15118ba584de4bbcea1508c",
    "test.txt": "91776254b54ef13ad701ede0ecdbd7bcd30c19a66e52aa34a6dac8d0e7306d72",
    "train_molecules.tsv": "bf8388ceb0b0769b86a26ba0e0f247701dcc93254067007fca40d28192d37f47",
}
TRAIN_ROWS = 26407


def default_cache_data_dir() -> Path:
    """``<cache_root()>/data/chebi20`` (``$ZOO_CACHE_DIR`` or ``$XDG_CACHE_HOME/molzoo`` or ``~/.cache/molzoo``)."""
    return cache_root() / "data" / "chebi20"


def _qualifies(d: Path) -> bool:
    return (d / "validation.txt").is_file() and (d / "test.txt").is_file()


def _download_to(url: str, path: Path) -> None:
    """Stream ``url`` into ``path`` (replaced in tests)."""
    with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
        for block in iter(lambda: r.read(1 << 20), b""):
            f.write(block)


def _count_rows(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as f:
        return sum(1 for line in f if line.strip()) - 1


def download_chebi20(dest: str | Path | None = None) -> Path:
    """Download the canonical ChEBI-20 files into ``dest`` (default: the user cache dir).

    All files are fetched to temporary names, checked (sha256 of validation/test, 26,407 rows
    in train), then moved into place; on any failure every temporary file is removed. The
    sha256 of each file is recorded in ``SHA256SUMS``.
    """
    dest = Path(dest) if dest is not None else default_cache_data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    tmps = {name: dest / f".{name}.download" for name in SPLIT_FILES}
    try:
        sums = {}
        for name, tmp in tmps.items():
            url = BASE_URL + name
            try:
                _download_to(url, tmp)
            except OSError as e:
                raise DataError(f"downloading {url} failed: {e}") from e
            sums[name] = sha256_file(tmp)
            expected = PUBLISHED_SHA256.get(name)
            if expected and sums[name] != expected:
                raise DataError(f"{url}: sha256 {sums[name]} does not match the published {expected}")
        rows = _count_rows(tmps["train.txt"])
        if rows != TRAIN_ROWS:
            raise DataError(f"{BASE_URL}train.txt: {rows} rows, expected {TRAIN_ROWS}")
        for name, tmp in tmps.items():
            os.replace(tmp, dest / name)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    atomic_write_text(dest / "SHA256SUMS", "".join(f"{sums[n]}  {n}\n" for n in SPLIT_FILES))
    return dest


def find_data_dir(data_dir: str | Path | None = None, download: bool = False) -> Path:
    """The first qualifying ChEBI-20 directory: ``data_dir``, ``$ZOO_DATA_DIR``, the user cache.

    An explicit ``data_dir`` must qualify itself (no fallback). With ``download=True`` and
    nothing found, the canonical files are downloaded into the user cache.
    """
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        if _qualifies(d):
            return d
        raise DataError(f"ChEBI-20 data directory {d} has no validation.txt and test.txt "
                        f"(it needs validation.txt, test.txt and train.txt or {TRAIN_MOLECULES})")
    looked = []
    if os.environ.get(DATA_ENV):
        looked.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    looked.append(("user cache", default_cache_data_dir()))
    for _, d in looked:
        if _qualifies(d):
            return d
    if download:
        return download_chebi20(default_cache_data_dir())
    places = "\n".join(f"  - {what}: {d}" for what, d in looked)
    if not os.environ.get(DATA_ENV):
        places = f"  - ${DATA_ENV}: not set\n" + places
    raise DataError(
        "ChEBI-20 data not found (a directory with validation.txt and test.txt). Looked in:\n"
        f"{places}\n"
        f"Fix: pass --data-dir DIR, set {DATA_ENV}=DIR, or use --download to fetch the canonical "
        f"files into {default_cache_data_dir()}."
    )


def _read_table(path: Path, columns: Sequence[str], validate_smiles: bool, skipped: list[dict] | None) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a checked TSV file; unparseable SMILES rows go to ``skipped``."""
    try:
        return _read_rows(path, columns, validate_smiles, skipped)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    except csv.Error as e:  # e.g. a field over the csv module's size limit
        raise DataError(f"{path}: not a readable tab-separated file ({e})") from None


def _read_rows(path: Path, columns: Sequence[str], validate_smiles: bool, skipped: list[dict] | None) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[tuple[int, list[str]]] = []
    seen: dict[str, int] = {}
    bad: list[dict] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header with columns {list(columns)}")
        header = [h.strip() for h in header]
        if tuple(header) != tuple(columns):
            raise DataError(f"{path}, row 1: header columns {header} do not match the expected {list(columns)}")
        for fields in reader:
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            if len(fields) != len(columns):
                raise DataError(f"{path}, row {line}: expected {len(columns)} tab-separated fields "
                                f"{list(columns)}, saw {len(fields)}: {fields[:4]!r}")
            fields = [x.strip() for x in fields]
            for name, value in zip(columns, fields):
                if not value:
                    raise DataError(f"{path}, row {line}: empty {name}")
            cid, smiles = fields[0], fields[1]
            if cid in seen:
                raise DataError(f"{path}: duplicate CID {cid} in rows {seen[cid]} and {line}")
            seen[cid] = line
            if validate_smiles:
                try:
                    parse_smiles(smiles)
                except SmilesError:
                    bad.append(dict(file=str(path), row=line, cid=cid, field="SMILES", reason=f"unparseable SMILES {smiles!r}"))
                    continue
            rows.append((line, fields))
    if skipped is None:
        warn_skipped(bad, "ChEBI-20 rows", "CID")
    else:
        skipped.extend(bad)
    return rows


def read_pairs(path: str | Path, validate_smiles: bool = False, skipped: list[dict] | None = None) -> list[Pair]:
    """Pairs from a ``CID SMILES description`` TSV file.

    With ``validate_smiles`` unparseable rows are dropped and appended to ``skipped`` (or, if
    ``skipped`` is None, reported in one :class:`DataWarning`).
    """
    return [Pair(*r) for _, r in _read_table(Path(path), PAIR_COLUMNS, validate_smiles, skipped)]


def read_molecules(path: str | Path, validate_smiles: bool = False, skipped: list[dict] | None = None) -> list[Molecule]:
    """Molecules from a ``CID SMILES`` TSV file (``train_molecules.tsv``); see :func:`read_pairs`."""
    return [Molecule(*r) for _, r in _read_table(Path(path), MOLECULE_COLUMNS, validate_smiles, skipped)]


@dataclass
class ChEBI20(TaskData):
    """The loaded dataset: training/selection/test pairs plus the "all" retrieval galleries."""

    def summary(self) -> dict:
        """Counts per part, protocol, checksums (and whether they match the published ones)."""
        return {**super().summary(),
                "published_checksum_match": {n: self.checksums[n] == h for n, h in PUBLISHED_SHA256.items() if n in self.checksums}}


def data_checksums(data_dir: str | Path | None = None) -> dict[str, str]:
    """The checksums :func:`load_chebi20` records for the data folder it would load, without parsing it."""
    d = find_data_dir(data_dir)
    names = ["validation.txt", "test.txt", "train.txt" if (d / "train.txt").is_file() else TRAIN_MOLECULES]
    return {name: sha256_file(d / name) for name in names if (d / name).is_file()}


def _holdout(pairs: list[Pair], fraction: float, seed: int, source: Path) -> tuple[list[Pair], list[Pair]]:
    n_select = round(len(pairs) * fraction)
    if n_select < 1 or n_select > len(pairs) - 1:
        raise DataError(f"{source}: hold-out fraction {fraction} of {len(pairs)} pairs leaves "
                        f"{n_select} for selection and {len(pairs) - n_select} for training; each needs at least 1")
    chosen = set(random.Random(seed).sample(range(len(pairs)), n_select))
    train = [p for i, p in enumerate(pairs) if i not in chosen]
    select = [p for i, p in enumerate(pairs) if i in chosen]
    return train, select


def load_chebi20(
    data_dir: str | Path | None = None,
    holdout_fraction: float = 0.1,
    holdout_seed: int = 0,
    download: bool = False,
    validate_smiles: bool = True,
    folds: int = 0,
    fold: int = 0,
) -> ChEBI20:
    """Load ChEBI-20 (see the module docstring for where, which protocol, the cross-validation folds and
    bad-input policy)."""
    if not 0.0 < holdout_fraction < 1.0:
        raise DataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    d = find_data_dir(data_dir, download=download)
    skipped: list[dict] = []
    checksums: dict[str, str] = {}

    lines: dict[tuple[str, str], int] = {}  # (file name, CID) -> line number

    def pairs(name: str) -> list[Pair]:
        checksums[name] = sha256_file(d / name)
        rows = _read_table(d / name, PAIR_COLUMNS, validate_smiles, skipped)
        lines.update(((name, r[0]), line) for line, r in rows)
        return [Pair(*r) for _, r in rows]

    validation, test = pairs("validation.txt"), pairs("test.txt")
    if (d / "train.txt").is_file():
        protocol = "canonical"
        train_pairs = pairs("train.txt")
        train_mols = [Molecule(p.cid, p.smiles) for p in train_pairs]
    elif (d / TRAIN_MOLECULES).is_file():
        protocol = "offline-low-data"
        train_pairs = []
        checksums[TRAIN_MOLECULES] = sha256_file(d / TRAIN_MOLECULES)
        train_mols = read_molecules(d / TRAIN_MOLECULES, validate_smiles, skipped)
    else:
        raise DataError(f"{d}: neither train.txt nor {TRAIN_MOLECULES} found; the train molecules are "
                        f"needed for the full retrieval gallery (use --download for the canonical files)")

    test_cids = {p.cid for p in test}

    def no_test(ps: list[Pair], name: str) -> list[Pair]:
        for p in ps:
            if p.cid in test_cids:
                skipped.append(dict(file=str(d / name), row=lines[name, p.cid], cid=p.cid, field="CID", reason="CID also in test.txt"))
        return [p for p in ps if p.cid not in test_cids]

    validation_clean = no_test(validation, "validation.txt")
    if folds:
        pool = no_test(train_pairs, "train.txt") if protocol == "canonical" else validation_clean
        train, select = cv_fold(pool, folds, fold, holdout_seed, "task")
    elif fold:
        cv_fold(validation_clean, folds, fold, holdout_seed, "task")  # the one-line error for a fold without folds
    elif protocol == "canonical":
        train, select = no_test(train_pairs, "train.txt"), validation_clean
    else:
        train, select = _holdout(validation_clean, holdout_fraction, holdout_seed, d / "validation.txt")

    gallery: dict[str, Molecule] = {}
    for m in [*train_mols, *(Molecule(p.cid, p.smiles) for p in validation + test)]:
        gallery.setdefault(m.cid, m)
    warn_skipped(skipped, "ChEBI-20 rows", "CID")
    return ChEBI20(
        data_dir=d, protocol=protocol, train=train, select=select, test=test,
        gallery=list(gallery.values()), descriptions=[*train_pairs, *validation, *test],
        checksums=checksums, skipped=skipped,
        unlabeled=[] if protocol == "canonical" else [m for m in train_mols if m.cid not in test_cids | {p.cid for p in validation}],
    )


# -- the task ---------------------------------------------------------------------------------------
class ChEBI20Task(TaskBase):
    """The ``chebi20`` task (registered by ``zoo.plugins.tasks``): ChEBI-20 text<->molecule retrieval,
    scored on the ``all`` gallery (every molecule of train + validation + test), the ``test`` gallery (the
    test pairs themselves) and ``inbatch:N`` blocks of N test pairs. Option: ``holdout_seed`` (the seed
    of the offline protocol's hold-out, and of the cross-validation folds; its fraction is ``train.holdout_fraction``),
    ``folds``/``fold`` (K-fold cross-validation over the training pairs: select on fold ``fold`` of ``folds``;
    ``folds = 0``, the default, is the hold-out)."""

    name = "chebi20"
    title = "ChEBI-20"
    galleries = ("all", "test")
    protocols = ("canonical", "offline-low-data")

    def load(self, data_dir: str | Path | None = None, *, holdout_fraction: float = 0.1, holdout_seed: int = 0,
             folds: int = 0, fold: int = 0, download: bool = False) -> ChEBI20:
        return load_chebi20(data_dir, holdout_fraction=holdout_fraction, holdout_seed=holdout_seed, download=download,
                            folds=folds, fold=fold)

    def data_checksums(self, data_dir: str | Path | None = None, **_options) -> dict[str, str]:
        return data_checksums(data_dir)

    def protocol_note(self, protocol: str) -> str:
        return f"protocol: {protocol}" + (": trained on the validation pairs minus a hold-out; test never used for "
                                          "training or selection" if protocol == "offline-low-data" else "")
