"""Multi-process training (``torchrun``, DDP over gloo on CPU) against a single-process run.

The distributed run and the single-process run of the same spec take the same optimisation
steps: the global batch is split across ranks, the retrieval loss sees the gathered global batch
and its gradient equals the single-process one. With dropout off they agree up to float
reduction order (different batch shapes per encoder call, gradient all-reduce): losses to a
relative 1e-5, ranking scores exactly (a near-tie would have to fall within ~1e-7 to flip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY, run_tiny

from zoo import distributed
from zoo.distributed import DistContext

#: dropout off (exact comparison) and the embedded MiniLM as frozen text backbone
# fp32 too (aman ships with CPU bf16 autocast): 2 ranks sum gradients in another order, which bf16 would amplify
NO_DROPOUT = ["text_encoder=minilm", *(s for s in TINY if s.startswith("text_encoder.")), "text_encoder.dropout=0",
              "molecule_encoder.dropout=0", "aligner.dropout=0", "train.epochs=2", "train.cpu_bf16=false"]


# -- helpers without a process group ------------------------------------------------------------
@pytest.mark.parametrize("n, world", [(16, 2), (7, 2), (10, 3), (3, 3)])
def test_shard_splits_a_global_batch_in_rank_order(n, world):
    items = list(range(100, 100 + n))
    parts = [distributed.shard(items, DistContext(rank=r, world_size=world)) for r in range(world)]
    assert sum(parts, []) == items  # contiguous, in rank order, nothing lost or repeated
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx, device = distributed.setup(torch.device("cpu"))
    assert ctx == distributed.SINGLE and ctx.is_main and not ctx.enabled and device == torch.device("cpu")
    x = torch.randn(3, 4)
    assert distributed.gather_rows(x) is x
    assert distributed.broadcast_object({"a": 1}, ctx) == {"a": 1}
    assert distributed.mean_across_ranks({"loss": 2.0}, ctx, device) == {"loss": 2.0}
    assert distributed.wrap_model(torch.nn.Linear(2, 2), ctx, device).__class__ is torch.nn.Linear
    assert distributed.shard([1, 2, 3], ctx) == [1, 2, 3]


def test_bad_world_size_env_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    from zoo.errors import RunError

    with pytest.raises(RunError, match="WORLD_SIZE='two'"):
        distributed.launched_distributed()


# -- gather semantics in a real 2-process gloo group ---------------------------------------------
class _PairModel(torch.nn.Module):
    """A shared encoder and two retrieval losses with in-batch negatives (one with a parameter)."""

    def __init__(self) -> None:
        from zoo.plugins.loss.infonce import InfoNCELoss
        from zoo.plugins.loss.triplet import TripletLoss

        super().__init__()
        self.encoder = torch.nn.Linear(6, 4)
        self.infonce, self.triplet = InfoNCELoss(temperature=0.1), TripletLoss(mining="semihard")

    def forward(self, text: torch.Tensor, molecule: torch.Tensor) -> torch.Tensor:
        t, m = self.encoder(text), self.encoder(molecule)
        return self.infonce(t, m) + self.triplet(t, m)


def _global_batch() -> tuple[_PairModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return _PairModel(), torch.randn(5, 6), torch.randn(5, 6)


def _spawn_two(worker, tmp_path: Path, timeout_s: float, deadlock_message: str) -> None:
    """Run ``worker(rank, 2, init_file, result_dir)`` in 2 spawned gloo processes; fail on a hang."""
    import time

    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    context = mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(deadlock_message)


def _gather_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    """One DDP step on this rank's (uneven) slice of a 5-row global batch, negatives gathered."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, text, molecule = _global_batch()
        rows = distributed.shard(list(range(len(text))), DistContext(rank=rank, world_size=world))
        gathered = distributed.gather_rows(torch.tensor(rows, dtype=torch.float32)[:, None])
        for loss in (model.infonce, model.triplet):
            distributed.gather_loss_inputs(loss)
        ddp = DistributedDataParallel(model)  # keep a reference: its reducer averages the gradients
        loss = ddp(text[rows], molecule[rows])
        loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        torch.save({"rows": gathered, "loss": loss.detach(), "grads": grads}, f"{result_dir}/rank{rank}.pt")
        dist.barrier()  # both ranks are done with collectives before either tears down
        del ddp, loss
    finally:
        dist.destroy_process_group()
    _exit_without_finalizing()


