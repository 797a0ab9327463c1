"""The run folder: its layout, its name, and loading a finished run.

``zoo run`` writes one folder per run (``runs/NAME-SPECHASH-sSEED`` unless ``--out`` says
otherwise; ``zoo ablate`` and ``zoo sweep`` name theirs the same way under ``--out-root``)::

    RUN/results.json                     the results of the run (its presence: the run is finished)
    RUN/spec.toml                        the spec that ran (``zoo run RUN/spec.toml`` reproduces it)
    RUN/checkpoint/last.safetensors      weights + optimizer + trainer state after the last epoch (resume)
    RUN/checkpoint/best.safetensors      the best held-out epoch's weights (evaluated, searched, indexed)
    RUN/fitted/SLOT.safetensors          what a fittable component learnt from the training data
    RUN/eval-SPLIT.json                  ``zoo eval`` re-evaluations
    RUN/search/gallery.npz               ``zoo search``'s cached gallery embeddings
    RUN/indexes/NAME/                    ``zoo index`` library indexes

Every other module asks this one for these paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import RunError
from zoo.evals.results import RESULTS_FILE, read_results  # the results file's name is owned by its schema
from zoo.fitting import load_fitted
from zoo.spec import CompositionSpec
from zoo.tasks import DEFAULT_TASK

if TYPE_CHECKING:
    import torch

    from zoo.model import RetrievalModel

SPEC_FILE = "spec.toml"
CHECKPOINT_DIR = "checkpoint"
BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"
FITTED_DIR = "fitted"
SEARCH_DIR = "search"
INDEXES_DIR = "indexes"


def run_folder_name(name: str, spec_hash: str, seed: int) -> str:
    """``NAME-SPECHASH-sSEED``: the folder name of a run (or an ensemble composition's run) of a spec."""
    return f"{name}-{spec_hash}-s{seed}"


def run_name(spec: "CompositionSpec") -> str:
    """The folder name of a run of ``spec`` (:func:`run_folder_name`)."""
    return run_folder_name(spec.name, spec.hash(), spec.train.seed)


def default_out_dir(spec: "CompositionSpec", root: str | Path = "runs") -> Path:
    """Where ``zoo run`` writes a run of ``spec`` without ``--out`` (``root``: ``zoo ablate``'s ``--out-root``)."""
    return Path(root) / run_name(spec)


def results_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULTS_FILE


def spec_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / SPEC_FILE


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def best_checkpoint(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / BEST_CHECKPOINT


def last_checkpoint(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / LAST_CHECKPOINT


def fitted_path(run_dir: str | Path, slot: str = "text_encoder") -> Path:
    return Path(run_dir) / FITTED_DIR / f"{slot}.safetensors"


def eval_path(run_dir: str | Path, split: str) -> Path:
    """``zoo eval``'s default results file for ``split``."""
    return Path(run_dir) / f"eval-{split}.json"


def gallery_cache_path(run_dir: str | Path) -> Path:
    """``zoo search``'s cached gallery embeddings."""
    return Path(run_dir) / SEARCH_DIR / "gallery.npz"


def indexes_dir(run_dir: str | Path) -> Path:
    """The folder holding the run's ``zoo index`` library indexes, one subfolder each."""
    return Path(run_dir) / INDEXES_DIR


def retrain_hint(run_dir: str | Path) -> str:
    """The fix for a run whose checkpoint or fitted state is damaged or stale."""
    return f"retrain the run with `zoo run {spec_path(run_dir)} --out {run_dir} --fresh`"


# -- a finished run --------------------------------------------------------------------------------
def load_run(run_dir: str | Path) -> dict:
    """The results of a finished run (clear errors for a missing or unreadable run)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    path = results_path(run_dir)
    if not path.is_file():
        raise RunError(f"{run_dir} has no {RESULTS_FILE}: not a finished run (rerun `zoo run` with --out {run_dir} to finish it)")
    try:
        return read_results(path)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def run_checkpoint(run_dir: str | Path, needed_by: str = "the run's best weights are needed") -> Path:
    """The best checkpoint of a finished run (clear :class:`RunError` when the run or the file is missing)."""
    load_run(run_dir)
    return existing_best_checkpoint(run_dir, needed_by)


def existing_best_checkpoint(run_dir: str | Path, needed_by: str = "the run's best weights are needed") -> Path:
    """``RUN/checkpoint/best.safetensors``, or a :class:`RunError` saying it is missing and ``needed_by``."""
    checkpoint = best_checkpoint(run_dir)
    if not checkpoint.is_file():
        raise RunError(f"{checkpoint} is missing: {needed_by}")
    return checkpoint


def training_data(results: dict) -> tuple[dict[str, str] | None, str | None]:
    """The checksums and folder of the data a run was trained on, as its results record them."""
    task = results.get("task") if isinstance(results.get("task"), dict) else {}
    recorded = task.get("training_data") if isinstance(task.get("training_data"), dict) else {}  # set by zoo eval
    return recorded.get("data_checksums", task.get("data_checksums")), recorded.get("data_dir", task.get("data_dir"))


def recorded_task(run_dir: str | Path) -> str:
    """The task a run's results name (its spec's ``[eval] task``), or the default task where the run
    has no readable results (loading the run then says what is wrong with it)."""
    try:
        spec = load_run(run_dir).get("spec")
    except RunError:
        return DEFAULT_TASK
    task = spec.get("eval", {}).get("task") if isinstance(spec, dict) and isinstance(spec.get("eval"), dict) else None
    return task if isinstance(task, str) else DEFAULT_TASK


@dataclass
class TrainedRun:
    """A finished run loaded for use: its results, the spec that ran, and the model with its best weights."""

    run_dir: Path
    results: dict
    spec: "CompositionSpec"
    model: "RetrievalModel"
    device: "torch.device"
    checkpoint: Path


def load_trained_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """Rebuild a finished run's model (the spec that actually ran, no substitution) with its best
    weights, in eval mode on ``device``. Clear :class:`RunError` for a missing/unfinished run."""
    # the model's modules load torch: imported here so that zoo.runs (imported by the CLI for `zoo --help`) stays light
    from zoo.checkpoints import load_weights  # torch
    from zoo.devices import resolve_device  # torch
    from zoo.model import build_model  # torch

    run_dir = Path(run_dir)
    previous = load_run(run_dir)
    spec = CompositionSpec.from_dict(previous["spec"], source=str(results_path(run_dir)))
    checkpoint = existing_best_checkpoint(run_dir)
    dev = resolve_device(device)
    model, _ = build_model(spec, allow_substitution=False)
    mode = previous.get("training", {}).get("text_mode", "frozen")
    if hasattr(model.text_encoder, "set_mode"):
        model.text_encoder.set_mode(mode)
    # e.g. the TF-IDF vocabulary and SVD basis fitted by zoo run
    load_fitted(model.text_encoder, fitted_path(run_dir), retrain_hint(run_dir), owner=str(run_dir))
    model.to(dev)
    load_weights(model, checkpoint, retrain_hint(run_dir))  # checked against its content hash
    model.eval()
    return TrainedRun(run_dir, previous, spec, model, dev, checkpoint)
