"""Leaderboards built from results files (DESIGN.md §6): one row per configuration, mean ± std over seeds.

A *configuration* is a resolved spec without its seed: runs whose stored ``spec`` differs only in
``name``, ``description`` or ``train.seed`` are aggregated into one row (see :func:`seedless_spec_hash`).
Rows are only ever ranked against rows evaluated under the same protocol: one table per
:class:`ProtocolKey` — task, data protocol (``offline-low-data`` vs ``canonical``), split, gallery
and a fingerprint of the data files (``task.data_checksums``) — so numbers from different
candidate pools or training sets are never mixed.

Loading policy: a results file named explicitly that cannot be read is an error; one found while
scanning a folder is skipped with a warning (``strict=True`` makes that an error too). When the
same configuration and seed occur in several files, the newest (``created_at``) is used and the
others are reported as warnings, so a re-run never counts as an extra seed.

This module imports neither torch nor matplotlib at import time.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import hashlib
import io
import json
import math
import statistics
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo.cache import atomic_write_bytes, data_fingerprint
from zoo.errors import LeaderboardError
from zoo.evals.ranking import TIE_POLICY
from zoo.evals.results import ENSEMBLE_SPEC_FORMAT, RESULTS_FILE, read_results
from zoo.registry.catalog import did_you_mean

__all__ = [
    "LeaderboardError",
    "METRICS",
    "DIRECTIONS",
    "SLOTS",
    "RunRecord",
    "ProtocolKey",
    "MetricSummary",
    "LeaderboardRow",
    "LeaderboardTable",
    "Leaderboard",
    "ShippedSpecs",
    "seedless_spec_hash",
    "flatten_spec",
    "normalize_metric",
    "normalize_direction",
    "summarize",
    "find_results",
    "load_runs",
    "build_leaderboard",
    "render",
    "plot_leaderboard",
]

SLOTS: tuple[str, ...] = ("text_encoder", "molecule_encoder", "aligner", "loss")
DIRECTIONS: tuple[str, ...] = ("text_to_molecule", "molecule_to_text")
#: metric key in results -> (column label, higher is better, shown in percent in Markdown)
METRICS: dict[str, tuple[str, bool, bool]] = {
    "hits@1": ("H@1", True, True),
    "hits@10": ("H@10", True, True),
    "mrr": ("MRR", True, True),
    "mean_rank": ("mean rank", False, False),
    "median_rank": ("median rank", False, False),
    "queries_with_ties": ("ties", False, False),
}
_METRIC_ALIASES = {
    "h1": "hits@1", "h@1": "hits@1", "hits1": "hits@1", "hits_1": "hits@1",
    "h10": "hits@10", "h@10": "hits@10", "hits10": "hits@10", "hits_10": "hits@10",
    "mean-rank": "mean_rank", "meanrank": "mean_rank", "mr": "mean_rank",
    "median-rank": "median_rank", "medianrank": "median_rank", "medr": "median_rank",
}
_DIRECTION_ALIASES = {
    "t2m": "text_to_molecule", "text->molecule": "text_to_molecule", "text2mol": "text_to_molecule",
    "m2t": "molecule_to_text", "molecule->text": "molecule_to_text", "mol2text": "molecule_to_text",
}
_DIRECTION_SHORT = {"text_to_molecule": "t→m", "molecule_to_text": "m→t"}
FORMATS = ("markdown", "csv", "json")
_SEEDLESS_DROP = {"name", "description"}
#: ``task.tie_policy`` of results written before ties were an expectation (or without one). Compatibility
#: shim: molzoo 0.1 counted ties optimistically and wrote no tie policy; 0.2 ranks by expected rank and
#: shows 0.1 results in their own table, never ranked with 0.2 ones (CHANGELOG.md).
OLD_TIE_RULE = "optimistic (old rule)"
#: The specs a composition is shipped as, by name, as stored in results files (``spec``): one per spelling
#: that counts as shipped; an empty list or ``None`` where the composition is not installed or is an ensemble.
#: Supplied by the caller (zoo.cli), since this layer may not import zoo.spec.
ShippedSpecs = Callable[[str], Sequence[Mapping[str, Any]] | None]
#: how ``training.stop_reason`` starts when the time budget (``train.max_minutes``) cut a run
CAPPED_STOP = "time budget"


# -- names ---------------------------------------------------------------------------------------
def normalize_metric(name: str) -> str:
    """Canonical metric key (``hits@1``, ``hits@10``, ``mrr``, ``mean_rank``, ``median_rank``); aliases accepted."""
    key = name.strip().lower()
    key = _METRIC_ALIASES.get(key, key)
    if key not in METRICS:
        raise LeaderboardError(f"unknown metric {name!r}.{did_you_mean(key, [*METRICS, *_METRIC_ALIASES])} "
                               f"Metrics: {', '.join(METRICS)}")
    return key


def normalize_direction(name: str, allow_both: bool = True) -> str:
    """``text_to_molecule``, ``molecule_to_text`` (aliases ``t2m``, ``m2t``) or ``both``."""
    key = name.strip().lower()
    key = _DIRECTION_ALIASES.get(key, key)
    choices = [*DIRECTIONS, *(["both"] if allow_both else [])]
    if key not in choices:
        raise LeaderboardError(f"unknown direction {name!r}.{did_you_mean(key, choices)} Directions: {', '.join(choices)}")
    return key


# -- specs ---------------------------------------------------------------------------------------
def flatten_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"loss": {"name": "triplet", "margin": 0.2}, "train": {...}}`` -> ``{"loss": "triplet", "loss.margin": 0.2, "train.epochs": ...}``."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "scorers" and isinstance(value, list):  # fused scorers: their names, and options per scorer
            scorers = [s for s in value if isinstance(s, Mapping)]
            flat[key] = [str(s.get("name")) for s in scorers]
            flat.update({f"{key}.{s.get('name')}.{k}": v for s in scorers for k, v in s.items() if k != "name"})
        elif isinstance(value, Mapping):
            for sub, item in value.items():
                if sub == "parts" and isinstance(item, list) and all(isinstance(p, Mapping) for p in item):
                    flat.update(_flatten_parts(key, item))
                else:
                    flat[key if sub == "name" and key in SLOTS else f"{key}.{sub}"] = item
        else:
            flat[key] = value
    return flat


def _flatten_parts(slot: str, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A combined slot's parts: ``SLOT.parts`` = their names, each option ``SLOT.PART.option`` (``--set``'s
    spelling; PART is the part's index when two parts share a name)."""
    names = [str(p.get("name")) for p in parts]
    flat: dict[str, Any] = {f"{slot}.parts": names}
    for i, part in enumerate(parts):
        label = names[i] if names.count(names[i]) == 1 else str(i)
        flat.update({f"{slot}.{label}.{k}": v for k, v in part.items() if k != "name"})
    return flat


