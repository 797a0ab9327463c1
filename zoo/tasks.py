"""Evaluation tasks, resolved by name through the registry (a spec's ``[eval] task``; ``zoo list task``).

A task owns its data: the loader (train/select/test pairs, the molecule gallery, the descriptions),
its options (``[task]`` in a spec, ``--set task.KEY=VALUE``), the galleries it is scored on and its
protocols. Every command loads a task's data here (:func:`load_spec_data` for a spec about to run,
:func:`load_run_data` for a finished run, with the options and data location the run recorded), and
the results' ``task`` block is built here (:func:`task_block`). The data types are in
:mod:`zoo.taskdata` (public through :mod:`zoo.api`); the built-in tasks (``chebi20``, ``pairs``) are
plugins under ``zoo.plugins.tasks``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from zoo.errors import DataError, GalleryError, SpecError
from zoo.registry import get_component
from zoo.registry.catalog import TASK_LOADER_ARGUMENTS, did_you_mean
from zoo.taskdata import Dataset, Gallery, check_folds

#: The task of a spec that names none (:class:`zoo.spec.EvalConfig`).
DEFAULT_TASK = "chebi20"

#: Loader arguments the harness passes itself (never ``[task]`` options): the data location, ``--download``,
#: and ``train.holdout_fraction`` (the spec's hold-out fraction, for a loader that carves one out).
LOADER_ARGUMENTS = TASK_LOADER_ARGUMENTS


class Task(Protocol):
    """What ``register_tasks`` factories return (:class:`zoo.api.TaskBase` has defaults for all but ``load``)."""

    name: str
    galleries: tuple[str, ...]  # named galleries (``inbatch:N`` blocks come on top)
    protocols: tuple[str, ...]

    def load(self, data_dir: str | Path | None = None, *, download: bool = False, **options: Any) -> Dataset:
        """The task's data (a clear :class:`~zoo.errors.DataError` for bad input); ``options``: the task's."""


def get_task(name: str) -> Task:
    """The registered task ``name`` (:class:`~zoo.errors.UnknownComponentError` with close matches otherwise)."""
    return get_component("task", name).create()


# -- options ------------------------------------------------------------------------------------------
def task_options(name: str) -> dict[str, Any]:
    """Task ``name``'s options and defaults: the registration's ``config``, else the keyword parameters
    with defaults of its ``load`` (less :data:`LOADER_ARGUMENTS`)."""
    return {k: v for k, v in get_component("task", name).config.items() if k not in LOADER_ARGUMENTS}


def _same(a: Any, b: Any) -> bool:
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return plain(a) == plain(b)


def resolve_task_options(name: str, given: Mapping[str, Any], coerce) -> dict[str, Any]:
    """``given`` checked against task ``name``'s options (unknown key: close matches; ``coerce(value, default,
    where)`` types each value like its default) and reduced to the values that differ from the defaults, so
    a spec setting a default hashes like one that does not. A task with ``folds`` and ``fold`` options has them
    checked together (:func:`zoo.taskdata.check_folds`)."""
    known = task_options(name)
    unknown = [k for k in given if k not in known]
    if unknown:
        hints = "".join(did_you_mean(k, sorted(known)) for k in unknown)
        extra = (" The hold-out fraction is train.holdout_fraction." if "holdout_fraction" in unknown else "")
        raise SpecError(f"task {name!r} has no option {', '.join(repr(f'task.{k}') for k in unknown)}. "
                        f"Options: {', '.join(sorted(known)) or '(none)'}.{hints}{extra}")
    out = {}
    for key, value in given.items():
        default = known[key]
        value = coerce(value, default, f"task.{key}") if default is not None else value
        if not _same(value, default):
            out[key] = list(value) if isinstance(value, tuple) else value
    if "folds" in known and "fold" in known:  # cross-validation folds (zoo.taskdata.cv_fold): checked before any work
        try:
            check_folds(out.get("folds", known["folds"]), out.get("fold", known["fold"]), "task")
        except DataError as exc:
            raise SpecError(str(exc)) from None
    return out


# -- galleries ------------------------------------------------------------------------------------------
def parse_galleries(task: Task, names: Sequence[str | Gallery], where: str = "eval.galleries") -> tuple[Gallery, ...]:
    """``names`` as the task's galleries (:class:`~zoo.taskdata.GalleryError` naming ``where`` otherwise)."""
    if not names:
        raise GalleryError(f"{where}: no gallery given; choose from {', '.join(galleries_of(task))}, inbatch:N")
    parse = getattr(task, "parse_gallery", None)
    return tuple(parse(n, where) if callable(parse) else Gallery.parse(n, galleries_of(task), where) for n in names)


def task_title(name: str) -> str:
    """How messages name task ``name``'s data: its ``title`` (``ChEBI-20``), else its name."""
    return getattr(get_task(name), "title", "") or name


def galleries_of(task: Task) -> tuple[str, ...]:
    return tuple(getattr(task, "galleries", ("all", "test")))


