"""Several text encoders used as one: each part encodes the text, the part embeddings are
L2-normalized, concatenated and projected to ``embed_dim`` by one linear layer.

Concatenation + one linear projection is the same function as a sum of one linear projection
per part (``W [a; b] = W_a a + W_b b``), so "sum" and "concat" are not separate choices here;
normalizing first keeps one part's scale from drowning the others at the start of training.

A composition writes ``text_encoder = ["tfidf", "minilm"]`` (or ``[[text_encoder]]`` tables
with per-part options); :mod:`zoo.spec` turns that into this component, ``name = "combined"``
with ``parts``. Every part keeps its own behaviour: a frozen transformer part caches its
backbone states on disk, a fittable part (:class:`zoo.protocols.Fittable`, e.g. ``tfidf``) is
fitted on the training descriptions and its state saved under ``parts.N.`` keys. The
combined ``mode`` (``auto``/``frozen``/``finetune``) applies to every transformer part; the
parts' own ``mode`` must stay ``auto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.api import Encoded
from zoo.registry import get_component

MODES = ("auto", "frozen", "finetune")


def _part_spec(part: Any) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a part given as a :class:`zoo.spec.SlotSpec` or a ``{"name": ...}`` mapping."""
    if hasattr(part, "name") and hasattr(part, "options"):
        return part.name, dict(part.options)
    if isinstance(part, dict) and isinstance(part.get("name"), str):
        options = dict(part)
        return options.pop("name"), options
    raise ValueError(f"a part must name a text encoder, got {part!r}")


class PartBatches(list):
    """One collated batch per part, in part order."""

    def to(self, device: torch.device | str) -> "PartBatches":
        return PartBatches(batch.to(device) for batch in self)


class CombinedText(nn.Module):
    """Text encoder parts -> L2-normalized embeddings -> concatenation -> linear projection."""

    def __init__(self, embed_dim: int, parts: Sequence[Any] = (), mode: str = "auto") -> None:
        super().__init__()

        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; choose one of {', '.join(MODES)}")
        if len(parts) < 2:
            raise ValueError(f"needs at least two parts, got {len(parts)}; a single text encoder needs no combining")
        self.part_names: list[str] = []
        modules = []
        for index, part in enumerate(parts):
            name, options = _part_spec(part)
            label = f"part {index} ({name!r})"
            if name == "combined":
                raise ValueError(f"{label}: a part cannot itself be a combined text encoder")
            if options.get("mode", "auto") != "auto":
                raise ValueError(f"{label} sets mode={options['mode']!r}: set the mode of all parts on the combined "
                                 f"encoder instead (text_encoder.mode={options['mode']})")
            try:
                modules.append(get_component("text_encoder", name).create(embed_dim=embed_dim, **options))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{label}: {exc}") from None
            except RuntimeError as exc:  # e.g. TextEncoderUnavailable: zoo.model may substitute this part
                exc.part_index = index  # type: ignore[attr-defined]
                raise
            self.part_names.append(name)
        self.parts = nn.ModuleList(modules)
        self.dim = embed_dim
        self.state_dim = sum(int(p.dim) for p in self.parts)
        self.project = nn.Linear(self.state_dim, embed_dim)
        self.return_states = False
        self.set_mode("frozen" if mode == "auto" else mode)  # "auto" is resolved by zoo run for the device

    # -- modes and backbones ----------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return all(getattr(part, "frozen", True) for part in self.parts)

    def set_mode(self, mode: str) -> None:
        """Apply ``frozen``/``finetune`` to every part that has a backbone mode."""
        for part in self.parts:
            if hasattr(part, "set_mode"):
                part.set_mode(mode)

    @property
    def backbone(self) -> nn.ModuleList | None:
        """The parts' transformer backbones (trained at ``train.backbone_lr`` when fine-tuned)."""
        backbones = [part.backbone for part in self.parts if isinstance(getattr(part, "backbone", None), nn.Module)]
        return nn.ModuleList(backbones) if backbones else None

    # -- fitting (see zoo.protocols.Fittable) -------------------------------------------------
    def _fittable(self) -> list[tuple[int, nn.Module]]:
        return [(i, part) for i, part in enumerate(self.parts) if callable(getattr(part, "fit", None))]

    def fit(self, texts: Sequence[str], seed: int = 0) -> None:
        for index, part in self._fittable():
            try:
                part.fit(texts, seed=seed)
            except ValueError as exc:
                raise ValueError(f"part {index} ({self.part_names[index]!r}): {exc}") from None

    def fitted_state(self) -> dict[str, Tensor]:
        return {f"parts.{i}.{key}": value for i, part in self._fittable() for key, value in part.fitted_state().items()}

    def load_fitted_state(self, state: dict[str, Tensor]) -> None:
        for index, part in self._fittable():
            prefix = f"parts.{index}."
            try:
                part.load_fitted_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            except ValueError as exc:
                raise ValueError(f"part {index} ({self.part_names[index]!r}): {exc}") from None

    def fitted_notes(self) -> list[str]:
        return [f"part {index} ({self.part_names[index]!r}): {note}" for index, part in self._fittable()
                for note in getattr(part, "fitted_notes", lambda: [])()]

    # -- inputs -----------------------------------------------------------------------------
    def prepare(self, texts: Sequence[str], progress: bool = True, device: torch.device | str = "cpu") -> list[tuple]:
        """One tuple per text holding each part's prepared item."""
        per_part = [part.prepare(texts, progress=progress, device=device) for part in self.parts]
        return list(zip(*per_part))

    def collate(self, items: Sequence[tuple]) -> PartBatches:
        return PartBatches(part.collate([item[i] for item in items]) for i, part in enumerate(self.parts))

    # -- forward ----------------------------------------------------------------------------
    def forward(self, batch: PartBatches) -> Encoded:
        joined = torch.cat([F.normalize(part(b).embedding, dim=-1) for part, b in zip(self.parts, batch)], dim=-1)
        embedding = self.project(joined)
        if not self.return_states:
            return Encoded(embedding)
        mask = torch.ones(joined.shape[0], 1, dtype=torch.bool, device=joined.device)
        return Encoded(embedding, joined.unsqueeze(1), mask)