def _seedless(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in _SEEDLESS_DROP}
    if isinstance(out.get("train"), Mapping):
        out["train"] = {k: v for k, v in out["train"].items() if k != "seed"}
    return out


def seedless_spec_hash(spec: Mapping[str, Any]) -> str:
    """sha256 (12 hex digits) of a stored spec without ``name``, ``description`` and ``train.seed``.

    Two runs belong to the same leaderboard row exactly when these hashes match.
    """
    payload = json.dumps(_seedless(spec), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_behaviour(results: Mapping[str, Any]) -> dict[str, str]:
    """How a run of a spec actually behaved where that can differ between runs of one spec: the text
    backbone mode ``mode=auto`` chose (frozen on a CPU, fine-tuned on a GPU), the training precision
    ``train.cpu_bf16 = "auto"`` chose (bf16 where the CPU has it natively, else fp32) and component
    substitutions (SciBERT replaced offline). Runs that differ here are separate leaderboard rows."""
    out: dict[str, str] = {}
    training = results.get("training")
    if isinstance(training, Mapping) and training.get("text_mode"):
        out["text_mode"] = str(training["text_mode"])
    spec = results.get("spec") if isinstance(results.get("spec"), Mapping) else {}
    train = spec.get("train") if isinstance(spec.get("train"), Mapping) else {}
    if train.get("cpu_bf16") == "auto" and isinstance(training, Mapping) and training.get("precision"):
        out["precision"] = str(training["precision"])
    subs = results.get("substitutions")
    if isinstance(subs, list) and subs:
        out["substituted"] = ", ".join(f"{s.get('used')} for {s.get('requested')}" for s in subs if isinstance(s, Mapping))
    return out


def shipped_difference(flat: Mapping[str, Any], shipped: Sequence[Mapping[str, Any]], shown: Sequence[str],
                       substituted: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a run's flattened spec ``flat`` changes from its composition as shipped (the closest of the
    ``shipped`` spellings, full specs): a swapped component (``loss=infonce``), an option whose value
    differs or that the shipped spec lacks, and the ``ran.*`` behaviour keys among ``shown`` (those that
    tell this table's rows apart). Left out: a swapped component's options, options the run's file
    predates, and a component the run substituted (``substituted``: used -> requested name, e.g. MiniLM
    for SciBERT offline; ``ran.substituted`` says so) with its options. JSON and CSV keep the full spec."""
    substituted = substituted or {}
    run = dict(flat)
    skipped: set[str] = set()  # prefixes of options not compared: a swapped or substituted component's
    for slot in SLOTS:
        if run.get(slot) in substituted:
            skipped.add(f"{slot}.")
            run[slot] = substituted[run[slot]]
        parts = run.get(f"{slot}.parts")
        if isinstance(parts, list) and any(p in substituted for p in parts):
            skipped.update(f"{slot}.{p}." for p in parts if p in substituted)
            run[f"{slot}.parts"] = [substituted.get(p, p) for p in parts]
    best: dict[str, Any] | None = None
    for spec in shipped:
        ref = flatten_spec(_seedless(spec))
        swapped = {f"{slot}." for slot in SLOTS if slot in run and run[slot] != ref.get(slot)}
        diff = {}
        for key, value in run.items():
            if key.startswith("ran."):
                if key in shown:
                    diff[key] = flat[key]
            elif key.startswith(tuple(skipped | swapped)):
                continue
            elif key not in ref or _canonical(ref[key]) != _canonical(value):
                diff[key] = value  # a substituted component by its requested name
        if best is None or len(diff) < len(best):
            best = diff
    return best or {}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# -- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProtocolKey:
    """What makes two scores comparable: task, protocol, split, gallery and data files."""

    task: str
    protocol: str
    split: str
    gallery: str
    data: str  # 12-hex fingerprint of task.data_checksums ("" when not recorded)
    ties: str = TIE_POLICY  # "expected", or OLD_TIE_RULE for files written before ties were an expectation

    def label(self) -> str:
        parts = [self.task, self.protocol, f"split={self.split}", f"gallery={self.gallery}"]
        if self.data:
            parts.append(f"data={self.data}")
        if self.ties != TIE_POLICY:
            parts.append(f"ties={self.ties}: NOT comparable with expected-rank tables")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, str]:
        return {"task": self.task, "protocol": self.protocol, "split": self.split, "gallery": self.gallery, "data": self.data,
                "ties": self.ties}


@dataclass(frozen=True)
class RunRecord:
    """One results file, reduced to what the leaderboard needs."""

    source: str
    results: Mapping[str, Any] = field(repr=False)
    config_hash: str
    seed: int | None
    composition: str
    components: Mapping[str, str]
    flat_spec: Mapping[str, Any] = field(repr=False)  # seedless, flattened, plus how the run behaved (``ran.*``)
    created_at: str
    capped: bool = False  # training was cut by its time budget, not by its schedule or early stopping
    ensemble: bool = False  # written by `zoo ensemble`: named by its members, compared on its own keys

    @classmethod
    def from_results(cls, results: Mapping[str, Any], source: str) -> "RunRecord":
        """Check the parts the leaderboard reads (``spec``, ``scores``) and build a record."""
        spec = results.get("spec")
        scores = results.get("scores")
        if not isinstance(spec, Mapping):
            raise LeaderboardError(f"{source}: 'spec' must be an object")
        if not isinstance(scores, Mapping) or not scores:
            raise LeaderboardError(f"{source}: 'scores' must be a non-empty object {{gallery: {{direction: metrics}}}}")
        for gallery, by_direction in scores.items():
            if not isinstance(by_direction, Mapping):
                raise LeaderboardError(f"{source}: scores[{gallery!r}] must be an object {{direction: metrics}}")
            for direction, metrics in by_direction.items():
                if not isinstance(metrics, Mapping) or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
                    raise LeaderboardError(f"{source}: scores[{gallery!r}][{direction!r}] must map metric names to numbers")
        components = {slot: str(spec[slot]["name"]) for slot in SLOTS
                      if isinstance(spec.get(slot), Mapping) and "name" in spec[slot]}
        for entry in results.get("components") or []:  # what actually ran (after substitutions)
            if isinstance(entry, Mapping) and entry.get("slot") in SLOTS and entry.get("name"):
                components[str(entry["slot"])] = str(entry["name"])
        seeds = results.get("seeds") if isinstance(results.get("seeds"), Mapping) else {}
        train = spec.get("train") if isinstance(spec.get("train"), Mapping) else {}
        seed = seeds.get("seed", train.get("seed"))
        behaviour = run_behaviour(results)
        training = results.get("training") if isinstance(results.get("training"), Mapping) else {}
        ensemble = spec.get("format") == ENSEMBLE_SPEC_FORMAT  # an ensemble's spec: compared on its own keys
        flat = _ensemble_keys(spec) if ensemble else \
            {**flatten_spec(_seedless(spec)), **{f"ran.{k}": v for k, v in behaviour.items()}}
        return cls(
            source=source,
            results=results,
            config_hash=seedless_spec_hash({**spec, "ran": behaviour}) if behaviour else seedless_spec_hash(spec),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            composition=str(spec.get("name", "?")),
            components=components,
            flat_spec=flat,
            created_at=str(results.get("created_at", "")),
            capped=str(training.get("stop_reason", "")).startswith(CAPPED_STOP),
            ensemble=ensemble,
        )

    def protocol_key(self, gallery: str) -> ProtocolKey:
        task = self.results.get("task") if isinstance(self.results.get("task"), Mapping) else {}
        checksums = task.get("data_checksums")
        data = ""
        if isinstance(checksums, Mapping) and checksums:

            data = data_fingerprint(checksums)
        ties = TIE_POLICY if task.get("tie_policy") == TIE_POLICY else OLD_TIE_RULE
        return ProtocolKey(task=str(task.get("name", "?")), protocol=str(task.get("protocol", "unknown")),
                           split=str(task.get("split", "?")), gallery=gallery, data=data, ties=ties)


def _ensemble_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What tells ensembles apart: their members (``composition@config``, ``/sSEED`` where members' seeds differ)
    and scorers; an ensemble's common seed (``train.seed``) is a seed like a run's."""
    members = [f"{m.get('composition')}@{m.get('config_hash')}" + (f"/s{m['seed']}" if "seed" in m else "")
               for m in spec.get("members", []) if isinstance(m, Mapping)]
    scorers = [str(s.get("label", s.get("scorer"))) for s in spec.get("scorers", []) if isinstance(s, Mapping)]
    return {"ensemble.members": members, "ensemble.scorers": scorers}


def find_results(paths: Sequence[str | Path] = ("runs",)) -> tuple[list[Path], set[Path]]:
    """Results files under ``paths``: ``(files, explicitly named files)``.

    A file is taken as is (any name); a folder is searched recursively for ``results.json``
    (``zoo eval``'s ``eval-*.json`` re-evaluations are not picked up, so they never count twice).
    """
    files: list[Path] = []
    explicit: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
            explicit.add(path.resolve())
        elif path.is_dir():
            files.extend(sorted(p for p in path.rglob(RESULTS_FILE) if p.is_file()))
        else:
            raise LeaderboardError(f"{path}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique, explicit


def load_runs(paths: Sequence[str | Path] = ("runs",), *, strict: bool = False) -> tuple[list[RunRecord], list[str]]:
    """Load every results file under ``paths``; returns ``(runs, warnings)``.

    Raises :class:`LeaderboardError` when nothing is found, when an explicitly named file is
    unreadable, or (``strict``) when any file is.
    """
    files, explicit = find_results(paths)
    if not files:
        where = ", ".join(str(p) for p in paths)
        raise LeaderboardError(f"no {RESULTS_FILE} found under {where} (run `zoo run NAME` first, or pass results files/folders)")
    runs: list[RunRecord] = []
    warnings: list[str] = []
    for path in files:
        try:
            runs.append(RunRecord.from_results(read_results(path), str(path)))
        except (OSError, ValueError) as exc:
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if strict or path.resolve() in explicit:
                raise LeaderboardError(f"cannot use results file {message}") from None
            warnings.append(f"skipped unreadable results file {message}")
    if not runs:
        raise LeaderboardError("no usable results files: " + "; ".join(warnings))
    return runs, warnings


# -- aggregation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSummary:
    """Mean and sample standard deviation (ddof=1; None for a single value) over seeds."""

    mean: float
    std: float | None
    n: int
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}


def summarize(values: Iterable[float]) -> MetricSummary:
    vals = tuple(float(v) for v in values)
    if not vals:
        raise LeaderboardError("no values to summarize")
    return MetricSummary(mean=statistics.fmean(vals), std=statistics.stdev(vals) if len(vals) > 1 else None,
                         n=len(vals), values=vals)


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    composition: str
    components: Mapping[str, str]
    varies: Mapping[str, Any]
    config_hash: str
    seeds: tuple[int, ...]
    n_seeds: int
    metrics: Mapping[str, Mapping[str, MetricSummary]]  # direction -> metric -> summary
    sources: tuple[str, ...]
    spec: Mapping[str, Any] = field(repr=False)
    capped: bool = False  # a member run was cut by its time budget: not a converged score
    #: what differs from the composition as shipped (the Markdown ``varies`` cell); ``None``: not known,
    #: the Markdown shows ``varies``. Not part of JSON/CSV, which keep the full ``varies`` and ``spec``.
    shipped_diff: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """Composition name plus what distinguishes this row (``aman [loss.margin=0.3]``)."""
        extra = ", ".join(f"{k}={_fmt_value(v)}" for k, v in self.varies.items())
        name = f"{self.composition} (capped)" if self.capped else self.composition
        return f"{name} [{extra}]" if extra else name

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "composition": self.composition, "components": dict(self.components),
            "varies": dict(self.varies), "config_hash": self.config_hash, "seeds": list(self.seeds),
            "n_seeds": self.n_seeds,
            "metrics": {d: {m: s.to_dict() for m, s in ms.items()} for d, ms in self.metrics.items()},
            "sources": list(self.sources), "spec": dict(self.spec), "capped": self.capped,
        }


@dataclass(frozen=True)
class LeaderboardTable:
    key: ProtocolKey
    rows: list[LeaderboardRow]
    metrics: tuple[str, ...]
    directions: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.key.to_dict(), "label": self.key.label(), "metrics": list(self.metrics),
                "directions": list(self.directions), "rows": [r.to_dict() for r in self.rows]}


