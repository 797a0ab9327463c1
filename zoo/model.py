"""Assemble a retrieval model from a resolved composition spec."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.protocols import Aligned, Encoded
from zoo.registry import ComponentError, get_component
from zoo.spec import SLOTS, CompositionSpec, SlotSpec


class SubstitutionWarning(UserWarning):
    """A component was replaced by a fallback (e.g. SciBERT unreachable -> MiniLM)."""


#: Text encoders that may stand in for one whose weights cannot be loaded.
TEXT_FALLBACK = "minilm"


@dataclass
class BuildReport:
    """What the assembly did beyond the spec: substitutions and resolved modes."""

    spec: CompositionSpec
    substitutions: list[dict[str, str]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)


class RetrievalModel(nn.Module):
    """Text encoder + molecule encoder + aligner + loss."""

    def __init__(self, text_encoder: nn.Module, molecule_encoder: nn.Module, aligner: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.molecule_encoder = molecule_encoder
        self.aligner = aligner
        self.loss = loss

    def forward(self, text_batch: Any, molecule_batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        text = self.text_encoder(text_batch)
        molecule = self.molecule_encoder(molecule_batch)
        aligned: Aligned = self.aligner(text, molecule)
        retrieval = self.loss(aligned.text, aligned.molecule)
        total = retrieval + sum(aligned.losses.values(), torch.zeros((), device=retrieval.device))
        logs = {"loss": float(total.detach()), "retrieval_loss": float(retrieval.detach())}
        logs.update({k: float(v.detach()) for k, v in aligned.losses.items()})
        logs.update(aligned.metrics)
        return total, logs

    def embed_text(self, text_batch: Any) -> torch.Tensor:
        enc: Encoded = self.text_encoder(text_batch)
        project = getattr(self.aligner, "embed_text", None)
        emb = project(enc) if project else enc.embedding
        return F.normalize(emb.float(), dim=-1)

    def embed_molecules(self, molecule_batch: Any) -> torch.Tensor:
        enc: Encoded = self.molecule_encoder(molecule_batch)
        project = getattr(self.aligner, "embed_molecule", None)
        emb = project(enc) if project else enc.embedding
        return F.normalize(emb.float(), dim=-1)


def _create(slot: str, spec: CompositionSpec) -> tuple[nn.Module, dict[str, Any]]:
    slot_spec: SlotSpec = getattr(spec, slot)
    component = get_component(SLOTS[slot], slot_spec.name)
    try:
        module = component.create(embed_dim=spec.embed_dim, **slot_spec.options)
    except (ValueError, TypeError) as exc:
        raise ComponentError(f"[{slot}] {component.kind} {component.name!r}: {exc}") from None
    info = {"slot": slot, "name": component.name, "plugin": component.plugin, "version": component.plugin_version}
    return module, info


def build_model(spec: CompositionSpec, *, allow_substitution: bool = True, on_substitute=None) -> tuple[RetrievalModel, BuildReport]:
    """Create every component of ``spec`` (resolved first).

    If the text encoder's weights cannot be loaded (e.g. SciBERT offline) and
    ``allow_substitution`` is true, the embedded MiniLM encoder stands in (keeping the pooling
    and mode options) and the substitution is recorded; otherwise the error propagates.
    """
    from zoo.plugins.hf_text import TextEncoderUnavailable

    spec = spec.resolve()
    report = BuildReport(spec)
    try:
        text_encoder, text_info = _create("text_encoder", spec)
    except TextEncoderUnavailable as exc:
        if not allow_substitution or spec.text_encoder.name == TEXT_FALLBACK:
            raise
        fallback = get_component("text_encoder", TEXT_FALLBACK)
        kept = {k: v for k, v in spec.text_encoder.options.items() if k in fallback.config}
        record = {"slot": "text_encoder", "requested": spec.text_encoder.name, "used": TEXT_FALLBACK, "reason": str(exc)}
        report.substitutions.append(record)
        message = f"text encoder {spec.text_encoder.name!r} is unavailable ({exc}); substituting the embedded {TEXT_FALLBACK!r} encoder"
        if on_substitute:
            on_substitute(message)
        else:
            warnings.warn(message, SubstitutionWarning, stacklevel=2)
        from dataclasses import replace

        spec = replace(spec, text_encoder=SlotSpec(TEXT_FALLBACK, fallback.resolve_options(kept)))
        report.spec = spec
        text_encoder, text_info = _create("text_encoder", spec)
        text_info["substituted_for"] = record["requested"]
    molecule_encoder, mol_info = _create("molecule_encoder", spec)
    aligner, aligner_info = _create("aligner", spec)
    loss, loss_info = _create("loss", spec)
    if getattr(aligner, "needs_states", False):
        text_encoder.return_states = True
        molecule_encoder.return_states = True
    report.components = [text_info, mol_info, aligner_info, loss_info]
    return RetrievalModel(text_encoder, molecule_encoder, aligner, loss), report
