"""``zoo ensemble``: fuse finished runs (and scorers) into a results folder of their own.

The member runs (at least two members, runs and scorers; all finished, none an ensemble, one task and
data) are opened as :class:`zoo.fusion.Member` objects (:func:`zoo.scoring.run_member`), their weights
fitted on the held-out pairs only (:func:`zoo.fusion.fit_weights`) and the fused scores evaluated on the
test pairs; ``OUT/results.json`` records members and weights (``fusion``), so that
:func:`zoo.scoring.open_scoring` rebuilds the same fused scores for ``zoo eval``, ``search``, ``report``
and ``serve``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.cache import content_hash, data_fingerprint
from zoo.data import check_same_data
from zoo.errors import RunError
from zoo.evals.leaderboard import seedless_spec_hash
from zoo.evals.results import ENSEMBLE_SPEC_FORMAT, build_results, read_results, write_results
from zoo.evaluate import evaluate_source
from zoo.fusion import (
    FITTED_ON,
    METHOD,
    FusedScores,
    GalleryScores,
    Member,
    evaluate_fused,
    fit_weights,
    fusion_record,
    rerank_source,
    scorer_member,
)
from zoo.rerank import DEFAULT_K, RerankerMember, reranker_member
from zoo.runs import load_run, results_path, training_data
from zoo.scoring import kind, run_member
from zoo.tasks import get_task, holdout_seed, load_run_data, protocol_note, task_block

if TYPE_CHECKING:
    from zoo.spec import EnsembleSpec


def _member_entry(run_dir: Path, results: dict) -> dict[str, Any]:
    spec = results.get("spec", {})
    return {"run": str(run_dir), "composition": spec.get("name", "?"), "spec_hash": results.get("spec_hash"),
            "config_hash": seedless_spec_hash(spec), "seed": results.get("seeds", {}).get("seed")}


def _member_names(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Members by composition; where several share one, with their configuration (seedless spec hash) and/or
    seed where those differ: ``tfidf_fp/s0+tfidf_fp/s1``, ``tfidf_fp@1a2b3c4d5e6f+tfidf_fp@…``."""
    names = []
    for e in entries:
        same = [o for o in entries if o["composition"] == e["composition"]]
        name = e["composition"]
        if len({o["config_hash"] for o in same}) > 1:
            name += f"@{e['config_hash']}"
        if len({o["seed"] for o in same}) > 1:
            name += f"/s{e['seed']}"
        names.append(name)
    return names


def ensemble_spec(run_dirs: Sequence[Path], member_results: Sequence[dict], scorers: Sequence[Member],
                  composition: "EnsembleSpec | None" = None, rerankers: Sequence[RerankerMember] = (),
                  rerank_k: int = DEFAULT_K) -> dict[str, Any]:
    """The spec an ensemble is made from: member configurations (composition, seedless spec hash), scorers and
    task settings. Where every member has one seed it is the ensemble's ``train.seed`` (so ensembles of the same
    configurations over several seeds make one leaderboard row, mean ± std); else each member names its seed.
    An ensemble ``composition`` names it (and is recorded); else its name lists the members."""
    first = member_results[0]["spec"]
    entries = [_member_entry(d, r) for d, r in zip(run_dirs, member_results)]
    seeds = {e["seed"] for e in entries}
    common = next(iter(seeds)) if len(seeds) == 1 and isinstance(next(iter(seeds)), int) else None
    listed = "+".join([*_member_names(entries), *(m.label for m in scorers)])
    name = composition.name if composition is not None else f"ensemble({listed})"
    train = {"holdout_fraction": first.get("train", {}).get("holdout_fraction", 0.1)}
    return {"format": ENSEMBLE_SPEC_FORMAT, "name": name,
            **({"composition": {k: v for k, v in composition.to_dict().items() if k != "train"}}  # seedless: one row
               if composition is not None else {}),
            "description": (f"{composition.description} — " if composition is not None and composition.description else "")
                           + "fused " + ", ".join(f"{e['composition']} ({e['run']})" for e in entries)
                           + "".join(f" + scorer {m.label}" for m in scorers)
                           + (f"; top {rerank_k} re-ranked by " + ", ".join(m.label for m in rerankers) if rerankers else ""),
            "members": [{"composition": e["composition"], "config_hash": e["config_hash"],
                         **({} if common is not None else {"seed": e["seed"]})} for e in entries],
            "scorers": [m.record() for m in scorers],
            **({"rerankers": [m.record() for m in rerankers], "rerank_k": rerank_k} if rerankers else {}),
            "train": {**train, **({"seed": common} if common is not None else {})},
            "eval": {"task": first.get("eval", {}).get("task", "chebi20"),
                     "galleries": list(first.get("eval", {}).get("galleries", ["all", "test"]))},
            **({"task": dict(first["task"])} if first.get("task") else {})}  # the members' task options


