"""Composition specs: one component per slot plus training settings, frozen and validated.

A spec reads from and writes to TOML::

    name = "aman"
    embed_dim = 256
    [text_encoder]
    name = "scibert"
    pooling = "mean"
    [molecule_encoder]
    name = "graph_transformer"
    [aligner]
    name = "adversarial"
    [loss]
    name = "triplet"
    margin = 0.2
    [train]
    epochs = 60

A slot listed in :data:`COMBINERS` may name several components (``text_encoder = ["tfidf",
"minilm"]``, or ``[[text_encoder]]`` tables with per-part options): it becomes the combining
component (``name = "combined"``) with those ``parts``, each resolved like a slot.

:meth:`CompositionSpec.resolve` fills every component option with its registered default and
validates names and keys, so two runs are comparable exactly when their resolved specs (and
hashes) match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from zoo.registry.catalog import ComponentError, did_you_mean, get_component

#: Component slots of a composition and the kind of component each takes.
SLOTS: dict[str, str] = {
    "text_encoder": "text_encoder",
    "molecule_encoder": "molecule_encoder",
    "aligner": "aligner",
    "loss": "loss",
}

#: Slots that accept several components, and the registered component that combines them:
#: ``text_encoder = ["tfidf", "minilm"]`` (or ``[[text_encoder]]`` tables with options) is short
#: for ``[text_encoder] name = "combined"`` with those ``parts``.
COMBINERS: dict[str, str] = {"text_encoder": "combined"}


class SpecError(ComponentError):
    """A spec that cannot be read or validated."""


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (see the README's "Training" section)."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 5e-4
    backbone_lr: float = 2e-5
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_epochs: int = 2
    patience: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    holdout_fraction: float = 0.1
    max_minutes: float = 0.0
    eval_batch_size: int = 256


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: task and candidate pools ("all", "test")."""

    task: str = "chebi20"
    galleries: tuple[str, ...] = ("all", "test")
    chunk_size: int = 1024


@dataclass(frozen=True)
class SlotSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{key: _plain(value) for key, value in self.options.items()}}


def _plain(value: Any) -> Any:
    """Option values as TOML/JSON data (a combined slot's parts become a list of tables)."""
    if isinstance(value, SlotSpec):
        return value.to_dict()
    if isinstance(value, (list, tuple)) and any(isinstance(v, SlotSpec) for v in value):
        return [_plain(v) for v in value]
    return value


def _slot_from(slot: str, raw: Any, where: str) -> SlotSpec:
    """A slot's TOML value (name, table, or for a combinable slot a list of parts) as a :class:`SlotSpec`."""
    if isinstance(raw, (list, tuple)):
        if slot not in COMBINERS:
            raise SpecError(f"{where}: [{slot}] takes one component, not a list")
        raw = {"name": COMBINERS[slot], "parts": raw}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise SpecError(f"{where}: [{slot}] needs a component name, e.g. name = \"...\"")
    options = dict(raw)
    name = options.pop("name")
    if name == COMBINERS.get(slot) and "parts" in options:
        parts = options["parts"]
        if not isinstance(parts, (list, tuple)):
            raise SpecError(f"{where}: {slot}.parts must be a list of component names or tables, got {parts!r}")
        options["parts"] = tuple(
            part if isinstance(part, SlotSpec) else _slot_from(f"{slot}.parts.{i}", part, where) for i, part in enumerate(parts)
        )
    return SlotSpec(name, options)


