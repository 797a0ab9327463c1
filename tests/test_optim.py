"""zoo.optim: lazy AdamW rows for sparse embedding tables, clipping over sparse gradients, the factory."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from zoo.optim import LazyAdamW, build_optimizer, clip_grad_norm_, sparse_tables

LR, WD = 0.05, 0.1


class _Model(nn.Module):
    """An embedding table (mean-pooled bags; sparse gradients or dense) and a dense head."""

    def __init__(self, sparse: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.EmbeddingBag(20, 4, mode="mean", sparse=sparse)
        self.head = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids, offsets)).pow(2).sum()


def _lazy(model: _Model, **options) -> LazyAdamW:
    optimizer = LazyAdamW(model.parameters(), lr=LR, weight_decay=WD, **options)
    optimizer.watch([model.table])
    return optimizer


def _step(model: _Model, optimizer, ids: list[int], loss_scale: float = 1.0) -> None:
    optimizer.zero_grad(set_to_none=True)
    (loss_scale * model(torch.tensor(ids), torch.tensor([0, len(ids) // 2]))).backward()
    optimizer.step()


def _touches(steps: int, seed: int = 0) -> list[list[int]]:
    """Bags of rows per step: some rows often, some rarely, some never (rows 15-19)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 15, (6,), generator=gen).tolist() for _ in range(steps)]


@pytest.mark.parametrize("flush_every, loss_scale", [(None, 1.0), (7, 1.0), (None, 1e-7)])
def test_lazy_adamw_follows_dense_adamw(flush_every, loss_scale):
    """Untouched rows are caught up on the steps they missed (moment decay, momentum steps, weight
    decay) when next looked up, touched or flushed: after any number of steps, with the learning rate
    changing as a scheduler changes it, the parameters and moments are dense AdamW's -- also with
    gradients so small that ``eps`` weighs in Adam's denominator (``loss_scale``)."""
    lazy_model, dense_model = _Model(sparse=True), _Model(sparse=False)
    lazy = _lazy(lazy_model)
    dense = torch.optim.AdamW(dense_model.parameters(), lr=LR, weight_decay=WD)
    for step, ids in enumerate(_touches(40), start=1):
        for opt in (lazy, dense):
            opt.param_groups[0]["lr"] = LR * (1.0 if step < 20 else 0.3)  # a schedule
        _step(lazy_model, lazy, ids, loss_scale)
        _step(dense_model, dense, ids, loss_scale)
        assert lazy_model.table.weight.grad.is_sparse
        if flush_every and step % flush_every == 0:
            lazy.flush()
    never = lazy_model.table.weight[15:].detach().clone()
    lazy.flush()
    assert not torch.equal(lazy_model.table.weight[15:], never)  # weight decay reached the never-touched rows
    # a step moves a row by up to ~LR; where eps weighs in, the deferred momentum steps are approximate
    tolerance = 1e-4 * LR if loss_scale == 1.0 else 0.05 * LR
    for a, b in zip(lazy_model.parameters(), dense_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=tolerance)
    lazy_state, dense_state = lazy.state[lazy_model.table.weight], dense.state[dense_model.table.weight]
    for key in ("exp_avg", "exp_avg_sq") if loss_scale == 1.0 else ():  # else the gradients differ a little
        torch.testing.assert_close(lazy_state[key], dense_state[key], rtol=1e-4, atol=1e-6 * float(dense_state[key].abs().max()))


def test_lazy_adamw_defers_untouched_rows_until_flushed():
    model = _Model()
    optimizer = _lazy(model)
    _step(model, optimizer, [1, 1, 2, 5])
    after_first = model.table.weight.detach().clone()
    _step(model, optimizer, [3, 4, 4, 9])  # rows 1, 2, 5 untouched: deferred
    assert torch.equal(model.table.weight[[1, 2, 5]], after_first[[1, 2, 5]])
    assert optimizer.state[model.table.weight]["row_step"][[1, 3]].tolist() == [1, 2]
    optimizer.flush()
    assert not torch.equal(model.table.weight[[1, 2, 5]], after_first[[1, 2, 5]])
    assert optimizer.state[model.table.weight]["row_step"].unique().tolist() == [2]


