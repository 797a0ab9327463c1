"""``zoo run``: assemble a composition, train it on its task's data, evaluate it, write results.

Training is device-agnostic (CUDA with bf16 autocast when present, CPU otherwise), seeded,
early-stopped on the held-out split's text->molecule MRR, and checkpointed atomically after
every epoch so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo import distributed, runs
from zoo.cache import atomic_write_text, folder_problem
from zoo.checkpoints import TrainerState, check_resume_data, data_provenance, load_checkpoint, load_weights
from zoo.devices import resolve_device
from zoo.errors import RunError
from zoo.evals.results import build_results, write_results
from zoo.evaluate import autocast, evaluate_pairs
from zoo.fitting import fit_or_load
from zoo.fusion import fuse_composition, scorer_member
from zoo.gallery import prepare_gallery
from zoo.loop import (
    Loop,
    train_epochs,
    train_step,  # noqa: F401  (re-exported: zoo.train.train_step)
)
from zoo.model import build_model
from zoo.optim import build_optimizer
from zoo.precision import describe_precision, precision_name
from zoo.rerank import reranker_member
from zoo.spec import CompositionSpec
from zoo.tasks import get_task, holdout_seed, load_spec_data, parse_galleries, protocol_note, task_block


@dataclass
class RunOptions:
    data_dir: str | None = None
    out_dir: str | None = None
    strict: bool = False  # refuse component substitutions (e.g. SciBERT -> MiniLM)
    fresh: bool = False  # ignore an existing checkpoint in out_dir
    progress: bool = True
    download: bool = False
    log: Callable[[str], None] = print
    #: a step after the test evaluation, owned by the command that runs training (``zoo run`` seeds the run's search
    #: cache, :func:`zoo.search.seed_search_cache`): called with the run folder, the data and gallery ``all``'s
    #: embeddings of the best weights (:func:`zoo.evaluate.evaluate_pairs`' entry), on the main process
    after_test: Callable[[Path, Any, dict[str, Any]], Any] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- the run ----------------------------------------------------------------------------------
def run(spec: CompositionSpec, opts: RunOptions) -> Path:
    """Train and evaluate ``spec``; returns the results JSON path.

    Under ``torchrun`` every process calls this: the ranks train one DDP model on slices of each
    global batch, and rank 0 alone selects, evaluates and writes (see :mod:`zoo.distributed`).
    """
    undo: list[Callable[[], None]] = []
    try:
        return _run(spec, opts, undo)
    except BaseException:
        for step in undo:
            step()
        raise
    finally:
        distributed.shutdown()


def _new_files_remover(out_dir: Path, first_checkpoint: Path, log: Callable[[str], None]) -> Callable[[], None]:
    """Snapshot ``out_dir`` now; the returned function, called when the run fails, removes what the
    run created there unless a checkpoint exists by then (``first_checkpoint``: resumable, kept): the
    folder itself if it is new, else only the new entries (a folder that existed before is kept)."""
    import shutil

    existed = out_dir.is_dir()
    before = set(out_dir.rglob("*")) if existed else set()

    def remove() -> None:
        if first_checkpoint.exists():
            return
        new = ([out_dir] if out_dir.exists() else []) if not existed else sorted(
            set(out_dir.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True)  # deepest first
        for path in new:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if new:
            log(f"the run failed before its first checkpoint: removed what it had written in {out_dir}")

    return remove


def _start(requested: CompositionSpec, opts: RunOptions):
    """Check what needs no data (device, task, galleries), seed, and join the torchrun group if launched
    by torchrun; say which precision training uses. Returns the task, the device, the distributed context,
    this process's options and log (silent, without progress bars, on ranks other than 0), and whether to
    autocast to bf16 on the CPU (``train.cpu_bf16`` resolved for this machine)."""
    from dataclasses import replace

    log = opts.log
    cfg = requested.train
    device = resolve_device(cfg.device)
    if distributed.launched_distributed() and device.type == "cuda" and device.index is not None:
        raise RunError(f"train.device={cfg.device!r}: under torchrun each process uses cuda:LOCAL_RANK; use \"auto\" or \"cuda\"")
    dctx, device = distributed.setup(device)  # a no-op unless launched by torchrun
    if not dctx.is_main:  # rank 0 alone logs and shows progress
        log, opts = (lambda _message: None), replace(opts, progress=False)
    # numeric settings (sizes, rates, finiteness) were checked by spec.resolve() (zoo.spec.RANGES)
    task = get_task(requested.eval.task)  # an unknown task is refused with close matches
    parse_galleries(task, requested.eval.galleries, "eval.galleries")
    cpu_bf16, line = describe_precision(cfg.cpu_bf16, device)
    log(line)
    seed_everything(cfg.seed)
    if "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count wins (several runs side by side)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cpus // dctx.local_world_size))  # processes on one machine share its cores
    return task, device, dctx, opts, log, cpu_bf16


def _build_model(requested: CompositionSpec, opts: RunOptions, device: torch.device, log: Callable[[str], None]):
    """The model of ``requested`` (substitutions announced, refused with ``--strict``), its text encoder in
    the chosen mode (``auto``: finetune on CUDA, frozen elsewhere), on ``device``. Returns it, the build
    report and the text mode."""
    model, report = build_model(requested, allow_substitution=not opts.strict, on_substitute=lambda m: log(f"WARNING: {m}"))
    spec = report.spec
    text_encoder = model.text_encoder
    text_mode = spec.text_encoder.options.get("mode", "frozen")
    if text_mode == "auto":
        text_mode = "finetune" if device.type == "cuda" else "frozen"
    if hasattr(text_encoder, "set_mode"):
        text_encoder.set_mode(text_mode)
        automatic = text_mode == "frozen" and spec.text_encoder.options.get("mode") == "auto"
        log(f"text encoder {spec.text_encoder.name}: {text_mode} backbone"
            + (" (cached outputs, trainable head; chosen automatically on CPU)" if automatic else ""))
    model.to(device)
    return model, report, text_mode


def _open_run_folder(spec: CompositionSpec, opts: RunOptions, data, is_main: bool, log: Callable[[str], None],
                     undo: list[Callable[[], None]]) -> Path:
    """The run folder (``--out``, else :func:`zoo.runs.default_out_dir` of the *requested* ``spec``, the hash
    ``zoo run`` prints and ``zoo sweep``/``ablate``/ensemble compositions name their runs by, whatever was
    substituted while building): refused when it is not a folder,
    holds a finished run (unless ``--fresh``) or a checkpoint made on other data. On rank 0, ``undo`` gets
    the remover of what a run failing before its first checkpoint wrote."""
    out_dir = Path(opts.out_dir) if opts.out_dir else runs.default_out_dir(spec)
    results_path = runs.results_path(out_dir)
    problem = folder_problem(out_dir)
    if problem:
        raise RunError(f"run folder {out_dir}: {problem}; give --out a folder path (new, or a run to resume)")
    if results_path.exists() and not opts.fresh:
        raise RunError(f"{results_path} exists: this run is finished. Use --out for a new run or --fresh to redo it.")
    last_path = runs.last_checkpoint(out_dir)
    if last_path.exists() and not opts.fresh:  # before anything is fitted or trained on the new data
        check_resume_data(last_path, data, out_dir)
    if is_main:  # a run that fails before its first checkpoint leaves nothing behind
        undo.append(_new_files_remover(out_dir, last_path, log))
    return out_dir


def _pretrain_molecule_encoder(model, prepared, device: torch.device, seed: int,
                                log: Callable[[str], None]) -> dict[str, Any] | None:
    """Let a molecule encoder with a ``pretrain`` method (e.g. ``fingerprint_mlp`` with ``pretrain_epochs``)
    learn from the molecules training may use without descriptions: the task's unlabeled molecules and the
    training pairs' molecules, never a held-out or test one. Returns its record (``None``: nothing done)."""
    encoder = model.molecule_encoder
    if not callable(getattr(encoder, "pretrain", None)):
        return None
    data = prepared.data
    excluded = {p.cid for p in [*data.select, *data.test]}
    cids = [cid for cid in dict.fromkeys([*(m.cid for m in getattr(data, "unlabeled", ())), *(p.cid for p in data.train)])
            if cid not in excluded]
    positions = [prepared.mol_index[cid] for cid in cids]
    try:
        return encoder.pretrain(lambda chosen: prepared.graphs.batch([positions[i] for i in chosen]), len(positions),
                                seed=seed, device=device, log=log)
    except ValueError as exc:
        raise RunError(f"cannot pretrain the [molecule_encoder]: {exc}") from None


