"""What a task returns and is scored on: pairs, molecules, the loaded dataset and its galleries.

These types are public (re-exported by :mod:`zoo.api`): a task plugin builds its data from them, or
from its own classes with the same attributes; the harness never tests for a concrete type, it reads
the attributes :class:`Dataset` names.

A **gallery** is a candidate pool a task is scored on: ``all`` (every molecule of the task's gallery
against every description), ``test`` (the scored pairs themselves) or ``inbatch:N`` (blocks of N
scored pairs). :meth:`Gallery.parse` is the one place a gallery's name is read.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from zoo.errors import DataError, DataWarning, GalleryError

#: at most this many skipped rows are listed in a load's warning (the rest are counted)
WARN_LIST_LIMIT = 20


def warn_skipped(skipped: Sequence[Mapping[str, Any]], rows: str = "rows", id_label: str = "id") -> None:
    """One :class:`~zoo.api.DataWarning` for the rows a task's loader skipped (each a mapping with ``file``, ``row``,
    ``cid`` and ``reason``): the first :data:`WARN_LIST_LIMIT` listed, the rest counted; nothing when none were.
    ``rows`` names them (``"ChEBI-20 rows"``), ``id_label`` their id (``"CID"``). Call it from the loader itself:
    the warning points at the loader's caller."""
    if not skipped:
        return
    lines = [f"  {s['file']}, row {s['row']}, {id_label} {s['cid']}: {s['reason']}" for s in skipped[:WARN_LIST_LIMIT]]
    if len(skipped) > WARN_LIST_LIMIT:
        lines.append(f"  and {len(skipped) - WARN_LIST_LIMIT} more")
    warnings.warn(f"skipped {len(skipped)} {rows}:\n" + "\n".join(lines), DataWarning, stacklevel=3)


def check_folds(folds: int, fold: int, where: str = "task") -> None:
    """The one rule for a task's ``folds``/``fold`` options (K-fold cross-validation over the training pairs):
    ``folds`` is 0 (off: the task's own hold-out) or K >= 2, and ``fold`` an index ``0 <= fold < K`` (0 when off);
    else a one-line :class:`~zoo.errors.DataError` naming ``where``'s options."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
        raise DataError(f"{where}.folds must be 0 (off: the task's hold-out selects) or K >= 2 folds, got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0 or (folds and fold >= folds) or (not folds and fold):
        allowed = f"0..{folds - 1} (one of the {folds} folds)" if folds else f"0 while {where}.folds is 0 (set {where}.folds=K first)"
        raise DataError(f"{where}.fold must be {allowed}, got {fold!r}")


def cv_fold(pairs: Sequence[Pair], folds: int, fold: int, seed: int, where: str = "task") -> tuple[list[Pair], list[Pair]]:
    """``(train, select)`` for fold ``fold`` of ``folds``-fold cross-validation over ``pairs``: a permutation of the
    pairs seeded by ``seed`` is dealt into ``folds`` folds (sizes differ by at most one; every pair in exactly one
    fold), fold ``fold`` is the selection set and the rest train. Both keep the pairs' order. Bad values: a
    one-line :class:`~zoo.errors.DataError` (:func:`check_folds`; more folds than pairs)."""
    check_folds(folds, fold, where)
    if folds > len(pairs):
        raise DataError(f"{where}.folds={folds}: more folds than the {len(pairs)} training pairs")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    chosen = set(order[fold::folds])
    return ([p for i, p in enumerate(pairs) if i not in chosen], [p for i, p in enumerate(pairs) if i in chosen])


@dataclass(frozen=True)
class Pair:
    """One text-molecule pair: an id (ChEBI-20: the PubChem CID), a SMILES and its description."""

    cid: str
    smiles: str
    description: str


@dataclass(frozen=True)
class Molecule:
    """One gallery molecule without a description."""

    cid: str
    smiles: str


@runtime_checkable
class Dataset(Protocol):
    """A loaded task, as the harness reads it (any object with these attributes will do).

    ``train`` pairs fit the model, ``select`` (held-out) pairs pick its best epoch and fit fusion
    weights, ``test`` pairs are scored; ``gallery`` holds every candidate molecule (at least every pair's
    molecule, ids unique, no description needed) and ``descriptions`` every pair's description (ids
    unique). ``checksums`` (file name -> sha256) are the data's identity: runs record them and refuse
    other data. Optional: ``skipped`` (rows left out, one dict each, reported), ``unlabeled`` (training
    molecules without a description) and ``summary()`` (else :func:`zoo.tasks.data_summary`).
    """

    data_dir: Path
    protocol: str
    train: Sequence[Pair]
    select: Sequence[Pair]
    test: Sequence[Pair]
    gallery: Sequence[Molecule]
    descriptions: Sequence[Pair]
    checksums: Mapping[str, str]


@dataclass
class TaskData:
    """The loaded dataset of a task (see :class:`Dataset`): a ready-made class for task plugins."""

    data_dir: Path
    protocol: str
    train: list[Pair]
    select: list[Pair]
    test: list[Pair]
    gallery: list[Molecule]
    descriptions: list[Pair]
    checksums: dict[str, str] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    #: training-side molecules without descriptions (never a select or test id)
    unlabeled: list[Molecule] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts per part, protocol and checksums."""
        return {
            "data_dir": str(self.data_dir),
            "protocol": self.protocol,
            "counts": {k: len(getattr(self, k)) for k in ("train", "select", "test", "gallery", "descriptions", "skipped")},
            "checksums": dict(self.checksums),
        }


