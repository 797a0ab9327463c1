"""``zoo ablate``: train a grid of composition variants over several seeds and compare each with the reference.

A grid is built from ``--vary KEY=a,b[,c]`` axes, where KEY is a slot (``loss=triplet,infonce`` swaps
the component) or any ``--set`` key (``loss.margin=0.1,0.2``, ``train.lr=1e-3,5e-4``, ``embed_dim=128,256``).
The first value of every axis is the reference. By default the grid is the full cartesian product;
``one_at_a_time`` varies one axis at a time from the reference (the "each component swapped" ablation).

Every configuration runs for seeds ``0..N-1`` (``train.seed``) in
``OUT_ROOT/NAME-SPECHASH-sSEED`` — the folder name is a function of the resolved spec, so a rerun
skips finished runs and resumes an interrupted one from its last checkpoint.

Base ``--set`` assignments apply to every configuration, with one rule: an assignment to a slot's
option (``molecule_encoder.heads=4``) applies only to configurations whose component in that slot
accepts the option (swapping ``molecule_encoder=gcn`` then keeps working); it is an error only when
no configuration accepts it. ``--dry-run`` lists exactly what each configuration gets.

Cross-validation (``--folds K``, :func:`plan_runs`): every (configuration, seed) is trained K times, fold ``i``
selecting on the i-th of K seeded folds of the training pairs (``task.folds``/``task.fold``); the table then
compares the held-out MRR only (never test), paired by (seed, fold) (:func:`compare_paired`). Without folds the
table shows each configuration's held-out MRR beside its test metrics.

Noise rule: with per-configuration means ``m`` and sample standard deviations ``s`` over ``n``
seeds, a difference ``Δ = m_var - m_ref`` *exceeds seed noise* when both have ``n >= 2`` and
``|Δ| > 2·SE`` with ``SE = sqrt(s_ref²/n_ref + s_var²/n_var)`` (about a 95 % interval for
large ``n``). Welch's t-test p-value (``scipy.stats.ttest_ind_from_stats``) is reported beside it;
with 2–3 seeds both are coarse, so treat them as a screen, not a proof.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ComponentError, LeaderboardError, SpecError
from zoo.evals.leaderboard import (
    DIRECTIONS,
    METRICS,
    MetricSummary,
    ProtocolKey,
    RunRecord,
    normalize_direction,
    normalize_metric,
    summarize,
)
from zoo.registry import get_component
from zoo.runs import default_out_dir, results_path
from zoo.spec import SLOTS, CompositionSpec, find_part, load_spec

__all__ = [
    "Axis", "AblationConfig", "PlannedRun", "Comparison", "AblationTable",
    "parse_vary", "build_grid", "plan_runs", "describe_plan", "compare", "ablation_table",
    "render_ablation", "read_json", "slot_option_accepted", "applicable_sets",
    "check_folds_option", "compare_paired", "heldout_mrr", "HELDOUT",
]


@dataclass(frozen=True)
class Axis:
    """One ``--vary KEY=a,b`` axis; ``values[0]`` is the reference."""

    key: str
    values: tuple[str, ...]

    @property
    def is_component(self) -> bool:
        return self.key in SLOTS


def _split_values(raw: str) -> list[str]:
    """``raw`` split at the commas outside brackets and quotes, so a TOML list is one value:
    ``'["maccs","feature_morgan"],["maccs"]'`` -> ``['["maccs","feature_morgan"]', '["maccs"]']``."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(raw[start:i])
            start = i + 1
    return [*values, raw[start:]]


