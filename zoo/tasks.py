"""Evaluation tasks, resolved by name through the registry (a spec's ``[eval] task``; ``zoo list task``).

A task owns its data: the loader (train/select/test pairs, the molecule gallery, the
descriptions), the galleries it is scored on and its protocols. ``zoo run``, ``zoo eval``,
``zoo search``, ``zoo report`` and ``zoo index`` ask :func:`get_task` for it; the built-in
``chebi20`` (:class:`zoo.data.ChEBI20Task`) is registered by ``zoo.plugins.tasks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from zoo.data import ChEBI20

#: The task of a spec that names none (:class:`zoo.spec.EvalConfig`).
DEFAULT_TASK = "chebi20"


class Task(Protocol):
    """What ``register_tasks`` factories return."""

    name: str
    galleries: tuple[str, ...]  # named galleries (``inbatch:N`` blocks come on top, see valid_gallery)
    protocols: tuple[str, ...]

    def load(self, data_dir: str | Path | None = None, *, holdout_fraction: float = 0.1, holdout_seed: int = 0,
             download: bool = False) -> "ChEBI20":
        """The task's data (a clear :class:`~zoo.errors.DataError` for bad input)."""

    def data_checksums(self, data_dir: str | Path | None = None) -> dict[str, str]:
        """The checksums :meth:`load` would record for ``data_dir``, without parsing it."""

    def valid_gallery(self, name: str) -> bool:
        """Whether ``name`` is one of this task's galleries."""

    def protocol_note(self, protocol: str) -> str:
        """One line for a results file's notes: what ``protocol`` means."""


def get_task(name: str) -> Task:
    """The registered task ``name`` (:class:`~zoo.errors.UnknownComponentError` with close matches otherwise)."""
    from zoo.registry import get_component

    return get_component("task", name).create()
