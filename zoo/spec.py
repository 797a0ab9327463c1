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
        return {"name": self.name, **dict(self.options)}


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
            if isinstance(raw, str):
                raw = {"name": raw}
            if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
                raise SpecError(f"{source}: [{slot}] needs a component name, e.g. name = \"...\"")
            raw = dict(raw)
            slots[slot] = SlotSpec(raw.pop("name"), raw)
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
        slots = {}
        for slot, kind in SLOTS.items():
            current: SlotSpec = getattr(self, slot)
            component = get_component(kind, current.name)
            try:
                options = component.resolve_options(current.options)
            except ComponentError as exc:
                raise SpecError(f"[{slot}] {exc}") from None
            # options take the type of their registered default (1 -> 1.0 for a float option, so
            # equal specs hash equal; "abc" for a number fails here, not mid-training)
            options = {
                key: value if component.config.get(key) is None else _coerce(value, component.config[key], f"{slot}.{key}")
                for key, value in options.items()
            }
            slots[slot] = SlotSpec(current.name, options)
        return dataclasses.replace(self, **slots)

    def with_overrides(self, assignments: list[str]) -> "CompositionSpec":
        """Apply ``--set`` assignments: ``slot=name``, ``slot.option=value``, ``train.key=value``,
        ``embed_dim=value``. Values are TOML literals (``0.3``, ``true``, ``"mean"``) or bare strings.
        Replacing a slot's component drops that slot's options (the new component's defaults apply)."""
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
                if not isinstance(value, str):
                    raise SpecError(f"--set {assignment!r}: {head} takes a component name")
                get_component(SLOTS[head], value)  # unknown names fail here with close matches
                data[head] = {"name": value}
            elif head in SLOTS:
                component = get_component(SLOTS[head], data[head]["name"])
                try:
                    component.check_options({tail: value})
                except ComponentError as exc:
                    raise SpecError(f"--set {assignment!r}: {exc}") from None
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
