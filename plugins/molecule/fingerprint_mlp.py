"""An MLP over Morgan count fingerprints (Text2Mol's MLP baseline, with counts instead of bits).

Featurization: RDKit's Morgan generator (``radius``, ``n_bits`` folded bits) gives a count
fingerprint per molecule; ``extra`` appends more RDKit fingerprints (:data:`EXTRA_FINGERPRINTS`:
``maccs`` keys, folded ``atompair`` and ``torsion`` counts, ``feature_morgan`` (FCFP-like
pharmacophoric-invariant Morgan counts of the same ``radius``), each ``n_bits`` wide except MACCS' 167).
Stereo (featurizer version 2): every generator runs with ``includeChirality=True``. The Morgan and
feature-Morgan counts then see CIP R/S labels and E/Z double bonds, atom pairs and torsions see
R/S only (RDKit's atom-pair and torsion generators have no bond stereo); MACCS keys are
stereo-blind by construction. Morgan adds a centre's R/S only from the first radius at which its
neighbours' environments all differ, so at ``radius=2`` a centre whose branches look alike for
two bonds stays hidden (and ``radius=0`` sees no stereo at all); atom pairs and torsions carry
the label regardless. Version 1 was stereo-blind. The vector is
stored raw as ``Data(fp=[1, width] float32)`` so that PyG batching stacks it to ``batch.fp``
``[B, width]``; there is no graph. ``num_nodes`` is set to a 0-dim
tensor ``1`` (one "node" per molecule): it keeps PyG from warning that it cannot infer the
number of nodes, and, being a tensor, it survives :class:`zoo.cache.PackedGraphs`.

Model: ``log1p(counts)`` then ``layers`` hidden blocks ``Linear -> LayerNorm -> GELU -> Dropout``
(the first from the fingerprint width to ``hidden_dim``) and a final ``Linear`` to ``embed_dim``.
With :attr:`return_states` set, the last hidden vector is returned as a single state per
molecule (``[B, 1, hidden_dim]``, mask all True) for aligners that want states.

Self-supervised pretraining (opt-in, ``pretrain_epochs`` > 0; :meth:`FingerprintMLP.pretrain`):
before the paired training, ``zoo run`` hands the encoder the molecules it may use without
descriptions (the task's unlabeled training molecules plus the training pairs' molecules; never
held-out or test ones). The whole encoder is trained for ``pretrain_epochs`` epochs to match two
views of each molecule (each input feature dropped with probability ``pretrain_mask``, no
rescaling) against the other molecules of the batch: symmetric InfoNCE at temperature
:data:`PRETRAIN_TEMPERATURE`, AdamW, batch :data:`PRETRAIN_BATCH`, learning rate
:data:`PRETRAIN_LR` (SimCLR-style; Chen et al., 2020). The pretrained weights are only the
starting point of the paired training and are saved with its first checkpoint, so a resumed
run does not pretrain again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from zoo.api import Encoded, check_dropout, check_ints, mlp_blocks, with_single_state
from zoo.plugins.molecule.fingerprints import (  # noqa: F401 - morgan_counts, fingerprint_vector: this module's API too
    EXTRA_FINGERPRINTS,
    fingerprint_arrays,
    fingerprint_vector,
    fingerprint_width,
    morgan_counts,
)

FEATURIZER_VERSION = "2"  # bump when the fingerprint changes: it keys the on-disk cache (2: chirality)
PRETRAIN_BATCH = 256  #: molecules per pretraining step
PRETRAIN_LR = 1e-3  #: AdamW learning rate of the pretraining (weight decay 0.01)
PRETRAIN_TEMPERATURE = 0.1  #: InfoNCE temperature between the two views


class FingerprintMLP(nn.Module):
    """Morgan count (+ ``extra``) fingerprints (``batch.fp`` ``[B, width]``) to ``[B, embed_dim]`` embeddings."""

    def __init__(
        self,
        embed_dim: int,
        radius: int = 2,
        n_bits: int = 2048,
        hidden_dim: int = 512,
        layers: int = 2,
        dropout: float = 0.2,
        extra: Sequence[str] = (),
        pretrain_epochs: int = 0,
        pretrain_mask: float = 0.2,
    ) -> None:
        super().__init__()
        check_ints("fingerprint_mlp", embed_dim=embed_dim, n_bits=n_bits, hidden_dim=hidden_dim, layers=layers)
        check_ints("fingerprint_mlp", minimum=0, radius=radius, pretrain_epochs=pretrain_epochs)
        check_dropout("fingerprint_mlp", dropout)
        if isinstance(pretrain_mask, bool) or not isinstance(pretrain_mask, (int, float)) or not 0 < pretrain_mask < 1:
            raise ValueError(f"fingerprint_mlp: pretrain_mask={pretrain_mask!r} must be a number in (0, 1) "
                             "(the probability of dropping each input feature from a pretraining view)")
        if isinstance(extra, str) or not all(isinstance(k, str) for k in extra):
            raise ValueError(f"fingerprint_mlp: extra={extra!r} must be a list of names from {', '.join(EXTRA_FINGERPRINTS)}")
        unknown = [k for k in extra if k not in EXTRA_FINGERPRINTS]
        if unknown or len(set(extra)) != len(extra):
            raise ValueError(f"fingerprint_mlp: extra={list(extra)!r}: unknown or repeated fingerprint "
                             f"{', '.join(map(repr, unknown)) or ''}; choose from {', '.join(EXTRA_FINGERPRINTS)}")

        self.dim = embed_dim
        self.state_dim = hidden_dim
        self.radius, self.n_bits, self.extra = radius, n_bits, tuple(extra)
        self.width = fingerprint_width(n_bits, self.extra)
        self.featurizer = f"morgan_count/r{radius}/{n_bits}/{FEATURIZER_VERSION}" + "".join(f"+{k}" for k in self.extra)
        #: torch-free, for featurization worker processes (zoo.api: the featurized-batch contract)
        self.featurize_arrays = functools.partial(fingerprint_arrays, radius=radius, n_bits=n_bits, extra=self.extra)
        self.return_states = False
        self.pretrain_epochs, self.pretrain_mask = pretrain_epochs, float(pretrain_mask)

        self.hidden = mlp_blocks(self.width, hidden_dim, layers, dropout)
        self.out = nn.Linear(hidden_dim, embed_dim)

    def featurize(self, smiles: str) -> Any:
        """One SMILES to ``Data(fp=[1, width] float32 counts, num_nodes=tensor(1))``."""
        from torch_geometric.data import Data

        fp = torch.from_numpy(fingerprint_vector(smiles, self.radius, self.n_bits, self.extra)).unsqueeze(0)
        return Data(fp=fp, num_nodes=torch.tensor(1))

    def forward(self, batch: Any) -> Encoded:
        fp: Tensor = batch.fp
        if fp.dim() != 2 or fp.shape[-1] != self.width:
            raise ValueError(
                f"fingerprint_mlp: expected batch.fp of shape [B, {self.width}], got {tuple(fp.shape)} "
                f"(featurized with a different n_bits or extra?)"
            )
        h = self.hidden(torch.log1p(fp.to(self.out.weight.dtype)))
        embedding = self.out(h)
        return with_single_state(embedding, h, self.return_states)

    def pretrain(self, batches: Callable[[Sequence[int]], Any], count: int, *, seed: int,
                 device: torch.device | str = "cpu", log: Callable[[str], None] = print) -> dict[str, Any] | None:
        """Self-supervised pretraining on ``count`` molecules without descriptions (see the module
        docstring); ``batches(positions)`` gives the featurized batch of those molecules (positions in
        ``range(count)``). Seeded by ``seed``; the global random state is left as it was. Returns a
        record for the results (``None`` when ``pretrain_epochs`` is 0: nothing happens)."""
        import torch.nn.functional as F

        if self.pretrain_epochs == 0:
            return None
        if count < 2:
            raise ValueError(f"fingerprint_mlp: pretraining needs at least 2 molecules, got {count}")
        optimizer = torch.optim.AdamW(self.parameters(), lr=PRETRAIN_LR, weight_decay=0.01)
        generator = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        was_training = self.training
        self.train()
        with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
            torch.manual_seed(seed)  # dropout inside the encoder
            for epoch in range(self.pretrain_epochs):
                order = torch.randperm(count, generator=generator).tolist()
                total, steps = 0.0, 0
                for start in range(0, count - 1, PRETRAIN_BATCH):
                    chunk = order[start:start + PRETRAIN_BATCH]
                    if len(chunk) < 2:
                        continue
                    counts = torch.log1p(batches(chunk).fp.to(device=device, dtype=self.out.weight.dtype))
                    views = [counts * (torch.rand(counts.shape, generator=generator) >= self.pretrain_mask).to(counts)
                             for _ in range(2)]
                    a, b = (F.normalize(self.out(self.hidden(v)), dim=-1) for v in views)
                    logits = a @ b.T / PRETRAIN_TEMPERATURE
                    target = torch.arange(len(chunk), device=logits.device)
                    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total, steps = total + float(loss.detach()), steps + 1
                losses.append(total / max(steps, 1))
                log(f"fingerprint_mlp: pretraining epoch {epoch + 1}/{self.pretrain_epochs} on {count} molecules "
                    f"loss={losses[-1]:.4f}")
        self.train(was_training)
        return {"molecules": count, "epochs": self.pretrain_epochs, "mask": self.pretrain_mask, "loss": losses}
