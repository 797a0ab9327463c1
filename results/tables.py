"""The `best` and ablation tables of docs/results.md, from the committed results files.

    python results/tables.py results
"""

from __future__ import annotations

import sys
from pathlib import Path

from zoo.evals.leaderboard import summarize
from zoo.evals.results import read_results

BEST = "chem_ensemble"
#: the earlier `best`, names_ensemble, was ablated with the previous `aman` (SciBERT alone in its text slot): its runs
PREVIOUS_NAMES_ENSEMBLE = ("board/names_ensemble-6a4aadd3dba9-s0", "board/names_ensemble-6334bcbc2945-s1",
                           "board/names_ensemble-5b575e52348a-s2")
#: per ablated ensemble: the reference runs' folder pattern under ROOT ({s}: the seed; {shipped}: the folder of the
#: composition exactly as shipped at that seed), then each row's label and per-seed folder pattern
ABLATIONS = {
    BEST: ("board/{shipped}",
           (("− `aman`", "chem-ablation/no_aman-s{s}"),
            ("− the `relation_match` scorer (= `names_ensemble`)", "board/{shipped:names_ensemble}"),
            ("− the `structure_match` scorer", "chem-ablation/no_sm-s{s}"), ("− `tfidf_chem`", "chem-ablation/no_chem-s{s}"),
            ("− `tfidf_fp`", "chem-ablation/no_fp-s{s}"))),
    "names_ensemble": ("{previous_names_ensemble}",
                       (("− `aman`", "best-ablation/no_aman-s{s}"), ("− the `structure_match` scorer", "best-ablation/no_sm-s{s}"),
                        ("− `tfidf_chem`", "best-ablation/no_chem-s{s}"), ("− `tfidf_fp`", "best-ablation/no_fp-s{s}"))),
}


def folder(pattern: str, name: str, seed: int) -> str:
    """``pattern`` at ``seed``: ``{s}``, ``{shipped}`` (``name`` as shipped), ``{shipped:OTHER}``, ``{previous_names_ensemble}``."""
    from zoo.runs import run_folder_name
    from zoo.spec import shipped_spec_hash

    def shipped(composition: str) -> str:
        return run_folder_name(composition, shipped_spec_hash(composition, seed), seed)

    if pattern.startswith("board/{shipped"):
        return "board/" + shipped(pattern[len("board/{shipped"):-1].lstrip(":") or name)
    if pattern == "{previous_names_ensemble}":
        return PREVIOUS_NAMES_ENSEMBLE[seed]
    return pattern.format(s=seed)


def runs_at(root: Path, pattern: str, name: str, seeds=range(3)) -> dict[int, dict]:
    """The results files under ROOT matching ``pattern`` (see :func:`folder`), by seed."""
    return {s: read_results(ps[0]) for s in seeds if (ps := sorted(root.glob(folder(pattern, name, s) + "/results.json")))}


def t2m(results: dict, metric: str = "mrr", direction: str = "text_to_molecule") -> float:
    return results["scores"]["all"][direction][metric]


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
    rows = [f"| variant | seeds | test MRR | Δ vs `{name}` |", "|---|---|---:|---:|",
            f"| `{name}` (all) | {', '.join(map(str, best))} | {cell([t2m(r) for r in best.values()])} | – |"]
    for label, pattern in ABLATIONS[name][1]:
        found = runs_at(root, pattern, name, best)
        if not found:
            continue
        deltas = [t2m(found[s]) - t2m(best[s]) for s in found]
        rows.append(f"| {label} | {', '.join(map(str, found))} | {cell([t2m(r) for r in found.values()])} "
                    f"| {cell(deltas).replace('-', '−')} |")
    return rows


#: screens of `aman` tuned within its slots (docs/results.md): label and per-seed folder pattern under ROOT
AMAN_SCREENS = (
    ("the previous `aman`: SciBERT alone in the text slot", "board/aman-{previous}-s{s}"),
    ("text slot + a char 3–5-gram TF-IDF part", "aman-screens/aman_tfidf-s{s}"),
    ("the same, `aligner.weight=0.01`", "aman-screens/aman_tfidf_w001-s{s}"),
    ("text slot + TF-IDF + `chem_names` parts", "aman-screens/aman_tfidf_names-s{s}"),
    ("**`aman` as shipped** (the same spec, named `aman`)", "board/{shipped}"),
)


def aman_screens_table(root: Path) -> list[str]:
    """The previous `aman`, each screen and `aman` as shipped (its board runs), test text→molecule, gallery `all`."""
    from zoo.spec import CompositionSpec

    previous = CompositionSpec.from_toml(root / "aman-screens" / "aman_scibert_only.toml")
    rows = ["| variant | seeds | test MRR | Hits@1 | Hits@10 | molecule→text MRR |", "|---|---|---:|---:|---:|---:|"]
    for label, pattern in AMAN_SCREENS:
        found = {s: r for s in range(3)
                 if (r := runs_at(root, pattern.replace("{previous}", previous.with_overrides([f"train.seed={s}"]).resolve().hash()),
                                  "aman", [s]).get(s))}
        if not found:
            continue
        runs = list(found.values())
        rows.append(f"| {label} | {', '.join(map(str, found))} | {cell([t2m(r) for r in runs])} "
                    f"| {cell([100 * t2m(r, 'hits@1') for r in runs], '.1f')} % | {cell([100 * t2m(r, 'hits@10') for r in runs], '.1f')} % "
                    f"| {cell([t2m(r, direction='molecule_to_text') for r in runs])} |")
    return rows


def main(root: Path) -> None:
    print("## aman screens\n", *aman_screens_table(root), "", sep="\n")
    for name, (reference, _) in ABLATIONS.items():
        runs = runs_at(root, reference, name)
        if runs:
            print(f"## {name}\n", *best_table(runs), "", *ablation_table(name, runs, root), "", sep="\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
