"""``zoo report``: one self-contained HTML page about finished runs.

The page holds the leaderboard of the runs, their training curves, the distribution of
true-match scores against the best wrong candidate's, and, for a seeded sample of test
descriptions, the top-5 molecules each run retrieves from the gallery (RDKit drawings, the true
molecule marked). Everything is inline (SVG pictures, CSS; no script, font or URL is loaded)
and the file is written atomically.
"""

from __future__ import annotations

import html
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from zoo import __version__, runs
from zoo.cache import atomic_write_text
from zoo.data import check_same_data as check
from zoo.devices import resolve_device
from zoo.errors import RunError
from zoo.evals.leaderboard import METRICS, SLOTS, RunRecord, build_leaderboard
from zoo.evals.ranking import Ranks, count_above_and_tied, retrieval_metrics
from zoo.evaluate import CHUNK
from zoo.report_figures import molecule_svg, score_histogram, training_curves
from zoo.runs import RESULTS_FILE, load_run
from zoo.scoring import kind, open_scoring, require_weights
from zoo.tasks import galleries_of, get_task, load_run_data

if TYPE_CHECKING:
    import numpy as np
    import torch

    from zoo.taskdata import Dataset, Pair

TOP_K = 5


@dataclass
class Hit:
    """One retrieved molecule."""

    cid: str
    smiles: str
    score: float
    is_true: bool


@dataclass
class SampleRetrieval:
    """What one run retrieved for one sampled description."""

    rank: float  # expected rank under random tie-breaking
    tied: int  # other molecules scored within the tie tolerance of the true one
    true_score: float
    hits: list[Hit]


@dataclass
class RunRetrieval:
    """One run's retrieval of every test description against the gallery."""

    label: str
    run_dir: Path
    results: dict
    gallery_size: int
    true_scores: "np.ndarray"  # [Q] cosine of each description with its true molecule
    best_other: "np.ndarray"  # [Q] cosine of the best-scoring wrong molecule
    ranks: "Ranks"  # [Q] molecules scored above / tied with the true one
    samples: list[SampleRetrieval]  # one per sampled description, in sample order

    def metrics(self) -> dict[str, float]:
        """Text->molecule metrics of these ranks (the same definitions as the results files)."""
        return retrieval_metrics(self.ranks)


