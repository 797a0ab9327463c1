"""The `best` and ablation tables of docs/results.md and the screen tables of results/README.md (the lab
notebook), from the committed results files: every table shows the selection metric (held-out MRR) beside test.

    python results/tables.py results                                  # print them
    python results/tables.py results docs/results.md results/README.md   # fill the marked blocks in place
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

from zoo.evals.leaderboard import summarize
from zoo.evals.results import read_results

BEST = "chem_ensemble"
#: the runs of the spec a composition had before its latest change (results/README.md, "Previous specs"), spec hash by seed
PREVIOUS = {
    "aman": ("ad2414de1ad9", "12567097d8b3", "052f609cb6ab"),  # SciBERT alone in the text slot
}
#: named older runs (composition, spec hash by seed), for ``{runs:KEY}`` in a folder pattern
RUNS = {
    "tfidf_fp_morgan": ("tfidf_fp", ("3761d7b7863a", "4f19c894ebdd", "745e93867d0d")),  # Morgan counts only
    "tfidf_chem_morgan": ("tfidf_chem", ("5e9185cb1f9a", "135f88e923fa", "f8453257b7d8")),
    "names_ensemble_morgan": ("names_ensemble", ("6a4aadd3dba9", "6334bcbc2945", "5b575e52348a")),  # members of that time
}
#: per ablated ensemble: the reference runs' folder pattern under ROOT (see :func:`folder`), then each row's
#: label and per-seed folder pattern
ABLATIONS = {
    BEST: ("board/{shipped}",
           (("− `aman`", "chem-ablation/no_aman-s{s}"),
            ("− the `relation_match` scorer (= `names_ensemble`)", "board/{shipped:names_ensemble}"),
            ("− the `structure_match` scorer", "chem-ablation/no_sm-s{s}"), ("− `tfidf_chem`", "chem-ablation/no_chem-s{s}"),
            ("− `tfidf_fp`", "chem-ablation/no_fp-s{s}"))),
    "names_ensemble": ("board/{runs:names_ensemble_morgan}",
                       (("− `aman`", "best-ablation/no_aman-s{s}"), ("− the `structure_match` scorer", "best-ablation/no_sm-s{s}"),
                        ("− `tfidf_chem`", "best-ablation/no_chem-s{s}"), ("− `tfidf_fp`", "best-ablation/no_fp-s{s}"))),
}


def folders(pattern: str, name: str, seed: int) -> list[str]:
    """``pattern`` at ``seed``: ``{s}`` the seed, ``{shipped}``/``{previous}`` the run folder of ``name`` as shipped /
    of its :data:`PREVIOUS` spec, ``{shipped:OTHER}``/``{previous:OTHER}`` those of composition OTHER (as shipped:
    one folder per spelling of its request, see :func:`zoo.spec.shipped_spec_hashes`), ``{runs:KEY}`` the runs
    :data:`RUNS` names."""
    from zoo.runs import run_folder_name
    from zoo.spec import shipped_spec_hashes

    parts = re.split(r"\{(shipped|previous|runs)(?::(\w+))?\}", pattern)
    choices: list[list[str]] = [[parts[0]]]
    for i in range(1, len(parts), 3):
        kind, composition = parts[i], parts[i + 1] or name
        if kind == "runs":
            composition, by_seed = RUNS[parts[i + 1]]
            hashes = [by_seed[seed]]
        else:
            hashes = sorted(shipped_spec_hashes(composition, seed)) if kind == "shipped" else [PREVIOUS[composition][seed]]
        choices += [[run_folder_name(composition, h, seed) for h in hashes], [parts[i + 2]]]
    return ["".join(combo).replace("{s}", str(seed)) for combo in itertools.product(*choices)]


def runs_at(root: Path, pattern: str, name: str, seeds=range(3)) -> dict[int, dict]:
    """The results files under ROOT matching ``pattern`` (see :func:`folders`), by seed."""
    found = {}
    for s in seeds:
        paths = sorted(p for f in folders(pattern, name, s) for p in root.glob(f + "/results.json"))
        if paths:
            found[s] = read_results(paths[0])
    return found


def t2m(results: dict, metric: str = "mrr", direction: str = "text_to_molecule") -> float:
    return results["scores"]["all"][direction][metric]


def heldout(results: dict) -> float:
    """The selection metric of a run: its best held-out MRR (picks the epoch; text→molecule among the held-out
    pairs' molecules), or an ensemble's held-out MRR with its fitted weights (fits the weights: in-sample)."""
    training = results.get("training") or {}
    if "best_heldout_mrr" in training:
        return training["best_heldout_mrr"]
    return results["fusion"]["heldout_mrr"]


def as_shipped(results: dict) -> bool:
    """Whether a run's requested spec is its composition's as installed (:func:`zoo.spec.shipped_spec_hashes`)."""
    from zoo.spec import shipped_spec_hashes

    seed = results["spec"]["train"]["seed"]
    return results.get("requested_spec_hash") in shipped_spec_hashes(results["spec"]["name"], seed)


def cell(values: list[float], fmt: str = ".3f") -> str:
    s = summarize(values)
    return f"{s.mean:{fmt}}" if s.std is None else f"{s.mean:{fmt}} ± {s.std:{fmt}}"


def best_table(best: dict[int, dict]) -> list[str]:
    labels = " : ".join(m["label"].split("-")[0] for m in next(iter(best.values()))["fusion"]["members"])
    rows = [f"| seed | held-out MRR (fits the weights) | fitted weights ({labels}) "
            "| test MRR | Hits@1 | Hits@10 | ties | molecule→text MRR |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for seed, r in best.items():
        weights = " : ".join(format(m["weight"], "g") for m in r["fusion"]["members"])
        rows.append(f"| {seed} | {r['fusion']['heldout_mrr']:.3f} | {weights} | {t2m(r):.3f} | {100 * t2m(r, 'hits@1'):.1f} % "
                    f"| {100 * t2m(r, 'hits@10'):.1f} % | {int(t2m(r, 'queries_with_ties'))} | {t2m(r, direction='molecule_to_text'):.3f} |")
    runs = list(best.values())
    rows.append(f"| **mean ± std** | | | **{cell([t2m(r) for r in runs])}** | {cell([100 * t2m(r, 'hits@1') for r in runs], '.1f')} % "
                f"| {cell([100 * t2m(r, 'hits@10') for r in runs], '.1f')} % | | {cell([t2m(r, direction='molecule_to_text') for r in runs])} |")
    return rows


def ablation_table(name: str, best: dict[int, dict], root: Path) -> list[str]:
    rows = [f"| variant | seeds | held-out MRR (selects) | Δ held-out | test MRR | Δ test vs `{name}` |", "|---|---|---:|---:|---:|---:|",
            f"| `{name}` (all) | {', '.join(map(str, best))} | {cell([heldout(r) for r in best.values()])} | – "
            f"| {cell([t2m(r) for r in best.values()])} | – |"]
    for label, pattern in ABLATIONS[name][1]:
        found = runs_at(root, pattern, name, best)
        if not found:
            continue
        deltas = [t2m(found[s]) - t2m(best[s]) for s in found]
        held_deltas = [heldout(found[s]) - heldout(best[s]) for s in found]
        rows.append(f"| {label} | {', '.join(map(str, found))} | {cell([heldout(r) for r in found.values()])} "
                    f"| {cell(held_deltas).replace('-', '−')} | {cell([t2m(r) for r in found.values()])} "
                    f"| {cell(deltas).replace('-', '−')} |")
    return rows


#: screens of `aman` tuned within its slots (results/README.md): label and per-seed folder pattern under ROOT
AMAN_SCREENS = (
    ("the previous `aman`: SciBERT alone in the text slot", "board/{previous}"),
    ("text slot + a char 3–5-gram TF-IDF part", "aman-screens/aman_tfidf-s{s}"),
    ("the same, `aligner.weight=0.01`", "aman-screens/aman_tfidf_w001-s{s}"),
    ("text slot + TF-IDF + `chem_names` parts", "aman-screens/aman_tfidf_names-s{s}"),
    ("the same spec, named `aman`", "board/{shipped}"),
)


def screens_table(screens: tuple[tuple[str, str], ...], name: str, root: Path) -> list[str]:
    """One row per screen (its runs at seeds 0–2 that exist): the selection metric (held-out MRR, what decides),
    then test text→molecule, gallery `all` (shown beside it, never used to choose)."""
    rows = ["| variant | seeds | held-out MRR (selects) | test MRR | Hits@1 | Hits@10 | molecule→text MRR |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for label, pattern in screens:
        found = runs_at(root, pattern, name)
        if not found:
            continue
        runs = list(found.values())
        if all(as_shipped(r) for r in runs):
            label += f" = **`{runs[0]['spec']['name']}` as shipped**"
        rows.append(f"| {label} | {', '.join(map(str, found))} | {cell([heldout(r) for r in runs])} | {cell([t2m(r) for r in runs])} "
                    f"| {cell([100 * t2m(r, 'hits@1') for r in runs], '.1f')} % | {cell([100 * t2m(r, 'hits@10') for r in runs], '.1f')} % "
                    f"| {cell([t2m(r, direction='molecule_to_text') for r in runs])} |")
    return rows


#: screens of fingerprint_mlp's extra fingerprints in tfidf_fp and tfidf_chem (results/README.md); a row whose runs are
#: a composition as shipped says so (:func:`screens_table`)
FP_SCREENS = (
    ("`tfidf_fp` before: Morgan counts only", "board/{runs:tfidf_fp_morgan}"),
    ("+ MACCS keys", "fp-screens/maccs-s{s}"),
    ("+ atom-pair counts", "fp-screens/atompair-s{s}"),
    ("+ MACCS + atom-pair", "fp-screens/maccs_atompair-s{s}"),
    ("+ MACCS + feature-Morgan", "board/{shipped:tfidf_fp}"),
    ("`tfidf_chem` before: Morgan counts only", "board/{runs:tfidf_chem_morgan}"),
    ("+ MACCS keys", "fp-screens/chem_maccs-s{s}"),
    ("+ MACCS + feature-Morgan", "board/{shipped:tfidf_chem}"),
)


#: 5-fold cross-validation screens over the training pairs (``zoo ablate ... --folds 5``): label, folder under ROOT
#: and the candidates (label, value of ``molecule_encoder.extra``), the first the reference
CV_SCREENS = (
    ("`tfidf_fp`: `molecule_encoder.extra`", "fp-cv",
     (("MACCS + feature-Morgan", ["maccs", "feature_morgan"]), ("MACCS only", ["maccs"]))),
)


def cv_table(root: Path) -> list[str]:
    """Held-out MRR of each candidate over the folds (and seeds) of a cross-validation screen, Δ paired by (seed,
    fold) against the first candidate (:func:`zoo.ablate.compare_paired`); the fold runs' test scores are not read."""
    from zoo.ablate import compare_paired

    rows = ["| screen | candidate | runs (folds × seeds) | held-out MRR (5-fold CV) | Δ paired | 2·SE | beyond noise |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for title, folder, candidates in CV_SCREENS:
        by_candidate: dict[str, dict[tuple[int, int], float]] = {label: {} for label, _ in candidates}
        for path in sorted((root / folder).glob("*/results.json")):
            r = read_results(path)
            extra = list(r["spec"]["molecule_encoder"].get("extra") or [])
            label = next((lab for lab, value in candidates if value == extra), None)
            if label is not None:
                by_candidate[label][r["spec"]["train"]["seed"], r["task"]["options"]["fold"]] = heldout(r)
        reference = by_candidate[candidates[0][0]]
        for i, (label, _) in enumerate(candidates):
            values = by_candidate[label]
            if not values:
                continue
            c = compare_paired(reference, values, True) if i else None
            beyond = "–" if c is None or c.significant is None else ("yes" if c.significant else "no")
            rows.append(f"| {title if i == 0 else ''} | {label} | {len(values)} | {cell(list(values.values()))} "
                        f"| {'–' if c is None else format(c.delta, '+.4f')} | {'–' if c is None or c.se is None else format(2 * c.se, '.4f')} "
                        f"| {beyond} |")
    return rows


#: re-ranked runs (each results file holds both stages): table name -> (folder pattern under ROOT, first-stage label)
RERANKED = {
    "best, 3 seeds": ("reranked/{shipped:chem_reranked}", ("first stage (`chem_ensemble`)", "re-ranked (`best` as shipped)")),
    "lexical, 3 seeds": ("reranked/lexical-rr-s{s}", ("first stage (`tfidf_fp` + `tfidf_chem` + `relation_match`)",
                                                      "+ `class_check`")),
}


def stage(results: dict, first: bool, metric: str = "mrr", direction: str = "text_to_molecule") -> float:
    """A re-ranked run's test score (gallery all) before (``first``) or after its re-rankers."""
    return results["first_stage_scores" if first else "scores"]["all"][direction][metric]


def reranked_table(runs: dict[int, dict], labels: tuple[str, str]) -> list[str]:
    """Per seed, both stages of a re-ranked run; then first stage, re-ranked and the paired Δ (mean ± std, beyond
    noise when |Δ| > 2·SE) of the held-out MRR that fits the weights and of test."""
    from zoo.ablate import compare_paired

    names = " : ".join(f"`{r['label']}`" for r in next(iter(runs.values()))["rerank"]["rerankers"])
    rows = [f"| seed | held-out MRR: first stage → re-ranked (fits the weights) | weight ({names}) | test MRR: first stage → "
            "re-ranked | Hits@1 | Hits@10 | molecule→text MRR |", "|---:|---|---:|---|---|---|---|"]
    for seed, r in runs.items():
        rr = r["rerank"]
        weights = " : ".join(format(x["weight"], "g") for x in rr["rerankers"])
        pct = {m: (100 * stage(r, True, m), 100 * stage(r, False, m)) for m in ("hits@1", "hits@10")}
        rows.append(f"| {seed} | {rr['heldout_mrr_first_stage']:.3f} → {rr['heldout_mrr']:.3f} | {weights} "
                    f"| {stage(r, True):.3f} → **{stage(r, False):.3f}** | {pct['hits@1'][0]:.1f} % → {pct['hits@1'][1]:.1f} % "
                    f"| {pct['hits@10'][0]:.1f} % → {pct['hits@10'][1]:.1f} % "
                    f"| {stage(r, True, direction='molecule_to_text'):.3f} → {stage(r, False, direction='molecule_to_text'):.3f} |")
    rows += ["", "| | seeds | held-out MRR (fits the weights) | test MRR | Hits@1 | Hits@10 | molecule→text MRR |",
             "|---|---|---:|---:|---:|---:|---:|"]
    seeds = ", ".join(map(str, runs))
    columns = {"heldout": ({s: r["rerank"]["heldout_mrr_first_stage"] for s, r in runs.items()},
                           {s: r["rerank"]["heldout_mrr"] for s, r in runs.items()}, 1, ".3f")}
    for key, metric, direction, scale, fmt in (("test", "mrr", "text_to_molecule", 1, ".3f"), ("h1", "hits@1", "text_to_molecule", 100, ".1f"),
                                               ("h10", "hits@10", "text_to_molecule", 100, ".1f"), ("m2t", "mrr", "molecule_to_text", 1, ".3f")):
        columns[key] = ({s: scale * stage(r, True, metric, direction) for s, r in runs.items()},
                        {s: scale * stage(r, False, metric, direction) for s, r in runs.items()}, scale, fmt)
    unit = {1: "", 100: " %"}
    rows.append(f"| {labels[0]} | {seeds} | " + " | ".join(
        f"{cell(list(before.values()), fmt)}{unit[scale]}" for before, _, scale, fmt in columns.values()) + " |")
    rows.append(f"| {labels[1]} | {seeds} | " + " | ".join(
        f"**{cell(list(after.values()), fmt)}{unit[scale]}**" if key == "test" else f"{cell(list(after.values()), fmt)}{unit[scale]}"
        for key, (_, after, scale, fmt) in columns.items()) + " |")
    deltas = []
    for before, after, scale, fmt in columns.values():
        c = compare_paired(before, after, True)
        d = summarize([after[k] - before[k] for k in before])
        noise = "" if c.significant is None else (" (beyond noise)" if c.significant else " (inside noise)")
        spread = "" if d.std is None else f" ± {d.std:{fmt}}"
        deltas.append(f"{d.mean:+{fmt}}{spread}{unit[scale]}{noise}")
    rows.append(f"| Δ (paired by seed) | {seeds} | " + " | ".join(deltas) + " |")
    return rows


def sections(root: Path) -> dict[str, list[str]]:
    """Every generated table, by the name its ``<!-- tables: ... (NAME) -->`` marker gives it."""
    out = {"aman screens": screens_table(AMAN_SCREENS, "aman", root),
           "fingerprint screens": screens_table(FP_SCREENS, "tfidf_fp", root),
           "cross-validation screens": cv_table(root)}
    for name, (pattern, labels) in RERANKED.items():
        runs = runs_at(root, pattern, "chem_reranked")
        if runs:
            out[name] = reranked_table(runs, labels)
    for name, (reference, _) in ABLATIONS.items():
        runs = runs_at(root, reference, name)
        if runs:
            out[name] = [*best_table(runs), "", *ablation_table(name, runs, root)]
    return out


MARKER = re.compile(r"(<!-- tables: python results/tables.py results \((?P<name>[^)]+)\) -->\n)(.*?)(<!-- /tables -->)", re.S)


def fill(path: Path, tables: dict[str, list[str]]) -> None:
    """Replace every marked block of ``path`` with its table (an unknown name is an error)."""
    def table(match: re.Match) -> str:
        name = match.group("name")
        if name not in tables:
            raise SystemExit(f"{path}: no table named {name!r} (tables: {', '.join(tables)})")
        return match.group(1) + "\n".join(tables[name]) + "\n" + match.group(4)

    path.write_text(MARKER.sub(table, path.read_text(encoding="utf-8")), encoding="utf-8")


def main(root: Path, fill_paths: list[Path]) -> None:
    tables = sections(root)
    if fill_paths:
        for path in fill_paths:
            fill(path, tables)
        return
    for name, lines in tables.items():
        print(f"## {name}\n", *lines, "", sep="\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
