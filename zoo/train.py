"""``zoo run``: assemble a composition, train it on ChEBI-20, evaluate it, write results.

Training is device-agnostic (CUDA with bf16 autocast when present, CPU otherwise), seeded,
early-stopped on the held-out split's text->molecule MRR, and checkpointed atomically after
every epoch so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zoo import runs
from zoo.checkpoints import (TrainerState, check_resume_data, data_provenance, load_checkpoint, load_weights,
                             save_checkpoint, save_weights)
from zoo.devices import resolve_device
from zoo.errors import RunError
from zoo.spec import CompositionSpec
from zoo.tasks import get_task


@dataclass
class RunOptions:
    data_dir: str | None = None
    out_dir: str | None = None
    strict: bool = False  # refuse component substitutions (e.g. SciBERT -> MiniLM)
    fresh: bool = False  # ignore an existing checkpoint in out_dir
    progress: bool = True
    download: bool = False
    log: Callable[[str], None] = print


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- one step ---------------------------------------------------------------------------------
def train_step(train_model: torch.nn.Module, optimizer, text_batch: Any, mol_batch: Any, grad_clip: float,
               device: torch.device, cpu_bf16: bool = False, where: str = "") -> dict[str, float]:
    """One optimizer step on one batch: forward (bf16 autocast on CUDA, and on the CPU with ``cpu_bf16``),
    backward, gradient clipping to ``grad_clip`` (when > 0), update. Returns the model's logged values;
    a non-finite loss is a :class:`RunError` (naming ``where``) before anything is updated."""
    from zoo.evaluate import autocast
    from zoo.optim import clip_grad_norm_

    with autocast(device, cpu_bf16=cpu_bf16):
        loss, logs = train_model(text_batch, mol_batch)
    if not torch.isfinite(loss):
        raise RunError(f"loss became {float(loss.detach())}{f' at {where}' if where else ''}; lower train.lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        clip_grad_norm_(train_model.parameters(), grad_clip)
    optimizer.step()
    return logs


# -- the run ----------------------------------------------------------------------------------
def run(spec: CompositionSpec, opts: RunOptions) -> Path:
    """Train and evaluate ``spec``; returns the results JSON path.

    Under ``torchrun`` every process calls this: the ranks train one DDP model on slices of each
    global batch, and rank 0 alone selects, evaluates and writes (see :mod:`zoo.distributed`).
    """
    from zoo import distributed

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
    by torchrun. Returns the task, the device, the distributed context, and this process's options and log
    (silent, without progress bars, on ranks other than 0)."""
    from dataclasses import replace

    from zoo import distributed

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
    unknown = [g for g in requested.eval.galleries if not task.valid_gallery(g)]
    if unknown or not requested.eval.galleries:
        raise RunError(f"eval.galleries: unknown or empty {unknown or []}; choose from {', '.join(task.galleries)}, inbatch:N")
    seed_everything(cfg.seed)
    if "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count wins (several runs side by side)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cpus // dctx.local_world_size))  # processes on one machine share its cores
    return task, device, dctx, opts, log


def _build_model(requested: CompositionSpec, opts: RunOptions, device: torch.device, log: Callable[[str], None]):
    """The model of ``requested`` (substitutions announced, refused with ``--strict``), its text encoder in
    the chosen mode (``auto``: finetune on CUDA, frozen elsewhere), on ``device``. Returns it, the build
    report and the text mode."""
    from zoo.model import build_model

    model, report = build_model(requested, allow_substitution=not opts.strict, on_substitute=lambda m: log(f"WARNING: {m}"))
    spec = report.spec
    text_encoder = model.text_encoder
    text_mode = spec.text_encoder.options.get("mode", "frozen")
    if text_mode == "auto":
        text_mode = "finetune" if device.type == "cuda" else "frozen"
    if hasattr(text_encoder, "set_mode"):
        text_encoder.set_mode(text_mode)
        log(f"text encoder {spec.text_encoder.name}: {text_mode} backbone" + (" (cached outputs, trainable head; chosen automatically on CPU)" if text_mode == "frozen" and spec.text_encoder.options.get("mode") == "auto" else ""))
    model.to(device)
    return model, report, text_mode