def relative(path: str | Path) -> str:
    """``path`` relative to the current folder (a report names no absolute folders of the machine it was made on)."""
    return os.path.relpath(Path(path).absolute())


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Short unique names: folder names, or the full paths where two folders share a name."""
    names = [d.name for d in run_dirs]
    return [d.name if names.count(d.name) == 1 else relative(d) for d in run_dirs]


def sample_indices(n_test: int, samples: int, seed: int) -> list[int]:
    """``samples`` test indices drawn with ``seed`` (all of them when there are fewer), in file order."""
    return sorted(random.Random(seed).sample(range(n_test), min(samples, n_test)))


def check_same_data(label: str, results: dict, data: "Dataset") -> None:
    """Refuse a run whose results record other data files than the ones loaded for the report."""
    check(*runs.training_data(results), data, f"run {label}", "pass the run's data folder with --data-dir")


def score_rows(score_chunk: Callable[[int, int], "torch.Tensor"], n_queries: int, true_index: "torch.Tensor", k: int,
               chunk_size: int, device: "torch.device"):
    """Chunked ranking of any scores: ``score_chunk(start, stop)`` gives queries ``start:stop``'s scores against
    every candidate (a :class:`~zoo.protocols.ScoreSource`'s). Per query: the true score, the best wrong score,
    where the true candidate ranks (:class:`~zoo.evals.ranking.Ranks`: candidates above it and tied with it)
    and the top-``k`` candidates. Returns numpy arrays and the ranks."""
    import torch

    true_scores, best_other, greater, tied, top_scores, top_index = [], [], [], [], [], []
    for start in range(0, n_queries, chunk_size):
        scores = score_chunk(start, start + chunk_size).to(device=device, dtype=torch.float32)
        true = true_index[start : start + chunk_size].to(device)[:, None]
        true_score = scores.gather(1, true)
        above, ties = count_above_and_tied(scores, true_score)
        greater.append(above)
        tied.append(ties)
        true_scores.append(true_score[:, 0])
        best_other.append(scores.scatter(1, true, float("-inf")).max(1).values)
        top = scores.topk(k, dim=1)
        top_scores.append(top.values)
        top_index.append(top.indices)
    ranks = Ranks(torch.cat(greater).cpu(), torch.cat(tied).cpu())
    arrays = tuple(torch.cat(parts).cpu().numpy() for parts in (true_scores, best_other, top_scores, top_index))
    return (*arrays[:2], ranks, *arrays[2:])


def _retrieval(label, run_dir, results, data, candidates, samples, true_index, true_scores, best_other, ranks, top_scores,
               top_index) -> "RunRetrieval":
    sampled = []
    for q in samples:
        hits = [Hit(data.gallery[candidates[j]].cid, data.gallery[candidates[j]].smiles, float(s), int(j) == int(true_index[q]))
                for j, s in zip(top_index[q], top_scores[q])]
        sampled.append(SampleRetrieval(float(ranks.expected[q]), int(ranks.tied[q]), float(true_scores[q]), hits))
    return RunRetrieval(label, Path(run_dir), results, len(candidates), true_scores, best_other, ranks, sampled)


def retrieve(run_dir: Path, label: str, data: "Dataset", samples: Sequence[int], gallery: str, device: str,
             progress: bool) -> RunRetrieval:
    """Rank every test description against the gallery with ``run_dir``'s scores (:func:`zoo.scoring.open_scoring`:
    its learned similarity, or its fused scores with the recorded weights)."""
    import torch

    source = open_scoring(run_dir, data=data, device=device, progress=progress, log=lambda _m: None)
    mol_index = {m.cid: i for i, m in enumerate(source.molecules)}
    text_index = {p.cid: i for i, p in enumerate(source.descriptions)}
    candidates = list(range(len(source.molecules))) if gallery == "all" else [mol_index[p.cid] for p in data.test]
    if len(candidates) < 2:
        raise RunError(f"gallery {gallery!r} holds {len(candidates)} molecule(s): a report needs at least 2")
    rows = [text_index[p.cid] for p in data.test]
    position = {source.molecules[i].cid: j for j, i in enumerate(candidates)}
    true_index = torch.tensor([position[p.cid] for p in data.test])
    chosen = None if gallery == "all" else candidates
    true_scores, best_other, ranks, top_scores, top_index = score_rows(
        lambda start, stop: torch.from_numpy(source.scores("text_to_molecule", rows[start:stop], chosen)),
        len(rows), true_index, min(TOP_K, len(candidates)), CHUNK, torch.device("cpu"))
    return _retrieval(label, run_dir, load_run(run_dir), data, candidates, samples, true_index, true_scores, best_other,
                      ranks, top_scores, top_index)


def build_report(run_dirs: Sequence[str | Path], out: str | Path = "report.html", *, samples: int = 8,
                 gallery: str = "all", seed: int = 0, data_dir: str | Path | None = None, device: str = "auto",
                 progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Write the HTML report about ``run_dirs`` to ``out`` (atomically) and return its path.

    Every argument is checked before any model is loaded; a bad one raises :class:`RunError`
    and nothing is written.
    """
    out = Path(out)
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise RunError("zoo report needs at least one run folder")
    resolved = [d.resolve() for d in dirs]
    repeated = sorted({str(d) for d, r in zip(dirs, resolved) if resolved.count(r) > 1})
    if repeated:
        raise RunError(f"run folder given more than once: {', '.join(repeated)}")
    task_name = runs.recorded_task(dirs[0])
    task = get_task(task_name)  # the runs' task (a run of another task is refused below)
    if gallery not in galleries_of(task):  # a named gallery (a report draws no inbatch:N blocks)
        raise RunError(f"--gallery {gallery!r}: choose from {', '.join(galleries_of(task))}")
    if samples < 1:
        raise RunError(f"--samples {samples}: need at least 1 sampled description")
    if out.is_dir():
        raise RunError(f"--out {out} is a folder: give the path of the HTML file to write")
    if out.parent.exists() and not out.parent.is_dir():
        raise RunError(f"--out {out}: {out.parent} is a file, not a folder")
    resolve_device(device)
    results = [runs.load_run(d) for d in dirs]  # clear error for a missing or unfinished run, before any work

    for d, result in zip(dirs, results):
        require_weights(d, result, "the report needs the run's best weights")
    labels = run_labels(dirs)
    other = [str(d) for d in dirs if runs.recorded_task(d) != task_name]
    if other:
        raise RunError(f"run {other[0]} is not a {task_name} run like {dirs[0]}: a report compares runs of one task")
    data = load_run_data(results[0], data_dir)  # the task's options and data folder the first run recorded
    for label, result in zip(labels, results):
        check_same_data(label, result, data)
    chosen = sample_indices(len(data.test), samples, seed)
    retrievals = []
    for d, label, result in zip(dirs, labels, results):
        log(f"report: ranking {len(data.test)} test descriptions against gallery {gallery} with {label}"
            + ("" if kind(result) == "run" else " (fused scores)"))
        retrievals.append(retrieve(d, label, data, chosen, gallery, device, progress))
    page = render_report(retrievals, [data.test[i] for i in chosen], data, gallery, seed)
    atomic_write_text(out, page)
    log(f"report: {out} ({len(page) / 1e6:.1f} MB, {len(retrievals)} run(s), {len(chosen)} sampled descriptions)")
    return out