def _check_same_task_and_data(run_dirs: Sequence[Path], member_results: Sequence[dict]) -> None:
    tasks = [r["spec"].get("eval", {}).get("task", "chebi20") for r in member_results]
    if len(set(tasks)) > 1:
        raise RunError("runs of different tasks cannot be fused: " + ", ".join(f"{d} ({t})" for d, t in zip(run_dirs, tasks)))
    prints = [data_fingerprint(training_data(r)[0] or {}) for r in member_results]
    if len(set(prints)) > 1:
        raise RunError("runs made on different data cannot be fused: " + ", ".join(f"{d} (data {p})" for d, p in zip(run_dirs, prints))
                       + "; fuse runs trained on the same data")
    options = [r["spec"].get("task", {}) for r in member_results]
    if any(o != options[0] for o in options):
        raise RunError("runs of one task with different task options (e.g. another hold-out seed) cannot be fused: "
                       + ", ".join(f"{d} ({o or 'defaults'})" for d, o in zip(run_dirs, options)))
    holdouts = [r["spec"].get("train", {}).get("holdout_fraction") for r in member_results]
    if len(set(holdouts)) > 1:
        raise RunError("runs with different held-out splits cannot be fused (their train.holdout_fraction: "
                       + ", ".join(f"{d}={h}" for d, h in zip(run_dirs, holdouts)) + ")")


def default_ensemble_dir(spec_hash: str, root: str | Path = "runs") -> Path:
    return Path(root) / f"ensemble-{spec_hash}"


def _member_runs(dirs: Sequence[Path], scorers: Sequence[object]) -> list[dict]:
    """The results of the member runs: at least two members (runs and scorers), no folder twice, every
    run finished and not itself an ensemble, all on one task and data."""
    if not dirs:
        raise RunError("zoo ensemble needs at least one run folder")
    if len(dirs) == 1 and not scorers:
        raise RunError("one run alone is not an ensemble: give more runs, a --scorer (see `zoo list scorer`) or a --reranker")
    resolved = [d.resolve() for d in dirs]
    repeated = sorted({str(d) for d, r in zip(dirs, resolved) if resolved.count(r) > 1})
    if repeated:
        raise RunError(f"run folder given more than once: {', '.join(repeated)}")
    member_results = [load_run(d) for d in dirs]  # a missing or unfinished run: one line naming it
    for d, r in zip(dirs, member_results):
        if kind(r) == "ensemble":
            raise RunError(f"{d} is an ensemble: fuse its member runs instead")
    _check_same_task_and_data(dirs, member_results)
    return member_results


def _finished(out_dir: Path, spec_hash: str, fresh: bool, log: Callable[[str], None]) -> bool:
    """Whether ``out_dir`` already holds this ensemble, finished (reused unless ``fresh``); refused when it is
    a file, holds a run's results, another ensemble's (unless ``fresh``) or unreadable ones (unless ``fresh``)."""
    path = results_path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir} is a file: give a folder")
    if not path.exists():
        return False
    try:
        previous = read_results(path)
    except ValueError as exc:
        if not fresh:
            raise RunError(f"{exc}; rerun with --fresh") from None
        return False
    if kind(previous) != "ensemble":
        raise RunError(f"{path} holds the results of a run, not of an ensemble: give --out a new folder")
    if fresh:
        return False
    if previous.get("spec_hash") == spec_hash:
        log(f"ensemble {out_dir} is finished with these members (spec hash {spec_hash}): reused (--fresh to redo it)")
        return True
    raise RunError(f"{path} holds another ensemble (spec hash {previous.get('spec_hash')}, this one {spec_hash}); "
                   "use another --out or --fresh to replace it")


