"""Streaming readers for molecule library files: SMILES lists, TSV/CSV tables and SDF.

Formats, chosen by extension (a trailing ``.gz`` is decompressed on the fly):

* ``.smi .smiles .ism .txt`` — one molecule per line: ``SMILES [name]`` separated by whitespace;
  blank lines and ``#`` comments are skipped, a first line whose first field is ``smiles`` is a header.
* ``.tsv .tab`` / ``.csv`` — a header row naming a SMILES column (``SMILES``, ``smiles``,
  ``canonical_smiles``, …, or ``smiles_column=``) and optionally an ID column (``CID``, ``ID``,
  ``name``, …, or ``id_column=``). Tab-separated files are split on tabs only (no quoting: a
  ``"`` is an ordinary character); ``.csv`` follows the CSV quoting rules, strictly (an unclosed
  quote is an error, never a field that swallows the following rows).
* ``.sdf .sd`` — MDL SD records separated by ``$$$$``; the ID is the title line. Records are split
  here and parsed by RDKit only when :func:`record_smiles` is called, so a worker skipping
  records it does not own pays nothing for them.

Every record has a 1-based ``row`` (the line number for text formats, the record number for SDF)
and an ``id`` (the ID column / name / title, else the row number). Problems with the file itself
(missing, unreadable, not UTF-8, no SMILES column, malformed CSV) raise :class:`zoo.errors.DataError`; a molecule
RDKit cannot read is the caller's to skip.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import DataError

SMILES_SUFFIXES = (".smi", ".smiles", ".ism", ".txt")
TABLE_SUFFIXES = {".tsv": "\t", ".tab": "\t", ".csv": ","}
SDF_SUFFIXES = (".sdf", ".sd")
SMILES_COLUMNS = ("smiles", "canonical_smiles", "isomeric_smiles", "smi")
ID_COLUMNS = ("cid", "id", "name", "compound_id", "mol_id", "title")


@dataclass(frozen=True)
class Record:
    """One molecule as read from the file: ``text`` is a SMILES, or an SD block when ``sdf``."""

    row: int
    id: str
    text: str
    sdf: bool = False


def library_format(path: str | Path) -> str:
    """``smiles``, ``tsv``, ``csv`` or ``sdf`` from the file name (a ``.gz`` suffix is looked through)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix in SMILES_SUFFIXES:
        return "smiles"
    if suffix in TABLE_SUFFIXES:
        return suffix[1:] if suffix != ".tab" else "tsv"
    if suffix in SDF_SUFFIXES:
        return "sdf"
    known = ", ".join([*SMILES_SUFFIXES, *TABLE_SUFFIXES, *SDF_SUFFIXES])
    raise DataError(f"{path}: unknown molecule file type {suffix or '(no extension)'!r}; use one of {known} (optionally .gz)")


def _open_text(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise DataError(f"{path}: molecule file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        if path.name.lower().endswith(".gz"):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from None


def iter_records(path: str | Path, smiles_column: str | None = None, id_column: str | None = None) -> Iterator[Record]:
    """Stream the records of a molecule file (see the module docstring)."""
    path = Path(path)
    kind = library_format(path)
    with _open_text(path) as f:
        try:
            if kind == "smiles":
                yield from _smiles_records(f)
            elif kind == "sdf":
                yield from _sdf_records(f)
            else:
                yield from _table_records(f, path, TABLE_SUFFIXES["." + kind], smiles_column, id_column)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc})") from None
        except (OSError, EOFError, zlib.error) as exc:  # e.g. a truncated or damaged .gz
            raise DataError(f"{path}: unreadable ({exc})") from None


def _smiles_records(f: io.TextIOBase) -> Iterator[Record]:
    for row, line in enumerate(f, start=1):
        fields = line.split(None, 1)
        if not fields or fields[0].startswith("#"):
            continue
        if row == 1 and fields[0].lower() in SMILES_COLUMNS:
            continue  # header
        name = fields[1].strip() if len(fields) > 1 else ""
        yield Record(row, name or str(row), fields[0])


def _find_column(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if wanted is not None:
        if wanted.lower() not in lowered:
            raise DataError(f"{path}, row 1: no {what} column {wanted!r}; the header has {header}")
        return lowered.index(wanted.lower())
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    return None


def _table_reader(f: io.TextIOBase, delimiter: str):
    """A csv reader: tab-separated text is split on tabs only; CSV quoting is parsed strictly."""
    if delimiter == "\t":
        return csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    return csv.reader(f, delimiter=delimiter, strict=True)


def _table_records(f: io.TextIOBase, path: Path, delimiter: str, smiles_column: str | None, id_column: str | None) -> Iterator[Record]:
    reader = _table_reader(f, delimiter)
    start = 1  # the line where the row being read starts (a quoted field may span lines)

    def rows() -> Iterator[list[str]]:
        nonlocal start
        while True:
            start = reader.line_num + 1
            fields = next(reader, None)
            if fields is None:
                return
            yield fields

    try:
        yield from _table_rows(rows(), reader, path, smiles_column, id_column)
    except csv.Error as exc:
        where = f"line {start}" if start >= reader.line_num else f"lines {start}-{reader.line_num}"
        hint = "; check the quoting of that row (or save the file tab-separated as .tsv)" if delimiter == "," else ""
        raise DataError(f"{path}, {where}: unreadable row ({exc}){hint}") from None


def _table_rows(rows: Iterator[list[str]], reader, path: Path, smiles_column: str | None, id_column: str | None) -> Iterator[Record]:
    header = next(rows, None)
    if not header:
        raise DataError(f"{path}: empty file, expected a header row with a SMILES column")
    smiles_at = _find_column(header, smiles_column, SMILES_COLUMNS, "SMILES", path)
    if smiles_at is None:
        raise DataError(f"{path}, row 1: no SMILES column in the header {header} (looked for {', '.join(SMILES_COLUMNS)}; "
                        f"name it with --smiles-column)")
    id_at = _find_column(header, id_column, ID_COLUMNS, "ID", path)
    for fields in rows:
        row = reader.line_num
        if not fields or not any(x.strip() for x in fields):
            continue
        smiles = fields[smiles_at].strip() if smiles_at < len(fields) else ""
        ident = fields[id_at].strip() if id_at is not None and id_at < len(fields) else ""
        yield Record(row, ident or str(row), smiles)


def _sdf_records(f: io.TextIOBase) -> Iterator[Record]:
    lines: list[str] = []
    number = 0
    for line in f:
        if line.startswith("$$$$"):
            number += 1
            block = "".join(lines)
            lines = []
            title = block.split("\n", 1)[0].strip()
            yield Record(number, title or str(number), block, sdf=True)
        else:
            lines.append(line)
    if any(x.strip() for x in lines):  # a last record without its $$$$ terminator
        number += 1
        block = "".join(lines)
        yield Record(number, block.split("\n", 1)[0].strip() or str(number), block, sdf=True)


def record_smiles(record: Record) -> str:
    """The record's SMILES (an SD block is parsed with RDKit); ``ValueError`` naming the problem."""
    if not record.sdf:
        if not record.text:
            raise ValueError("empty SMILES")
        return record.text
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromMolBlock(record.text)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError("RDKit cannot parse the SD record")
    return Chem.MolToSmiles(mol)


def count_records(path: str | Path, smiles_column: str | None = None, id_column: str | None = None) -> int:
    """How many records :func:`iter_records` yields (one streaming pass, no RDKit parsing)."""
    return sum(1 for _ in iter_records(path, smiles_column, id_column))
