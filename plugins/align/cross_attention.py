"""Bidirectional cross-modal attention with a text-molecule matching head (``cross_attention``).

AMAN's critique of Text2Mol's attention model is that cross-modal attention only refined the
text side. Here both directions are trained, while retrieval stays **dual-encoder**: ranking
3,300 queries against 33,008 candidates cannot run a cross-attention per (query, candidate)
pair, so the cross-modal part is a *training signal*, and the retrieval embeddings of a text
(a molecule) are computed from that text (molecule) alone.

Training (ALBEF/BLIP's image-text matching, Li et al. 2021, with ViLBERT-style co-attention)
    Token states ``[B, Lt, dt]`` and node states ``[B, Lm, dm]`` (any widths: the input
    projections are :class:`~torch.nn.LazyLinear`) are projected to ``hidden_dim``. For the
    ``B`` positive pairs, ``B`` (text, hard-negative molecule) pairs and ``B`` (hard-negative
    text, molecule) pairs, ``layers`` co-attention blocks run both directions at once: text
    tokens attend to atoms and atoms attend to tokens (:class:`~torch.nn.MultiheadAttention`,
    ``key_padding_mask`` from the encoders' masks), each with residual and LayerNorm (no FFN:
    the blocks run per *pair*, 3B of them, so their cost is what matters on CPU; for the same
    reason the pairs see at most the first ``max_tokens`` tokens and ``max_atoms`` atoms).
    The masked means of the refined tokens and atoms, concatenated, go to an MLP that predicts
    *match* vs *no match* (``losses["itm"] = weight * BCE``). Its gradient reaches both encoders'
    states through queries, keys and values. Negatives (``negatives="hard"``) are drawn per
    row with probability ``softmax(similarity)`` over the other in-batch items (ALBEF), from the
    detached pooled embeddings; ``"random"`` draws them uniformly. Logged: ``itm_acc`` (all
    pairs), ``itm_pos_acc`` and ``itm_neg_acc``.

Retrieval (no other modality needed)
    With ``fuse=True`` each modality's retrieval embedding is its encoder's pooled embedding plus
    a residual read from the *same* projected states the matching head was trained on: a learned
    query attends over them (a one-query :class:`~torch.nn.MultiheadAttention` pool) and a
    zero-initialised linear maps the result to ``embed_dim`` (so training starts from the plain
    encoders). This is what carries the matching signal into retrieval when the encoder itself
    has no trainable layer over its states (a frozen text backbone without adapter layers).
    The same function is used in training (the loss sees it) and in :meth:`embed_text` /
    :meth:`embed_molecule` (evaluation). With ``fuse=False`` retrieval uses the pooled
    embeddings unchanged and the matching loss acts only through the encoders.

In eval mode no pairs are built and no losses are returned. The lazy input projections are
materialised on the first forward (or when a checkpoint is loaded); timm's optimizer factory
puts parameters that are still uninitialised when it runs into its no-weight-decay group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.api import Aligned, Encoded, check_dropout, check_ints

NEGATIVES = ("hard", "random")
HARD_NEGATIVE_TEMPERATURE = 0.1  # sharpness of the softmax(similarity) negatives are drawn from


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``states [B, L, h]`` over the positions where ``mask [B, L]`` is True."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class CoAttentionBlock(nn.Module):
    """Text attends to molecule and molecule attends to text (simultaneously), residual + LayerNorm.

    No position-wise FFN: the matching head's MLP follows, and the blocks run once per (text,
    molecule) *pair*, where an FFN over every padded token of every pair dominated the cost.
    """

    def __init__(self, hidden_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        # dropout on the residual only: dropping attention probabilities ([pairs, heads, Lt, Lm]) cost
        # ~10% of the aligner's step for no measured benefit
        self.text_to_mol = nn.MultiheadAttention(hidden_dim, heads, batch_first=True)
        self.mol_to_text = nn.MultiheadAttention(hidden_dim, heads, batch_first=True)
        self.text_norm, self.mol_norm = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, text: Tensor, text_mask: Tensor, mol: Tensor, mol_mask: Tensor) -> tuple[Tensor, Tensor]:
        t_ctx, _ = self.text_to_mol(text, mol, mol, key_padding_mask=~mol_mask, need_weights=False)
        m_ctx, _ = self.mol_to_text(mol, text, text, key_padding_mask=~text_mask, need_weights=False)
        return self.text_norm(text + self.drop(t_ctx)), self.mol_norm(mol + self.drop(m_ctx))


class StateReadout(nn.Module):
    """Own-modality states to an ``embed_dim`` residual: a learned query attends over the states."""

    def __init__(self, hidden_dim: int, embed_dim: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, hidden_dim) * hidden_dim**-0.5)
        self.attend = nn.MultiheadAttention(hidden_dim, heads, batch_first=True)
        self.out = nn.Linear(hidden_dim, embed_dim)
        nn.init.zeros_(self.out.weight)  # start from the encoder's own embedding
        nn.init.zeros_(self.out.bias)

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        query = self.query.expand(states.shape[0], -1, -1).to(states.dtype)
        pooled, _ = self.attend(query, states, states, key_padding_mask=~mask, need_weights=False)
        return self.out(pooled.squeeze(1))


class CrossAttentionAligner(nn.Module):
    """Co-attention matching loss in training; dual-encoder (optionally state-fused) embeddings for retrieval."""

    needs_states = True  # the assembly sets ``return_states`` on both encoders

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int = 128,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        weight: float = 1.0,
        negatives: str = "hard",
        fuse: bool = True,
        max_tokens: int = 64,
        max_atoms: int = 64,
    ) -> None:
        super().__init__()
        check_ints("cross_attention", embed_dim=embed_dim, hidden_dim=hidden_dim, heads=heads, layers=layers,
                   max_tokens=max_tokens, max_atoms=max_atoms)
        check_dropout("cross_attention", dropout)
        if hidden_dim % heads:
            raise ValueError(f"cross_attention: heads={heads} must divide hidden_dim={hidden_dim}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"cross_attention: weight={weight!r} must be a number >= 0")
        if negatives not in NEGATIVES:
            raise ValueError(f"cross_attention: negatives={negatives!r} must be one of {', '.join(NEGATIVES)}")
        if not isinstance(fuse, bool):
            raise ValueError(f"cross_attention: fuse={fuse!r} must be true or false")
        self.weight, self.negatives, self.fuse = float(weight), negatives, fuse
        self.max_tokens, self.max_atoms = max_tokens, max_atoms
        # state widths differ per encoder (MiniLM 384, SciBERT 768, GNN hidden_dim, ...): lazy
        self.text_in = nn.Sequential(nn.LazyLinear(hidden_dim), nn.LayerNorm(hidden_dim))
        self.mol_in = nn.Sequential(nn.LazyLinear(hidden_dim), nn.LayerNorm(hidden_dim))
        self.blocks = nn.ModuleList(CoAttentionBlock(hidden_dim, heads, dropout) for _ in range(layers))
        self.match_head = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                        nn.Linear(hidden_dim, 1))
        self.text_readout = StateReadout(hidden_dim, embed_dim, heads) if fuse else None
        self.mol_readout = StateReadout(hidden_dim, embed_dim, heads) if fuse else None

    # -- retrieval embeddings (one modality at a time) --------------------------------------
    def embed_text(self, enc: Encoded) -> Tensor:
        return self._retrieval(enc, self.text_in, self.text_readout, "text")

    def embed_molecule(self, enc: Encoded) -> Tensor:
        return self._retrieval(enc, self.mol_in, self.mol_readout, "molecule")

    def _retrieval(self, enc: Encoded, project: nn.Module, readout: StateReadout | None, side: str,
                   projected: Tensor | None = None) -> Tensor:
        if readout is None:
            return enc.embedding
        states, mask = _states(enc, side)
        states = _project(project, states, side) if projected is None else projected
        return enc.embedding + readout(states, mask).to(enc.embedding.dtype)

    # -- training --------------------------------------------------------------------------
    def forward(self, text: Encoded, molecule: Encoded) -> Aligned:
        t_states, t_mask = _states(text, "text")
        m_states, m_mask = _states(molecule, "molecule")
        if len(t_states) != len(m_states):
            raise ValueError(f"cross_attention: {len(t_states)} texts but {len(m_states)} molecules in the batch")
        t_proj, m_proj = _project(self.text_in, t_states, "text"), _project(self.mol_in, m_states, "molecule")
        t_emb = self._retrieval(text, self.text_in, self.text_readout, "text", projected=t_proj)
        m_emb = self._retrieval(molecule, self.mol_in, self.mol_readout, "molecule", projected=m_proj)
        if not self.training or len(t_proj) < 2:  # no in-batch negatives for a single pair
            return Aligned(text=t_emb, molecule=m_emb)
        neg_mol, neg_text = self.sample_negatives(t_emb.detach(), m_emb.detach())
        batch = torch.arange(len(t_proj), device=t_proj.device)
        text_idx = torch.cat([batch, batch, neg_text])
        mol_idx = torch.cat([batch, neg_mol, batch])
        t, tm = t_proj[:, : self.max_tokens], t_mask[:, : self.max_tokens]  # the pairs' cost grows with
        m, mm = m_proj[:, : self.max_atoms], m_mask[:, : self.max_atoms]  # length: cap what they attend over
        logits = self.match_logits(t[text_idx], tm[text_idx], m[mol_idx], mm[mol_idx])
        labels = torch.cat([logits.new_ones(len(batch)), logits.new_zeros(2 * len(batch))])
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        correct = ((logits.detach() > 0).float() == labels).float()
        metrics = {"itm_acc": correct.mean().item(), "itm_pos_acc": correct[: len(batch)].mean().item(),
                   "itm_neg_acc": correct[len(batch):].mean().item()}
        return Aligned(text=t_emb, molecule=m_emb, losses={"itm": self.weight * loss}, metrics=metrics)

    def match_logits(self, text: Tensor, text_mask: Tensor, mol: Tensor, mol_mask: Tensor) -> Tensor:
        """``[P]`` match logits of ``P`` (text, molecule) pairs of projected states."""
        for block in self.blocks:
            text, mol = block(text, text_mask, mol, mol_mask)
        fused = torch.cat([masked_mean(text, text_mask), masked_mean(mol, mol_mask)], dim=-1)
        return self.match_head(fused).squeeze(-1)

    @torch.no_grad()
    def sample_negatives(self, text: Tensor, molecule: Tensor) -> tuple[Tensor, Tensor]:
        """One negative molecule per text and one negative text per molecule, never the positive."""
        n = len(text)
        if self.negatives == "hard":
            sim = F.normalize(text.float(), dim=-1) @ F.normalize(molecule.float(), dim=-1).T
            sim = sim / HARD_NEGATIVE_TEMPERATURE
            weights = sim.softmax(-1), sim.T.softmax(-1)
        else:
            ones = text.new_ones(n, n, dtype=torch.float32)
            weights = ones, ones
        eye = torch.eye(n, dtype=torch.bool, device=text.device)
        # a tiny floor keeps every off-diagonal item drawable when the softmax underflows
        neg_mol, neg_text = (torch.multinomial((w + 1e-12).masked_fill(eye, 0.0), 1).squeeze(1) for w in weights)
        return neg_mol, neg_text


def _states(enc: Encoded, side: str) -> tuple[Tensor, Tensor]:
    if enc.states is None or enc.mask is None:
        raise ValueError(
            f"cross_attention: the {side} encoder returned no states; it must support return_states "
            "(set by the model assembly for aligners with needs_states=True)"
        )
    mask = enc.mask.bool()
    if enc.states.dim() != 3 or mask.shape != enc.states.shape[:2]:
        raise ValueError(f"cross_attention: {side} states {tuple(enc.states.shape)} and mask {tuple(mask.shape)} "
                         "must be [B, L, h] and [B, L]")
    if not bool(mask.any(1).all()):
        raise ValueError(f"cross_attention: a {side} in the batch has no unmasked state")
    return enc.states, mask


def _project(project: nn.Sequential, states: Tensor, side: str) -> Tensor:
    """``project`` (LazyLinear + LayerNorm) applied to ``states``; a width other than the one it was
    built for (a checkpoint from another encoder) is a clear error, not a matmul shape error."""
    weight = project[0].weight
    if not isinstance(weight, nn.parameter.UninitializedParameter) and states.shape[-1] != weight.shape[1]:
        raise ValueError(f"cross_attention: {side} states have width {states.shape[-1]} but the aligner was built "
                         f"for width {weight.shape[1]}")
    return project(states)
