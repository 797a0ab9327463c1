"""The `best` and `best`-ablation tables of docs/results.md, from the committed results files: python results/tables.py results"""
import json, statistics as st, sys
from pathlib import Path
root = Path(sys.argv[1])
def t2m(p, k="mrr", g="all", d="text_to_molecule"): return json.loads(Path(p).read_text())["scores"][g][d][k]
best = {json.loads(p.read_text())["spec"]["train"]["seed"]: p for p in sorted((root / "board").glob("names_ensemble-*/results.json"))}
def ms(v, f=".3f"): return f"{st.mean(v):{f}} ± {st.stdev(v):{f}}" if len(v) > 1 else f"{v[0]:{f}}"
print("| seed | held-out MRR (fits the weights) | fitted weights (tfidf_fp : tfidf_chem : aman : structure_match) | test MRR | Hits@1 | Hits@10 | ties | molecule→text MRR |")
print("|---:|---:|---|---:|---:|---:|---:|---:|")
for s, p in sorted(best.items()):
    r = json.loads(p.read_text()); f = r["fusion"]
    print(f"| {s} | {f['heldout_mrr']:.3f} | {' : '.join(format(m['weight'], 'g') for m in f['members'])} | {t2m(p):.3f} | {100*t2m(p,'hits@1'):.1f} % | {100*t2m(p,'hits@10'):.1f} % | {int(t2m(p,'queries_with_ties'))} | {t2m(p,d='molecule_to_text'):.3f} |")
v = [t2m(p) for p in best.values()]
print(f"| **mean ± std** | | | **{ms(v)}** | {ms([100*t2m(p,'hits@1') for p in best.values()], '.1f')} % | {ms([100*t2m(p,'hits@10') for p in best.values()], '.1f')} % | | {ms([t2m(p,d='molecule_to_text') for p in best.values()])} |")
print()
print("| variant | seeds | test MRR | Δ vs `best` |")
print("|---|---|---:|---:|")
print(f"| `best` (all four) | {', '.join(map(str, sorted(best)))} | {ms(v)} | – |")
for name, label in [("no_aman", "− `aman`"), ("no_sm", "− the `structure_match` scorer"), ("no_chem", "− `tfidf_chem`"), ("no_fp", "− `tfidf_fp`")]:
    vals, deltas, seeds = [], [], []
    for s, p in sorted(best.items()):
        q = root / "best-ablation" / f"{name}-s{s}" / "results.json"
        if q.exists():
            vals.append(t2m(q)); deltas.append(t2m(q) - t2m(p)); seeds.append(s)
    print(f"| {label} | {', '.join(map(str, seeds))} | {ms(vals)} | {ms(deltas).replace('-', '−')} |")