def build_ensemble(run_dirs: Sequence[str | Path], scorers: Sequence[str | Member] = (), *, out: str | Path | None = None,
                   fresh: bool = False, data_dir: str | None = None, device: str = "auto",
                   composition: "EnsembleSpec | None" = None, rerankers: Sequence[str | RerankerMember] = (),
                   rerank_k: int = DEFAULT_K, log: Callable[[str], None] = print) -> Path:
    """``zoo ensemble``: fuse finished runs (and ``scorers``: registered names, or members built by
    :func:`scorer_member`) with weights fitted on the held-out pairs; write ``OUT/results.json`` (a run's
    schema plus ``fusion`` and ``member_scores``; member runs recorded relative to ``OUT``). A finished
    ensemble of the same members is reused unless ``fresh``. ``composition``: the ensemble composition
    being run (names the ensemble). ``rerankers``: a second stage over the fused top ``rerank_k`` (fitted on
    the training pairs, weighed on the held-out pairs, :mod:`zoo.rerank`). Returns the results path."""
    started = time.time()
    dirs = [Path(d) for d in run_dirs]
    rerankers = [r if isinstance(r, RerankerMember) else reranker_member(r) for r in rerankers]  # unknown: close matches
    member_results = _member_runs(dirs, [*scorers, *rerankers])  # one run alone with a second stage is a re-ranked run
    scorers = [s if isinstance(s, Member) else scorer_member(s) for s in scorers]  # unknown scorer: close matches
    spec = ensemble_spec(dirs, member_results, scorers, composition, rerankers, rerank_k)
    # the exact members (spec hash and seed of each) and scorers: an ensemble of other runs is another ensemble
    entries = [_member_entry(d, r) for d, r in zip(dirs, member_results)]
    spec_hash = content_hash(ENSEMBLE_SPEC_FORMAT, [[e["spec_hash"], e["seed"]] for e in entries], spec["scorers"],
                             *([spec["rerankers"], rerank_k] if rerankers else []))[:12]  # without re-rankers: as before
    out_dir = Path(out) if out else default_ensemble_dir(spec_hash)
    path = results_path(out_dir)
    if _finished(out_dir, spec_hash, fresh, log):
        return path

    trained_on, trained_dir = training_data(member_results[0])
    task = get_task(spec["eval"]["task"])
    data = load_run_data(member_results[0], data_dir)  # the members' task options and data folder
    for d, r in zip(dirs, member_results):
        check_same_data(*training_data(r), data, f"run {d}", "pass the runs' data folder with --data-dir")
    log(f"ensemble of {', '.join(map(str, dirs))}" + (f" + {', '.join(m.label for m in scorers)}" if scorers else "")
        + f": {len(data.select)} held-out pairs fit the weights, {len(data.test)} test pairs are scored")
    names = [d.name for d in dirs]  # labels: folder names, or full paths where two folders share a name
    labels = [d.name if names.count(d.name) == 1 else str(d) for d in dirs]
    members = [run_member(label, d, _relative(d, out_dir), device) for label, d in zip(labels, dirs)]
    members += scorers
    gallery = GalleryScores(members, data, log)
    fit = fit_weights(gallery, data.select, log=log)
    galleries = spec["eval"]["galleries"]
    source, reranked = rerank_source(FusedScores(gallery, fit.weights), data, rerankers, rerank_k,
                                     spec["train"].get("seed", 0), out_dir, galleries, log)
    scores, counts = evaluate_source(source, data.test, galleries, log=log)
    member_scores = {}
    for i, member in enumerate(members):
        alone = [1.0 if j == i else 0.0 for j in range(len(members))]
        member_scores[member.label], _ = evaluate_fused(gallery, data.test, galleries, alone, log=lambda _m: None)
    results = build_results(
        spec=spec, spec_hash=spec_hash,
        components=[{"member": m.label, "scorer": m.scorer_name, "options": m.options} for m in members],
        task=task_block(spec["eval"]["task"], data, "test", counts, spec.get("task"),
                        fingerprint=data_fingerprint(data.checksums)),
        scores=scores, timings={"total_s": time.time() - started},
        seeds={**({"seed": spec["train"]["seed"]} if "seed" in spec["train"] else {}),
               "holdout_seed": holdout_seed(spec["eval"]["task"], spec.get("task") or {}),
               "members": [e["seed"] for e in entries]},
        notes=[protocol_note(task, data.protocol), f"ensemble: {METHOD}; weights fitted on {FITTED_ON}"],
        extra={**({"requested_spec_hash": composition.hash()} if composition is not None else {}),  # the hash `zoo run` printed
               "fusion": fusion_record(members, fit), **reranked, "member_scores": member_scores,
               "ensemble": {"runs": [{"run": _relative(d, out_dir), "spec_hash": e["spec_hash"], "seed": e["seed"]}
                                     for d, e in zip(dirs, entries)], "training_data_dir": trained_dir}},
    )
    write_results(path, results)
    log(f"results: {path} (ensemble {spec['name']}, spec hash {spec_hash})")
    return path


def _relative(run_dir: Path, fused_dir: Path) -> str:
    """``run_dir`` relative to the fused folder (how the folder records its member runs: the two move together)."""
    return Path(os.path.relpath(run_dir.resolve(), fused_dir.resolve())).as_posix()

