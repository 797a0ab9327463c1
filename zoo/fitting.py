"""Fitting components on the training data once per run, and reloading what was fitted.

A component that implements :class:`zoo.protocols.Fittable` is fitted by ``zoo run`` on the
training descriptions; the fitted state is written to ``RUN/fitted/<slot>.safetensors`` (the path
comes from :func:`zoo.runs.fitted_path`)
(atomically, with the spec hash, the training data's checksums and a content hash in its
metadata) and loaded instead of refitting when the run resumes and when a finished run is
loaded (``zoo eval``, :func:`zoo.runs.load_trained_run`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo.cache import atomic_save_tensors, read_safetensors
from zoo.errors import FitError, IntegrityError


def is_fittable(component: Any) -> bool:
    return callable(getattr(component, "fit", None)) and callable(getattr(component, "load_fitted_state", None))


def _read(path: Path, fix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The fitted state and its metadata, checked against the recorded content hash."""
    try:
        return read_safetensors(path)
    except IntegrityError as exc:
        raise FitError(f"fitted state {exc}; {fix}") from None


def _install(component: Any, state: dict[str, Any], path: Path, slot: str) -> None:
    try:
        component.load_fitted_state(state)
    except ValueError as exc:
        raise FitError(f"{path}: cannot load the fitted [{slot}]: {exc}") from None


def fitted_notes(component: Any, slot: str = "text_encoder") -> list[str]:
    """What fitting adapted to the data (``fitted_notes()`` of the component, if it has one)."""
    return [f"[{slot}] {note}" for note in getattr(component, "fitted_notes", lambda: [])()]


def fit_or_load(component: Any, texts: Sequence[str], path: Path, *, spec_hash: str, seed: int,
                slot: str = "text_encoder", refit: bool = False, log: Callable[[str], None] = print,
                data_checksums: dict[str, str] | None = None) -> list[str]:
    """Load the fitted state in ``path`` for ``component`` when it was made for ``spec_hash`` (and the
    data of ``data_checksums``, recorded with it); otherwise (or with ``refit``) fit on ``texts``
    and save the state. No-op for components that are not :class:`~zoo.protocols.Fittable`.
    Returns (and logs) :func:`fitted_notes`."""
    if not is_fittable(component):
        return []
    data = json.dumps(data_checksums, sort_keys=True) if data_checksums is not None else None
    if path.exists() and not refit:
        state, meta = _read(path, "rerun with --fresh to refit it")
        same_data = data is None or meta.get("data_checksums", data) == data
        if meta.get("spec_hash") == spec_hash and same_data:
            _install(component, state, path, slot)
            log(f"{slot}: loaded the fitted state from {path}")
            return _logged(fitted_notes(component, slot), log)
        why = f"another spec (hash {meta.get('spec_hash')})" if same_data else "other training data"
        log(f"{slot}: {path} belongs to {why}; refitting")
    try:
        component.fit(list(texts), seed=seed)
    except ValueError as exc:
        raise FitError(f"cannot fit the [{slot}] on {len(texts)} training texts: {exc}") from None
    state = component.fitted_state()
    if state:

        meta = {"spec_hash": spec_hash, "slot": slot, **({"data_checksums": data} if data is not None else {})}
        atomic_save_tensors(state, path, metadata=meta)
        size = sum(t.numel() * t.element_size() for t in state.values()) / 2**20
        log(f"{slot}: fitted on {len(texts)} training texts; saved {path} ({size:.1f} MiB)")
    return _logged(fitted_notes(component, slot), log)


def _logged(notes: list[str], log: Callable[[str], None]) -> list[str]:
    for note in notes:
        log(f"note: {note}")
    return notes


def load_fitted(component: Any, path: Path, fix: str, owner: str, slot: str = "text_encoder") -> None:
    """Install the fitted state saved in ``path`` with a finished run (``owner``, named in errors;
    ``fix``: what to do when the file is damaged). No-op for non-fittable components. A fittable
    component whose file is missing gets ``{}``, so it can say what it lacks."""
    if not is_fittable(component):
        return
    state = _read(path, fix)[0] if path.exists() else {}
    try:
        component.load_fitted_state(state)
    except ValueError as exc:
        hint = "" if path.exists() else f" ({path} is missing)"
        raise FitError(f"cannot load the fitted [{slot}] of {owner}{hint}: {exc}") from None