def test_lazy_adamw_state_round_trips_through_a_checkpoint(tmp_path):
    from zoo.checkpoints import TrainerState, load_checkpoint, save_checkpoint

    model = _Model()
    optimizer = _lazy(model, fused=True)
    for ids in ([1, 2, 3, 4], [4, 5, 6, 7]):
        _step(model, optimizer, ids)
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, optimizer, TrainerState(epoch=2), False, {"spec_hash": "h"})  # flushes first
    restored = _Model()
    restored_opt = _lazy(restored, fused=True)
    assert load_checkpoint(path, restored, restored_opt, "h").epoch == 2
    for m, opt in ((model, optimizer), (restored, restored_opt)):
        _step(m, opt, [2, 4, 8, 8])
        opt.flush()
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)


def test_lazy_adamw_continues_a_dense_adamw_state():
    """A checkpoint of plain AdamW (every row current) resumes under LazyAdamW as under AdamW."""
    lazy_model, dense_model = _Model(sparse=False), _Model(sparse=False)
    dense = torch.optim.AdamW(dense_model.parameters(), lr=LR, weight_decay=WD)
    for ids in _touches(5):
        _step(dense_model, dense, ids)
    lazy_model.load_state_dict(dense_model.state_dict())
    lazy_model.table.sparse = True
    lazy = _lazy(lazy_model)
    lazy.load_state_dict(copy.deepcopy(dense.state_dict()))  # as from a file: no tensors shared with `dense`
    for ids in _touches(5, seed=1):
        _step(lazy_model, lazy, ids)
        _step(dense_model, dense, ids)
    lazy.flush()
    for a, b in zip(lazy_model.parameters(), dense_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lazy_adamw_refuses_amsgrad():
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdamW(_Model().parameters(), amsgrad=True)


def test_clip_grad_norm_over_sparse_and_dense_gradients_matches_torch():
    sparse_model, dense_model = _Model(sparse=True), _Model(sparse=False)
    for model in (sparse_model, dense_model):
        (10 * model(torch.tensor([1, 1, 2, 5, 5, 5]), torch.tensor([0, 3]))).backward()
    total = clip_grad_norm_(sparse_model.parameters(), 0.5)
    reference = torch.nn.utils.clip_grad_norm_(dense_model.parameters(), 0.5)
    torch.testing.assert_close(total, reference)
    assert total > 0.5  # so the gradients were scaled
    grad = sparse_model.table.weight.grad
    assert grad.is_sparse and grad.is_coalesced()  # coalesced once, in place, for the optimizer too
    torch.testing.assert_close(grad.to_dense(), dense_model.table.weight.grad)
    torch.testing.assert_close(sparse_model.head.weight.grad, dense_model.head.weight.grad)


@pytest.mark.parametrize("optimizer, device, lazy", [("adamw", "cpu", True), ("AdamW", "cpu", True),
                                                      ("adamw", "cuda", False), ("sgd", "cpu", False)])
def test_build_optimizer_lazy_adamw_on_cpu_else_timm_with_dense_tables(optimizer, device, lazy):
    from timm.optim import create_optimizer_v2

    model = _Model()
    built = build_optimizer(model, optimizer, LR, WD, torch.device(device))  # no tensor moves to the device
    assert isinstance(built, LazyAdamW) is lazy
    assert bool(sparse_tables(model)) is lazy  # the table is switched to dense gradients for timm's optimizers
    reference = create_optimizer_v2(model, opt=optimizer, lr=LR, weight_decay=WD)
    # timm's grouping: weight decay on the weight matrices, not on the bias
    assert [[id(p) for p in g["params"]] for g in built.param_groups] == [[id(p) for p in g["params"]] for g in reference.param_groups]
    assert [g["weight_decay"] for g in built.param_groups] == [0.0, WD]
    json.dumps(built.state_dict()["param_groups"])  # save_checkpoint stores the groups as JSON


def test_build_optimizer_puts_a_fine_tuned_backbone_in_its_own_group():
    model = _Model()
    built = build_optimizer(model, "adamw", LR, WD, torch.device("cpu"), backbone=model.head, backbone_lr=1e-4)
    assert [len(g["params"]) for g in built.param_groups] == [1, 2]
    assert [g["lr"] for g in built.param_groups] == [LR, 1e-4]
    assert [g["weight_decay"] for g in built.param_groups] == [WD, WD]
