"""The ``cross_encoder`` re-ranker: a description and a molecule read together, scored by a matching head.

Text2Mol built its cross-modal attention model as a re-ranker, and ALBEF/BLIP re-rank with an
image-text matching head; this is that head for molecules, small enough to train on a CPU.

Inputs
    The description's token states from a frozen text backbone (``text_encoder``, default
    ``minilm``; cached on disk like every frozen text encoder's, the first ``max_tokens`` tokens),
    and the molecule as a set of substructure tokens: its Morgan environments up to ``radius``
    (RDKit), each hashed into ``vocab`` learned embeddings (at most ``max_substructures`` per
    molecule, smallest radius first).
Model
    Both sides projected to ``hidden_dim``; ``layers`` co-attention blocks (the ``cross_attention``
    aligner's: tokens attend to substructures and substructures to tokens); the masked means of both
    sides and their product go to an MLP giving one matching logit.
Training (:meth:`CrossEncoderReranker.fit`)
    For every training description, its true molecule against ``negatives`` hard negatives from the
    first stage's top ``k`` (half the hardest, half drawn from the rest of the top ``k``), softmax
    cross-entropy over the group (listwise), ``epochs`` epochs of AdamW. Seeded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from zoo.api import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_text,
    cache_root,
    check_dropout,
    check_ints,
    content_hash,
    locked,
    parse_smiles,
    read_safetensors,
)
from zoo.plugins.align.cross_attention import CoAttentionBlock, masked_mean
from zoo.registry import get_component

__all__ = ["CrossEncoderReranker", "substructure_tokens"]


def substructure_tokens(smiles: str, radius: int, vocab: int, limit: int) -> list[int]:
    """The molecule's Morgan environment ids up to ``radius`` hashed into ``1..vocab`` (0 pads), smallest
    radius first, at most ``limit``; an unparsable SMILES has none."""
    from rdkit.Chem import rdFingerprintGenerator

    try:
        mol = parse_smiles(smiles)
    except Exception:  # an unparsable candidate matches nothing: the head sees no substructure
        return []
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius)
    info = rdFingerprintGenerator.AdditionalOutput()
    info.AllocateBitInfoMap()
    fp = generator.GetSparseCountFingerprint(mol, additionalOutput=info)
    bit_info = info.GetBitInfoMap()
    by_radius = sorted((min(r for _, r in bit_info[i]), i) for i in fp.GetNonzeroElements())
    return [1 + (i % vocab) for _, i in by_radius[:limit]]


class PairHead(nn.Module):
    """Co-attention over token states and substructure embeddings, then a matching logit per pair."""

    def __init__(self, text_dim: int, vocab: int, hidden_dim: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.text_in = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, hidden_dim))
        self.substructures = nn.Embedding(vocab + 1, hidden_dim, padding_idx=0)
        self.blocks = nn.ModuleList(CoAttentionBlock(hidden_dim, heads, dropout) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(3 * hidden_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1))

    def forward(self, text: Tensor, text_mask: Tensor, text_index: Tensor, tokens: Tensor) -> Tensor:
        """``text [U, Lt, d]``/``text_mask`` of the unique descriptions, ``text_index [P]`` each pair's description,
        ``tokens [P, Lm]`` each pair's substructures (0 pads): a logit per pair."""
        mol_mask = tokens > 0
        mol_mask[:, 0] |= ~mol_mask.any(1)  # a molecule without tokens attends to its padding, not to nothing
        t = self.text_in(text)[text_index]  # projected once per description, shared by its candidates
        text_mask = text_mask[text_index]
        m = self.substructures(tokens)
        for block in self.blocks:
            t, m = block(t, text_mask, m, mol_mask)
        t, m = masked_mean(t, text_mask), masked_mean(m, mol_mask)
        return self.head(torch.cat([t, m, t * m], dim=-1)).squeeze(-1)


