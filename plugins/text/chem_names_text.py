"""Chemical names in the description, parsed by OPSIN, as learnable structure features.

:meth:`ChemNamesText.prepare` finds the chemical names of every text and parses them to
structures (:func:`zoo.plugins.chem.chemnames.description_structures`: one OPSIN batch, i.e. one JVM, for all
texts' uncached names; parses cached on disk, so a second run does not start Java). Each text's
item is the Morgan count fingerprints (``radius``, ``n_bits``, chirality on, counts capped at 255)
of its up to ``max_structures`` structures, ``[k, n_bits]`` uint8 (``k = 0`` when no name parsed).

Model: ``log1p`` counts, max- and mean-pooled over the text's structures, plus a "found any"
flag (``2 * n_bits + 1`` features), through ``layers`` blocks ``Linear -> LayerNorm -> GELU ->
Dropout`` (width ``hidden_dim``) and a final ``Linear`` to ``embed_dim``. Nothing is fitted.
Alone it can only tell texts apart by the structures they name; its use is as a part of a
combined text encoder, e.g. ``text_encoder = ["tfidf", "chem_names"]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.api import Encoded, check_dropout, check_ints, mlp_blocks, with_single_state
from zoo.plugins.chem.chemnames import description_structures, morgan_count_matrix


class NameFeatures(dict):
    """A batch: ``fp`` ``[B, K, n_bits]`` float32 counts (zero rows pad) and ``count`` ``[B]`` structures per text."""

    def to(self, device: torch.device | str) -> "NameFeatures":
        return NameFeatures({k: v.to(device) for k, v in self.items()})


class ChemNamesText(nn.Module):
    """OPSIN-parsed names -> Morgan counts, max/mean-pooled -> MLP head to ``embed_dim``."""

    def __init__(self, embed_dim: int, max_structures: int = 4, max_tokens: int = 4, radius: int = 2,
                 n_bits: int = 2048, hidden_dim: int = 512, layers: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        check_ints("chem_names", embed_dim=embed_dim, max_structures=max_structures, max_tokens=max_tokens,
                   n_bits=n_bits, hidden_dim=hidden_dim, layers=layers)
        check_ints("chem_names", minimum=0, radius=radius)
        check_dropout("chem_names", dropout)
        self.dim = embed_dim
        self.state_dim = hidden_dim
        self.max_structures, self.max_tokens, self.radius, self.n_bits = max_structures, max_tokens, radius, n_bits
        self.frozen = True  # no backbone: only the head trains
        self.return_states = False
        self.hidden = mlp_blocks(2 * n_bits + 1, hidden_dim, layers, dropout)
        self.out = nn.Linear(hidden_dim, embed_dim)

    def structures(self, texts: Sequence[str]) -> list[list[str]]:
        """Per text, the canonical SMILES of the names found in it (see :mod:`zoo.plugins.chem.chemnames`)."""
        return description_structures(list(texts), max_structures=self.max_structures, max_tokens=self.max_tokens)

    def prepare(self, texts: Sequence[str], progress: bool = True, device: torch.device | str = "cpu") -> list[Tensor]:
        """One ``[k, n_bits]`` uint8 count matrix per text (``k`` structures, 0..``max_structures``)."""
        per_text = self.structures(texts)
        unique = sorted({s for structures in per_text for s in structures})
        counts = torch.from_numpy(morgan_count_matrix(unique, self.radius, self.n_bits))
        row = {s: i for i, s in enumerate(unique)}
        return [counts[[row[s] for s in structures]].clone() if structures else torch.zeros(0, self.n_bits, dtype=torch.uint8)
                for structures in per_text]

    def collate(self, items: Sequence[Tensor]) -> NameFeatures:
        width = max(1, max(item.shape[0] for item in items))
        fp = torch.zeros(len(items), width, self.n_bits)
        for i, item in enumerate(items):
            fp[i, :item.shape[0]] = item.to(torch.float32)
        return NameFeatures(fp=fp, count=torch.tensor([item.shape[0] for item in items], dtype=torch.long))

    def forward(self, batch: NameFeatures) -> Encoded:
        fp, count = batch["fp"], batch["count"]
        if fp.dim() != 3 or fp.shape[-1] != self.n_bits:
            raise ValueError(f"chem_names: expected fp of shape [B, K, {self.n_bits}], got {tuple(fp.shape)}")
        x = torch.log1p(fp.to(self.out.weight.dtype))  # >= 0, so zero padding never wins the max
        found = (count > 0).to(x.dtype)[:, None]
        mean = x.sum(1) / count.clamp(min=1).to(x.dtype)[:, None]
        h = self.hidden(torch.cat([x.amax(1), mean, found], dim=-1))
        return with_single_state(self.out(h), h, self.return_states)
