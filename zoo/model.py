"""Assemble a retrieval model from a resolved composition spec."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ComponentError, SubstitutionWarning, TextEncoderUnavailable
from zoo.protocols import Aligned, Encoded
from zoo.registry import get_component
from zoo.spec import SLOTS, CompositionSpec, SlotSpec

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
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not isinstance(exc, MemoryError) and "memory" not in str(exc) and "allocate" not in str(exc):
            raise
        sizes = ", ".join(f"{k}={v}" for k, v in {"embed_dim": spec.embed_dim, **slot_spec.options}.items()
                          if isinstance(v, int) and not isinstance(v, bool))
        raise ComponentError(f"[{slot}] {component.kind} {component.name!r}: not enough memory to build it with {sizes}; "
                             "lower these sizes") from None
    info = {"slot": slot, "name": component.name, "plugin": component.plugin, "version": component.plugin_version}
    return module, info


def _substitute_text_encoder(spec: CompositionSpec, exc: Exception) -> tuple[CompositionSpec, dict[str, str]]:
    """``spec`` with the unavailable text encoder (or the unavailable part of a combined one, as
    named by ``exc.part_index``) replaced by :data:`TEXT_FALLBACK`, keeping the options it shares;
    re-raises ``exc`` when there is nothing to substitute."""
    from dataclasses import replace

    fallback = get_component("text_encoder", TEXT_FALLBACK)
    slot_spec: SlotSpec = spec.text_encoder
    part_index = getattr(exc, "part_index", None)
    target = slot_spec.options["parts"][part_index] if part_index is not None else slot_spec
    if target.name == TEXT_FALLBACK:
        raise exc
    kept = fallback.resolve_options({k: v for k, v in target.options.items() if k in fallback.config})
    if part_index is None:
        new_slot, where = SlotSpec(TEXT_FALLBACK, kept), "text_encoder"
    else:
        parts = list(slot_spec.options["parts"])
        parts[part_index] = SlotSpec(TEXT_FALLBACK, kept)
        new_slot, where = SlotSpec(slot_spec.name, {**slot_spec.options, "parts": tuple(parts)}), f"text_encoder.parts.{part_index}"
    record = {"slot": where, "requested": target.name, "used": TEXT_FALLBACK, "reason": str(exc)}
    return replace(spec, text_encoder=new_slot), record


def build_model(spec: CompositionSpec, *, allow_substitution: bool = True, on_substitute=None) -> tuple[RetrievalModel, BuildReport]:
    """Create every component of ``spec`` (resolved first).

    If the text encoder's weights cannot be loaded (e.g. SciBERT offline) and
    ``allow_substitution`` is true, the embedded MiniLM encoder stands in (keeping the pooling
    and mode options) and the substitution is recorded; otherwise the error propagates.
    """
    spec = spec.resolve()
    report = BuildReport(spec)
    while True:
        try:
            text_encoder, text_info = _create("text_encoder", spec)
            break
        except TextEncoderUnavailable as exc:
            if not allow_substitution:
                raise
            spec, record = _substitute_text_encoder(spec, exc)
            report.spec = spec
            report.substitutions.append(record)
            where = "" if record["slot"] == "text_encoder" else f" ({record['slot']})"
            message = (f"text encoder {record['requested']!r}{where} is unavailable ({exc}); "
                       f"substituting the embedded {TEXT_FALLBACK!r} encoder")
            if on_substitute:
                on_substitute(message)
            else:
                warnings.warn(message, SubstitutionWarning, stacklevel=2)
    if report.substitutions:
        text_info["substituted_for"] = ", ".join(record["requested"] for record in report.substitutions)
    molecule_encoder, mol_info = _create("molecule_encoder", spec)
    aligner, aligner_info = _create("aligner", spec)
    loss, loss_info = _create("loss", spec)
    if getattr(aligner, "needs_states", False):
        text_encoder.return_states = True
        molecule_encoder.return_states = True
    report.components = [text_info, mol_info, aligner_info, loss_info]
    return RetrievalModel(text_encoder, molecule_encoder, aligner, loss), report