_INBATCH = re.compile(r"inbatch:(\d+)")


@dataclass(frozen=True)
class Gallery:
    """A candidate pool: ``all``, ``test`` or ``inbatch:N`` (``block`` = N >= 2) — a task may name more."""

    name: str
    block: int | None = None

    ALL = "all"
    TEST = "test"

    @classmethod
    def parse(cls, text: "str | Gallery", named: Sequence[str] = ("all", "test"), where: str = "gallery") -> "Gallery":
        """``text`` as a gallery: one of ``named`` or ``inbatch:N`` (N >= 2); else a :class:`GalleryError`
        naming ``where`` and the choices."""
        if isinstance(text, Gallery):
            return text
        if isinstance(text, str):
            if text in named:
                return cls(text)
            match = _INBATCH.fullmatch(text)
            if match and int(match.group(1)) >= 2:
                return cls("inbatch", int(match.group(1)))
        raise GalleryError(f"{where}: unknown gallery {text!r}; choose from {', '.join(named)}, inbatch:N (N >= 2)")

    @property
    def is_inbatch(self) -> bool:
        return self.block is not None

    def __str__(self) -> str:
        return f"inbatch:{self.block}" if self.block is not None else self.name


class TaskBase:
    """Defaults for a task plugin (subclass it, or write the same attributes yourself).

    Set ``name``, ``galleries`` (the named ones; ``inbatch:N`` always exists) and ``protocols``, and
    write ``load(self, data_dir=None, *, download=False, **options) -> Dataset``: its keyword
    parameters with defaults are the task's options (``[task]`` in a spec, ``--set task.KEY=VALUE``),
    validated like a component's before any work. A loader that takes ``holdout_fraction`` gets the
    spec's ``train.holdout_fraction``.
    """

    name: str = "task"
    #: how messages name the task's data (e.g. "ChEBI-20"; default: the task's name)
    title: str = ""
    galleries: tuple[str, ...] = ("all", "test")
    protocols: tuple[str, ...] = ("default",)

    def load(self, data_dir: str | Path | None = None, *, download: bool = False, **options: Any) -> Dataset:
        raise NotImplementedError

    def data_checksums(self, data_dir: str | Path | None = None, **options: Any) -> dict[str, str]:
        """The checksums :meth:`load` records (this default loads the data)."""
        return dict(self.load(data_dir, **options).checksums)

    def parse_gallery(self, text: "str | Gallery", where: str = "gallery") -> Gallery:
        return Gallery.parse(text, self.galleries, where)

    def valid_gallery(self, name: str) -> bool:
        try:
            self.parse_gallery(name)
        except GalleryError:
            return False
        return True

    def protocol_note(self, protocol: str) -> str:
        return f"protocol: {protocol}"
