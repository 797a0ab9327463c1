"""The ``pairs`` task: your own text-molecule pairs, scored like ChEBI-20.

``zoo run tfidf_fp --set eval.task=pairs --set task.path=pairs.csv`` reads a CSV, TSV or JSONL file
(gzipped too: ``.csv.gz``) with one pair per row (``id``, ``smiles``, ``text`` columns by default), or an
SDF whose records carry the description in a property (``text_column``) and the id in a property
(``id_column``) or the record's title. The pairs are split by a ``split_column`` (``train`` /
``valid`` / ``test``) or, without one, at random with ``fractions`` (train, valid, test) and
``split_seed``. ``extra_molecules`` names a file of molecules without descriptions (same formats, or a
``.smi`` file of ``SMILES [id]`` lines) added to the ``all`` gallery as decoys.

Bad input is refused with a :class:`~zoo.api.DataError` naming the file, the row and the field: a
missing file or column, an empty id/SMILES/text, an id seen twice (in the pairs, or a decoy with a
pair's id), an unknown split value, fractions that do not sum to 1 or leave a part empty. A SMILES RDKit
cannot parse is not fatal: the row is skipped, counted in ``skipped`` (the results' ``skipped_rows``) and
reported in one :class:`~zoo.api.DataWarning`.

Relative paths are read from ``data_dir`` (``--data-dir``; a finished run: the folder it recorded),
else from the current folder.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from zoo.api import DataError, Molecule, Pair, SmilesError, TaskBase, TaskData, parse_smiles, sha256_file, warn_skipped

FORMATS = ("auto", "csv", "tsv", "jsonl", "sdf", "smi")
#: split column values, by the part they name
SPLIT_VALUES = {"train": "train", "training": "train", "valid": "select", "validation": "select", "val": "select",
                "dev": "select", "select": "select", "heldout": "select", "test": "test"}


def file_format(path: Path, given: str) -> str:
    """``given``, or what ``path``'s extensions say (``.csv``, ``.tsv``/``.tab``/``.txt``, ``.jsonl``/``.ndjson``,
    ``.sdf``/``.sd``, ``.smi``; an outer ``.gz`` is looked through)."""
    if given not in FORMATS:
        raise DataError(f"task.format={given!r}: choose from {', '.join(FORMATS)}")
    if given != "auto":
        return given
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".sdf": "sdf", ".sd": "sdf", ".smi": "smi"}
    if suffixes and suffixes[-1] in by_suffix:
        return by_suffix[suffixes[-1]]
    raise DataError(f"{path}: cannot tell the format from its name; set task.format to one of {', '.join(FORMATS[1:])}")


def _open_text(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def records(path: Path, fmt: str, needed: Sequence[str], optional: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """``(row number, {column: value})`` of each record of ``path`` (rows counted from 1, a header being row 1;
    SDF: record numbers), with the ``needed`` columns checked to exist (close matches named otherwise)."""
    try:
        if fmt in ("csv", "tsv"):
            yield from _table_records(path, "," if fmt == "csv" else "\t", needed, optional)
        elif fmt == "jsonl":
            yield from _jsonl_records(path, needed)
        elif fmt == "sdf":
            yield from _sdf_records(path, needed)
        else:
            yield from _smi_records(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    except (OSError, EOFError, csv.Error) as exc:  # a damaged gzip stream, a field over csv's size limit
        raise DataError(f"{path}: unreadable ({exc})") from None


def _missing(path: Path, columns: Sequence[str], needed: Sequence[str], where: str) -> None:
    import difflib

    missing = [c for c in needed if c not in columns]
    if missing:
        hints = "".join(f" Did you mean {', '.join(m)} for {c!r}?" for c in missing
                        if (m := difflib.get_close_matches(c, list(columns), n=2, cutoff=0.5)))
        raise DataError(f"{path}, {where}: no column {', '.join(map(repr, missing))}; columns: {', '.join(columns) or '(none)'}."
                        f"{hints} Name yours with task.id_column, task.smiles_column, task.text_column")


def _table_records(path: Path, delimiter: str, needed: Sequence[str], optional: Sequence[str]):
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header row with columns {', '.join(needed)}")
        header = [h.strip() for h in header]
        _missing(path, header, needed, "row 1 (header)")
        for fields in reader:
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise DataError(f"{path}, row {reader.line_num}: expected {len(header)} fields ({', '.join(header)}), "
                                f"saw {len(fields)}")
            yield reader.line_num, {h: x.strip() for h, x in zip(header, fields)}


def _jsonl_records(path: Path, needed: Sequence[str]):
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}, row {line_no}: not a JSON object ({exc})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}, row {line_no}: not a JSON object")
            _missing(path, list(obj), needed, f"row {line_no}")
            yield line_no, {k: "" if v is None else str(v).strip() for k, v in obj.items()}


def _sdf_records(path: Path, needed: Sequence[str]):
    from rdkit import Chem, RDLogger

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    RDLogger.DisableLog("rdApp.*")
    try:
        stream = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")
        with stream:
            for number, mol in enumerate(Chem.ForwardSDMolSupplier(stream, sanitize=True), start=1):
                if mol is None:  # unparsable: counted as a skip by the caller (no SMILES)
                    yield number, {"__unparsable__": "1"}
                    continue
                props = {k: str(v).strip() for k, v in mol.GetPropsAsDict(includePrivate=False).items()}
                props.setdefault("_Name", mol.GetProp("_Name").strip() if mol.HasProp("_Name") else "")
                props["__smiles__"] = Chem.MolToSmiles(mol)
                yield number, props
    finally:
        RDLogger.EnableLog("rdApp.*")


def _smi_records(path: Path):
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if parts:
                yield line_no, {"__smiles__": parts[0], "_Name": parts[1] if len(parts) > 1 else f"line{line_no}"}


class _Reader:
    """Rows of one file as ``(row, id, smiles, text)``, strict about empty fields and repeated ids; rows with a
    SMILES RDKit cannot parse go to ``skipped``."""

    def __init__(self, path: Path, fmt: str, id_column: str, smiles_column: str, skipped: list[dict]) -> None:
        self.path, self.fmt, self.id_column, self.smiles_column, self.skipped = path, fmt, id_column, smiles_column, skipped

    def rows(self, text_column: str | None, extra: Sequence[str] = ()) -> Iterator[tuple[int, str, str, str, dict]]:
        sdf = self.fmt in ("sdf", "smi")
        needed = [c for c in ([self.smiles_column] if not sdf else []) + ([text_column] if text_column else []) + list(extra)]
        if not sdf:
            needed.insert(0, self.id_column)
        what = "record" if self.fmt == "sdf" else "row"
        for row, rec in records(self.path, self.fmt, needed):
            if "__unparsable__" in rec:
                self.skipped.append(dict(file=str(self.path), row=row, cid="?", field="molecule",
                                     reason="RDKit cannot read this SDF record"))
                continue
            cid = rec.get(self.id_column) or (rec.get("_Name", "") if sdf else "")
            smiles = rec["__smiles__"] if sdf else rec.get(self.smiles_column, "")
            text = rec.get(text_column, "") if text_column else ""
            for field, value in (("id", cid), ("SMILES", smiles), ("text", text if text_column else "-")):
                if not value:
                    name = {"id": self.id_column, "SMILES": self.smiles_column, "text": text_column}[field]
                    raise DataError(f"{self.path}, {what} {row}: empty {field} (column {name!r})")
            try:
                parse_smiles(smiles)
            except SmilesError:
                self.skipped.append(dict(file=str(self.path), row=row, cid=cid, field="SMILES",
                                         reason=f"unparseable SMILES {smiles!r}"))
                continue
            yield row, cid, smiles, text, rec


def _seeded_split(pairs: list[Pair], fractions: Sequence[float], seed: int, path: Path) -> dict[str, list[Pair]]:
    if len(fractions) != 3 or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0 for f in fractions):
        raise DataError(f"task.fractions={list(fractions)}: give three positive fractions (train, valid, test)")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"task.fractions={list(fractions)}: the fractions sum to {sum(fractions):g}, not 1")
    n = len(pairs)
    n_select, n_test = round(n * fractions[1]), round(n * fractions[2])
    if min(n_select, n_test, n - n_select - n_test) < 1:
        raise DataError(f"{path}: fractions {list(fractions)} of {n} pairs leave {n - n_select - n_test} for train, {n_select} "
                        f"for valid and {n_test} for test; each needs at least 1")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    part = {i: "select" for i in order[:n_select]} | {i: "test" for i in order[n_select:n_select + n_test]}
    out: dict[str, list[Pair]] = {"train": [], "select": [], "test": []}
    for i, p in enumerate(pairs):  # file order within each part
        out[part.get(i, "train")].append(p)
    return out


class PairsTask(TaskBase):
    """The ``pairs`` task: the user's own text-molecule pairs (see the module docs; ``docs/tasks.md``)."""

    name = "pairs"
    title = "pairs"
    galleries = ("all", "test")
    protocols = ("split-column", "seeded-split")

    def load(self, data_dir: str | Path | None = None, *, path: str = "", format: str = "auto", id_column: str = "id",
             smiles_column: str = "smiles", text_column: str = "text", split_column: str = "",
             fractions: tuple[float, ...] = (0.8, 0.1, 0.1), split_seed: int = 0, extra_molecules: str = "",
             download: bool = False) -> TaskData:
        if download:
            raise DataError("--download: the pairs task reads your own file (task.path); there is nothing to download")
        if not path:
            raise DataError("task pairs needs the pairs file: --set task.path=FILE (CSV, TSV, JSONL, .gz, or SDF)")
        base = Path(data_dir).expanduser() if data_dir is not None else Path.cwd()
        file = self._locate(path, base)
        fmt = file_format(file, format)
        if fmt == "smi":
            raise DataError(f"{file}: a .smi file has no descriptions; pairs need a CSV, TSV, JSONL or SDF file")
        skipped: list[dict] = []
        seen: dict[str, int] = {}
        pairs: list[Pair] = []
        parts: dict[str, str] = {}
        reader = _Reader(file, fmt, id_column, smiles_column, skipped)
        for row, cid, smiles, text, rec in reader.rows(text_column, [split_column] if split_column else []):
            if cid in seen:
                raise DataError(f"{file}: duplicate id {cid} in rows {seen[cid]} and {row}")
            seen[cid] = row
            if split_column:
                value = rec.get(split_column, "").strip().lower()
                if value not in SPLIT_VALUES:
                    raise DataError(f"{file}, row {row}: split {rec.get(split_column, '')!r} in column {split_column!r}: "
                                    f"use train, valid or test")
                parts[cid] = SPLIT_VALUES[value]
            pairs.append(Pair(cid, smiles, text))
        if not pairs:
            raise DataError(f"{file}: no usable pairs" + (f" ({len(skipped)} rows skipped)" if skipped else ""))
        if split_column:
            split = {k: [p for p in pairs if parts[p.cid] == k] for k in ("train", "select", "test")}
            empty = [k for k, v in split.items() if not v]
            if empty:
                names = {"train": "train", "select": "valid", "test": "test"}
                raise DataError(f"{file}: no {' or '.join(names[k] for k in empty)} rows in column {split_column!r} "
                                "(each of train, valid and test needs at least one pair)")
        else:
            split = _seeded_split(pairs, fractions, split_seed, file)
        checksums = {file.name: sha256_file(file)}
        decoys = self._decoys(extra_molecules, base, format, id_column, smiles_column, seen, skipped, checksums) \
            if extra_molecules else []
        warn_skipped(skipped)
        folder = (base if not Path(path).expanduser().is_absolute() else file.parent).resolve()
        return TaskData(data_dir=folder, protocol="split-column" if split_column else "seeded-split",
                        train=split["train"], select=split["select"], test=split["test"],
                        gallery=[Molecule(p.cid, p.smiles) for p in pairs] + decoys, descriptions=list(pairs),
                        checksums=checksums, skipped=skipped)

    @staticmethod
    def _locate(path: str, base: Path) -> Path:
        file = Path(path).expanduser()
        return file if file.is_absolute() else base / file

    def _decoys(self, extra: str, base: Path, fmt: str, id_column: str, smiles_column: str, seen: dict[str, int],
                skipped: list[dict], checksums: dict[str, str]) -> list[Molecule]:
        file = self._locate(extra, base)
        reader = _Reader(file, file_format(file, "auto" if fmt in ("auto", "smi") else fmt), id_column, smiles_column, skipped)
        decoys: list[Molecule] = []
        mine: dict[str, int] = {}
        for row, cid, smiles, _text, _rec in reader.rows(None):
            if cid in seen:
                raise DataError(f"{file}, row {row}: decoy id {cid} is also a pair's id (row {seen[cid]} of the pairs file)")
            if cid in mine:
                raise DataError(f"{file}: duplicate id {cid} in rows {mine[cid]} and {row}")
            mine[cid] = row
            decoys.append(Molecule(cid, smiles))
        if file.name in checksums:
            raise DataError(f"{file}: the extra molecules file has the pairs file's name; rename one of them")
        checksums[file.name] = sha256_file(file)
        return decoys

    def protocol_note(self, protocol: str) -> str:
        return f"protocol: {protocol}" + (" (train/valid/test from the split column)" if protocol == "split-column"
                                          else " (train/valid/test drawn with task.fractions and task.split_seed)")