def _config_from(cls: type, data: Mapping[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in data if k not in known]
    if unknown:
        hints = "".join(did_you_mean(k, list(known)) for k in unknown)
        raise SpecError(f"unknown key {', '.join(repr(f'{where}.{k}') for k in unknown)}; keys: {', '.join(known)}.{hints}")
    values = {}
    for key, value in data.items():
        default = known[key].default
        values[key] = _coerce(value, default, f"{where}.{key}")
    return cls(**values)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise SpecError(f"{where} must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class CompositionSpec:
    """A frozen composition: name, one :class:`SlotSpec` per slot, train and eval settings."""

    name: str
    text_encoder: SlotSpec
    molecule_encoder: SlotSpec
    aligner: SlotSpec
    loss: SlotSpec
    description: str = ""
    embed_dim: int = 256
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> "CompositionSpec":
        data = dict(data)
        allowed = {"name", "description", "embed_dim", "train", "eval", *SLOTS}
        unknown = [k for k in data if k not in allowed]
        if unknown:
            hints = "".join(did_you_mean(k, sorted(allowed)) for k in unknown)
            raise SpecError(f"{source}: unknown top-level key {', '.join(map(repr, unknown))}.{hints}")
        slots = {}
        for slot in SLOTS:
            raw = data.get(slot)
            if raw is None:
                raise SpecError(f"{source}: missing [{slot}] (each composition names one component per slot: {', '.join(SLOTS)})")
            slots[slot] = _slot_from(slot, raw, source)
        embed_dim = data.get("embed_dim", 256)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise SpecError(f"{source}: embed_dim must be a positive integer, got {embed_dim!r}")
        return cls(
            name=str(data.get("name", "custom")),
            description=str(data.get("description", "")),
            embed_dim=embed_dim,
            train=_config_from(TrainConfig, data.get("train", {}), "train"),
            eval=_config_from(EvalConfig, data.get("eval", {}), "eval"),
            **slots,
        )

    @classmethod
    def from_toml(cls, path: str | Path) -> "CompositionSpec":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpecError(f"spec file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read spec file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    # -- writing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "embed_dim": self.embed_dim}
        for slot in SLOTS:
            out[slot] = getattr(self, slot).to_dict()
        out["train"] = dataclasses.asdict(self.train)
        out["eval"] = {**dataclasses.asdict(self.eval), "galleries": list(self.eval.galleries)}
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def hash(self) -> str:
        """sha256 of the resolved spec without its name and description (12 hex digits)."""
        payload = {k: v for k, v in self.resolve().to_dict().items() if k not in {"name", "description"}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    # -- validation & overrides ------------------------------------------------------------
    def resolve(self) -> "CompositionSpec":
        """Every slot's options filled with defaults and checked against the registry."""
        slots = {slot: _resolve_slot(slot, kind, getattr(self, slot), COMBINERS.get(slot)) for slot, kind in SLOTS.items()}
        return dataclasses.replace(self, **slots)

    def with_overrides(self, assignments: list[str]) -> "CompositionSpec":
        """Apply ``--set`` assignments: ``slot=name``, ``slot.option=value``, ``train.key=value``,
        ``embed_dim=value``. Values are TOML literals (``0.3``, ``true``, ``"mean"``) or bare strings.
        Replacing a slot's component drops that slot's options (the new component's defaults apply);
        naming the component the slot already has changes nothing (a list of parts always replaces the slot).
        A combinable slot takes a list of parts (``text_encoder=["tfidf","minilm"]``); a part's option
        is ``text_encoder.PART.option=value`` with PART the part's name or 0-based index."""
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            key = key.strip()
            if not sep or not key:
                raise SpecError(f"--set {assignment!r}: expected KEY=VALUE, e.g. loss.margin=0.3 or text_encoder=minilm")
            value = _parse_value(raw.strip())
            head, _, tail = key.partition(".")
            top = {"name", "description", "embed_dim", "train", "eval", *SLOTS}
            if head not in top:
                raise SpecError(f"--set {assignment!r}: unknown key {head!r}.{did_you_mean(head, sorted(top))} Keys: {', '.join(sorted(top))}")
            if head in SLOTS and not tail:
                if isinstance(value, list) and head in COMBINERS and value and all(isinstance(v, str) for v in value):
                    for name in value:
                        get_component(SLOTS[head], name)
                    data[head] = {"name": COMBINERS[head], "parts": [{"name": name} for name in value]}
                    continue
                if not isinstance(value, str):
                    raise SpecError(f"--set {assignment!r}: {head} takes a component name"
                                    + (f" or a list of names, e.g. {head}=[\"tfidf\",\"minilm\"]" if head in COMBINERS else ""))
                get_component(SLOTS[head], value)  # unknown names fail here with close matches
                if data[head].get("name") != value:  # naming the component already there keeps its options
                    data[head] = {"name": value}
            elif head in SLOTS and "." in tail and data[head]["name"] == COMBINERS.get(head):
                part_key, _, option = tail.partition(".")
                part = _find_part(data[head].get("parts", []), part_key, f"--set {assignment!r}")
                try:
                    get_component(SLOTS[head], part["name"]).check_options({option: value})
                except ComponentError as exc:
                    raise SpecError(f"--set {assignment!r}: {exc}") from None
                part[option] = value
            elif head in SLOTS:
                component = get_component(SLOTS[head], data[head]["name"])
                try:
                    component.check_options({tail: value})
                except ComponentError as exc:
                    hint = (f" A part's option is {head}.PART.{tail} (PART: a part's name or index)."
                            if data[head]["name"] == COMBINERS.get(head) else "")
                    raise SpecError(f"--set {assignment!r}: {exc}{hint}") from None
                data[head][tail] = value
            elif head in {"train", "eval"}:
                if not tail:
                    raise SpecError(f"--set {assignment!r}: name a key, e.g. {head}.epochs=5")
                data[head][tail] = value
            else:
                if tail:
                    raise SpecError(f"--set {assignment!r}: {head} has no sub-keys")
                data[head] = value
        return CompositionSpec.from_dict(data, source="--set")


def _resolve_slot(label: str, kind: str, current: SlotSpec, combiner: str | None = None) -> SlotSpec:
    """``current`` with every option filled with its registered default, validated and typed;
    when it is the slot's ``combiner`` component, each of its parts is resolved the same way."""
    component = get_component(kind, current.name)
    try:
        options = component.resolve_options(current.options)
    except ComponentError as exc:
        raise SpecError(f"[{label}] {exc}") from None
    # options take the type of their registered default (1 -> 1.0 for a float option, so
    # equal specs hash equal; "abc" for a number fails here, not mid-training)
    combined = current.name == combiner
    options = {
        key: value if component.config.get(key) is None or (combined and key == "parts")
        else _coerce(value, component.config[key], f"{label}.{key}")
        for key, value in options.items()
    }
    if combined:
        parts = tuple(options.get("parts", ()))
        if len(parts) < 2:
            raise SpecError(f"[{label}] a combined {kind} needs at least two parts, got {len(parts)}: "
                            f"e.g. {label} = [\"tfidf\", \"minilm\"]")
        for i, part in enumerate(parts):
            if part.name == current.name:
                raise SpecError(f"[{label}.parts.{i}] a part cannot itself be {current.name!r}")
        options["parts"] = tuple(_resolve_slot(f"{label}.parts.{i}", kind, part) for i, part in enumerate(parts))
    return SlotSpec(current.name, options)


def _find_part(parts: list[dict[str, Any]], key: str, where: str) -> dict[str, Any]:
    """The part named ``key`` (or at index ``key``) of a combined slot's parts."""
    names = [part["name"] for part in parts]
    if key.isdigit():
        if int(key) >= len(parts):
            raise SpecError(f"{where}: no part {key}; parts: {', '.join(f'{i}={n}' for i, n in enumerate(names))}")
        return parts[int(key)]
    matches = [part for part in parts if part["name"] == key]
    if not matches:
        raise SpecError(f"{where}: no part named {key!r}.{did_you_mean(key, names)} Parts: {', '.join(names)}")
    if len(matches) > 1:
        raise SpecError(f"{where}: several parts are named {key!r}; name the part by its index (0-{len(parts) - 1})")
    return matches[0]


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_spec(name_or_path: str) -> CompositionSpec:
    """A registered composition by name, or a TOML file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        return CompositionSpec.from_toml(path)
    component = get_component("composition", name_or_path)
    made = component.create()
    if isinstance(made, (str, Path)):
        spec = CompositionSpec.from_toml(made)
    else:
        spec = CompositionSpec.from_dict(made, source=f"composition {name_or_path!r}")
    return spec
