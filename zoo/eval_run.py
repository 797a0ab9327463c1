"""``zoo eval``: evaluate a finished run's best checkpoint on a split and galleries, no retraining."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch

    from zoo.model import RetrievalModel
    from zoo.spec import CompositionSpec

from zoo.errors import RunError
from zoo.train import CHECKPOINT_DIR, RESULTS_FILE, load_weights, resolve_device, valid_gallery

OTHER_DATA_FLAG = "--allow-other-data"

SPLITS = ("test", "heldout")


def load_run(run_dir: str | Path) -> dict:
    """The results of a finished run (clear errors for a missing or unreadable run)."""
    from zoo.evals.results import read_results

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    results_path = run_dir / RESULTS_FILE
    if not results_path.is_file():
        raise RunError(f"{run_dir} has no {RESULTS_FILE}: not a finished run (rerun `zoo run` with --out {run_dir} to finish it)")
    try:
        return read_results(results_path)
    except ValueError as exc:
        raise RunError(str(exc)) from None


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
    from zoo.fitting import load_fitted
    from zoo.model import build_model
    from zoo.spec import CompositionSpec

    run_dir = Path(run_dir)
    previous = load_run(run_dir)
    spec = CompositionSpec.from_dict(previous["spec"], source=str(run_dir / RESULTS_FILE))
    checkpoint = run_dir / CHECKPOINT_DIR / "best.safetensors"
    if not checkpoint.is_file():
        raise RunError(f"{checkpoint} is missing: the run's best weights are needed")
    dev = resolve_device(device)
    model, _ = build_model(spec, allow_substitution=False)
    mode = previous.get("training", {}).get("text_mode", "frozen")
    if hasattr(model.text_encoder, "set_mode"):
        model.text_encoder.set_mode(mode)
    load_fitted(model.text_encoder, run_dir)  # e.g. the TF-IDF vocabulary and SVD basis fitted by zoo run
    model.to(dev)
    load_weights(model, checkpoint)  # checked against its content hash
    model.eval()
    return TrainedRun(run_dir, previous, spec, model, dev, checkpoint)


def training_data(results: dict) -> tuple[dict[str, str] | None, str | None]:
    """The checksums and folder of the data a run was trained on, as its results record them."""
    task = results.get("task") if isinstance(results.get("task"), dict) else {}
    recorded = task.get("training_data") if isinstance(task.get("training_data"), dict) else {}  # set by evaluate_run
    return recorded.get("data_checksums", task.get("data_checksums")), recorded.get("data_dir", task.get("data_dir"))


def evaluate_run(run_dir: str | Path, *, split: str = "test", galleries: Sequence[str] = ("all", "test"),
                 data_dir: str | None = None, device: str = "auto", save_embeddings: str | Path | None = None,
                 out: str | Path | None = None, progress: bool = True, log: Callable[[str], None] = print,
                 bf16: bool = False, allow_other_data: bool = False) -> Path:
    """Re-evaluate ``run_dir`` and write ``RUN/eval-SPLIT.json`` (or ``out``); returns that path.
    ``bf16`` embeds molecules under bf16 autocast on the CPU too (recorded in the results).

    Data other than the run's training data (other checksums) is refused unless
    ``allow_other_data``; the results then name the data used and, separately, the training data.
    """
    import numpy as np

    from zoo.cache import atomic_write_bytes, featurize_molecules
    from zoo.data import check_same_data, data_fingerprint, load_chebi20
    from zoo.evaluate import evaluate_pairs
    from zoo.evals.ranking import TIE_POLICY
    from zoo.evals.results import build_results, write_results

    started = time.time()
    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise RunError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
    bad = [g for g in galleries if not valid_gallery(g)]
    if bad or not galleries:
        raise RunError(f"--gallery {bad or []}: choose from all, test, inbatch:N")
    trained = load_trained_run(run_dir, device)
    previous, spec, model, dev = trained.results, trained.spec, trained.model, trained.device
    data = load_chebi20(data_dir, holdout_fraction=spec.train.holdout_fraction, holdout_seed=previous["seeds"].get("holdout_seed", 0))
    trained_on, trained_dir = training_data(previous)
    notes = [f"re-evaluation of {run_dir} (best checkpoint) on {dev}"]
    if trained_on and trained_on != data.checksums and allow_other_data:
        notes.append(f"evaluated on other data than the run was trained on ({OTHER_DATA_FLAG}): {data.data_dir} is data "
                     f"{data_fingerprint(data.checksums)}, the training data {trained_dir} was data {data_fingerprint(trained_on)}")
        log(f"WARNING: {notes[-1]}")
    else:
        check_same_data(trained_on, trained_dir, data, f"run {run_dir}",
                        f"pass the run's data folder with --data-dir, or {OTHER_DATA_FLAG} to evaluate on this data anyway")
    checkpoint = trained.checkpoint
    graphs = featurize_molecules([m.smiles for m in data.gallery], model.molecule_encoder.featurize,
                                 model.molecule_encoder.featurizer, progress=progress, desc="featurizing molecules")
    mol_index = {m.cid: i for i, m in enumerate(data.gallery)}
    text_items = model.text_encoder.prepare([p.description for p in data.descriptions], progress=progress, device=dev)
    text_index = {p.cid: i for i, p in enumerate(data.descriptions)}
    pairs = data.test if split == "test" else data.select
    scores, counts, embeddings = evaluate_pairs(model, pairs, data, graphs, mol_index, text_items, text_index, list(galleries),
                                                spec.train.eval_batch_size, spec.eval.chunk_size, dev, progress=progress,
                                                log=log, label=split, cpu_bf16=bf16)
    if save_embeddings:
        folder = Path(save_embeddings)
        for gallery, arrays in embeddings.items():
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            atomic_write_bytes(folder / f"{split}-{gallery.replace(':', '-')}.npz", buffer.getvalue())
        log(f"embeddings: {folder}/{split}-*.npz (query/candidate embeddings with CIDs)")
    results = build_results(
        spec=spec.to_dict(), spec_hash=previous["spec_hash"], components=previous["components"],
        task={**previous["task"], "split": split, "galleries": counts, "protocol": data.protocol,
              "data_dir": str(data.data_dir), "data_checksums": data.checksums, "counts": data.summary(),
              "skipped_rows": data.skipped, "tie_policy": TIE_POLICY,
              "training_data": {"data_dir": trained_dir, "data_checksums": trained_on,
                                "fingerprint": data_fingerprint(trained_on) if trained_on else None},
              "same_data_as_training": trained_on == data.checksums if trained_on else None},
        scores=scores, timings={"total_s": time.time() - started}, seeds=previous["seeds"],
        notes=notes,
        extra={"evaluated_run": str(run_dir), "checkpoint": str(checkpoint),
               "molecule_precision": "bf16" if bf16 or dev.type == "cuda" else "fp32"},
    )
    path = Path(out) if out else run_dir / f"eval-{split}.json"
    write_results(path, results)
    log(f"results: {path}")
    return path
