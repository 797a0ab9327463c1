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

An optional ``[task]`` table holds the options of the ``[eval] task`` (e.g. ``holdout_seed`` of
``chebi20``, ``path`` of ``pairs``; ``--set task.KEY=VALUE``), checked against the task's options like
a component's. Only values that differ from the task's defaults are kept, so a spec without them
writes and hashes exactly as before.

Optional ``[[scorers]]`` tables (``name`` and options; or ``scorers = ["structure_match"]``) add
registered scorers (``zoo list scorer``) beside the learned cosine similarity: after training,
``zoo run`` fuses them (:mod:`zoo.fusion`, weights fitted on the held-out pairs only). A spec
without scorers writes and hashes exactly as before.

Optional ``[[rerankers]]`` tables (``name`` and options; ``zoo list reranker``) add a second stage: the
top ``rerank_k`` (default 100) candidates of the (fused) first stage are re-scored by them
(:mod:`zoo.rerank`: fitted on the training pairs, weighed on the held-out pairs). A spec without
re-rankers writes and hashes exactly as before; ``rerank_k`` is written only beside re-rankers.

:meth:`CompositionSpec.resolve` fills every component option with its registered default and
validates names and keys, so two runs are comparable exactly when their resolved specs (and
hashes) match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from zoo.errors import ComponentError, SpecError
from zoo.registry import get_component
from zoo.registry.catalog import did_you_mean
from zoo.tasks import DEFAULT_TASK, get_task, parse_galleries, resolve_task_options

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


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric option: ``low``/``high`` bounds (``None``: unbounded),
    exclusive where ``low_open``/``high_open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """E.g. ``at least 1 and at most 65536``, ``greater than 0``."""
        def number(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        parts = []
        if self.low is not None:
            parts.append(f"{'greater than' if self.low_open else 'at least'} {number(self.low)}")
        if self.high is not None:
            parts.append(f"{'less than' if self.high_open else 'at most'} {number(self.high)}")
        return " and ".join(parts)


#: Largest width of a layer or embedding (``embed_dim``, ``hidden_dim``, ``svd_dim``, ...).
MAX_WIDTH = 65536
#: Deepest nesting of tables and arrays in a spec (a combined slot's part options need 5).
MAX_NESTING = 10
#: first-stage candidates re-ranked per query when a spec names re-rankers without ``rerank_k``
DEFAULT_RERANK_K = 100

#: Allowed values of numeric settings, by key: ``embed_dim``, ``train.*``/``eval.*`` settings and
#: every component option of that name (built-in or from a plugin). Sizes have explicit upper
#: bounds, so an absurd value fails here, before anything is built or written, not as a failed
#: allocation; every float must also be finite. Components check their finer rules themselves.
RANGES: dict[str, Range] = {
    # model sizes
    "embed_dim": Range(1, MAX_WIDTH), "hidden_dim": Range(1, MAX_WIDTH), "svd_dim": Range(1, MAX_WIDTH),
    "lexical_dim": Range(0, MAX_WIDTH), "lexical_buckets": Range(1, 2**24), "n_bits": Range(1, 2**20),
    "max_features": Range(1, 2**24), "layers": Range(1, 256), "adapter_layers": Range(0, 64), "heads": Range(1, 1024),
    "ffn_mult": Range(1, 64), "max_length": Range(1, MAX_WIDTH), "max_tokens": Range(1, MAX_WIDTH),
    "max_atoms": Range(1, MAX_WIDTH), "encode_batch_size": Range(1, 2**20), "radius": Range(0, 16),
    "ngram_min": Range(1, 64), "ngram_max": Range(1, 64), "min_df": Range(1, 2**31 - 1),
    # model weights and rates
    "dropout": Range(0, 1, high_open=True), "margin": Range(0), "weight": Range(0), "grl_lambda": Range(0),
    "temperature": Range(0, low_open=True), "pretrain_mask": Range(0, 1, low_open=True, high_open=True),
    # training and evaluation
    "epochs": Range(1, 100_000), "batch_size": Range(2, 2**20), "eval_batch_size": Range(1, 2**20),
    "chunk_size": Range(1, 2**24), "lr": Range(0, low_open=True), "backbone_lr": Range(0, low_open=True),
    "weight_decay": Range(0), "warmup_epochs": Range(0, 100_000), "patience": Range(1, 100_000), "grad_clip": Range(0),
    "pretrain_epochs": Range(0, 100_000),
    "seed": Range(0, 2**32 - 1), "holdout_seed": Range(0, 2**32 - 1), "holdout_fraction": Range(0, 1, low_open=True, high_open=True),
    "max_minutes": Range(0),
}


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def check_range(key: str, value: Any, where: str) -> None:
    """A number that is finite and within :data:`RANGES` ``[key]`` (if any), else a :class:`SpecError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    allowed = RANGES.get(key)
    bounds = allowed.describe() if allowed else ""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where} must be a finite number{' ' + bounds if bounds else ''}, got {value}")
    if allowed is not None and value not in allowed:
        raise SpecError(f"{where} must be {bounds}, got {_short(value)}")


def nesting_depth(value: Any) -> int:
    """How deeply tables (mappings) and arrays (lists, tuples) nest in ``value`` (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_nesting(data: Any, where: str) -> None:
    if nesting_depth(data) > MAX_NESTING:
        raise SpecError(_too_deep(where))


def _too_deep(where: str) -> str:
    return (f"{where}: tables/arrays nested more than {MAX_NESTING} levels deep; a spec needs only a few "
            "(slot tables, a combined slot's parts, option lists): remove the extra brackets")


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads`` with the nesting of the result limited to :data:`MAX_NESTING` (a deeper
    document fails with a :class:`SpecError` instead of exhausting the parser's recursion)."""
    try:
        data = tomllib.loads(text)
    except RecursionError:  # the parser recurses once per level
        raise SpecError(_too_deep(where)) from None
    _check_nesting(data, where)
    return data


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
    # bf16 autocast while training on a CPU: "auto" where the CPU has native bf16 (zoo.precision), or
    # true/false to force it (CUDA always autocasts). The precision used is a run fact, not part of the hash.
    cpu_bf16: bool | str = "auto"


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: task and candidate pools ("all", "test")."""

    task: str = DEFAULT_TASK
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


def _scorers_from(raw: Any, where: str, key: str = "scorers") -> tuple[SlotSpec, ...]:
    """``scorers`` (or ``rerankers``): a list of component names or ``[[scorers]]`` tables (``name`` plus options)."""
    kind, example = {"scorers": ("scorer", "structure_match"), "rerankers": ("reranker", "cross_encoder")}[key]
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise SpecError(f"{where}: {key} must be a list of {kind} names or [[{key}]] tables, got {_short(raw)}")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, SlotSpec):
            out.append(item)
            continue
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SpecError(f"{where}: [[{key}]] {i} needs a {kind} name, e.g. name = \"{example}\" (see `zoo list {kind}`)")
        options = dict(item)
        out.append(SlotSpec(options.pop("name"), options))
    return tuple(out)


def _rerank_k_from(data: Mapping[str, Any], rerankers: tuple, where: str) -> int:
    """``rerank_k``: how many first-stage candidates the re-rankers re-score (only beside ``[[rerankers]]``)."""
    k = data.get("rerank_k", DEFAULT_RERANK_K)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise SpecError(f"{where}: rerank_k must be an integer >= 2, got {_short(k)}")
    if "rerank_k" in data and not rerankers:
        raise SpecError(f"{where}: rerank_k without [[rerankers]] (name a re-ranker, see `zoo list reranker`)")
    return k


def _task_from(raw: Any, where: str) -> dict[str, Any]:
    """``[task]``: a table of the task's options (checked against the task when the spec is resolved)."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: [task] must be a table of the task's options, e.g. [task] holdout_seed = 1; got {_short(raw)}")
    return dict(raw)


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


#: settings that take true, false or "auto" (their default)
BOOL_OR_AUTO = frozenset({"cpu_bf16"})


def _coerce(value: Any, default: Any, where: str) -> Any:
    """``value`` typed like ``default`` and checked against :data:`RANGES` (by the last part of ``where``)."""
    if where.rsplit(".", 1)[-1] in BOOL_OR_AUTO:
        if not (isinstance(value, bool) or value == "auto"):
            raise SpecError(f"{where} must be true, false or \"auto\", got {_short(value)}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {_short(value)}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {_short(value)}")
        check_range(where.rsplit(".", 1)[-1], value, where)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {_short(value)}")
        check_range(where.rsplit(".", 1)[-1], float(value), where)
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {_short(value)}")
        return tuple(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise SpecError(f"{where} must be a string, got {_short(value)}")
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
    scorers: tuple[SlotSpec, ...] = ()  # fused with the learned similarity after training (zoo.fusion)
    task: Mapping[str, Any] = field(default_factory=dict)  # options of eval.task (only those differing from its defaults)
    rerankers: tuple[SlotSpec, ...] = ()  # a second stage over the top rerank_k (zoo.rerank)
    rerank_k: int = DEFAULT_RERANK_K

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> "CompositionSpec":
        _check_nesting(data, source)
        data = dict(data)
        allowed = {"name", "description", "embed_dim", "train", "eval", "scorers", "task", "rerankers", "rerank_k", *SLOTS}
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
            raise SpecError(f"{source}: embed_dim must be a positive integer, got {_short(embed_dim)}")
        check_range("embed_dim", embed_dim, f"{source}: embed_dim")
        return cls(
            name=str(data.get("name", "custom")),
            description=str(data.get("description", "")),
            embed_dim=embed_dim,
            train=_config_from(TrainConfig, data.get("train", {}), "train"),
            eval=_config_from(EvalConfig, data.get("eval", {}), "eval"),
            scorers=_scorers_from(data.get("scorers", ()), source),
            task=_task_from(data.get("task", {}), source),
            rerankers=(rerankers := _scorers_from(data.get("rerankers", ()), source, "rerankers")),
            rerank_k=_rerank_k_from(data, rerankers, source),
            **slots,
        )

    @classmethod
    def from_toml(cls, path: str | Path) -> "CompositionSpec":
        return cls.from_dict(_read_toml(Path(path)), source=str(path))

    # -- writing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "embed_dim": self.embed_dim}
        for slot in SLOTS:
            out[slot] = getattr(self, slot).to_dict()
        out["train"] = dataclasses.asdict(self.train)
        out["eval"] = {**dataclasses.asdict(self.eval), "galleries": list(self.eval.galleries)}
        if self.scorers:  # absent when empty: specs without scorers keep their hashes
            out["scorers"] = [scorer.to_dict() for scorer in self.scorers]
        if self.task:  # absent when every task option has its default: such specs keep their hashes
            out["task"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.task.items()}
        if self.rerankers:  # absent when empty: specs without re-rankers keep their hashes
            out["rerankers"] = [reranker.to_dict() for reranker in self.rerankers]
            out["rerank_k"] = self.rerank_k
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def hash(self) -> str:
        """sha256 of the resolved spec without its name and description (12 hex digits).

        ``train.cpu_bf16 = "auto"`` hashes as ``false`` did before 0.2 (the default then): it asks for the
        fp32 result and lets a CPU with native bf16 compute it faster, so the hash does not depend on the
        hardware. The precision used is recorded in the results and splits leaderboard rows."""
        payload = {k: v for k, v in self.resolve().hashed_dict().items() if k not in {"name", "description"}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def hashed_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` as :meth:`hash` reads it: ``train.cpu_bf16 = "auto"`` written ``false``."""
        out = self.to_dict()
        if out["train"].get("cpu_bf16") == "auto":
            out["train"]["cpu_bf16"] = False
        return out

    def precision_spellings(self) -> list["CompositionSpec"]:
        """This spec, and where it asks for ``cpu_bf16 = "auto"`` the same spec forcing bf16: how a run that
        auto makes on a bf16 CPU was spelled before 0.2 (``zoo leaderboard --shipped`` accepts both)."""
        if self.train.cpu_bf16 != "auto":
            return [self]
        return [self, dataclasses.replace(self, train=dataclasses.replace(self.train, cpu_bf16=True))]

    # -- validation & overrides ------------------------------------------------------------
    def resolve(self) -> "CompositionSpec":
        """Every slot's options filled with defaults and checked against the registry; every
        setting typed and within :data:`RANGES` (nothing is built or written before this)."""
        check_range("embed_dim", self.embed_dim, "embed_dim")
        slots = {slot: _resolve_slot(slot, kind, getattr(self, slot), COMBINERS.get(slot)) for slot, kind in SLOTS.items()}
        train = _config_from(TrainConfig, dataclasses.asdict(self.train), "train")
        evaluation = _config_from(EvalConfig, dataclasses.asdict(self.eval), "eval")
        scorers = tuple(_resolve_slot(f"scorers.{i}", "scorer", scorer) for i, scorer in enumerate(self.scorers))
        rerankers = tuple(_resolve_slot(f"rerankers.{i}", "reranker", r) for i, r in enumerate(self.rerankers))
        # an unknown task, gallery or task option is refused here (zoo show as zoo run), with close matches
        parse_galleries(get_task(evaluation.task), evaluation.galleries, "eval.galleries")
        task = resolve_task_options(evaluation.task, self.task, _coerce)
        return dataclasses.replace(self, train=train, eval=evaluation, scorers=scorers, rerankers=rerankers, task=task, **slots)

    def with_overrides(self, assignments: list[str]) -> "CompositionSpec":
        """Apply ``--set`` assignments: ``slot=name``, ``slot.option=value``, ``train.key=value``,
        ``embed_dim=value``. Values are TOML literals (``0.3``, ``true``, ``"mean"``) or bare strings.
        Replacing a slot's component drops that slot's options (the new component's defaults apply);
        naming the component the slot already has changes nothing (a list of parts always replaces the slot).
        A combinable slot takes a list of parts (``text_encoder=["tfidf","minilm"]``); a part's option
        is ``text_encoder.PART.option=value`` with PART the part's name or 0-based index."""
        data = self.to_dict()
        task_set: set[str] = set()  # task options set here (kept when eval.task changes; the spec's are dropped)
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            key = key.strip()
            if not sep or not key:
                raise SpecError(f"--set {_short(assignment)}: expected KEY=VALUE, e.g. loss.margin=0.3 or text_encoder=minilm")
            value = _parse_value(raw.strip(), f"--set {_short(assignment)}")
            head, _, tail = key.partition(".")
            top = {"name", "description", "embed_dim", "train", "eval", "scorers", "rerankers", "rerank_k", "task", *SLOTS}
            if head not in top:
                raise SpecError(f"--set {_short(assignment)}: unknown key {head!r}.{did_you_mean(head, sorted(top))} Keys: {', '.join(sorted(top))}")
            if head in SLOTS and not tail:
                if isinstance(value, list) and head in COMBINERS and value and all(isinstance(v, str) for v in value):
                    for name in value:
                        get_component(SLOTS[head], name)
                    data[head] = {"name": COMBINERS[head], "parts": [{"name": name} for name in value]}
                    continue
                if not isinstance(value, str):
                    raise SpecError(f"--set {_short(assignment)}: {head} takes a component name"
                                    + (f" or a list of names, e.g. {head}=[\"tfidf\",\"minilm\"]" if head in COMBINERS else ""))
                get_component(SLOTS[head], value)  # unknown names fail here with close matches
                if data[head].get("name") != value:  # naming the component already there keeps its options
                    data[head] = {"name": value}
            elif head in SLOTS and "." in tail and data[head]["name"] == COMBINERS.get(head):
                part_key, _, option = tail.partition(".")
                part = find_part(data[head].get("parts", []), part_key, f"--set {_short(assignment)}")
                try:
                    get_component(SLOTS[head], part["name"]).check_options({option: value})
                except ComponentError as exc:
                    raise SpecError(f"--set {_short(assignment)}: {exc}") from None
                part[option] = value
            elif head in SLOTS:
                component = get_component(SLOTS[head], data[head]["name"])
                try:
                    component.check_options({tail: value})
                except ComponentError as exc:
                    hint = (f" A part's option is {head}.PART.{tail} (PART: a part's name or index)."
                            if data[head]["name"] == COMBINERS.get(head) else "")
                    raise SpecError(f"--set {_short(assignment)}: {exc}{hint}") from None
                data[head][tail] = value
            elif head == "scorers":
                if tail or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise SpecError(f"--set {_short(assignment)}: scorers takes a list of scorer names, e.g. "
                                    "scorers=[\"structure_match\"] (options: a [[scorers]] table in a spec file)")
                for name in value:
                    get_component("scorer", name)
                data["scorers"] = [{"name": name} for name in value]
            elif head == "rerankers":
                if tail or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise SpecError(f"--set {_short(assignment)}: rerankers takes a list of re-ranker names, e.g. "
                                    "rerankers=[\"class_check\"] (options: a [[rerankers]] table in a spec file)")
                for name in value:
                    get_component("reranker", name)
                data["rerankers"] = [{"name": name} for name in value]
            elif head == "rerank_k":
                if tail:
                    raise SpecError(f"--set {_short(assignment)}: rerank_k takes a number, e.g. rerank_k=50")
                data["rerank_k"] = value
            elif head in {"train", "eval"}:
                if not tail:
                    raise SpecError(f"--set {_short(assignment)}: name a key, e.g. {head}.epochs=5")
                if (head, tail) == ("eval", "task") and value != data["eval"].get("task") and data.get("task"):
                    data["task"] = {k: v for k, v in data["task"].items() if k in task_set}  # another task: its defaults
                data[head][tail] = value
            elif head == "task":
                if not tail or "." in tail:
                    raise SpecError(f"--set {_short(assignment)}: name one option of the task, e.g. task.holdout_seed=1 "
                                    "(see `zoo list task --json`)")
                data.setdefault("task", {})[tail] = value  # checked against eval.task's options when resolved
                task_set.add(tail)
            else:
                if tail:
                    raise SpecError(f"--set {_short(assignment)}: {head} has no sub-keys")
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
        key: value if combined and key == "parts"
        else _coerce(value, component.config[key], f"{label}.{key}") if component.config.get(key) is not None
        else _checked(key, value, f"{label}.{key}")
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


def _checked(key: str, value: Any, where: str) -> Any:
    """An option without a typed default: still finite and within :data:`RANGES` when it is a number."""
    check_range(key, value, where)
    return value


def find_part(parts: list[dict[str, Any]], key: str, where: str) -> dict[str, Any]:
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


def _parse_value(raw: str, where: str) -> Any:
    try:
        return parse_toml(f"v = {raw}", where)["v"]
    except tomllib.TOMLDecodeError:
        return raw


@dataclass(frozen=True)
class EnsembleSpec:
    """An ensemble composition: member compositions trained at one seed and fused with ``scorers``
    (weights fitted on the held-out pairs; :mod:`zoo.ensembles` runs it). Its TOML names ``members``
    instead of slots::

        name = "names_ensemble"
        members = ["tfidf_fp", "aman"]
        [[scorers]]
        name = "structure_match"
        [train]
        seed = 0
    """

    name: str
    members: tuple[str, ...]
    scorers: tuple[SlotSpec, ...] = ()
    description: str = ""
    seed: int = 0
    rerankers: tuple[SlotSpec, ...] = ()
    rerank_k: int = DEFAULT_RERANK_K

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> "EnsembleSpec":
        _check_nesting(data, source)
        allowed = {"name", "description", "members", "scorers", "train", "rerankers", "rerank_k"}
        unknown = [k for k in data if k not in allowed]
        if unknown:
            hints = "".join(did_you_mean(k, sorted(allowed)) for k in unknown)
            raise SpecError(f"{source}: unknown top-level key {', '.join(map(repr, unknown))} of an ensemble "
                            f"composition (it names members, not slots).{hints}")
        members = data.get("members")
        if not isinstance(members, (list, tuple)) or not members or not all(isinstance(m, str) and m for m in members):
            raise SpecError(f"{source}: members must be a list of composition names, got {_short(members)}")
        repeated = sorted({m for m in members if list(members).count(m) > 1})
        if repeated:
            raise SpecError(f"{source}: member {', '.join(map(repr, repeated))} named more than once")
        scorers = _scorers_from(data.get("scorers", ()), source)
        rerankers = _scorers_from(data.get("rerankers", ()), source, "rerankers")
        if len(members) + len(scorers) + len(rerankers) < 2:
            raise SpecError(f"{source}: an ensemble fuses at least two members or scorers (one member alone is its composition)")
        train = data.get("train", {})
        if not isinstance(train, Mapping):
            raise SpecError(f"{source}: [train] must be a table, got {_short(train)}")
        extra = [k for k in train if k != "seed"]
        if extra:
            raise SpecError(f"{source}: an ensemble composition's [train] takes only seed (its members train by their own "
                            f"specs), got {', '.join(map(repr, extra))}")
        seed = _coerce(train.get("seed", 0), 0, "train.seed")
        return cls(name=str(data.get("name", "custom")), description=str(data.get("description", "")),
                   members=tuple(members), scorers=scorers, seed=seed, rerankers=rerankers,
                   rerank_k=_rerank_k_from(data, rerankers, source))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "members": list(self.members)}
        if self.scorers:
            out["scorers"] = [scorer.to_dict() for scorer in self.scorers]
        if self.rerankers:
            out["rerankers"] = [reranker.to_dict() for reranker in self.rerankers]
            out["rerank_k"] = self.rerank_k
        out["train"] = {"seed": self.seed}
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def member_specs(self) -> list[CompositionSpec]:
        """Each member's resolved spec at this ensemble's seed (a member that is itself an ensemble: refused)."""
        specs = []
        for member in self.members:
            spec = load_composition(member)
            if isinstance(spec, EnsembleSpec):
                raise SpecError(f"ensemble {self.name!r}: member {member!r} is itself an ensemble; name its members instead")
            specs.append(spec.with_overrides([f"train.seed={self.seed}"]).resolve())
        return specs

    def resolve(self) -> "EnsembleSpec":
        """Members and scorers checked against the registry, scorer options filled with their defaults."""
        self.member_specs()
        scorers = tuple(_resolve_slot(f"scorers.{i}", "scorer", scorer) for i, scorer in enumerate(self.scorers))
        rerankers = tuple(_resolve_slot(f"rerankers.{i}", "reranker", r) for i, r in enumerate(self.rerankers))
        return dataclasses.replace(self, scorers=scorers, rerankers=rerankers)

    def hash(self) -> str:
        """sha256 of the members' spec hashes (at this seed) and the resolved scorers (12 hex digits)."""
        return self._hash_of([spec.hash() for spec in self.member_specs()])

    def _hash_of(self, member_hashes: list[str]) -> str:
        resolved = self.resolve()
        payload = {"members": member_hashes, "seed": self.seed, "scorers": [scorer.to_dict() for scorer in resolved.scorers]}
        if resolved.rerankers:  # absent without re-rankers: such ensembles keep their hashes
            payload["rerankers"] = [reranker.to_dict() for reranker in resolved.rerankers]
            payload["rerank_k"] = self.rerank_k
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def precision_spelling_hashes(self) -> set[str]:
        """This ensemble's hash with each member spelled either way :meth:`CompositionSpec.precision_spellings`
        allows (the members' runs made before 0.2 included)."""
        choices = [[spelling.hash() for spelling in spec.precision_spellings()] for spec in self.member_specs()]
        return {self._hash_of(list(combo)) for combo in itertools.product(*choices)}

    def with_overrides(self, assignments: list[str]) -> "EnsembleSpec":
        """``--set train.seed=N`` (the only setting of an ensemble composition; members have their own specs)."""
        seed = self.seed
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if key.strip() != "train.seed" or not sep:
                raise SpecError(f"--set {_short(assignment)}: ensemble {self.name!r} takes only train.seed=N; its members "
                                f"({', '.join(self.members)}) train by their own compositions")
            seed = _coerce(_parse_value(raw.strip(), f"--set {_short(assignment)}"), 0, "train.seed")
        return dataclasses.replace(self, seed=seed)


def _composition_data(name_or_path: str) -> tuple[Mapping[str, Any], str]:
    """A registered composition's (or a TOML file's) data and where it came from."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        return _read_toml(path), str(path)
    component = get_component("composition", name_or_path)
    made = component.create()
    if isinstance(made, (str, Path)):
        return _read_toml(Path(made)), str(made)
    return made, f"composition {name_or_path!r}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return parse_toml(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None


def load_composition(name_or_path: str) -> CompositionSpec | EnsembleSpec:
    """A registered composition by name, or a TOML file path: an :class:`EnsembleSpec` where it names
    ``members``, else a :class:`CompositionSpec`."""
    data, source = _composition_data(name_or_path)
    if "members" not in data:
        return CompositionSpec.from_dict(data, source=source)
    spec = EnsembleSpec.from_dict(data, source=source)
    if source.endswith(".toml"):  # a member spec file named relative to the ensemble's own file
        here = Path(source).parent
        spec = dataclasses.replace(spec, members=tuple(
            str(here / m) if m.endswith(".toml") and not Path(m).is_absolute() else m for m in spec.members))
    return spec


def shipped_spec_hashes(name: str, seed: int) -> set[str]:
    """The requested spec hash of ``zoo run NAME --set train.seed=SEED`` (the one it prints and names its run
    folder by) and, where a member asks for ``cpu_bf16 = "auto"``, the hash of the same request spelled as
    before 0.2 with bf16 forced (what auto does on a bf16 CPU); empty where ``name`` is not an installed
    composition or does not resolve."""
    try:
        spec = load_composition(name).with_overrides([f"train.seed={seed}"]).resolve()
        if isinstance(spec, EnsembleSpec):
            return spec.precision_spelling_hashes()
        return {spelling.hash() for spelling in spec.precision_spellings()}
    except (SpecError, ComponentError):  # not installed (UnknownComponentError), or no longer resolves
        return set()


def load_spec(name_or_path: str) -> CompositionSpec:
    """A registered composition (one component per slot) by name, or a TOML file path; an ensemble
    composition is refused with a pointer to ``zoo run`` (it has no slots to train, sweep or ablate)."""
    spec = load_composition(name_or_path)
    if isinstance(spec, EnsembleSpec):
        raise SpecError(f"{name_or_path!r} is an ensemble composition (members: {', '.join(spec.members)}): "
                        f"`zoo run {name_or_path}` trains and fuses it; it has no slots to sweep or ablate")
    return spec