@dataclass(frozen=True)
class Leaderboard:
    tables: list[LeaderboardTable]
    warnings: list[str]
    sort: str

    def to_dict(self) -> dict[str, Any]:
        return {"sort": self.sort, "warnings": list(self.warnings), "tables": [t.to_dict() for t in self.tables]}


def _parse_literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):  # not a TOML literal (or absurdly nested): compared as text
        return raw


def _matches(actual: Any, wanted: Any, raw: str) -> bool:
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted or str(actual).lower() == raw.lower()
    if isinstance(actual, (int, float)) and isinstance(wanted, (int, float)):
        return math.isclose(actual, wanted, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(actual, (list, tuple)):
        return ",".join(map(str, actual)) == raw or list(actual) == wanted
    return fnmatch.fnmatchcase(str(actual), raw)


def _parse_filters(filters: Sequence[str], runs: Sequence[RunRecord]) -> list[tuple[str, bool, Any, str]]:
    known = sorted(set(SLOTS).union(*(r.flat_spec.keys() for r in runs)))
    parsed = []
    for item in filters:
        negate = "!=" in item
        key, sep, raw = item.partition("!=" if negate else "=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise LeaderboardError(f"--filter {item!r}: expected KEY=VALUE or KEY!=VALUE, e.g. loss=infonce or loss.margin=0.2")
        if key not in known:
            raise LeaderboardError(f"--filter {item!r}: unknown key {key!r}.{did_you_mean(key, known)} "
                                   f"Keys: slots ({', '.join(SLOTS)}) or spec options such as loss.margin, train.epochs")
        parsed.append((key, negate, _parse_literal(raw), raw))
    return parsed


def _keep(run: RunRecord, filters: list[tuple[str, bool, Any, str]]) -> bool:
    for key, negate, wanted, raw in filters:
        actual = run.components.get(key) if key in SLOTS else run.flat_spec.get(key)
        if _matches(actual, wanted, raw) == negate:
            return False
    return True


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) if value else "[]"
    return str(value)


def _select(runs: Sequence[RunRecord], gallery: str | None, filters: Sequence[str], composition: str | None) -> list[RunRecord]:
    """The runs that pass ``filters`` and ``composition``; refused when ``gallery`` is in none of them or nothing matches."""
    parsed = _parse_filters(filters, runs)
    all_galleries = sorted({g for r in runs for g in r.results["scores"]})
    if gallery is not None and gallery not in all_galleries:
        raise LeaderboardError(f"no results for gallery {gallery!r}.{did_you_mean(gallery, all_galleries)} "
                               f"Galleries in these results: {', '.join(all_galleries)}")
    selected = [r for r in runs if _keep(r, parsed) and (composition is None or fnmatch.fnmatchcase(r.composition, composition))]
    if not selected:
        what = [*(f"--filter {f}" for f in filters), *([f"--composition {composition}"] if composition else [])]
        names = sorted({r.composition for r in runs})
        raise LeaderboardError(f"no results match {' '.join(what)} (compositions present: {', '.join(names)})")
    return selected


def _group(selected: Sequence[RunRecord], gallery: str | None,
           notes: list[str]) -> dict[ProtocolKey, dict[str, dict[Any, RunRecord]]]:
    """(protocol, config) -> seed -> the newest run; a replaced duplicate is noted in ``notes``."""
    groups: dict[ProtocolKey, dict[str, dict[Any, RunRecord]]] = {}
    for run in selected:
        for gal in run.results["scores"]:
            if gallery is not None and gal != gallery:
                continue
            by_seed = groups.setdefault(run.protocol_key(gal), {}).setdefault(run.config_hash, {})
            seed = run.seed if run.seed is not None else f"?{run.source}"
            previous = by_seed.get(seed)
            if previous is None:
                by_seed[seed] = run
                continue
            newer, older = _newer_first(run, previous, notes)
            by_seed[seed] = newer
            note = f"{older.source}: same configuration and seed as {newer.source}; using the newer file"
            if note not in notes:
                notes.append(note)
    return groups


def _row(key: ProtocolKey, config_hash: str, by_seed: dict[Any, RunRecord], varying: Sequence[str],
         directions: Sequence[str], shipped: ShippedSpecs | None = None) -> LeaderboardRow | None:
    """One configuration's row (unranked): each metric summarized over its seeds; ``None`` without scores."""
    members = sorted(by_seed.values(), key=lambda r: (r.seed is None, r.seed or 0))
    first = members[0]
    summaries: dict[str, dict[str, MetricSummary]] = {}
    for d in directions:
        for m in METRICS:
            vals = [r.results["scores"][key.gallery].get(d, {}).get(m) for r in members]
            vals = [v for v in vals if v is not None]
            if vals:
                summaries.setdefault(d, {})[m] = summarize(vals)
    if not summaries:
        return None
    names = sorted({r.composition for r in members})
    specs = shipped(first.composition) if shipped is not None and not first.ensemble else None
    return LeaderboardRow(
        rank=0, composition=" / ".join(names), components=dict(first.components),
        varies={k: first.flat_spec[k] for k in varying if k in first.flat_spec}, config_hash=config_hash,
        seeds=tuple(r.seed for r in members if r.seed is not None), n_seeds=len(members),
        metrics=summaries, sources=tuple(r.source for r in members),
        spec=_seedless(first.results["spec"]), capped=any(r.capped for r in members),
        shipped_diff=shipped_difference(first.flat_spec, specs, varying, _substitutions(first.results)) if specs else None,
    )


def _substitutions(results: Mapping[str, Any]) -> dict[str, str]:
    """The components a run substituted, used name -> requested name (``results["substitutions"]``)."""
    subs = results.get("substitutions")
    return {str(s["used"]): str(s["requested"]) for s in subs if isinstance(s, Mapping) and s.get("used") and s.get("requested")} \
        if isinstance(subs, list) else {}


def _ranked(rows: list[LeaderboardRow], sort_key: str, sort_dir: str) -> list[LeaderboardRow]:
    """``rows`` best first by ``sort_key`` in direction ``sort_dir`` (rows without it last), ranked from 1."""
    higher = METRICS[sort_key][1]

    def order(row: LeaderboardRow) -> tuple:
        summary = row.metrics.get(sort_dir, {}).get(sort_key)
        if summary is None:
            return (1, 0.0, row.label)
        return (0, -summary.mean if higher else summary.mean, row.label)

    return [LeaderboardRow(**{**row.__dict__, "rank": i}) for i, row in enumerate(sorted(rows, key=order), 1)]


def build_leaderboard(
    runs: Sequence[RunRecord],
    *,
    gallery: str | None = None,
    direction: str = "text_to_molecule",
    metrics: Sequence[str] | None = None,
    filters: Sequence[str] = (),
    composition: str | None = None,
    sort: str = "mrr",
    warnings: Sequence[str] = (),
    shipped: ShippedSpecs | None = None,
) -> Leaderboard:
    """Aggregate ``runs`` into one table per protocol, one row per seedless configuration.

    Rows are sorted best first by ``sort`` (text->molecule when ``direction="both"``); ``gallery``,
    ``filters`` (``KEY=VALUE`` / ``KEY!=VALUE`` on slots or flattened spec keys; string values are
    wildcard patterns) and ``composition`` (wildcard on the composition name) select runs.
    ``shipped`` (see :data:`ShippedSpecs`) makes the Markdown ``varies`` cell show only what a row
    changes from its composition as shipped (:func:`shipped_difference`); without it, or for a
    composition it does not know, the cell lists every option that differs between the table's rows.
    """
    sort_key = normalize_metric(sort)
    shown = tuple(normalize_metric(m) for m in metrics) if metrics else tuple(METRICS)
    direction = normalize_direction(direction)
    directions = DIRECTIONS if direction == "both" else (direction,)
    notes = list(warnings)
    groups = _group(_select(runs, gallery, filters, composition), gallery, notes)
    tables = []
    if shipped is not None:
        shipped = functools.lru_cache(maxsize=None)(shipped)
    for key in sorted(groups, key=lambda k: (k.ties != TIE_POLICY, k.task, k.protocol, k.split, k.gallery != "all",
                                             k.gallery, k.data)):
        configs = groups[key]
        firsts = [next(iter(c.values())) for c in configs.values()]
        # runs and ensembles have different keys: what varies is compared within each kind
        varying = [*_varying_keys([r for r in firsts if not r.ensemble]), *_varying_keys([r for r in firsts if r.ensemble])]
        rows = [row for config_hash, by_seed in configs.items()
                if (row := _row(key, config_hash, by_seed, varying, directions, shipped)) is not None]
        if rows:
            tables.append(LeaderboardTable(key=key, rows=_ranked(rows, sort_key, directions[0]), metrics=shown,
                                           directions=directions))
    if not tables:
        raise LeaderboardError(f"no {' and '.join(directions)} scores in the selected results")
    return Leaderboard(tables=tables, warnings=notes, sort=sort_key)


def parse_created_at(value: str) -> datetime | None:
    """An ISO 8601 ``created_at`` as a timezone-aware datetime (no offset: UTC); ``None`` when unparseable."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _newer_first(run: RunRecord, previous: RunRecord, notes: list[str]) -> tuple[RunRecord, RunRecord]:
    """``(newer, older)`` of two results of the same configuration and seed, by their ``created_at`` instants.

    A ``created_at`` that is not an ISO 8601 time counts as older than any that is (a warning in
    ``notes`` names it); between equal or unparseable times the later-listed file wins.
    """
    new, old = parse_created_at(run.created_at), parse_created_at(previous.created_at)
    for record, moment in ((run, new), (previous, old)):
        note = f"{record.source}: created_at {record.created_at!r} is not an ISO 8601 time; treating the file as the older one"
        if moment is None and note not in notes:
            notes.append(note)
    if new is None and old is not None:
        return previous, run
    if new is not None and old is not None and new < old:
        return previous, run
    return run, previous


def _varying_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Flattened spec keys whose values differ between ``runs``.

    Slots are left out (they have their own columns), and so is a component option that differs
    only because the component differs (``molecule_encoder.heads`` of a graph transformer vs a GCN).
    """
    keys = sorted(set().union(*(r.flat_spec.keys() for r in runs))) if runs else []
    out = []
    for k in keys:
        if k in SLOTS:
            continue
        slot = k.split(".", 1)[0]
        by_component: dict[Any, set[str]] = {}
        for r in runs:
            group = r.components.get(slot) if slot in SLOTS else None
            by_component.setdefault(group, set()).add(json.dumps(r.flat_spec.get(k), sort_keys=True, default=str))
        if any(len(values) > 1 for values in by_component.values()):
            out.append(k)
    return out


# -- output --------------------------------------------------------------------------------------
def _cell(summary: MetricSummary | None, percent: bool) -> str:
    if summary is None:
        return "–"
    scale, digits = (100.0, 1) if percent else (1.0, 1)
    text = f"{summary.mean * scale:.{digits}f}"
    if summary.std is not None:
        text += f" ± {summary.std * scale:.{digits}f}"
    return text


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _metric_header(direction: str, metric: str, both: bool, percent_suffix: bool) -> str:
    label, _, percent = METRICS[metric]
    if percent and percent_suffix:
        label += " (%)"
    return f"{_DIRECTION_SHORT[direction]} {label}" if both else label


def render_markdown(board: Leaderboard) -> str:
    out = []
    for table in board.tables:
        both = len(table.directions) > 1
        show_varies = any(r.varies for r in table.rows)
        header = ["#", "composition", *SLOTS, *(["varies"] if show_varies else []), "seeds"]
        header += [_metric_header(d, m, both, True) for d in table.directions for m in table.metrics]
        direction = "" if both else f" | {table.directions[0].replace('_to_', '→')}"
        lines = [f"### {table.key.label()}{direction}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if h in ("composition", "varies", *SLOTS) else "---:" for h in header) + "|"]
        for row in table.rows:
            name = f"{row.composition} (capped)" if row.capped else row.composition
            cells = [str(row.rank), name, *(row.components.get(s, "–") for s in SLOTS)]
            if show_varies:
                varies = row.varies if row.shipped_diff is None else row.shipped_diff
                cells.append(", ".join(f"{k}={_fmt_value(v)}" for k, v in varies.items()) or "–")
            cells.append(str(row.n_seeds))
            cells += [_cell(row.metrics.get(d, {}).get(m), METRICS[m][2]) for d in table.directions for m in table.metrics]
            lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
        out.append("\n".join(lines))
    footer = (f"\nmean ± sample std over seeds; hits and MRR in %, expected under random tie-breaking (ties: test "
              f"queries whose true match ties with another candidate); (capped): a run was cut by its time budget, "
              f"not converged; sorted by {METRICS[board.sort][0]} ({'higher' if METRICS[board.sort][1] else 'lower'} is better)")
    return "\n\n".join(out) + "\n" + footer + "\n"


def render_csv(board: Leaderboard) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    directions = board.tables[0].directions
    metrics = board.tables[0].metrics
    header = ["task", "protocol", "split", "gallery", "data", "ties", "rank", "composition", *SLOTS, "varies",
              "config_hash", "n_seeds", "seeds", "capped"]
    header += [f"{d}.{m}.{stat}" for d in directions for m in metrics for stat in ("mean", "std")]
    writer.writerow(header)
    for table in board.tables:
        for row in table.rows:
            cells: list[Any] = [table.key.task, table.key.protocol, table.key.split, table.key.gallery, table.key.data,
                                table.key.ties, row.rank, row.composition, *(row.components.get(s, "") for s in SLOTS),
                                "; ".join(f"{k}={_fmt_value(v)}" for k, v in row.varies.items()),
                                row.config_hash, row.n_seeds, ";".join(map(str, row.seeds)), row.capped]
            for d in directions:
                for m in metrics:
                    s = row.metrics.get(d, {}).get(m)
                    cells += ["" if s is None else repr(s.mean), "" if s is None or s.std is None else repr(s.std)]
            writer.writerow(cells)
    return buf.getvalue()


def render(board: Leaderboard, fmt: str = "markdown") -> str:
    """The leaderboard as ``markdown`` (one table per protocol), ``csv`` (one row per configuration,
    raw fractions) or ``json`` (:meth:`Leaderboard.to_dict`)."""
    fmt = fmt.lower()
    if fmt in ("md", "markdown"):
        return render_markdown(board)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "json":
        return json.dumps(board.to_dict(), indent=2, default=str) + "\n"
    raise LeaderboardError(f"unknown format {fmt!r}.{did_you_mean(fmt, list(FORMATS))} Formats: {', '.join(FORMATS)}")


def plot_leaderboard(board: Leaderboard, path: str | Path, metric: str = "mrr") -> Path:
    """Bar chart of ``metric`` (mean with std error bars) per configuration, one panel per table; PNG, atomic."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = normalize_metric(metric)
    label, higher, percent = METRICS[metric]
    scale = 100.0 if percent else 1.0
    direction = board.tables[0].directions[0]
    n_rows = [len(t.rows) for t in board.tables]
    fig = Figure(figsize=(9, sum(max(1.6, 0.45 * n + 1.2) for n in n_rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(board.tables), 1, squeeze=False)[:, 0]
    for ax, table in zip(axes, board.tables):
        rows = [r for r in table.rows if metric in r.metrics.get(direction, {})]
        labels = _unique_labels(rows)
        means = [r.metrics[direction][metric].mean * scale for r in rows]
        errs = [(r.metrics[direction][metric].std or 0.0) * scale for r in rows]
        ypos = list(range(len(rows)))
        ax.barh(ypos, means, xerr=errs, capsize=3, color="#4c72b0", ecolor="#222222")
        ax.set_yticks(ypos, labels, fontsize=8)
        ax.invert_yaxis()  # best first, at the top
        ax.set_xlim(left=0)
        ax.set_xlabel(f"{_DIRECTION_SHORT[direction]} {label}{' (%)' if percent else ''} "
                      f"({'higher' if higher else 'lower'} is better; bars: mean, whiskers: std over seeds)")
        ax.set_title(table.key.label(), fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _unique_labels(rows: Sequence[LeaderboardRow]) -> list[str]:
    """Row labels for a chart: composition, differing options, and differing components when needed."""
    labels = [f"{r.label} (n={r.n_seeds})" for r in rows]
    slots = [s for s in SLOTS if len({r.components.get(s) for r in rows}) > 1]
    if len(set(labels)) < len(labels) and slots:
        labels = [f"{r.label} {'/'.join(r.components.get(s, '-') for s in slots)} (n={r.n_seeds})" for r in rows]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} #{r.config_hash[:6]}" for lab, r in zip(labels, rows)]
    return labels
