"""Checkpoints: a model's weights, and a run's resumable training state, in safetensors files.

``RUN/checkpoint/best.safetensors`` (:func:`save_weights`) holds the best epoch's weights;
``RUN/checkpoint/last.safetensors`` (:func:`save_checkpoint`) adds the optimizer and trainer
state, so an interrupted run resumes at an epoch boundary. Both are written atomically with a
content hash, the spec, the molecule featurizer and the training data's checksums
(:func:`data_provenance`) in their metadata, and are checked when read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from zoo.cache import atomic_save_tensors, read_safetensors
from zoo.data import check_same_data
from zoo.errors import IntegrityError, RunError

if TYPE_CHECKING:
    from zoo.taskdata import Dataset


@dataclass
class TrainerState:
    """Where training stands (saved in ``last.safetensors`` after every epoch)."""

    epoch: int = 0  # epochs completed
    best_mrr: float = -1.0
    best_epoch: int = 0
    stale_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    stop_reason: str = ""


def is_backbone_key(key: str) -> bool:
    """A text backbone weight (``text_encoder.backbone.*``, or a combined encoder part's
    ``text_encoder.parts.N.backbone.*``): not stored in checkpoints while frozen."""
    return key.startswith("text_encoder.") and ".backbone." in key


def _model_state(model: torch.nn.Module, skip_frozen_backbone: bool) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if skip_frozen_backbone:  # reproducible from its source; keeps checkpoints small
        state = {k: v for k, v in state.items() if not is_backbone_key(k)}
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_weights(model: torch.nn.Module, path: Path, skip_frozen_backbone: bool, metadata: dict[str, str]) -> None:
    atomic_save_tensors(_model_state(model, skip_frozen_backbone), path, metadata=metadata)


def read_checkpoint(path: Path, fix: str, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's tensors and metadata, checked against its recorded content hash; a changed or
    unreadable file is a :class:`RunError` naming it and ``fix``."""
    try:
        return read_safetensors(path, tensors=tensors)
    except IntegrityError as exc:
        raise RunError(f"checkpoint {exc}; {fix}") from None


def load_weights(model: torch.nn.Module, path: Path, fix: str) -> None:
    """Load a weights file written by :func:`save_weights` (``fix``: what to do when it is corrupt)."""
    state, meta = read_checkpoint(path, fix)
    _load_model_state(model, state, path, meta)


def data_provenance(data: "Dataset") -> dict[str, str]:
    """Checkpoint metadata naming the training data (checked on resume: :func:`check_resume_data`)."""
    return {"data_dir": str(data.data_dir), "data_checksums": json.dumps(data.checksums, sort_keys=True)}


def check_resume_data(path: Path, data: "Dataset", out_dir: Path) -> None:
    """Refuse to resume ``path`` (a checkpoint) on other data than it was trained on."""
    meta = read_checkpoint(path, "rerun with --fresh to start over", tensors=False)[1]
    try:
        recorded = json.loads(meta["data_checksums"]) if "data_checksums" in meta else None
    except ValueError:
        recorded = None
    check_same_data(recorded, meta.get("data_dir"), data, f"the unfinished run in {out_dir}",
                    "pass the run's data folder with --data-dir, or --fresh to start over on this data")


def _load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    """Load weights; only frozen backbone weights (not stored, see :func:`_model_state`) may be missing.
    Weights trained on other molecule features (another featurizer key, see ``MoleculeEncoder``) are refused."""
    trained_on = meta.get("molecule_featurizer")
    featurizer = getattr(getattr(model, "molecule_encoder", None), "featurizer", None)
    if trained_on and featurizer and trained_on != featurizer:
        raise RunError(f"checkpoint {path} was trained on molecule features {trained_on!r}, but this molzoo makes "
                       f"{featurizer!r}; retrain it (zoo run ... --fresh)")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch, e.g. weights of a checkpoint older than a featurizer change
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc).strip())
        raise RunError(f"checkpoint {path} does not match the model ({detail}); if an older molzoo trained it on "
                       f"other molecule features (e.g. the stereo-blind rdkit_graph/1), retrain it (zoo run ... --fresh)") from None
    missing = [k for k in missing if not is_backbone_key(k)]
    if missing or unexpected:
        raise RunError(f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, state: TrainerState, skip_frozen_backbone: bool,
                    metadata: dict[str, str]) -> None:
    """Model weights, optimizer state and trainer state in ONE safetensors file, written atomically,
    so a run interrupted at any moment resumes from a consistent epoch boundary."""
    tensors = {f"model.{k}": v for k, v in _model_state(model, skip_frozen_backbone).items()}
    optim = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, param_state in optim["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = value
    meta = {**metadata, "trainer_state": json.dumps(state.__dict__), "optim_param_groups": json.dumps(optim["param_groups"]),
            "optim_scalars": json.dumps(scalars)}
    atomic_save_tensors(tensors, path, metadata=meta)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, spec_hash: str) -> TrainerState:
    """Restore what :func:`save_checkpoint` wrote; returns the trainer state."""
    tensors, meta = read_checkpoint(path, "rerun with --fresh to start over")
    if meta.get("spec_hash") != spec_hash:
        raise RunError(f"{path} is a checkpoint of a different spec (hash {meta.get('spec_hash')} != {spec_hash}); "
                       "use another --out, or --fresh to overwrite it")
    _load_model_state(model, {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}, path, meta)
    param_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            param_state.setdefault(int(pid), {})[name] = value
    for key, value in json.loads(meta["optim_scalars"]).items():
        pid, name = key.split(".", 1)
        param_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": param_state, "param_groups": json.loads(meta["optim_param_groups"])})
    return TrainerState(**json.loads(meta["trainer_state"]))