class CrossEncoderReranker:
    """A matching head over a description's token states and a molecule's substructures, trained on the
    training pairs with the first stage's hard negatives."""

    def __init__(self, text_encoder: str = "minilm", hidden_dim: int = 64, heads: int = 4, layers: int = 1,
                 max_tokens: int = 64, max_substructures: int = 64, radius: int = 2, vocab: int = 8192,
                 negatives: int = 7, epochs: int = 4, batch_size: int = 32, lr: float = 2e-3, dropout: float = 0.1,
                 seed: int = 0, score_batch_size: int = 1000) -> None:
        check_ints("cross_encoder", hidden_dim=hidden_dim, heads=heads, layers=layers, max_tokens=max_tokens, max_substructures=max_substructures,
                   vocab=vocab, negatives=negatives, epochs=epochs, batch_size=batch_size, score_batch_size=score_batch_size)
        check_dropout("cross_encoder", dropout)
        if radius < 0:
            raise ValueError(f"radius must be 0 or more, got {radius}")
        if hidden_dim % heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by heads={heads}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.text_encoder_name = text_encoder
        self.hidden_dim, self.heads, self.layers, self.dropout = hidden_dim, heads, layers, dropout
        self.max_tokens, self.max_substructures, self.radius, self.vocab = max_tokens, max_substructures, radius, vocab
        self.negatives, self.epochs, self.batch_size, self.lr, self.seed = negatives, epochs, batch_size, lr, seed
        self.score_batch_size = score_batch_size
        self._text = None
        self._states: dict[str, Tensor] = {}
        self._tokens: dict[str, list[int]] = {}
        self.model: PairHead | None = None

    # -- inputs, cached per description and per molecule ----------------------------------------
    def _encoder(self):
        if self._text is None:
            component = get_component("text_encoder", self.text_encoder_name)
            self._text = component.create(embed_dim=self.hidden_dim, **component.resolve_options({}))
            self._text.eval()
        return self._text

    def _text_states(self, texts: Sequence[str], as_listed: bool = False) -> None:
        """Token states of ``texts`` not held yet (``as_listed``: ask the encoder for the list as given, duplicates
        included, so a cache file of the task's descriptions written by another run is found)."""
        missing = list(texts) if as_listed else list(dict.fromkeys(t for t in texts if t not in self._states))
        if missing:
            for text, item in zip(missing, self._encoder().prepare(missing, progress=False)):
                self._states[text] = item.states[: self.max_tokens]  # float16, as cached

    def _molecule_tokens(self, smiles: Sequence[str]) -> None:
        for s in dict.fromkeys(smiles):
            if s not in self._tokens:
                self._tokens[s] = substructure_tokens(s, self.radius, self.vocab, self.max_substructures)

    def _batch(self, texts: Sequence[str], smiles: Sequence[str]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        unique = list(dict.fromkeys(texts))
        position = {t: i for i, t in enumerate(unique)}
        states = [self._states[t].float() for t in unique]
        lengths = torch.tensor([len(s) for s in states])
        text = nn.utils.rnn.pad_sequence(states, batch_first=True)
        text_mask = torch.arange(text.shape[1])[None, :] < lengths[:, None]
        text_index = torch.tensor([position[t] for t in texts])
        toks = [self._tokens[s] or [0] for s in smiles]
        tokens = torch.zeros(len(toks), max(map(len, toks)), dtype=torch.long)
        for i, t in enumerate(toks):
            tokens[i, : len(t)] = torch.tensor(t)
        return text, text_mask, text_index, tokens

    def _build(self) -> PairHead:
        text_dim = int(next(iter(self._states.values())).shape[-1]) if self._states else int(self._encoder().hidden)
        torch.manual_seed(self.seed)
        return PairHead(text_dim, self.vocab, self.hidden_dim, self.heads, self.layers, self.dropout)

    # -- the re-ranker interface ----------------------------------------------------------------
    def prepare(self, descriptions: Sequence[str], smiles: Sequence[str]) -> None:
        """The task's every description and gallery molecule at once: token states from the text encoder's
        on-disk cache (the same list a frozen-MiniLM run of the task caches), substructure tokens cached on disk."""
        if any(t not in self._states for t in descriptions):
            self._text_states(descriptions, as_listed=True)
        missing = [s for s in dict.fromkeys(smiles) if s not in self._tokens]
        if not missing:
            return
        path = cache_root() / "rerank" / f"substructures-{content_hash(self.radius, self.vocab, self.max_substructures, missing)}.npz"
        with locked(path):
            if path.exists():
                stored = np.load(path)
                flat, offsets = stored["tokens"], stored["offsets"]
            else:
                tokens = [substructure_tokens(s, self.radius, self.vocab, self.max_substructures) for s in missing]
                offsets = np.cumsum([0, *map(len, tokens)])
                flat = np.fromiter((t for row in tokens for t in row), dtype=np.int32, count=int(offsets[-1]))
                buffer = io.BytesIO()
                np.savez(buffer, tokens=flat, offsets=offsets)
                atomic_write_bytes(path, buffer.getvalue())
        for i, s in enumerate(missing):
            self._tokens[s] = flat[offsets[i]:offsets[i + 1]].tolist()

    def fit(self, descriptions: Sequence[str], candidates: Sequence[Sequence[str]], positives: Sequence[int],
            log: Callable[[str], None] = print) -> dict:
        self._text_states(descriptions)
        self._molecule_tokens([s for group in candidates for s in group])
        self.model = model = self._build()
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.01)
        rng = np.random.default_rng(self.seed)
        history = []
        width = 1 + min(self.negatives, min(len(group) for group in candidates) - 1)  # the true one + its negatives
        hardest = (width - 1) // 2
        for epoch in range(1, self.epochs + 1):
            model.train()
            order = rng.permutation(len(descriptions))
            total, correct, n = 0.0, 0, 0
            for s in range(0, len(order), self.batch_size):
                texts, mols = [], []
                for i in order[s:s + self.batch_size]:
                    group, pos = list(candidates[i]), int(positives[i])
                    others = [j for j in range(len(group)) if j != pos]
                    rest = others[hardest:]
                    drawn = rng.choice(len(rest), size=width - 1 - hardest, replace=False) if width - 1 > hardest else []
                    chosen = [pos, *others[:hardest], *(rest[j] for j in sorted(drawn))]
                    texts += [descriptions[i]] * width
                    mols += [group[j] for j in chosen]
                logits = model(*self._batch(texts, mols)).view(-1, width)
                loss = nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(logits)
                correct += int((logits.argmax(1) == 0).sum())
                n += len(logits)
            history.append({"epoch": epoch, "loss": total / max(n, 1), "group_acc": correct / max(n, 1)})
            log(f"cross_encoder: epoch {epoch}/{self.epochs} loss {history[-1]['loss']:.4f} "
                f"(true molecule first in its group of {width}: {history[-1]['group_acc']:.3f})")
        model.eval()
        return {"groups": len(descriptions), "negatives": self.negatives, "epochs": self.epochs, "history": history}

    @torch.no_grad()
    def score_pairs(self, descriptions: Sequence[str], smiles: Sequence[str]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("cross_encoder: fit or load it before scoring")
        self._text_states(descriptions)
        self._molecule_tokens(smiles)
        self.model.eval()
        out = [self.model(*self._batch(descriptions[s:s + self.score_batch_size], smiles[s:s + self.score_batch_size]))
               for s in range(0, len(descriptions), self.score_batch_size)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)

    def save(self, folder: Path) -> None:
        if self.model is None:
            raise RuntimeError("cross_encoder: nothing fitted to save")
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        atomic_save_tensors(state, Path(folder) / "model.safetensors")
        atomic_write_text(Path(folder) / "config.json", json.dumps({"text_dim": int(self.model.text_in[1].in_features)}))

    def load(self, folder: Path) -> None:
        text_dim = json.loads((Path(folder) / "config.json").read_text())["text_dim"]
        torch.manual_seed(self.seed)
        self.model = PairHead(text_dim, self.vocab, self.hidden_dim, self.heads, self.layers, self.dropout)
        self.model.load_state_dict(read_safetensors(Path(folder) / "model.safetensors")[0])
        self.model.eval()
