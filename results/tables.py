"""The `best` and ablation tables of docs/results.md, from the committed results files.

    python results/tables.py results
"""

from __future__ import annotations

import sys
from pathlib import Path

from zoo.evals.leaderboard import summarize
from zoo.evals.results import read_results

BEST = "chem_ensemble"
#: per ablated ensemble: its rows' label and per-seed folder patterns under ROOT ({s}: the seed), one row each
ABLATIONS = {
    BEST: (("− `aman`", "chem-ablation/no_aman-s{s}"), ("− the `relation_match` scorer (= `names_ensemble`)", "board/names_ensemble-*-s{s}"),
           ("− the `structure_match` scorer", "chem-ablation/no_sm-s{s}"), ("− `tfidf_chem`", "chem-ablation/no_chem-s{s}"),
           ("− `tfidf_fp`", "chem-ablation/no_fp-s{s}")),
    "names_ensemble": (("− `aman`", "best-ablation/no_aman-s{s}"), ("− the `structure_match` scorer", "best-ablation/no_sm-s{s}"),
                       ("− `tfidf_chem`", "best-ablation/no_chem-s{s}"), ("− `tfidf_fp`", "best-ablation/no_fp-s{s}")),
}


def t2m(results: dict, metric: str = "mrr", direction: str = "text_to_molecule") -> float:
    return results["scores"]["all"][direction][metric]


def cell(values: list[float], fmt: str = ".3f") -> str:
    s = summarize(values)
    return f"{s.mean:{fmt}}" if s.std is None else f"{s.mean:{fmt}} ± {s.std:{fmt}}"


def seeds_of(root: Path, name: str) -> dict[int, dict]:
    """The board's runs of ensemble composition ``name``, by seed."""
    runs = [read_results(p) for p in sorted((root / "board").glob(f"{name}-*/results.json"))]
    return dict(sorted((r["spec"]["train"]["seed"], r) for r in runs))


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
    rows = [f"| variant | seeds | test MRR | Δ vs `{name}` |", "|---|---|---:|---:|",
            f"| `{name}` (all) | {', '.join(map(str, best))} | {cell([t2m(r) for r in best.values()])} | – |"]
    for label, pattern in ABLATIONS[name]:
        found = {s: read_results(ps[0]) for s in best if (ps := sorted(root.glob(pattern.format(s=s) + "/results.json")))}
        if not found:
            continue
        deltas = [t2m(found[s]) - t2m(best[s]) for s in found]
        rows.append(f"| {label} | {', '.join(map(str, found))} | {cell([t2m(r) for r in found.values()])} "
                    f"| {cell(deltas).replace('-', '−')} |")
    return rows


#: screens of `aman` tuned within its slots (docs/results.md): label and per-seed folder pattern under ROOT
AMAN_SCREENS = (
    ("text slot + a char 3–5-gram TF-IDF part", "aman-screens/aman_tfidf-s{s}"),
    ("the same, `aligner.weight=0.01`", "aman-screens/aman_tfidf_w001-s{s}"),
    ("text slot + TF-IDF + `chem_names` parts", "aman-screens/aman_tfidf_names-s{s}"),
    ("the same spec named `aman` (the candidate `aman`)", "aman-screens/aman_next-s{s}"),
)


def aman_screens_table(root: Path) -> list[str]:
    """`aman` as shipped (its board runs) against each screen, test text→molecule, gallery `all`."""
    from zoo.runs import run_folder_name
    from zoo.spec import shipped_spec_hash

    rows = ["| variant | seeds | test MRR | Hits@1 | Hits@10 | molecule→text MRR |", "|---|---|---:|---:|---:|---:|"]
    shipped = {s: ps[0] for s in range(3) if (ps := sorted(root.glob(f"board/{run_folder_name('aman', shipped_spec_hash('aman', s), s)}/results.json")))}
    for label, paths in (("`aman` as shipped", shipped),
                         *((label, {s: ps[0] for s in range(3) if (ps := sorted(root.glob(pattern.format(s=s) + "/results.json")))})
                           for label, pattern in AMAN_SCREENS)):
        if not paths:
            continue
        runs = [read_results(p) for p in paths.values()]
        rows.append(f"| {label} | {', '.join(map(str, paths))} | {cell([t2m(r) for r in runs])} "
                    f"| {cell([100 * t2m(r, 'hits@1') for r in runs], '.1f')} % | {cell([100 * t2m(r, 'hits@10') for r in runs], '.1f')} % "
                    f"| {cell([t2m(r, direction='molecule_to_text') for r in runs])} |")
    return rows


def main(root: Path) -> None:
    print("## aman screens\n", *aman_screens_table(root), "", sep="\n")
    for name in ABLATIONS:
        runs = seeds_of(root, name)
        if not runs:
            continue
        print(f"## {name}\n", *best_table(runs), "", *ablation_table(name, runs, root), "", sep="\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