def _write_results(results_path: Path, spec: CompositionSpec, report, requested_hash: str, task, data, fit_notes: list[str],
                   scores: dict, galleries: dict, timings: dict[str, float], *, training: dict[str, Any], checkpoint: Path,
                   log: Callable[[str], None], extra: dict[str, Any] | None = None) -> None:
    """Write ``results.json`` (:mod:`zoo.evals.results`): the spec that ran, the task and its data, the
    scores per gallery, timings, notes (protocol, substitutions, fitting) and the ``training`` record."""
    cfg, spec_hash = spec.train, spec.hash()
    notes = [protocol_note(task, data.protocol)]
    notes += [f"substituted {s['used']!r} for {s['requested']!r}: {s['reason']}" for s in report.substitutions]
    notes += fit_notes
    results = build_results(
        spec=spec.to_dict(), spec_hash=spec_hash,
        components=report.components,
        task=task_block(spec.eval.task, data, "test", galleries, spec.task),
        scores=scores, timings=timings, seeds={"seed": cfg.seed, "holdout_seed": holdout_seed(spec.eval.task, spec.task)},
        notes=notes,
        extra={"requested_spec_hash": requested_hash, "substitutions": report.substitutions,
               "training": training, "checkpoint": str(checkpoint), **(extra or {})},
    )
    write_results(results_path, results)
    log(f"results: {results_path} (spec hash {spec_hash}, {timings['total_s'] / 60:.1f} min)")


