"""Multi-process training with ``torchrun`` and DistributedDataParallel (DDP).

``zoo run`` becomes distributed when it is launched by ``torchrun`` (``WORLD_SIZE > 1`` in the
environment)::

    torchrun --nproc_per_node 2 -m zoo.cli run aman --set train.batch_size=64

Semantics (identical for any number of processes, so a spec means the same thing on 1 or N):

* **Global batch.** ``train.batch_size`` is the *global* batch. Every rank draws the same
  seeded epoch permutation and takes its contiguous slice of each global batch
  (:func:`shard`); slices differ in size by at most one row.
* **Global in-batch negatives.** Before the retrieval loss, the aligned text and molecule
  embeddings of all ranks are gathered *with gradients* (:func:`gather_rows`, installed on the
  loss module by :func:`gather_loss_inputs`), in rank order, so the loss sees exactly the
  single-process global batch. Every rank computes that same full loss; the all-gather's
  backward sums the gradient of all ranks' copies (``world_size`` times the gradient of one)
  and DDP divides by ``world_size`` when it averages: the parameter gradient equals the
  single-process gradient of the global batch.
* **Auxiliary aligner losses** (the adversarial discriminator; ``cross_attention``'s matching
  loss, whose negatives come from the rank's own rows) are computed per rank; DDP averages them,
  which equals the single-process (mean) loss when the slices are equal in size.
* **Rank 0** featurizes and fills the on-disk caches while the others wait (:func:`main_process_first`),
  selects on the held-out split, logs, and alone writes checkpoints and results; its trainer
  state (early-stopping decision included) is broadcast after every epoch, so all ranks stop
  together. Every rank resumes from the same ``last`` checkpoint.
* Dropout masks differ across ranks (the per-epoch seed adds the rank).
* Backend: ``nccl`` with device ``cuda:LOCAL_RANK`` when the run uses CUDA, ``gloo`` on CPU.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from zoo.errors import RunError

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")
FIND_UNUSED_ENV = "ZOO_DDP_FIND_UNUSED_PARAMETERS"
INIT_TIMEOUT_MIN = 60
_OWNS_GROUP = False  # True when setup() created the default process group (shutdown() destroys it)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes, and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None  # None: a single process, no process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 featurizes and caches first, and alone writes checkpoints, results and logs."""
        return self.rank == 0


SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:

        raise RunError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def launched_distributed() -> bool:
    """True under ``torchrun`` (or any launcher setting ``WORLD_SIZE > 1``)."""
    return _env_int("WORLD_SIZE", 1) > 1


def setup(device: "torch.device") -> tuple[DistContext, "torch.device"]:
    """Join the process group described by torchrun's environment variables.

    ``device`` is the run's resolved device; on CUDA each rank takes ``cuda:LOCAL_RANK`` (NCCL),
    on CPU the backend is gloo. Without ``WORLD_SIZE > 1`` this is a no-op returning
    :data:`SINGLE`. An already initialised default process group is reused.
    """
    import torch
    import torch.distributed as dist

    global _OWNS_GROUP
    if not launched_distributed():
        return SINGLE, device
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank, local_world = _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # generous timeout: the other ranks wait at a barrier while rank 0 featurizes and caches
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(minutes=INIT_TIMEOUT_MIN))
        _OWNS_GROUP = True
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                      local_world_size=local_world, backend=str(dist.get_backend()))
    return ctx, device


def shutdown() -> None:
    """Destroy the process group if :func:`setup` created it."""
    import torch.distributed as dist

    global _OWNS_GROUP
    if _OWNS_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWNS_GROUP = False


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if not ctx.enabled:
        return
    import torch
    import torch.distributed as dist

    if ctx.backend == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextlib.contextmanager
def main_process_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the block first (filling on-disk caches); the others wait, then run it (reading them).

    If the block fails on rank 0, the others are told (instead of waiting at a barrier until the
    process-group timeout) and raise a :class:`~zoo.errors.RunError` naming rank 0's error.
    """
    if not ctx.enabled:
        yield
        return
    if ctx.is_main:
        try:
            yield
        except BaseException as exc:
            broadcast_object(f"{type(exc).__name__}: {exc}", ctx)  # pairs with the other ranks' wait below
            raise
        broadcast_object(None, ctx)
        return
    failure = broadcast_object(None, ctx)  # waits for rank 0 to finish the block
    if failure is not None:

        raise RunError(f"rank 0 failed while preparing the shared data: {failure}")
    yield


def broadcast_object(obj: T, ctx: DistContext) -> T:
    """Rank 0's ``obj`` on every rank (picklable objects; a no-op in a single process)."""
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def mean_across_ranks(values: dict[str, float], ctx: DistContext, device: "torch.device") -> dict[str, float]:
    """Average each value over the ranks (every rank must pass the same keys)."""
    if not ctx.enabled or not values:
        return dict(values)
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, tensor.tolist())}


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's contiguous slice of a global batch; slice sizes differ by at most one, in rank order."""
    base, extra = divmod(len(items), ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return list(items[start : start + base + (ctx.rank < extra)])


def gather_rows(x: "torch.Tensor") -> "torch.Tensor":
    """Concatenate ``x`` ``[n_r, ...]`` of every rank along dim 0, in rank order, keeping gradients.

    Rows may differ in number across ranks (padded for the collective, then cut). The backward
    pass sums the gradients that every rank's copy of the result sends to this rank's rows
    (``torch.distributed.nn.functional.all_gather``). Identity in a single process.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor(len(x), dtype=torch.long, device=x.device))
    counts = [int(s) for s in sizes]
    longest = max(counts)
    padded = torch.cat([x, x.new_zeros((longest - len(x), *x.shape[1:]))]) if len(x) < longest else x
    with warnings.catch_warnings():
        # deprecated in torch 2.14 in favour of private functional collectives whose names change
        # between releases; this public one works (and sums gradients) on every torch >= 2.2
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts)])


def gather_loss_inputs(loss: "nn.Module") -> Any:
    """Make ``loss(text, molecule)`` see the rows of every rank (global in-batch negatives).

    Installs a forward pre-hook that passes each tensor argument through :func:`gather_rows`;
    returns the hook handle (``.remove()`` undoes it). The module and its state dict are unchanged.
    """
    import torch

    def hook(_module: "nn.Module", args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(gather_rows(a) if torch.is_tensor(a) and a.dim() >= 1 else a for a in args)

    return loss.register_forward_pre_hook(hook)


def has_uninitialized_parameters(model: "nn.Module") -> bool:
    """True while a lazy module (e.g. ``nn.LazyLinear``) has not seen its first input."""
    from torch.nn.parameter import is_lazy

    return any(is_lazy(p) for p in model.parameters())


def wrap_model(model: "nn.Module", ctx: DistContext, device: "torch.device") -> "nn.Module":
    """``model`` in DistributedDataParallel (gradient averaging); unchanged in a single process.

    DDP broadcasts rank 0's parameters when it wraps, so every rank starts identical. Lazy
    parameters must be materialised first (one forward pass). Set ``ZOO_DDP_FIND_UNUSED_PARAMETERS=1``
    for a component whose parameters do not all take part in every training step.
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    find_unused = os.environ.get(FIND_UNUSED_ENV, "") not in ("", "0")
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused, broadcast_buffers=False)
