"""The training optimizer: timm's factory, and on CPU an AdamW that updates sparse embedding rows lazily.

Embedding tables declared with sparse gradients (``nn.Embedding(sparse=True)``, e.g. the text
encoder's lexical channel: ~41 M parameters, of which one batch touches a few thousand rows) make
a dense AdamW step read and write every row of four tables that size; on CPU that was half of an
``aman`` training step. :class:`LazyAdamW` is :class:`torch.optim.AdamW` (fused kernel) for dense
gradients; for sparse ones it updates the touched rows at each step and defers the closed-form
updates of the untouched rows (moment decay, momentum steps, weight decay) until a row is touched
again or :meth:`LazyAdamW.flush` runs, so the parameters follow dense AdamW (up to ``eps`` in the
deferred momentum steps). Plain "lazy Adam" (:class:`torch.optim.SparseAdam`, TF Addons'
``LazyAdam``), which leaves untouched rows alone, learned measurably slower here: a rarely seen
row then moves by one momentum step per occurrence instead of the ~10 that dense Adam gives it.

On CUDA, and for any optimizer other than ``adamw``, sparse tables are switched to dense
gradients and timm builds the optimizer as before (a dense step is cheap on a GPU, and NCCL
cannot all-reduce sparse gradients).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

#: ``train.optimizer`` values that :class:`LazyAdamW` implements.
LAZY_OPTIMIZERS = ("adamw",)
#: Steps after which LazyAdamW flushes a parameter by itself (keeps ``(beta1/sqrt(beta2))^-steps`` finite).
MAX_DEFERRED_STEPS = 1000
_CHUNK_ROWS = 4096


def sparse_tables(model: nn.Module) -> list[nn.Module]:
    """The embedding modules of ``model`` that produce sparse gradients."""
    return [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse]


class _Window:
    """The factors of the steps since ``start`` (when every row of a parameter was current) that a
    row without gradient needs to catch up. With ``size_t = lr_t / (1 - beta1^t)`` and ``decay[k]``
    the product of the weight-decay factors ``1 - lr * weight_decay`` of steps ``start + 1 ..
    start + k``, the sums over those steps ``t`` (``u = t - start``) of
    ``size_t * sqrt(1 - beta2^t) * ratio^u / decay[u]`` (``ratio = beta1 / sqrt(beta2)``; the
    momentum steps where ``eps`` is negligible) and of ``size_t * beta1^u / decay[u]`` (where
    ``eps`` dominates the denominator) are ``drift[k]`` and ``drift_eps[k]``."""

    def __init__(self, start: int, betas: tuple[float, float]) -> None:
        self.start, self.betas = start, betas
        self.decay, self.drift, self.drift_eps = [1.0], [0.0], [0.0]

    @property
    def ratio(self) -> float:
        return self.betas[0] / math.sqrt(self.betas[1])

    def record(self, step: int, lr: float, weight_decay: float) -> None:
        beta1, beta2 = self.betas
        u = step - self.start
        self.decay.append(self.decay[-1] * (1.0 - lr * weight_decay))
        size = lr / (1.0 - beta1**step)
        self.drift.append(self.drift[-1] + size * math.sqrt(1.0 - beta2**step) * self.ratio**u / self.decay[-1])
        self.drift_eps.append(self.drift_eps[-1] + size * beta1**u / self.decay[-1])


class LazyAdamW(torch.optim.AdamW):
    """:class:`torch.optim.AdamW` that updates parameters with sparse gradients row by row, lazily,
    to the values dense AdamW gives them.

    Under dense AdamW a row without gradient still changes: its moments decay (``exp_avg`` by
    ``beta1``, ``exp_avg_sq`` by ``beta2`` per step), its momentum keeps moving it and weight decay
    shrinks it. Those steps have a closed form in the row's moments and the per-step learning
    rates; they are deferred and applied in one go when the row is next looked up (a forward
    pre-hook on each table, see :meth:`watch`), when it next gets a gradient, or by :meth:`flush`,
    which brings every row up to date (call it before the weights are read other than through the
    table: evaluation, saving; :meth:`state_dict` flushes). The deferred momentum steps leave out
    ``eps`` (relative error ``eps / sqrt(exp_avg_sq)``); the rest is AdamW's arithmetic.

    The state has AdamW's keys (``step``, ``exp_avg``, ``exp_avg_sq``), plus ``row_step``, the step
    each row is current at, for sparse parameters; a dense AdamW state loads unchanged.
    """

    def __init__(self, params: Any, **kwargs: Any) -> None:
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdamW does not implement amsgrad")
        super().__init__(params, **kwargs)
        self._windows: dict[Tensor, _Window] = {}  # sparse parameters with deferred row updates

    def watch(self, tables: list[nn.Module]) -> list[Any]:
        """Catch up the rows an embedding table looks up before each lookup (``tables`` called as
        modules with the row ids first), so the forward reads dense AdamW's values. Returns the hook
        handles."""
        return [table.register_forward_pre_hook(self._before_lookup) for table in tables]

    @torch.no_grad()
    def _before_lookup(self, table: nn.Module, args: tuple[Any, ...]) -> None:
        if table.weight in self._windows and args and torch.is_tensor(args[0]):
            self._catch_up(table.weight, args[0].reshape(-1).unique())

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [(group, p) for group in self.param_groups for p in group["params"]
                  if p.grad is not None and p.grad.is_sparse]
        for p in [p for p in self._windows if p.grad is not None and not p.grad.is_sparse]:
            self._flush(p)  # a lazy parameter with a dense gradient now: bring it up to date first
        grads = [p.grad for _, p in sparse]
        for _, p in sparse:  # hidden from the dense step, which skips parameters without a gradient
            p.grad = None
        try:
            super().step()
        finally:
            for (_, p), grad in zip(sparse, grads):
                p.grad = grad
        for (group, p), grad in zip(sparse, grads):
            self._sparse_step(group, p, grad)
        return loss

    @torch.no_grad()
    def flush(self) -> None:
        """Apply every deferred row update: afterwards the parameters hold dense AdamW's values."""
        for p in list(self._windows):
            self._flush(p)

    def state_dict(self) -> dict[str, Any]:
        self.flush()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._windows.clear()  # a saved state is flushed: every row is current at its step
        for state in self.state.values():
            if "row_step" in state:  # torch casts state tensors to the parameter's dtype
                state["row_step"] = state["row_step"].round().long()

    def _sparse_step(self, group: dict[str, Any], param: Tensor, grad: Tensor) -> None:
        """AdamW step on the rows named by the sparse ``grad`` (duplicates summed), after catching
        them up on the steps they missed."""
        grad = grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        if group["maximize"]:
            values = -values
        state = self.state[param]
        if "step" not in state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if "row_step" not in state:  # fresh, or a dense AdamW state: every row is current
            state["row_step"] = torch.full(param.shape[:1], int(state["step"]), dtype=torch.int64, device=param.device)
        window = self._windows.get(param)
        if window is not None and int(state["step"]) - window.start >= MAX_DEFERRED_STEPS:
            self._flush(param)
            window = None
        if window is None:
            window = self._windows[param] = _Window(int(state["step"]), group["betas"])
        value, exp_avg, exp_avg_sq = self._rows_now(param, rows)
        state["step"] += 1
        step = int(state["step"])
        lr, (beta1, beta2), weight_decay = float(group["lr"]), group["betas"], group["weight_decay"]
        window.record(step, lr, weight_decay)
        exp_avg.lerp_(values, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(group["eps"])
        value.mul_(1 - lr * weight_decay).addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        self._store(param, rows, value, exp_avg, exp_avg_sq, step)

    def _rows_now(self, param: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(value, exp_avg, exp_avg_sq)`` of ``rows`` (copies) brought from each row's ``row_step``
        to the current step."""
        state = self.state[param]
        value, exp_avg, exp_avg_sq = (t.index_select(0, rows) for t in (param.data, state["exp_avg"], state["exp_avg_sq"]))
        self._advance(param, state["row_step"].index_select(0, rows), value, exp_avg, exp_avg_sq)
        return value, exp_avg, exp_avg_sq

    def _advance(self, param: Tensor, row_step: Tensor, value: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor) -> None:
        """Bring rows (``value``/``exp_avg``/``exp_avg_sq``, in place) from ``row_step`` to the current step."""
        state, window = self.state[param], self._windows[param]
        since = row_step - window.start  # each row is current at step start + since
        end = int(state["step"]) - window.start
        if bool((since == end).all()):
            return
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.float64, device=param.device)  # noqa: E731
        decay, drift, drift_eps = as_tensor(window.decay), as_tensor(window.drift), as_tensor(window.drift_eps)
        beta1, beta2 = window.betas
        eps = next(g["eps"] for g in self.param_groups if any(p is param for p in g["params"]))
        # the steps without gradient: p <- p * (1 - lr wd) - size_t * m_t / (sqrt(v_t / (1 - beta2^t)) + eps)
        # with m_t = beta1^j m and v_t = beta2^j v (j steps after the row's step): the weight decay
        # multiplies; the momentum steps add up to m / (sqrt(v) / slow + eps / fast) -- exact when eps is
        # negligible (slow) or dominates (fast), and in between while the bias correction of v varies little
        skipped = (end - since).to(torch.float64)
        slow = decay[end] * (drift[end] - drift[since]) * window.ratio ** -since.to(torch.float64)
        fast = decay[end] * (drift_eps[end] - drift_eps[since]) * beta1 ** -since.to(torch.float64)
        moving = (slow > 0) & (fast > 0)  # else no step was skipped (or the learning rate was 0)
        coefficients = [decay[end] / decay[since], torch.where(moving, slow * fast, 0.0),
                        torch.where(moving, fast, 1.0), torch.where(moving, slow * eps, 1.0), beta1**skipped, beta2**skipped]
        shape = (-1,) + (1,) * (param.dim() - 1)
        scale, numerator, per_sqrt, per_eps, decay1, decay2 = (c.to(param.dtype).view(shape) for c in coefficients)
        for i in range(0, len(value), _CHUNK_ROWS):  # chunks keep the temporaries small when flushing a table
            rows = slice(i, i + _CHUNK_ROWS)
            m, v = exp_avg[rows], exp_avg_sq[rows]
            momentum = v.sqrt().mul_(per_sqrt[rows]).add_(per_eps[rows]).reciprocal_().mul_(numerator[rows]).mul_(m)
            value[rows].mul_(scale[rows]).sub_(momentum)
            m.mul_(decay1[rows])
            v.mul_(decay2[rows])

    def _store(self, param: Tensor, rows: Tensor, value: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int) -> None:
        state = self.state[param]
        param.data.index_copy_(0, rows, value)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        state["row_step"].index_fill_(0, rows, step)

    def _catch_up(self, param: Tensor, rows: Tensor) -> None:
        self._store(param, rows, *self._rows_now(param, rows), int(self.state[param]["step"]))

    def _flush(self, param: Tensor) -> None:
        state = self.state[param]
        self._advance(param, state["row_step"], param.data, state["exp_avg"], state["exp_avg_sq"])  # whole table, in place
        self.state[param]["row_step"].fill_(int(self.state[param]["step"]))
        del self._windows[param]


def clip_grad_norm_(parameters: Any, max_norm: float) -> Tensor:
    """:func:`torch.nn.utils.clip_grad_norm_` (2-norm) that also takes sparse gradients: they are
    coalesced in place first, once for the norm and the optimizer step. Returns the total norm."""
    params = [p for p in parameters if p.grad is not None]
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    dense = [p for p in params if not p.grad.is_sparse]
    sparse = [p.grad for p in params if p.grad.is_sparse]
    norms = [torch.nn.utils.get_total_norm([p.grad for p in dense])] if dense else []
    norms += [torch.linalg.vector_norm(grad.values()) for grad in sparse]
    if not norms:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(norms))
    torch.nn.utils.clip_grads_with_norm_(dense, max_norm, total)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # as clip_grads_with_norm_
    for grad in sparse:
        grad.values().mul_(coef)
    return total


def build_optimizer(model: nn.Module, optimizer: str, lr: float, weight_decay: float, device: torch.device,
                    backbone: nn.Module | None = None, backbone_lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer of a training run of ``model`` (timm's errors propagate).

    Parameters are grouped as timm groups a model (no weight decay on biases and norms), or, with a
    fine-tuned text ``backbone``, in two groups: the backbone at ``backbone_lr``, the rest at ``lr``
    (every parameter weight-decayed, as timm does for explicit groups). ``adamw`` on CPU is
    :class:`LazyAdamW`; everything else is timm's ``create_optimizer_v2``, with the model's sparse
    embedding tables switched to dense gradients first.
    """
    from timm.optim import create_optimizer_v2, param_groups_weight_decay

    params: Any = model
    if backbone is not None:
        backbone_ids = {id(p) for p in backbone.parameters()}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
        params = [{"params": rest, "lr": lr}, {"params": list(backbone.parameters()), "lr": backbone_lr or lr}]
    if device.type == "cpu" and optimizer.lower() in LAZY_OPTIMIZERS:
        if params is model:
            no_decay = getattr(model, "no_weight_decay", lambda: set())()
            params, weight_decay = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_decay), 0.0
        lazy = LazyAdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        lazy.watch(sparse_tables(model))
        return lazy
    for table in sparse_tables(model):
        table.sparse = False
    return create_optimizer_v2(params, opt=optimizer, lr=lr, weight_decay=weight_decay)