def _build_optimizer(model, cfg, device: torch.device, text_mode: str):
    """The optimizer and scheduler of ``cfg`` (timm factories; lazy AdamW for sparse embedding tables on
    CPU); a fine-tuned text backbone gets ``train.backbone_lr``."""
    from timm.scheduler import create_scheduler_v2

    backbone = getattr(model.text_encoder, "backbone", None) if text_mode == "finetune" else None
    try:
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, device, backbone=backbone,
                                    backbone_lr=cfg.backbone_lr)
        scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.scheduler, num_epochs=cfg.epochs,
                                           warmup_epochs=cfg.warmup_epochs, min_lr=cfg.lr * 0.01, warmup_lr=cfg.lr * 0.1)
    except (ValueError, AssertionError, KeyError) as exc:
        raise RunError(f"timm cannot build optimizer {cfg.optimizer!r} / scheduler {cfg.scheduler!r}: {exc!r}") from None
    if scheduler is None:
        raise RunError(f"train.scheduler={cfg.scheduler!r} is not a timm scheduler (e.g. cosine, step, plateau)")
    return optimizer, scheduler


def _resume_or_start(spec: CompositionSpec, opts: RunOptions, out_dir: Path, model, optimizer, scheduler, is_main: bool,
                     log: Callable[[str], None]) -> TrainerState:
    """The trainer state of the run's last checkpoint (unless ``--fresh``), the scheduler moved to its epoch;
    a fresh state otherwise. Rank 0 creates the checkpoint folder and writes the spec that runs."""
    state = TrainerState()
    last_path, ckpt_dir = runs.last_checkpoint(out_dir), runs.checkpoint_dir(out_dir)
    if last_path.exists() and not opts.fresh:
        state = load_checkpoint(last_path, model, optimizer, spec.hash())
        scheduler.step(state.epoch)  # the schedule is a function of the epoch
        log(f"resuming from {ckpt_dir} after epoch {state.epoch} (best held-out MRR {state.best_mrr:.4f} at epoch {state.best_epoch})")
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(runs.spec_path(out_dir), spec.to_toml())
    return state


def _check_batch(n: int, cfg, dctx) -> None:
    """Enough training pairs for a batch, and (under torchrun) for each rank's slice of it."""
    if n < 2:
        raise RunError(f"only {n} training pair(s): need at least 2")
    if dctx.enabled and min(n, cfg.batch_size) < 2 * dctx.world_size:  # every rank needs a pair batch (aux losses)
        raise RunError(f"global batch of {min(n, cfg.batch_size)} pairs cannot give each of {dctx.world_size} processes "
                       "at least 2 pairs; raise train.batch_size or launch fewer processes")


