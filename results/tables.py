"""The `best` and `best`-ablation tables of docs/results.md, from the committed results files.

    python results/tables.py results
"""

from __future__ import annotations

import sys
from pathlib import Path

from zoo.evals.leaderboard import summarize
from zoo.evals.results import read_results

#: ablation variants: folder prefix under ROOT/best-ablation, and the row label
VARIANTS = (("no_aman", "− `aman`"), ("no_sm", "− the `structure_match` scorer"), ("no_chem", "− `tfidf_chem`"),
            ("no_fp", "− `tfidf_fp`"))


def t2m(results: dict, metric: str = "mrr", direction: str = "text_to_molecule") -> float:
    return results["scores"]["all"][direction][metric]


def cell(values: list[float], fmt: str = ".3f") -> str:
    s = summarize(values)
    return f"{s.mean:{fmt}}" if s.std is None else f"{s.mean:{fmt}} ± {s.std:{fmt}}"


def best_table(best: dict[int, dict]) -> list[str]:
    rows = ["| seed | held-out MRR (fits the weights) | fitted weights (tfidf_fp : tfidf_chem : aman : structure_match) "
            "| test MRR | Hits@1 | Hits@10 | ties | molecule→text MRR |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for seed, r in best.items():
        weights = " : ".join(format(m["weight"], "g") for m in r["fusion"]["members"])
        rows.append(f"| {seed} | {r['fusion']['heldout_mrr']:.3f} | {weights} | {t2m(r):.3f} | {100 * t2m(r, 'hits@1'):.1f} % "
                    f"| {100 * t2m(r, 'hits@10'):.1f} % | {int(t2m(r, 'queries_with_ties'))} | {t2m(r, direction='molecule_to_text'):.3f} |")
    runs = list(best.values())
    rows.append(f"| **mean ± std** | | | **{cell([t2m(r) for r in runs])}** | {cell([100 * t2m(r, 'hits@1') for r in runs], '.1f')} % "
                f"| {cell([100 * t2m(r, 'hits@10') for r in runs], '.1f')} % | | {cell([t2m(r, direction='molecule_to_text') for r in runs])} |")
    return rows


def ablation_table(best: dict[int, dict], root: Path) -> list[str]:
    rows = ["| variant | seeds | test MRR | Δ vs `best` |", "|---|---|---:|---:|",
            f"| `best` (all four) | {', '.join(map(str, best))} | {cell([t2m(r) for r in best.values()])} | – |"]
    for name, label in VARIANTS:
        found = {s: read_results(p) for s in best if (p := root / "best-ablation" / f"{name}-s{s}" / "results.json").exists()}
        deltas = [t2m(found[s]) - t2m(best[s]) for s in found]
        rows.append(f"| {label} | {', '.join(map(str, found))} | {cell([t2m(r) for r in found.values()])} "
                    f"| {cell(deltas).replace('-', '−')} |")
    return rows


def main(root: Path) -> None:
    runs = [read_results(p) for p in sorted((root / "board").glob("names_ensemble-*/results.json"))]
    best = dict(sorted((r["spec"]["train"]["seed"], r) for r in runs))
    print("\n".join([*best_table(best), "", *ablation_table(best, root)]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
