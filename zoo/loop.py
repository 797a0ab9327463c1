"""The training loop: one optimizer step, one epoch, held-out selection, and the early-stopping /
checkpoint decision after each epoch (:func:`train_epochs`).

:mod:`zoo.train` assembles what the loop needs (:class:`Loop`) and runs it; under ``torchrun`` every
rank runs the steps, rank 0 alone selects, logs and checkpoints (see :mod:`zoo.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo import distributed
from zoo.checkpoints import TrainerState, save_checkpoint, save_weights
from zoo.errors import RunError
from zoo.evals.ranking import rank_of_true, retrieval_metrics
from zoo.evaluate import autocast, embed_molecules, embed_texts
from zoo.optim import clip_grad_norm_
from zoo.spec import TrainConfig


def train_step(train_model: torch.nn.Module, optimizer, text_batch: Any, mol_batch: Any, grad_clip: float,
               device: torch.device, cpu_bf16: bool = False, where: str = "") -> dict[str, float]:
    """One optimizer step on one batch: forward (bf16 autocast on CUDA, and on the CPU with ``cpu_bf16``),
    backward, gradient clipping to ``grad_clip`` (when > 0), update. Returns the model's logged values;
    a non-finite loss is a :class:`RunError` (naming ``where``) before anything is updated."""
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


@dataclass
class Loop:
    """Everything one epoch reads: the model (``train_model`` is its DDP wrapper under torchrun), the
    optimizer and scheduler, the prepared training and held-out items, where checkpoints go."""

    cfg: TrainConfig
    model: torch.nn.Module
    train_model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    collate_text: Callable[[list[Any]], Any]
    graphs: Any  # the prepared molecule store (``.batch(items)``)
    train_text: list[Any]
    train_mols: list[Any]
    select_text: list[Any]
    select_mols: list[Any]
    dctx: distributed.DistContext
    device: torch.device
    last_path: Path
    best_path: Path
    skip_backbone: bool  # a frozen text backbone is not stored in checkpoints
    meta: dict[str, str]  # checkpoint metadata, checked when loading
    log: Callable[[str], None]
    cpu_bf16: bool = False  # bf16 autocast on the CPU: ``train.cpu_bf16`` resolved for this machine (zoo.precision)

    @property
    def n(self) -> int:
        return len(self.train_text)

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch (one when there are fewer pairs than a batch)."""
        return self.n // self.cfg.batch_size if self.n >= self.cfg.batch_size else 1

    @property
    def global_batch(self) -> int:
        return min(self.n, self.cfg.batch_size)


def train_epoch(loop: Loop, epoch: int) -> dict[str, float]:
    """One epoch of optimizer steps (seeded by ``epoch``, so identical after a resume); returns the
    logged values summed over the steps and averaged over the ranks."""
    cfg, n = loop.cfg, loop.n
    torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7_919 * loop.dctx.rank)  # dropout etc.: identical after a resume
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch)).tolist()
    loop.train_model.train()
    sums: dict[str, float] = {}
    for step in range(loop.steps):
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size] if n >= cfg.batch_size else order
        idx = distributed.shard(idx, loop.dctx)  # this rank's slice of the global batch
        text_batch = loop.collate_text([loop.train_text[i] for i in idx]).to(loop.device)
        mol_batch = loop.graphs.batch([loop.train_mols[i] for i in idx]).to(loop.device)
        logs = train_step(loop.train_model, loop.optimizer, text_batch, mol_batch, cfg.grad_clip, loop.device,
                          cpu_bf16=loop.cpu_bf16, where=f"epoch {epoch + 1} step {step + 1}")
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
    if hasattr(loop.optimizer, "flush"):  # LazyAdamW: its deferred row updates land before the weights are read
        loop.optimizer.flush()
    loop.scheduler.step(epoch + 1)
    return distributed.mean_across_ranks(sums, loop.dctx, loop.device)  # auxiliary losses differ per rank


def heldout_metrics(loop: Loop, epoch: int) -> dict[str, float]:
    """Held-out selection: text->molecule retrieval metrics among the held-out molecules."""
    cfg = loop.cfg
    text_emb = embed_texts(loop.model, loop.select_text, cfg.eval_batch_size, loop.device)
    mol_emb = embed_molecules(loop.model, loop.graphs, loop.select_mols, cfg.eval_batch_size, loop.device)
    if not (text_emb.isfinite().all() and mol_emb.isfinite().all()):
        raise RunError(f"the model's embeddings became nan/inf in epoch {epoch + 1}; lower train.lr (now {cfg.lr:g})")
    return retrieval_metrics(rank_of_true(text_emb, mol_emb, torch.arange(len(loop.select_mols)), device=loop.device))


def stop_reason(state: TrainerState, cfg: TrainConfig, epoch_s: float) -> str:
    """Why training stops after this epoch ("" to go on): patience, time budget, or the last epoch."""
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    if state.stale_epochs >= cfg.patience:
        return f"early stop: no held-out MRR gain for {cfg.patience} epochs"
    if state.train_seconds + epoch_s > budget_s:
        return f"time budget: train.max_minutes={cfg.max_minutes} reached"
    if state.epoch >= cfg.epochs:
        return "completed all epochs"
    return ""


def finish_epoch(loop: Loop, state: TrainerState, sums: dict[str, float], held: dict[str, float], epoch_s: float) -> None:
    """Rank 0 after an epoch: record it in ``state``, keep the best weights, log, decide whether to stop,
    and save the resumable checkpoint."""
    cfg = loop.cfg
    state.epoch += 1
    state.train_seconds += epoch_s
    record = {"epoch": state.epoch, **{k: v / loop.steps for k, v in sums.items()}, "heldout_mrr": held["mrr"],
              "heldout_hits@1": held["hits@1"], "lr": loop.optimizer.param_groups[0]["lr"], "seconds": epoch_s}
    state.history.append(record)
    improved = held["mrr"] > state.best_mrr
    if improved:
        state.best_mrr, state.best_epoch, state.stale_epochs = held["mrr"], state.epoch, 0
        save_weights(loop.model, loop.best_path, loop.skip_backbone, loop.meta)
    else:
        state.stale_epochs += 1
    extras = " ".join(f"{k}={v:.3f}" for k, v in record.items()
                      if k not in {"epoch", "loss", "heldout_mrr", "heldout_hits@1", "lr", "seconds"})
    loop.log(f"epoch {state.epoch:3d}/{cfg.epochs} loss={record['loss']:.4f} {extras} held-out MRR={held['mrr']:.4f} "
             f"H@1={held['hits@1']:.3f}{' *' if improved else ''} ({epoch_s:.1f}s)")
    state.stop_reason = stop_reason(state, cfg, epoch_s)
    save_checkpoint(loop.last_path, loop.model, loop.optimizer, state, loop.skip_backbone, loop.meta)


def train_epochs(loop: Loop, state: TrainerState) -> TrainerState:
    """Train from ``state`` (fresh or resumed) until a stop reason: every rank trains each epoch, rank 0
    selects, logs and checkpoints, and the other ranks receive its state (and so its decision)."""
    while state.epoch < loop.cfg.epochs and not state.stop_reason:
        epoch_start = time.time()
        sums = train_epoch(loop, state.epoch)
        if loop.dctx.is_main:
            held = heldout_metrics(loop, state.epoch)
            finish_epoch(loop, state, sums, held, time.time() - epoch_start)
        state = distributed.broadcast_object(state, loop.dctx)
    loop.log(f"training stopped after epoch {state.epoch}: {state.stop_reason or 'completed'}; best epoch {state.best_epoch} "
             f"(held-out MRR {state.best_mrr:.4f})")
    return state