def _wrap_for_ranks(model, prepared, train_pairs, cfg, dctx, device: torch.device, log: Callable[[str], None]):
    """The model to train (DDP-wrapped under torchrun, gradients averaged over the ranks) and the hook that
    gathers the loss inputs across ranks (global in-batch negatives; ``None`` in one process). Lazy modules
    (DDP cannot wrap them) are first materialised by one forward on the first batch, in a forked RNG so that
    the random stream, and so the run, is the same with any number of processes."""
    n = len(train_pairs)
    if distributed.has_uninitialized_parameters(model):
        first = [train_pairs[i] for i in distributed.shard(list(range(min(n, cfg.batch_size))), dctx)]
        model.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(), autocast(device):
            model(model.text_encoder.collate(prepared.texts_of(first)).to(device),
                  prepared.graphs.batch(prepared.molecules_of(first)).to(device))
    train_model = distributed.wrap_model(model, dctx, device)
    gather_hook = distributed.gather_loss_inputs(model.loss) if dctx.enabled else None
    if dctx.enabled:
        rows, extra = divmod(min(n, cfg.batch_size), dctx.world_size)
        log(f"distributed: {dctx.world_size} processes ({dctx.backend}), global batch {min(n, cfg.batch_size)} "
            f"= {rows}{f'-{rows + 1}' if extra else ''} pairs per process")
    return train_model, gather_hook


def _prepare(model, spec: CompositionSpec, opts: RunOptions, data, out_dir: Path, dctx, device: torch.device,
             timings: dict[str, float], log: Callable[[str], None]):
    """Fit what the text encoder fits on the training descriptions (or load it from the run folder), then
    featurize every text and molecule once (:func:`zoo.gallery.prepare_gallery`). Returns the fitting notes
    and the prepared gallery."""
    with distributed.main_process_first(dctx):  # rank 0 fills the on-disk caches, the other ranks then read them
        t0 = time.time()
        fit_notes = fit_or_load(model.text_encoder, [p.description for p in data.train], runs.fitted_path(out_dir),
                                spec_hash=spec.hash(), seed=spec.train.seed, refit=opts.fresh and dctx.is_main, log=log,
                                data_checksums=data.checksums)  # training descriptions only, before texts are prepared
        fit_s = time.time() - t0
        prepared = prepare_gallery(model, data, device, progress=opts.progress, timings=timings)
        timings["text_features_s"] += fit_s
    return fit_notes, prepared


def _evaluate(model, prepared, scorers: list, data, spec: CompositionSpec, opts: RunOptions, device: torch.device,
              timings: dict[str, float], log: Callable[[str], None],
              run_dir: Path | None = None, rerankers: list | None = None) -> tuple[dict, dict, dict[str, Any]]:
    """The test scores per gallery of ``model`` (its best weights loaded), and the galleries; with ``scorers``
    (or ``rerankers``), the learned similarity fused with them, weights fitted on the held-out pairs
    (:mod:`zoo.fusion`; then the re-rankers' second stage, :mod:`zoo.rerank`), and the results' extra fields
    (``fusion``, ``rerank``, ``learned_scores``). Gallery ``all``'s embeddings go to ``opts.after_test``."""
    t0 = time.time()
    scores, galleries, embedded = evaluate_pairs(model, data.test, data, prepared.graphs, prepared.mol_index, prepared.text_items,
                                          prepared.text_index, spec.eval.galleries, spec.train.eval_batch_size,
                                          spec.eval.chunk_size, device, progress=opts.progress, log=log)
    timings["eval_s"] = time.time() - t0
    if run_dir is not None and "all" in embedded and opts.after_test is not None:
        opts.after_test(run_dir, data, embedded["all"])
    if not scorers and not rerankers:
        return scores, galleries, {}
    t0 = time.time()
    learned = scores
    scores, galleries, extra = fuse_composition(model, prepared, scorers, data, spec, device, log, rerankers or (), run_dir)
    timings["fusion_s"] = time.time() - t0
    return scores, galleries, {**extra, "learned_scores": learned}