# --- HTML ----------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1280px;
       padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
.meta { color: #666; font-size: .9rem; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; text-align: center; } td.name, th.name { text-align: left; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { margin: 0; }
figcaption { font-size: .8rem; color: #444; }
.sample { border: 1px solid #ddd; border-radius: 6px; padding: .8rem 1rem; margin: 1.2rem 0; }
.sample blockquote { margin: .3rem 0 .8rem; color: #333; font-style: italic; }
.query { display: flex; gap: 1rem; align-items: flex-start; }
.truth { margin: 0; border: 3px solid #2ca02c; border-radius: 6px; padding: .2rem; }
.run-hits h4 { margin: .8rem 0 .3rem; font-weight: 600; }
.hits { display: flex; flex-wrap: wrap; gap: .5rem; }
.hit, .truth { width: 200px; }
.hit { margin: 0; border: 3px solid transparent; border-radius: 6px; padding: .2rem; background: #fafafa; }
.hit.true-match { border-color: #2ca02c; background: #eef8ee; }
.hit .badge { display: block; width: max-content; margin-top: .15rem; }
.badge { display: inline-block; background: #2ca02c; color: #fff; border-radius: 3px; padding: 0 .3rem; font-weight: 600; }
svg.mol { display: block; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _leaderboard_section(retrievals: Sequence[RunRetrieval]) -> str:
    """The runs' leaderboard (:mod:`zoo.evals.leaderboard`: one table per protocol and gallery, seeds averaged)."""
    sources = [str(runs.results_path(r.run_dir)) for r in retrievals]
    labels = dict(zip(sources, (r.label for r in retrievals)))
    board = build_leaderboard([RunRecord.from_results(r.results, s) for r, s in zip(retrievals, sources)], direction="both")
    columns = [(d, m) for d in ("text_to_molecule", "molecule_to_text")
               for m in (METRICS if d == "text_to_molecule" else ("mrr", "hits@1", "hits@10"))]
    spans = {d: sum(1 for c in columns if c[0] == d) for d in ("text_to_molecule", "molecule_to_text")}
    head = ("<tr><th rowspan=2>#</th><th class=name rowspan=2>model</th>"
            "<th class=name rowspan=2>components<br><small>text · molecule · aligner · loss</small></th>"
            "<th class=name rowspan=2>runs</th>"
            f"<th colspan={spans['text_to_molecule']}>text → molecule</th><th colspan={spans['molecule_to_text']}>molecule → text</th></tr>"
            "<tr>" + "".join(f"<th>{_e(METRICS[m][0])}</th>" for _, m in columns) + "</tr>")
    parts = []
    for table in board.tables:
        rows = []
        for row in table.rows:
            cells = [f"<td>{row.rank}</td>", f"<td class=name>{_e(row.label)}</td>",
                     f"<td class=name>{_e(' · '.join(row.components.get(s, '?') for s in SLOTS))}</td>",
                     f"<td class=name>{_e(', '.join(labels.get(s, s) for s in row.sources))}</td>"]
            cells += [f"<td>{_metric_cell(row.metrics.get(d, {}).get(m), METRICS[m][2])}</td>" for d, m in columns]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f"<h3>{_e(table.key.label())}</h3><table class=leaderboard>{head}{''.join(rows)}</table>")
    parts += [f"<p class=meta>{_e(w)}</p>" for w in board.warnings]
    return "\n".join(parts)


def _metric_cell(summary, percent: bool) -> str:
    """``mean`` (``± std`` over seeds), in percent for hits and MRR."""
    if summary is None:
        return "–"
    scale = 100.0 if percent else 1.0
    std = f" ± {summary.std * scale:.1f}" if summary.std is not None else ""
    return f"{summary.mean * scale:.1f}{std}"


def _curves_section(retrievals: Sequence[RunRetrieval]) -> str:
    histories = {r.label: r.results.get("training", {}).get("history", []) for r in retrievals}
    figures = training_curves(histories)
    if not figures:
        return "<p>No training history is recorded in these runs.</p>"
    return "<div class=figures>" + "".join(f"<figure class=curve data-metric=\"{_e(m)}\">{svg}</figure>" for m, svg in figures) + "</div>"


def _scores_section(retrievals: Sequence[RunRetrieval], gallery: str) -> str:
    parts = []
    for r in retrievals:
        m = r.metrics()
        caption = (f"{_e(r.label)}: {len(r.ranks):,} test descriptions against {r.gallery_size:,} molecules; the true molecule "
                   f"scores highest for {100 * m['hits@1']:.1f}% of them (Hits@1), MRR {100 * m['mrr']:.1f}, "
                   f"median rank {m['median_rank']:.0f}; {int(m['queries_with_ties']):,} descriptions tie at the true "
                   f"molecule (metrics are expectations over random tie-breaks).")
        svg = score_histogram(r.true_scores, r.best_other, f"{r.label} (gallery {gallery})")
        parts.append(f"<figure class=scores>{svg}<figcaption>{caption}</figcaption></figure>")
    return "<div class=figures>" + "".join(parts) + "</div>"


def _hit_figure(hit: Hit, position: int) -> str:
    mark = " <span class=badge>✓ true molecule</span>" if hit.is_true else ""
    cls = "hit true-match" if hit.is_true else "hit"
    return (f"<figure class=\"{cls}\" data-cid=\"{_e(hit.cid)}\">{molecule_svg(hit.smiles)}"
            f"<figcaption><b>#{position}</b> · score {hit.score:.3f}<br>CID {_e(hit.cid)}{mark}</figcaption></figure>")


def _rank_text(rank: float, grouping: bool = True) -> str:
    """An expected rank: whole numbers without a fraction, half ranks (ties) with one digit."""
    text = f"{rank:,.1f}" if grouping else f"{rank:.1f}"
    return text.removesuffix(".0")


def _sample_block(index: int, pair: "Pair", retrievals: Sequence[RunRetrieval], gallery: str) -> str:
    rows = []
    for r in retrievals:
        got = r.samples[index]
        verdict = "found at #1" if got.rank == 1 else f"true molecule at rank {_rank_text(got.rank)}"
        if got.tied:
            verdict += f" (expected: tied with {got.tied:,} other molecule{'s' if got.tied > 1 else ''})"
        hits = "".join(_hit_figure(h, i) for i, h in enumerate(got.hits, start=1))
        rows.append(f"<div class=run-hits data-run=\"{_e(r.label)}\" data-rank=\"{_rank_text(got.rank, grouping=False)}\"><h4>{_e(r.label)}: {verdict} of {r.gallery_size:,} "
                    f"(true score {got.true_score:.3f})</h4><div class=hits>{hits}</div></div>")
    truth = (f"<figure class=truth>{molecule_svg(pair.smiles)}<figcaption><span class=badge>true molecule</span><br>"
             f"CID {_e(pair.cid)}</figcaption></figure>")
    return (f"<section class=sample id=\"sample-{_e(pair.cid)}\"><h3>Test description {index + 1} (CID {_e(pair.cid)})</h3>"
            f"<div class=query>{truth}<blockquote>{_e(pair.description)}</blockquote></div>"
            f"<p class=meta>Top {TOP_K} of gallery <code>{_e(gallery)}</code> per run; <code>{_e(pair.smiles)}</code></p>"
            f"{''.join(rows)}</section>")


def render_report(retrievals: Sequence[RunRetrieval], sampled: Sequence["Pair"], data: "Dataset", gallery: str,
                  seed: int) -> str:
    """The complete HTML page."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = ", ".join(f"<code>{_e(relative(r.run_dir))}</code>" for r in retrievals)
    samples = "".join(_sample_block(i, pair, retrievals, gallery) for i, pair in enumerate(sampled))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>molzoo report: {_e(', '.join(r.label for r in retrievals))}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>molzoo report</h1>
<p class=meta>Runs: {runs}.<br>Data: <code>{_e(relative(data.data_dir))}</code> ({_e(data.protocol)} protocol; {len(data.test):,} test
descriptions; gallery <code>{_e(gallery)}</code>). Generated {_e(now)} by molzoo {_e(__version__)}.</p>
<h2 id=leaderboard>Leaderboard</h2>
<p class=meta>Test scores recorded in each run's <code>{RESULTS_FILE}</code> (Hits and MRR in percent; mean ± std over seeds when a configuration ran with several).</p>
{_leaderboard_section(retrievals)}
<h2 id=curves>Training curves</h2>
{_curves_section(retrievals)}
<h2 id=scores>Score distribution</h2>
<p class=meta>For every test description: cosine similarity to its true molecule and to the best-scoring other molecule of the gallery (for a run with scorers or an ensemble: its fused score, a weighted sum of per-query z-scores).</p>
{_scores_section(retrievals, gallery)}
<h2 id=samples>Retrieved molecules</h2>
<p class=meta>{len(sampled)} test descriptions sampled with seed {seed}; the true molecule is framed in green.</p>
{samples}
</body>
</html>
"""