def parse_vary(item: str) -> Axis:
    """``"loss=triplet,infonce"`` -> ``Axis("loss", ("triplet", "infonce"))``; a value may be a TOML list
    (``molecule_encoder.extra=["maccs","feature_morgan"],["maccs"]``: commas inside brackets stay)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    values = tuple(v.strip() for v in _split_values(raw))
    if not sep or not key or not raw.strip():
        raise SpecError(f"--vary {item!r}: expected KEY=A,B[,C], e.g. loss=triplet,infonce or loss.margin=0.1,0.2")
    if any(not v for v in values):
        raise SpecError(f"--vary {item!r}: empty value in the list")
    if len(values) < 2:
        raise SpecError(f"--vary {item!r}: give at least two values (the first is the reference)")
    if len(set(values)) < len(values):
        raise SpecError(f"--vary {item!r}: repeated value")
    return Axis(key, values)


@dataclass(frozen=True, eq=False)
class AblationConfig:
    """One grid point: its axis settings, the ``--set`` list that builds it and the resolved spec."""

    label: str
    settings: tuple[tuple[str, str], ...]  # (axis key, value) for every axis
    assignments: tuple[str, ...]
    spec: CompositionSpec = field(repr=False)
    is_reference: bool
    not_applied: tuple[str, ...] = ()  # base --set entries whose slot component lacks the option

    @property
    def hash(self) -> str:
        return self.spec.hash()


def slot_option_accepted(spec: CompositionSpec, assignment: str) -> bool:
    """Whether ``slot.option=value`` names an option of the component ``spec`` has in that slot, or
    ``slot.PART.option=value`` an option of a part (by name or index, as ``--set`` finds it) of a combined slot."""
    key = assignment.partition("=")[0].strip()
    head, _, tail = key.partition(".")
    if head not in SLOTS or not tail:
        return True
    slot = getattr(spec, head)
    if tail in get_component(SLOTS[head], slot.name).config:
        return True
    part_key, dot, option = tail.partition(".")
    if not dot or not slot.options.get("parts"):
        return False
    names = [p.name for p in slot.options["parts"]]
    try:
        part = find_part([{"name": name} for name in names], part_key, f"--set {key}")
    except SpecError:  # no such part: not this composition's; several of that name: --set says so itself
        return part_key in names
    return option in get_component(SLOTS[head], part["name"]).config


def _is_swap(assignment: str) -> bool:
    key = assignment.partition("=")[0].strip()
    return key in SLOTS


def applicable_sets(base: CompositionSpec, sets: Sequence[str], swaps: Sequence[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """The base ``--set`` list for composition ``base``: ``(swaps, kept, dropped)`` — its component swaps (then
    ``swaps``), applied first, and its option assignments split by whether the swapped spec's components accept
    them (:func:`slot_option_accepted`). A bad swap raises :class:`ComponentError`."""
    swaps = [s for s in sets if _is_swap(s)] + list(swaps)
    swapped = base.with_overrides(swaps) if swaps else base
    kept, dropped = [], []
    for s in sets:
        if not _is_swap(s):
            (kept if slot_option_accepted(swapped, s) else dropped).append(s)
    return swaps, kept, dropped


def build_grid(composition: str, varies: Sequence[str | Axis], sets: Sequence[str] = (),
               one_at_a_time: bool = False) -> list[AblationConfig]:
    """The configurations of an ablation, reference first.

    Assignments apply in this order: base component swaps, axis component swaps, base options
    (each only where the slot's component accepts it), axis options — so an axis always wins.
    """
    axes = [v if isinstance(v, Axis) else parse_vary(v) for v in varies]
    if not axes:
        raise SpecError("ablate: give at least one --vary KEY=A,B")
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            raise SpecError(f"--vary {axis.key}: the same key is varied twice; list all its values in one --vary")
        seen.add(axis.key)
    base = load_spec(composition)
    if one_at_a_time:
        reference = tuple((a.key, a.values[0]) for a in axes)
        points = [reference] + [
            tuple((b.key, value if b is a else b.values[0]) for b in axes) for a in axes for value in a.values[1:]
        ]
    else:
        points = [tuple(zip((a.key for a in axes), combo)) for combo in itertools.product(*(a.values for a in axes))]

    base_options = [s for s in sets if not _is_swap(s)]
    configs: list[AblationConfig] = []
    applied_anywhere: set[str] = set()
    for i, point in enumerate(points):
        axis_sets = [f"{k}={v}" for k, v in point]
        try:
            swaps, kept, dropped = applicable_sets(base, sets, [s for s in axis_sets if _is_swap(s)])
            assignments = swaps + kept + [s for s in axis_sets if not _is_swap(s)]
            spec = base.with_overrides(assignments).resolve() if assignments else base.resolve()
        except ComponentError as exc:  # unknown component/option, bad value: name the grid point
            where = ", ".join(axis_sets)
            raise SpecError(f"ablate config [{where}]: {exc}") from None
        applied_anywhere.update(kept)
        reference = i == 0
        if one_at_a_time:
            changed = [f"{k}={v}" for (k, v), a in zip(point, axes) if v != a.values[0]]
            label = "reference" if reference else ", ".join(changed)
        else:
            label = ", ".join(axis_sets)
        configs.append(AblationConfig(label=label, settings=point, assignments=tuple(assignments), spec=spec,
                                      is_reference=reference, not_applied=tuple(dropped)))
    never = [s for s in base_options if s not in applied_anywhere]
    if never:
        raise SpecError(f"--set {', '.join(never)}: no configuration of this ablation has a component with that option")
    by_hash: dict[str, AblationConfig] = {}
    for config in configs:
        twin = by_hash.setdefault(config.hash, config)
        if twin is not config:
            raise SpecError(f"ablate: configs [{twin.label}] and [{config.label}] resolve to the same spec "
                            f"(hash {config.hash}); drop the duplicate value")
    return configs


@dataclass(frozen=True, eq=False)
class PlannedRun:
    config: AblationConfig
    seed: int
    spec: CompositionSpec = field(repr=False)  # config.spec with train.seed = seed (and task.folds/fold)
    out_dir: Path
    fold: int | None = None  # the cross-validation fold (``--folds K``), None without

    @property
    def results_path(self) -> Path:
        return results_path(self.out_dir)

    @property
    def done(self) -> bool:
        return self.results_path.is_file()


def check_folds_option(folds: int, configs: Sequence[AblationConfig]) -> None:
    """``--folds K``: K >= 2 (0: off), and no configuration setting ``task.folds``/``task.fold`` itself."""
    if folds == 0:
        return
    if folds < 2:
        raise SpecError(f"--folds must be at least 2 (K-fold cross-validation over the training pairs), got {folds}")
    for config in configs:
        own = [a for a in config.assignments if a.partition("=")[0].strip() in ("task.folds", "task.fold")]
        if own:
            raise SpecError(f"--folds {folds} sets task.folds and task.fold of every run; drop --set/--vary {own[0]}")


def plan_runs(configs: Sequence[AblationConfig], seeds: int, out_root: str | Path, folds: int = 0) -> list[PlannedRun]:
    """Every (config, seed) run, seed-major (seed 0 of every config first) so a partial ablation is usable.

    With ``folds`` = K >= 2, every (config, seed) becomes K runs, fold ``i`` with ``task.folds=K task.fold=i`` (its
    selection set is the i-th of K seeded folds of the training pairs, see :func:`zoo.taskdata.cv_fold`): a spec of
    its own, so a folder of its own; fold-major within a seed, so a partial run compares configs on the same folds.
    """
    if seeds < 1:
        raise SpecError(f"--seeds must be at least 1, got {seeds}")
    check_folds_option(folds, configs)
    root = Path(out_root)
    planned = []
    for seed in range(seeds):
        for fold in range(folds) if folds else (None,):
            for config in configs:
                sets = [f"train.seed={seed}"] + ([f"task.folds={folds}", f"task.fold={fold}"] if fold is not None else [])
                try:
                    spec = config.spec.with_overrides(sets).resolve()
                except SpecError as exc:
                    if fold is None:
                        raise
                    raise SpecError(f"--folds {folds} ({config.label}): {exc}") from None
                planned.append(PlannedRun(config, seed, spec, default_out_dir(spec, root), fold))
    return planned


def read_json(path: Path) -> dict:
    """A results file as a dict (a :class:`LeaderboardError` naming the file when it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LeaderboardError(f"cannot read results file {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


# -- comparison ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A variant against the reference on one metric (see the module docstring for the rule)."""

    delta: float | None  # variant mean - reference mean
    se: float | None  # sqrt(s_ref²/n_ref + s_var²/n_var)
    significant: bool | None  # |delta| > 2·se; None when either side has fewer than 2 seeds
    better: bool | None  # delta in the metric's good direction
    p_value: float | None  # Welch's t-test (two-sided), when scipy is importable

    def verdict(self) -> str:
        if self.delta is None:
            return "–"
        if self.significant is None:
            return "n/a (<2 seeds)"
        if not self.significant:
            return "no"
        return "yes, better" if self.better else "yes, worse"


def compare(reference: MetricSummary, variant: MetricSummary, higher_is_better: bool) -> Comparison:
    """Δ of ``variant`` against ``reference`` and whether it exceeds seed noise (2·SE rule, Welch p)."""
    delta = variant.mean - reference.mean
    better = (delta > 0) == higher_is_better if delta != 0 else None
    if reference.n < 2 or variant.n < 2:
        return Comparison(delta, None, None, better, None)
    se = math.sqrt(reference.std ** 2 / reference.n + variant.std ** 2 / variant.n)  # type: ignore[operator]
    significant = abs(delta) > 2 * se
    p_value: float | None = None
    if se > 0:
        try:
            from scipy.stats import ttest_ind_from_stats

            p_value = float(ttest_ind_from_stats(reference.mean, reference.std, reference.n,
                                                 variant.mean, variant.std, variant.n, equal_var=False).pvalue)
        except ImportError:
            p_value = None
    elif delta != 0:
        p_value = 0.0
    return Comparison(delta, se, significant, better, p_value)


def compare_paired(reference: dict[Any, float], variant: dict[Any, float], higher_is_better: bool) -> Comparison:
    """Δ of ``variant`` against ``reference`` paired by key (cross-validation: ``(seed, fold)``, the same held-out
    pairs on both sides): mean of the per-key differences, ``SE = sd(Δ)/sqrt(n)``, beyond noise when
    ``|Δ| > 2·SE`` with n >= 2, p from the paired t-test (``scipy.stats.ttest_rel``)."""
    keys = [k for k in reference if k in variant]
    if not keys:
        return Comparison(None, None, None, None, None)
    deltas = [variant[k] - reference[k] for k in keys]
    delta = math.fsum(deltas) / len(deltas)
    better = (delta > 0) == higher_is_better if delta != 0 else None
    if len(deltas) < 2:
        return Comparison(delta, None, None, better, None)
    se = summarize(deltas).std / math.sqrt(len(deltas))  # type: ignore[operator]
    p_value: float | None = None
    if se > 0:
        try:
            from scipy.stats import ttest_rel

            p_value = float(ttest_rel([variant[k] for k in keys], [reference[k] for k in keys]).pvalue)
        except ImportError:
            p_value = None
    elif delta != 0:
        p_value = 0.0
    return Comparison(delta, se, abs(delta) > 2 * se, better, p_value)


#: the selection metric of a run: its best held-out MRR (text→molecule among the held-out pairs' molecules),
#: what picks its epoch; with ``--folds`` the held-out pairs are the run's cross-validation fold
HELDOUT = "heldout_mrr"


def heldout_mrr(results: dict[str, Any], source: str) -> float:
    """A run's selection metric (``training.best_heldout_mrr``); a :class:`LeaderboardError` naming the file without it."""
    training = results.get("training") if isinstance(results.get("training"), dict) else {}
    value = training.get("best_heldout_mrr")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise LeaderboardError(f"{source}: no training.best_heldout_mrr (the held-out selection metric) to compare")
    return float(value)


@dataclass(frozen=True)
class AblationRow:
    config: AblationConfig
    seeds: tuple[int, ...]
    summaries: dict[str, dict[str, MetricSummary]]  # direction -> metric -> summary
    comparisons: dict[str, dict[str, Comparison]]  # direction -> metric -> vs reference (empty for the reference)
    #: the selection metric beside test (a table without folds): held-out MRR over the seeds, where the runs record it
    heldout: MetricSummary | None = None


@dataclass(frozen=True)
class AblationTable:
    composition: str
    key: ProtocolKey
    directions: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: list[AblationRow]
    missing: list[str]  # planned runs without results
    folds: int = 0  # K of the cross-validation (the table then compares held-out MRR, never test), 0 without

    @property
    def noise_rule(self) -> str:
        if self.folds:
            return "paired by (seed, fold): |mean delta| > 2*sd(delta)/sqrt(n), n >= 2; p: paired t-test"
        return "|delta| > 2*sqrt(s_ref^2/n_ref + s_var^2/n_var), both n >= 2; p: Welch t-test"

    def to_dict(self) -> dict[str, Any]:
        return {
            "composition": self.composition, "protocol": self.key.to_dict(), "directions": list(self.directions),
            "metrics": list(self.metrics), "missing": self.missing,
            "selection": f"held-out MRR, {self.folds}-fold cross-validation over the training pairs" if self.folds else "test",
            "noise_rule": self.noise_rule,
            "rows": [{
                "label": r.config.label, "reference": r.config.is_reference, "settings": dict(r.config.settings),
                "assignments": list(r.config.assignments), "spec_hash": r.config.hash, "seeds": list(r.seeds),
                **({"heldout_mrr": r.heldout.to_dict()} if r.heldout else {}),
                "metrics": {d: {m: {**s.to_dict(), **({
                    "delta": c.delta, "se": c.se, "exceeds_noise": c.significant, "p_value": c.p_value,
                } if (c := r.comparisons.get(d, {}).get(m)) else {})} for m, s in ms.items()}
                    for d, ms in r.summaries.items()},
            } for r in self.rows],
        }


def ablation_table(planned: Sequence[PlannedRun], *, metrics: Sequence[str] = ("mrr",), gallery: str | None = None,
                   direction: str = "text_to_molecule") -> AblationTable:
    """Aggregate the finished runs of ``planned`` per configuration and compare each with the reference (a sweep
    has none flagged: its first composition).

    Cross-validation runs (planned with ``folds``) are compared on their selection metric only, the held-out MRR
    (:func:`heldout_mrr`), mean ± std over folds and seeds, paired by (seed, fold) (:func:`compare_paired`); their
    test scores are never read.
    """
    folds = max((p.spec.task.get("folds", 0) for p in planned if p.fold is not None), default=0)
    if folds:
        metrics, direction = (HELDOUT,), "text_to_molecule"
    else:
        metrics = tuple(dict.fromkeys(normalize_metric(m) for m in metrics))
    direction = normalize_direction(direction)
    directions = DIRECTIONS if direction == "both" else (direction,)
    configs = list(dict.fromkeys(p.config for p in planned))
    reference = next((c for c in configs if c.is_reference), configs[0])
    gallery = gallery or configs[0].spec.eval.galleries[0]
    records: dict[AblationConfig, list[RunRecord]] = {c: [] for c in configs}
    selection: dict[AblationConfig, dict[tuple[int, int | None], float]] = {c: {} for c in configs}
    missing = []
    for item in planned:
        if item.done:
            record = RunRecord.from_results(read_json(item.results_path), str(item.results_path))
            records[item.config].append(record)
            if folds:
                selection[item.config][item.seed, item.fold] = heldout_mrr(record.results, record.source)
        else:
            missing.append(str(item.out_dir))
    keys = {}
    for runs in records.values():
        for run in runs:
            if gallery not in run.results["scores"]:
                raise LeaderboardError(f"{run.source}: no scores for gallery {gallery!r} "
                                       f"(has {', '.join(run.results['scores'])})")
            keys.setdefault(run.protocol_key(gallery), run.source)
    if len(keys) > 1:
        raise LeaderboardError("ablation runs were evaluated under different protocols/data and cannot be compared: "
                               + "; ".join(f"{k.label()} ({src})" for k, src in keys.items()))
    if not keys:
        raise LeaderboardError("no finished runs in this ablation yet")
    rows = []
    ref_summaries: dict[str, dict[str, MetricSummary]] = {}
    for config in [reference, *(c for c in configs if c is not reference)]:
        runs = sorted(records[config], key=lambda r: r.seed or 0)
        summaries: dict[str, dict[str, MetricSummary]] = {}
        if folds and selection[config]:
            summaries["text_to_molecule"] = {HELDOUT: summarize(selection[config].values())}
        for d in directions if not folds else ():
            for m in metrics:
                vals = [r.results["scores"][gallery].get(d, {}).get(m) for r in runs]
                vals = [v for v in vals if v is not None]
                if vals:
                    summaries.setdefault(d, {})[m] = summarize(vals)
        if config is reference:
            ref_summaries = summaries
            comparisons: dict[str, dict[str, Comparison]] = {}
        elif folds:
            comparisons = {"text_to_molecule": {HELDOUT: compare_paired(selection[reference], selection[config], True)}}
        else:
            comparisons = {
                d: {m: compare(ref_summaries[d][m], s, METRICS[m][1]) for m, s in ms.items() if m in ref_summaries.get(d, {})}
                for d, ms in summaries.items()
            }
        held = [v for r in runs if (v := (r.results.get("training") or {}).get("best_heldout_mrr")) is not None]
        rows.append(AblationRow(config, tuple(sorted({r.seed for r in runs if r.seed is not None})), summaries, comparisons,
                                summarize(held) if held and not folds else None))
    rows.sort(key=lambda r: configs.index(r.config))
    return AblationTable(composition=configs[0].spec.name, key=next(iter(keys)), directions=directions,
                         metrics=metrics, rows=rows, missing=missing, folds=folds)


def _metric(name: str) -> tuple[str, bool, bool]:
    """``(label, higher is better, percent)`` of a table metric: :data:`METRICS`' or the held-out MRR's."""
    return ("held-out MRR", True, False) if name == HELDOUT else METRICS[name]


def _fmt(value: float | None, percent: bool, signed: bool = False) -> str:
    if value is None:
        return "–"
    value = value * 100 if percent else value
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def render_ablation(table: AblationTable, fmt: str = "markdown") -> str:
    """``markdown`` (default), ``csv`` (one line per config × direction × metric) or ``json``."""
    fmt = fmt.lower()
    if fmt == "json":
        return json.dumps(table.to_dict(), indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["config", "reference", "spec_hash", "direction", "metric", "n", "seeds", "mean", "std",
                    "delta", "se", "exceeds_noise", "p_value"])
        for r in table.rows:
            for d, ms in r.summaries.items():
                for m, s in ms.items():
                    c = r.comparisons.get(d, {}).get(m)
                    w.writerow([r.config.label, r.config.is_reference, r.config.hash, d, m, s.n,
                                ";".join(map(str, r.seeds)), s.mean, "" if s.std is None else s.std,
                                *(["", "", "", ""] if c is None else
                                  [c.delta, "" if c.se is None else c.se, "" if c.significant is None else c.significant,
                                   "" if c.p_value is None else c.p_value])])
        return buf.getvalue()
    if fmt not in ("md", "markdown"):
        raise LeaderboardError(f"unknown format {fmt!r}; formats: markdown, csv, json")
    both = len(table.directions) > 1
    heldout = not table.folds and any(r.heldout for r in table.rows)  # the selection metric beside test
    header = ["config", "seeds", "folds"] if table.folds else ["config", "seeds"] + (["held-out MRR (%, selects)"] if heldout else [])
    for d in table.directions:
        for m in table.metrics:
            label, _, percent = _metric(m)
            name = f"{'t→m ' if d == 'text_to_molecule' else 'm→t '}{label}" if both else label
            unit = " (%)" if percent else ""
            header += [f"{name}{unit}", f"Δ{unit}", "2·SE", "beyond noise", "p (Welch)"]
    lines = [f"### ablation of {table.composition}: {table.key.label()}", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for r in table.rows:
        cells = [("**reference** " if r.config.is_reference and r.config.label != "reference" else "")
                 + (f"**{r.config.label}**" if r.config.label == "reference" else r.config.label), str(len(r.seeds))]
        if table.folds:
            cells.append(str(table.folds))
        elif heldout:
            cells.append("–" if r.heldout is None else _fmt(r.heldout.mean, True)
                         + ("" if r.heldout.std is None else f" ± {_fmt(r.heldout.std, True)}"))
        for d in table.directions:
            for m in table.metrics:
                percent = _metric(m)[2]
                s = r.summaries.get(d, {}).get(m)
                c = r.comparisons.get(d, {}).get(m)
                mean = "–" if s is None else _fmt(s.mean, percent) + ("" if s.std is None else f" ± {_fmt(s.std, percent)}")
                if c is None:
                    cells += [mean, "–", "–", "–", "–"]
                else:
                    cells += [mean, _fmt(c.delta, percent, signed=True),
                              "–" if c.se is None else _fmt(2 * c.se, percent), c.verdict(),
                              "–" if c.p_value is None else f"{c.p_value:.3g}"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if table.folds:
        text = "\n".join(lines) + (f"\n\nselection metric only (test is never read): held-out MRR of {table.folds}-fold cross-validation "
                                   "over the training pairs, mean ± sample std over folds × seeds; Δ paired by (seed, fold), "
                                   "beyond noise: |Δ| > 2·SE, SE = sd(Δ)/sqrt(n)\n")
    else:
        text = "\n".join(lines) + "\n\nmean ± sample std over seeds; beyond noise: |Δ| > 2·SE, SE = sqrt(s_ref²/n_ref + s_var²/n_var)\n"
    if table.missing:
        text += f"\n{len(table.missing)} planned run(s) have no results yet (rerun the same command to finish them).\n"
    return text


def describe_plan(planned: Sequence[PlannedRun]) -> str:
    """What ``--dry-run`` prints: every configuration, its ``--set`` list and its runs."""
    lines = []
    for config in dict.fromkeys(p.config for p in planned):
        runs = [p for p in planned if p.config is config]
        done = sum(p.done for p in runs)
        lines.append(f"{'* ' if config.is_reference else '  '}{config.label}  (spec {config.hash}; {done}/{len(runs)} runs done)")
        lines.append(f"    --set {' --set '.join(config.assignments) if config.assignments else '(none)'}")
        if config.not_applied:
            lines.append(f"    not applied (component lacks the option): {', '.join(config.not_applied)}")
        for p in runs:
            fold = "" if p.fold is None else f", fold {p.fold}/{p.spec.task['folds']}"
            lines.append(f"    seed {p.seed}{fold}: {p.out_dir}{'  [done]' if p.done else ''}")
    pending = sum(not p.done for p in planned)
    lines.append(f"{len(planned)} runs planned, {pending} to train, {len(planned) - pending} already finished")
    return "\n".join(lines) + "\n"