def _run(spec: CompositionSpec, opts: RunOptions, undo: list[Callable[[], None]]) -> Path:
    started = time.time()
    timings: dict[str, float] = {}
    requested = spec.resolve()
    cfg = requested.train
    task, device, dctx, opts, log, cpu_bf16 = _start(requested, opts)

    # 1. data (bad input fails here, before anything slow)
    t0 = time.time()
    data = load_spec_data(requested, opts.data_dir, download=opts.download)
    log(f"data: {data.data_dir} protocol={data.protocol} train={len(data.train)} select={len(data.select)} "
        f"test={len(data.test)} gallery(all)={len(data.gallery)}")
    timings["load_data_s"] = time.time() - t0

    # 2. components (a substitution is announced before anything slow happens), run folder, fitted state, features
    t0 = time.time()
    model, report, text_mode = _build_model(requested, opts, device, log)
    spec = report.spec
    timings["build_s"] = time.time() - t0
    out_dir = _open_run_folder(requested, opts, data, dctx.is_main, log, undo)
    # scorers fused after training (zoo.fusion): built now, so a bad one fails before anything is trained
    scorers = [scorer_member(s.name, dict(s.options)) for s in spec.scorers] if dctx.is_main else []
    rerankers = [reranker_member(r.name, dict(r.options)) for r in spec.rerankers] if dctx.is_main else []
    fit_notes, prepared = _prepare(model, spec, opts, data, out_dir, dctx, device, timings, log)

    pretraining = None
    if not (runs.last_checkpoint(out_dir).exists() and not opts.fresh):  # a resumed run's checkpoint holds them
        t0 = time.time()
        pretraining = _pretrain_molecule_encoder(model, prepared, device, cfg.seed, log)
        if pretraining is not None:
            timings["pretrain_s"] = time.time() - t0

    # 3. optimizer, scheduler, resume, and 4. train
    optimizer, scheduler = _build_optimizer(model, cfg, device, text_mode)
    meta = {"spec_hash": spec.hash(), "molzoo_spec": json.dumps(spec.to_dict()),
            "molecule_featurizer": model.molecule_encoder.featurizer, **data_provenance(data)}  # checked when loading
    state = _resume_or_start(spec, opts, out_dir, model, optimizer, scheduler, dctx.is_main, log)
    _check_batch(len(data.train), cfg, dctx)
    train_model, gather_hook = _wrap_for_ranks(model, prepared, data.train, cfg, dctx, device, log)
    loop = Loop(cfg=cfg, model=model, train_model=train_model, optimizer=optimizer, scheduler=scheduler,
                collate_text=model.text_encoder.collate, graphs=prepared.graphs,
                train_text=prepared.texts_of(data.train), train_mols=prepared.molecules_of(data.train),
                select_text=prepared.texts_of(data.select), select_mols=prepared.molecules_of(data.select),
                dctx=dctx, device=device, last_path=runs.last_checkpoint(out_dir), best_path=runs.best_checkpoint(out_dir),
                skip_backbone=text_mode == "frozen", meta=meta, log=log, cpu_bf16=cpu_bf16)
    state = train_epochs(loop, state)
    timings["train_s"] = state.train_seconds
    if gather_hook is not None:
        gather_hook.remove()
    results_path = runs.results_path(out_dir)
    if not dctx.is_main:
        return results_path  # rank 0 evaluates the best weights and writes the results

    # 5. evaluate the best weights on test (fused with the spec's scorers, if any)
    load_weights(model, loop.best_path, "rerun with --fresh to retrain")
    scores, galleries, fused = _evaluate(model, prepared, scorers, data, spec, opts, device, timings, log,
                                         run_dir=out_dir, rerankers=rerankers)
    timings["total_s"] = time.time() - started

    # 6. results
    _write_results(results_path, spec, report, requested.hash(), task, data, fit_notes, scores, galleries, timings,
                   training={"device": str(device), "text_mode": text_mode, "epochs_run": state.epoch,
                             "best_epoch": state.best_epoch, "best_heldout_mrr": state.best_mrr,
                             "stop_reason": state.stop_reason, "history": state.history,
                             "bf16_autocast": device.type == "cuda" or cpu_bf16,
                             "precision": precision_name(device, cpu_bf16), "world_size": dctx.world_size,
                             "distributed_backend": dctx.backend, "global_batch_size": loop.global_batch,
                             "molecule_pretraining": pretraining},
                   checkpoint=loop.best_path, log=log, extra=fused)
    return results_path