# -- loading ------------------------------------------------------------------------------------------
def _accepts(function: Any, name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def load_data(task_name: str, options: Mapping[str, Any], *, holdout_fraction: float = 0.1,
              data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """Task ``task_name``'s data with ``options`` (a spec's resolved ``[task]``: the defaults fill the rest)."""
    task = get_task(task_name)
    kwargs: dict[str, Any] = {**task_options(task_name), **options}
    if _accepts(task.load, "holdout_fraction"):
        kwargs["holdout_fraction"] = holdout_fraction
    if download:
        kwargs["download"] = True
    return task.load(data_dir, **kwargs)


def load_spec_data(spec, data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """The data of a resolved :class:`~zoo.spec.CompositionSpec` about to run."""
    return load_data(spec.eval.task, spec.task, holdout_fraction=spec.train.holdout_fraction, data_dir=data_dir,
                     download=download)


def recorded_location(results: Mapping[str, Any]) -> str | None:
    """The data folder a run's results record (its training data's), where it still exists."""
    task = results.get("task") if isinstance(results.get("task"), Mapping) else {}
    training = task.get("training_data") if isinstance(task.get("training_data"), Mapping) else {}
    where = training.get("data_dir", task.get("data_dir"))
    return where if isinstance(where, str) and where and Path(where).exists() else None


def recorded_spec_task(results: Mapping[str, Any]) -> tuple[str, dict[str, Any], float]:
    """A results file's task name, ``[task]`` options and hold-out fraction (defaults where unrecorded)."""
    spec = results.get("spec") if isinstance(results.get("spec"), Mapping) else {}
    evaluation = spec.get("eval") if isinstance(spec.get("eval"), Mapping) else {}
    train = spec.get("train") if isinstance(spec.get("train"), Mapping) else {}
    options = spec.get("task") if isinstance(spec.get("task"), Mapping) else {}
    return evaluation.get("task", DEFAULT_TASK), dict(options), train.get("holdout_fraction", 0.1)


def load_run_data(results: Mapping[str, Any], data_dir: str | Path | None = None) -> Dataset:
    """The data of a finished run (or ensemble): its task with the options it ran with, from ``data_dir``, else
    from the folder the run recorded where it still exists, else where the task looks by default (e.g.
    ``$ZOO_DATA_DIR``)."""
    name, options, holdout_fraction = recorded_spec_task(results)
    return load_data(name, options, holdout_fraction=holdout_fraction,
                     data_dir=data_dir if data_dir is not None else recorded_location(results))


def run_data_checksums(results: Mapping[str, Any], data_dir: str | Path) -> dict[str, str]:
    """The checksums a run's task would record for ``data_dir``, without parsing it where the task can."""
    name, options, holdout_fraction = recorded_spec_task(results)
    task = get_task(name)
    kwargs = {**task_options(name), **options}
    if callable(getattr(task, "data_checksums", None)):
        try:
            return dict(task.data_checksums(data_dir, **kwargs))
        except TypeError:  # a task whose data_checksums takes the folder only
            return dict(task.data_checksums(data_dir))
    return dict(load_data(name, options, holdout_fraction=holdout_fraction, data_dir=data_dir).checksums)


# -- what results record -------------------------------------------------------------------------------
def data_summary(data: Dataset) -> dict:
    """``data.summary()`` where the data has one, else its counts, protocol and checksums."""
    if callable(getattr(data, "summary", None)):
        return data.summary()
    return {"data_dir": str(data.data_dir), "protocol": data.protocol,
            "counts": {k: len(getattr(data, k, ())) for k in ("train", "select", "test", "gallery", "descriptions", "skipped")},
            "checksums": dict(data.checksums)}


def protocol_note(task: Task, protocol: str) -> str:
    note = getattr(task, "protocol_note", None)
    return note(protocol) if callable(note) else f"protocol: {protocol}"


def task_block(name: str, data: Dataset, split: str, galleries: Mapping[str, Any], options: Mapping[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    """The ``task`` block of a results file (``zoo run``, ``zoo eval``, ``zoo ensemble``, external models): the
    task, its protocol and split, the gallery counts, the data (folder, checksums, counts, skipped rows), the
    tie rule, the task's options (all of them, defaults included) and ``extra``."""
    from zoo.evals.ranking import TIE_POLICY  # torch (zoo.evals.ranking): zoo.tasks stays light for `zoo --help`/`zoo list`

    block = {"name": name, "protocol": data.protocol, "split": split, "galleries": dict(galleries),
             "data_dir": str(data.data_dir), "data_checksums": dict(data.checksums), "counts": data_summary(data),
             "skipped_rows": list(getattr(data, "skipped", [])), "tie_policy": TIE_POLICY}
    full = {**task_options(name), **(options or {})}
    if full:
        block["options"] = full
    return {**block, **extra}


def holdout_seed(name: str, options: Mapping[str, Any]) -> int:
    """The hold-out seed a results file's ``seeds`` records: task ``name``'s ``holdout_seed`` option, else 0."""
    value = {**task_options(name), **options}.get("holdout_seed", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
