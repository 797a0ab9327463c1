"""``zoo eval``: evaluate a finished run's best checkpoint on a split and galleries, no retraining."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zoo import runs, scoring
from zoo.cache import atomic_write_bytes
from zoo.data import check_same_data, data_fingerprint
from zoo.errors import RunError
from zoo.evals.results import build_results, write_results
from zoo.evaluate import evaluate_pairs, evaluate_source
from zoo.fusion import learned_member
from zoo.gallery import prepare_gallery
from zoo.precision import PRECISIONS, precision_name, resolve_cpu_bf16
from zoo.tasks import get_task, load_run_data, parse_galleries, task_block

OTHER_DATA_FLAG = "--allow-other-data"

SPLITS = ("test", "heldout")


def _data_notes(run_dir: Path, previous: dict, data, allow_other_data: bool, log: Callable[[str], None]) -> list[str]:
    """Data other than the run's training data is refused, unless ``allow_other_data``: then a note says so."""
    trained_on, trained_dir = runs.training_data(previous)
    if trained_on and trained_on != data.checksums and allow_other_data:
        note = (f"evaluated on other data than the run was trained on ({OTHER_DATA_FLAG}): {data.data_dir} is data "
                f"{data_fingerprint(data.checksums)}, the training data {trained_dir} was data {data_fingerprint(trained_on)}")
        log(f"WARNING: {note}")
        return [note]
    check_same_data(trained_on, trained_dir, data, f"run {run_dir}",
                    f"pass the run's data folder with --data-dir, or {OTHER_DATA_FLAG} to evaluate on this data anyway")
    return []


def _save_embeddings(folder: Path, split: str, embeddings: dict, log: Callable[[str], None]) -> None:
    """``--save-embeddings``: one ``SPLIT-GALLERY.npz`` per gallery (query/candidate embeddings with CIDs)."""
    import numpy as np

    for gallery, arrays in embeddings.items():
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(folder / f"{split}-{gallery.replace(':', '-')}.npz", buffer.getvalue())
    log(f"embeddings: {folder}/{split}-*.npz (query/candidate embeddings with CIDs)")


def _stage(results: dict) -> dict:
    """The second stage a results file records (re-evaluated with it), for the evaluation's results."""
    return {"rerank": results["rerank"]} if "rerank" in results else {}


def evaluate_run(run_dir: str | Path, *, split: str = "test", galleries: Sequence[str] = ("all", "test"),
                 data_dir: str | None = None, device: str = "auto", save_embeddings: str | Path | None = None,
                 out: str | Path | None = None, progress: bool = True, log: Callable[[str], None] = print,
                 precision: str = "auto", allow_other_data: bool = False) -> Path:
    """Re-evaluate ``run_dir`` and write ``RUN/eval-SPLIT.json`` (or ``out``); returns that path.
    ``precision`` is how molecules are embedded on the CPU: ``auto`` under bf16 autocast where the CPU has
    native bf16 (:mod:`zoo.precision`), ``fp32`` as ``zoo run`` scores its test split, or ``bf16``
    (recorded in the results as ``molecule_precision``; CUDA always autocasts).

    Data other than the run's training data (other checksums) is refused unless
    ``allow_other_data``; the results then name the data used and, separately, the training data.
    """
    started = time.time()
    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise RunError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
    if precision not in PRECISIONS:
        raise RunError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    cpu_bf16 = resolve_cpu_bf16({"auto": "auto", "fp32": False, "bf16": True}[precision])
    task = get_task(runs.recorded_task(run_dir))
    galleries = [str(g) for g in parse_galleries(task, galleries, "--gallery")]

    recorded = runs.load_run(run_dir)
    trained = scoring.own_model(run_dir, recorded, device)  # None: an ensemble (its members fused, no model of its own)
    if trained is None:
        if save_embeddings:
            raise RunError(f"--save-embeddings: {run_dir} is an ensemble (fused scores, no embeddings of its own); "
                           "evaluate its member runs for their embeddings")
        source = scoring.open_scoring(run_dir, data_dir=data_dir, device=device, log=log)
        scores, counts = evaluate_source(source, _pairs(source.data, split), list(galleries), log=log, label=split)
        results = build_results(
            spec=recorded["spec"], spec_hash=recorded["spec_hash"], components=recorded["components"],
            task={**recorded["task"], "split": split, "galleries": counts}, scores=scores,
            timings={"total_s": time.time() - started}, seeds=recorded["seeds"],
            notes=[f"re-evaluation of ensemble {run_dir} with its recorded weights"],
            extra={"evaluated_run": str(run_dir), "fusion": recorded["fusion"], **_stage(recorded)})
        return _write(results, run_dir, split, out, log)

    previous, spec, model, dev = trained.results, trained.spec, trained.model, trained.device
    data = load_run_data(previous, data_dir)  # the task's options and data folder the run recorded
    trained_on, trained_dir = runs.training_data(previous)
    notes = [f"re-evaluation of {run_dir} (best checkpoint) on {dev}", *_data_notes(run_dir, previous, data, allow_other_data, log)]
    checkpoint = trained.checkpoint
    g = prepare_gallery(model, data, dev, progress=progress)
    pairs = _pairs(data, split)
    scores, counts, embeddings = evaluate_pairs(model, pairs, data, g.graphs, g.mol_index, g.text_items, g.text_index, list(galleries),
                                                spec.train.eval_batch_size, spec.eval.chunk_size, dev, progress=progress,
                                                log=log, label=split, cpu_bf16=cpu_bf16)
    fused: dict = {}
    # a composition with scorers: its similarity fused with them, with the weights its run fitted
    source = scoring.fused_scores(run_dir, previous, data, device, log, learned=learned_member(model, g, dev, spec.train.eval_batch_size))
    if source is not None:
        fused = {"fusion": previous["fusion"], **_stage(previous), "learned_scores": scores}
        scores, counts = evaluate_source(source, pairs, list(galleries), log=log, label=split)
    if save_embeddings:
        _save_embeddings(Path(save_embeddings), split, embeddings, log)
    results = build_results(
        spec=spec.to_dict(), spec_hash=previous["spec_hash"], components=previous["components"],
        task={**previous["task"], **task_block(
            previous["task"].get("name", spec.eval.task), data, split, counts, spec.task,
            training_data={"data_dir": trained_dir, "data_checksums": trained_on,
                           "fingerprint": data_fingerprint(trained_on) if trained_on else None},
            same_data_as_training=trained_on == data.checksums if trained_on else None)},
        scores=scores, timings={"total_s": time.time() - started}, seeds=previous["seeds"],
        notes=notes,
        extra={"evaluated_run": str(run_dir), "checkpoint": str(checkpoint),
               "molecule_precision": precision_name(dev, cpu_bf16), **fused},
    )
    return _write(results, run_dir, split, out, log)


def _pairs(data, split: str):
    """The pairs ``split`` names: ``test``, or ``heldout`` (the select pairs)."""
    return data.test if split == "test" else data.select


def _write(results: dict, run_dir: Path, split: str, out: str | Path | None, log: Callable[[str], None]) -> Path:
    path = Path(out) if out else runs.eval_path(run_dir, split)
    write_results(path, results)
    log(f"results: {path}")
    return path