def _open_run_folder(spec: CompositionSpec, opts: RunOptions, data, is_main: bool, log: Callable[[str], None],
                     undo: list[Callable[[], None]]) -> Path:
    """The run folder (``--out``, else :func:`zoo.runs.default_out_dir`): refused when it is not a folder,
    holds a finished run (unless ``--fresh``) or a checkpoint made on other data. On rank 0, ``undo`` gets
    the remover of what a run failing before its first checkpoint wrote."""
    from zoo.cache import folder_problem

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
    cids = [cid for cid in dict.fromkeys([*(m.cid for m in data.unlabeled), *(p.cid for p in data.train)])
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
    from zoo.evals.ranking import TIE_POLICY
    from zoo.evals.results import build_results, write_results

    cfg, spec_hash = spec.train, spec.hash()
    notes = [task.protocol_note(data.protocol)]
    notes += [f"substituted {s['used']!r} for {s['requested']!r}: {s['reason']}" for s in report.substitutions]
    notes += fit_notes
    results = build_results(
        spec=spec.to_dict(), spec_hash=spec_hash,
        components=report.components,
        task={"name": spec.eval.task, "protocol": data.protocol, "split": "test", "galleries": galleries,
              "data_dir": str(data.data_dir), "data_checksums": data.checksums, "counts": data.summary(),
              "skipped_rows": data.skipped,
              "tie_policy": TIE_POLICY},
        scores=scores, timings=timings, seeds={"seed": cfg.seed, "holdout_seed": 0},
        notes=notes,
        extra={"requested_spec_hash": requested_hash, "substitutions": report.substitutions,
               "training": training, "checkpoint": str(checkpoint), **(extra or {})},
    )
    write_results(results_path, results)
    log(f"results: {results_path} (spec hash {spec_hash}, {timings['total_s'] / 60:.1f} min)")


def _run(spec: CompositionSpec, opts: RunOptions, undo: list[Callable[[], None]]) -> Path:
    from zoo import distributed
    from zoo.cache import atomic_write_text
    from zoo.fitting import fit_or_load
    from zoo.gallery import prepare_gallery
    from zoo.evals.ranking import rank_of_true, retrieval_metrics
    from zoo.evaluate import autocast, embed_molecules, embed_texts, evaluate_pairs
    from zoo.fusion import fuse_composition, scorer_member

    started = time.time()
    timings: dict[str, float] = {}
    requested = spec.resolve()
    requested_hash = requested.hash()
    cfg = requested.train
    task, device, dctx, opts, log = _start(requested, opts)

    # 1. data (bad input fails here, before anything slow)
    t0 = time.time()
    data = task.load(opts.data_dir, holdout_fraction=cfg.holdout_fraction, holdout_seed=0, download=opts.download)
    log(f"data: {data.data_dir} protocol={data.protocol} train={len(data.train)} select={len(data.select)} "
        f"test={len(data.test)} gallery(all)={len(data.gallery)}")
    timings["load_data_s"] = time.time() - t0

    # 2. components (a substitution is announced before anything slow happens)
    t0 = time.time()
    model, report, text_mode = _build_model(requested, opts, device, log)
    spec = report.spec
    spec_hash = spec.hash()
    text_encoder = model.text_encoder
    timings["build_s"] = time.time() - t0

    out_dir = _open_run_folder(spec, opts, data, dctx.is_main, log, undo)
    # scorers fused after training (zoo.fusion): built now, so a bad one fails before anything is trained
    scorers = [scorer_member(s.name, dict(s.options)) for s in spec.scorers] if dctx.is_main else []
    results_path, ckpt_dir = runs.results_path(out_dir), runs.checkpoint_dir(out_dir)
    last_path, best_path = runs.last_checkpoint(out_dir), runs.best_checkpoint(out_dir)

    with distributed.main_process_first(dctx):  # rank 0 fills the on-disk caches, the other ranks then read them
        t0 = time.time()
        fit_notes = fit_or_load(text_encoder, [p.description for p in data.train], runs.fitted_path(out_dir), spec_hash=spec_hash,
                                seed=cfg.seed, refit=opts.fresh and dctx.is_main, log=log,
                                data_checksums=data.checksums)  # training descriptions only, before texts are prepared
        fit_s = time.time() - t0
        prepared = prepare_gallery(model, data, device, progress=opts.progress, timings=timings)
        timings["text_features_s"] += fit_s
    graphs = prepared.graphs

    train_pairs, select_pairs = data.train, data.select
    train_text, select_text = prepared.texts_of(train_pairs), prepared.texts_of(select_pairs)
    train_mols, select_mols = prepared.molecules_of(train_pairs), prepared.molecules_of(select_pairs)
    pretraining = None
    if not (last_path.exists() and not opts.fresh):  # a resumed run's checkpoint holds the pretrained weights
        t0 = time.time()
        pretraining = _pretrain_molecule_encoder(model, prepared, device, cfg.seed, log)
        if pretraining is not None:
            timings["pretrain_s"] = time.time() - t0

    # 3. optimizer & scheduler (timm factories; lazy AdamW for sparse embedding tables on CPU)
    from timm.scheduler import create_scheduler_v2

    from zoo.optim import build_optimizer

    backbone = getattr(text_encoder, "backbone", None) if text_mode == "finetune" else None
    try:
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, device, backbone=backbone,
                                    backbone_lr=cfg.backbone_lr)
        scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.scheduler, num_epochs=cfg.epochs,
                                           warmup_epochs=cfg.warmup_epochs, min_lr=cfg.lr * 0.01, warmup_lr=cfg.lr * 0.1)
    except (ValueError, AssertionError, KeyError) as exc:
        raise RunError(f"timm cannot build optimizer {cfg.optimizer!r} / scheduler {cfg.scheduler!r}: {exc!r}") from None
    if scheduler is None:
        raise RunError(f"train.scheduler={cfg.scheduler!r} is not a timm scheduler (e.g. cosine, step, plateau)")
    skip_backbone = text_mode == "frozen"
    meta = {"spec_hash": spec_hash, "molzoo_spec": json.dumps(spec.to_dict()),
            "molecule_featurizer": model.molecule_encoder.featurizer, **data_provenance(data)}  # checked when loading

    # 4. resume
    state = TrainerState()
    if last_path.exists() and not opts.fresh:
        state = load_checkpoint(last_path, model, optimizer, spec_hash)
        scheduler.step(state.epoch)  # the schedule is a function of the epoch
        log(f"resuming from {ckpt_dir} after epoch {state.epoch} (best held-out MRR {state.best_mrr:.4f} at epoch {state.best_epoch})")
    if dctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(runs.spec_path(out_dir), spec.to_toml())

    # 5. train
    collate_text = text_encoder.collate
    n = len(train_pairs)
    steps = n // cfg.batch_size if n >= cfg.batch_size else 1
    if n < 2:
        raise RunError(f"only {n} training pair(s): need at least 2")
    if dctx.enabled and min(n, cfg.batch_size) < 2 * dctx.world_size:  # every rank needs a pair batch (aux losses)
        raise RunError(f"global batch of {min(n, cfg.batch_size)} pairs cannot give each of {dctx.world_size} processes "
                       "at least 2 pairs; raise train.batch_size or launch fewer processes")
    if distributed.has_uninitialized_parameters(model):
        # lazy modules (DDP cannot wrap them) are materialised by one forward on the first batch, in a forked RNG
        # so that the random stream, and so the run, is the same with any number of processes
        first = distributed.shard(list(range(min(n, cfg.batch_size))), dctx)
        model.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(), autocast(device):
            model(collate_text([train_text[i] for i in first]).to(device),
                  graphs.batch([train_mols[i] for i in first]).to(device))
    train_model = distributed.wrap_model(model, dctx, device)  # DDP: gradients averaged over the ranks
    gather_hook = distributed.gather_loss_inputs(model.loss) if dctx.enabled else None  # global in-batch negatives
    if dctx.enabled:
        rows, extra = divmod(min(n, cfg.batch_size), dctx.world_size)
        log(f"distributed: {dctx.world_size} processes ({dctx.backend}), global batch {min(n, cfg.batch_size)} "
            f"= {rows}{f'-{rows + 1}' if extra else ''} pairs per process")
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    while state.epoch < cfg.epochs and not state.stop_reason:
        epoch = state.epoch
        epoch_start = time.time()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7_919 * dctx.rank)  # dropout etc.: identical after a resume
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch)).tolist()
        train_model.train()
        sums: dict[str, float] = {}
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size] if n >= cfg.batch_size else order
            idx = distributed.shard(idx, dctx)  # this rank's slice of the global batch
            text_batch = collate_text([train_text[i] for i in idx]).to(device)
            mol_batch = graphs.batch([train_mols[i] for i in idx]).to(device)
            logs = train_step(train_model, optimizer, text_batch, mol_batch, cfg.grad_clip, device, cpu_bf16=cfg.cpu_bf16,
                              where=f"epoch {epoch + 1} step {step + 1}")
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        if hasattr(optimizer, "flush"):  # LazyAdamW: its deferred row updates land before the weights are read
            optimizer.flush()
        scheduler.step(epoch + 1)
        sums = distributed.mean_across_ranks(sums, dctx, device)  # auxiliary losses differ per rank
        if dctx.is_main:  # rank 0 selects, logs and checkpoints; the other ranks receive its decision
            # held-out selection: text->molecule MRR among the held-out molecules
            text_emb = embed_texts(model, select_text, cfg.eval_batch_size, device)
            mol_emb = embed_molecules(model, graphs, select_mols, cfg.eval_batch_size, device)
            if not (text_emb.isfinite().all() and mol_emb.isfinite().all()):
                raise RunError(f"the model's embeddings became nan/inf in epoch {epoch + 1}; lower train.lr (now {cfg.lr:g})")
            held = retrieval_metrics(rank_of_true(text_emb, mol_emb, torch.arange(len(select_mols)), device=device))
            state.epoch = epoch + 1
            epoch_s = time.time() - epoch_start
            state.train_seconds += epoch_s
            record = {"epoch": state.epoch, **{k: v / steps for k, v in sums.items()}, "heldout_mrr": held["mrr"],
                      "heldout_hits@1": held["hits@1"], "lr": optimizer.param_groups[0]["lr"], "seconds": epoch_s}
            state.history.append(record)
            improved = held["mrr"] > state.best_mrr
            if improved:
                state.best_mrr, state.best_epoch, state.stale_epochs = held["mrr"], state.epoch, 0
                save_weights(model, best_path, skip_backbone, meta)
            else:
                state.stale_epochs += 1
            extras = " ".join(f"{k}={v:.3f}" for k, v in record.items()
                              if k not in {"epoch", "loss", "heldout_mrr", "heldout_hits@1", "lr", "seconds"})
            log(f"epoch {state.epoch:3d}/{cfg.epochs} loss={record['loss']:.4f} {extras} held-out MRR={held['mrr']:.4f} "
                f"H@1={held['hits@1']:.3f}{' *' if improved else ''} ({epoch_s:.1f}s)")
            if state.stale_epochs >= cfg.patience:
                state.stop_reason = f"early stop: no held-out MRR gain for {cfg.patience} epochs"
            elif state.train_seconds + epoch_s > budget_s:
                state.stop_reason = f"time budget: train.max_minutes={cfg.max_minutes} reached"
            elif state.epoch >= cfg.epochs:
                state.stop_reason = "completed all epochs"
            save_checkpoint(last_path, model, optimizer, state, skip_backbone, meta)
        state = distributed.broadcast_object(state, dctx)
    log(f"training stopped after epoch {state.epoch}: {state.stop_reason or 'completed'}; best epoch {state.best_epoch} "
        f"(held-out MRR {state.best_mrr:.4f})")
    timings["train_s"] = state.train_seconds
    if gather_hook is not None:
        gather_hook.remove()
    if not dctx.is_main:
        return results_path  # rank 0 evaluates the best weights and writes the results

    # 6. evaluate the best weights on test
    t0 = time.time()
    load_weights(model, best_path, "rerun with --fresh to retrain")
    scores, galleries, _ = evaluate_pairs(model, data.test, data, graphs, prepared.mol_index, prepared.text_items,
                                          prepared.text_index, spec.eval.galleries, cfg.eval_batch_size, spec.eval.chunk_size, device,
                                          progress=opts.progress, log=log)
    timings["eval_s"] = time.time() - t0
    fused: dict[str, Any] = {}
    if scorers:  # fuse the learned similarity with the spec's scorers, weights fitted on the held-out pairs
        t0 = time.time()
        learned = scores
        scores, galleries, record = fuse_composition(model, prepared, scorers, data, spec, device, log)
        fused = {"fusion": record, "learned_scores": learned}
        timings["fusion_s"] = time.time() - t0
    timings["total_s"] = time.time() - started

    # 7. results
    _write_results(results_path, spec, report, requested_hash, task, data, fit_notes, scores, galleries, timings,
                   training={"device": str(device), "text_mode": text_mode, "epochs_run": state.epoch,
                             "best_epoch": state.best_epoch, "best_heldout_mrr": state.best_mrr,
                             "stop_reason": state.stop_reason, "history": state.history,
                             "bf16_autocast": device.type == "cuda" or cfg.cpu_bf16, "world_size": dctx.world_size,
                             "distributed_backend": dctx.backend, "global_batch_size": min(n, cfg.batch_size),
                             "molecule_pretraining": pretraining},
                   checkpoint=best_path, log=log, extra=fused)
    return results_path