def _exit_without_finalizing() -> None:
    """End a spawned worker that used gloo without running interpreter finalization.

    Gloo's worker threads can still hold finished work (tensors with Python references) when the
    interpreter shuts down; releasing them then aborts the process now and again ("terminate called
    without an active exception", SIGABRT). The results are on disk by now, so skip that teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_gathered_loss_gradient_equals_single_process_gradient(tmp_path):
    """2 ranks holding 3 + 2 rows: every rank sees the 5-row global loss, and the DDP-averaged
    gradient (the all-gather backward sums over ranks) is the single-process gradient."""
    _spawn_two(_gather_worker, tmp_path, 90, "2-process gather test did not finish in 90 s (deadlock?)")

    model, text, molecule = _global_batch()
    reference = model(text, molecule)
    reference.backward()
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert out["rows"].squeeze(1).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # all rows, in rank order
        assert torch.allclose(out["loss"], reference.detach(), atol=1e-6)
        for name, param in model.named_parameters():
            assert torch.allclose(out["grads"][name], param.grad, atol=1e-6), name


# -- zoo run under torchrun ----------------------------------------------------------------------
def test_torchrun_two_processes_match_a_single_process_run(tiny_env, tmp_path):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    single = run_tiny(tiny_env, tmp_path / "single", *NO_DROPOUT)  # also fills the cache the ranks read

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "zoo.cli", "run", "aman", "--data-dir", str(tiny_env), "--out", str(tmp_path / "ddp"), "--no-progress"]
    for item in [*TINY, *NO_DROPOUT]:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("epoch   1/2") == 1  # rank 0 alone logs
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())

    training = ddp["training"]
    assert (training["world_size"], training["distributed_backend"]) == (2, "gloo")
    assert single["training"]["world_size"] == 1 and ddp["spec_hash"] == single["spec_hash"]
    assert len(training["history"]) == len(single["training"]["history"]) == 2
    for mine, ref in zip(training["history"], single["training"]["history"]):
        for key in ("loss", "retrieval_loss", "adversarial", "disc_acc"):
            assert mine[key] == pytest.approx(ref[key], rel=1e-5), key
        assert mine["heldout_mrr"] == pytest.approx(ref["heldout_mrr"], abs=1e-9)
    for gallery, directions in single["scores"].items():
        for direction, metrics in directions.items():
            assert ddp["scores"][gallery][direction] == pytest.approx(metrics, abs=1e-9), (gallery, direction)


def _main_first_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    """Rank 0 fails inside ``main_process_first``; rank 1 must not hang at a barrier."""
    import torch.distributed as dist

    from zoo.errors import RunError

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, backend="gloo")
    outcome = "ran the block"
    try:
        with distributed.main_process_first(ctx):
            if rank == 0:
                raise ValueError("svd_dim too large")
    except (ValueError, RunError) as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        dist.destroy_process_group()
    (Path(result_dir) / f"rank{rank}.txt").write_text(outcome)
    _exit_without_finalizing()


def test_a_failure_on_rank_0_reaches_the_other_ranks(tmp_path):
    _spawn_two(_main_first_worker, tmp_path, 60, "rank 1 still waits after rank 0 failed (deadlock)")
    assert (tmp_path / "rank0.txt").read_text() == "ValueError: svd_dim too large"
    assert (tmp_path / "rank1.txt").read_text() == "RunError: rank 0 failed while preparing the shared data: ValueError: svd_dim too large"



# -- two ranks starting from an empty cache ------------------------------------------------------
def _race_to_unpack_minilm(rank: int) -> None:
    """Both ranks unpack MiniLM into an empty cache; make rank 1 lose the race at the worst moment.

    Rank 1's extraction ends just after rank 0's copy is in place, while rank 0 is about to load
    its tokenizer from it (rank 0 reads the folder 0.5 s after unpacking), and removing a folder
    named like the model is slow (``tokenizer.json`` first, the rest 3 s later). Unpacking must
    never remove the other rank's finished copy.
    """
    import shutil
    import time
    import zipfile

    from transformers import AutoTokenizer

    from zoo.cache import cache_root

    model = cache_root() / "models" / "all-MiniLM-L6-v2"
    if rank == 0:
        load = AutoTokenizer.from_pretrained.__func__

        def slow_load(cls, path, *args, **kwargs):
            time.sleep(0.5)
            return load(cls, path, *args, **kwargs)

        AutoTokenizer.from_pretrained = classmethod(slow_load)
        return
    extract, rmtree = zipfile.ZipFile.extractall, shutil.rmtree

    def extract_then_wait(self, path, *args, **kwargs):
        extract(self, path, *args, **kwargs)
        deadline = time.monotonic() + 60
        while not (model / "config.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def slow_rmtree(path, *args, **kwargs):
        if Path(path) == model and (model / "tokenizer.json").exists():
            (model / "tokenizer.json").unlink()
            time.sleep(3)
        rmtree(path, *args, **kwargs)

    zipfile.ZipFile.extractall, shutil.rmtree = extract_then_wait, slow_rmtree


def _cold_run_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    """``zoo run`` (argv in ``result_dir/argv.json``) as rank ``rank``; writes its exit code or error."""
    import torch.distributed as dist

    from zoo.cli import main

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    _race_to_unpack_minilm(rank)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        outcome = str(main(json.loads((Path(result_dir) / "argv.json").read_text())))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        dist.destroy_process_group()
    (Path(result_dir) / f"rank{rank}.txt").write_text(outcome)
    _exit_without_finalizing()


def test_two_ranks_with_an_empty_cache_train_the_adapter(tiny_env, tmp_path):
    """Both ranks unpack the offline MiniLM at once (an empty cache). A rank must never load a
    tokenizer from a folder the other rank is replacing: such a tokenizer reads a capitalized word
    as one [UNK], so its token ids no longer match the cached states, and the adapter's attention
    fails (``Expected key_padded_mask.shape[1] to be 154, but got 209``)."""
    for name in ("validation.txt", "test.txt"):  # capitalized words that WordPiece splits into several pieces
        lines = (tiny_env / name).read_text().splitlines()
        (tiny_env / name).write_text("\n".join([lines[0], *(f"{line} It is a Benzenecarboxylic Heteroarene." for line in lines[1:])]) + "\n")
    argv = ["run", "aman", "--data-dir", str(tiny_env), "--out", str(tmp_path / "ddp"), "--no-progress"]
    for item in [*TINY, *NO_DROPOUT, "text_encoder.lexical_dim=0"]:  # minilm as `--set text_encoder=minilm` gives it: adapter_layers=1
        argv += ["--set", item]
    (tmp_path / "argv.json").write_text(json.dumps(argv))
    _spawn_two(_cold_run_worker, tmp_path, 240, "2-process cold-cache run did not finish in 240 s (a rank waits for a failed one?)")
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["0", "0"]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["training"]["world_size"] == 2 and len(results["training"]["history"]) == 2
