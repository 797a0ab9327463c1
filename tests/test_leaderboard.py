"""zoo leaderboard: aggregation over seeds, protocol separation, filters, sorting, output formats, errors."""

from __future__ import annotations

import copy
import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.evals.leaderboard import (
    LeaderboardError,
    RunRecord,
    build_leaderboard,
    load_runs,
    plot_leaderboard,
    render,
    seedless_spec_hash,
)
from zoo.evals.results import build_results, write_results

SPEC = {
    "name": "aman", "description": "d", "embed_dim": 64,
    "text_encoder": {"name": "minilm", "pooling": "mean"},
    "molecule_encoder": {"name": "graph_transformer", "layers": 2},
    "aligner": {"name": "adversarial", "weight": 0.1},
    "loss": {"name": "triplet", "margin": 0.2},
    "train": {"epochs": 5, "seed": 0},
    "eval": {"task": "chebi20", "galleries": ["all", "test"]},
}


def _scores(mrr: float, h1: float = 0.1, mean_rank: float = 50.0) -> dict:
    metrics = {"hits@1": h1, "hits@10": min(1.0, h1 * 3), "mrr": mrr, "mean_rank": mean_rank,
               "median_rank": mean_rank / 2, "n_queries": 100.0}
    return {"text_to_molecule": metrics, "molecule_to_text": {**metrics, "mrr": mrr / 2}}


def make_results(*, seed: int = 0, mrr: float = 0.2, name: str = "aman", protocol: str = "offline-low-data",
                 data: str = "v1", galleries=("all", "test"), loss: str = "triplet", margin: float = 0.2,
                 created: str | None = None, ties: str | None = "expected", training: dict | None = None,
                 substitutions: list | None = None, **scores_kw) -> dict:
    spec = copy.deepcopy(SPEC)
    spec["name"] = name
    spec["train"]["seed"] = seed
    spec["loss"] = {"name": loss, "margin": margin} if loss == "triplet" else {"name": loss, "temperature": 0.07}
    components = [{"slot": s, "name": spec[s]["name"], "plugin": "p", "version": "0"}
                  for s in ("text_encoder", "molecule_encoder", "aligner", "loss")]
    results = build_results(
        spec=spec, spec_hash=f"h{seed}", components=components,
        task={"name": "chebi20", "protocol": protocol, "split": "test", "data_checksums": {"test.txt": data},
              **({"tie_policy": ties} if ties else {})},
        scores={g: _scores(mrr if g == "all" else mrr + 0.3, **scores_kw) for g in galleries},
        timings={}, seeds={"seed": seed, "holdout_seed": 0},
        extra={**({"training": training} if training else {}), **({"substitutions": substitutions} if substitutions else {})},
    )
    if created:
        results["created_at"] = created
    return results


def write(root: Path, rel: str, results: dict) -> Path:
    path = root / rel / "results.json"
    write_results(path, results)
    return path


def records(*results: dict) -> list[RunRecord]:
    return [RunRecord.from_results(r, f"r{i}.json") for i, r in enumerate(results)]


def test_seeds_aggregate_into_one_row_with_mean_and_sample_std():
    mrrs = [0.20, 0.24, 0.25]
    board = build_leaderboard(records(*(make_results(seed=s, mrr=m) for s, m in enumerate(mrrs))), gallery="all")
    (table,) = board.tables
    (row,) = table.rows
    summary = row.metrics["text_to_molecule"]["mrr"]
    assert row.n_seeds == 3 and row.seeds == (0, 1, 2)
    assert summary.mean == pytest.approx(statistics.mean(mrrs))
    assert summary.std == pytest.approx(statistics.stdev(mrrs))
    assert row.components == {"text_encoder": "minilm", "molecule_encoder": "graph_transformer",
                              "aligner": "adversarial", "loss": "triplet"}


def test_seedless_hash_ignores_seed_name_and_description_only():
    a, b = copy.deepcopy(SPEC), copy.deepcopy(SPEC)
    b["train"]["seed"], b["name"], b["description"] = 7, "other", "x"
    assert seedless_spec_hash(a) == seedless_spec_hash(b)
    b["train"]["epochs"] = 6
    assert seedless_spec_hash(a) != seedless_spec_hash(b)


def test_protocols_galleries_and_data_are_never_mixed():
    runs = records(make_results(seed=0), make_results(seed=1), make_results(seed=0, protocol="canonical"),
                   make_results(seed=0, data="v2"))
    board = build_leaderboard(runs)
    labels = [t.key.label() for t in board.tables]
    assert len(labels) == len(set(labels)) == 6  # 3 protocol/data groups x 2 galleries
    for table in board.tables:
        assert len(table.rows) == 1
    n_seeds = {(t.key.protocol, t.key.gallery, t.key.data): t.rows[0].n_seeds for t in board.tables}
    assert sorted(n_seeds.values()) == [1, 1, 1, 1, 2, 2]  # only the two v1 offline runs share rows
    assert {k[0] for k, n in n_seeds.items() if n == 2} == {"offline-low-data"}


def test_rows_sorted_best_first_and_varying_options_shown():
    runs = records(make_results(mrr=0.1, margin=0.1), make_results(mrr=0.3, margin=0.3), make_results(mrr=0.2, margin=0.2))
    (table,) = build_leaderboard(runs, gallery="all").tables
    assert [r.varies["loss.margin"] for r in table.rows] == [0.3, 0.2, 0.1]
    assert [r.rank for r in table.rows] == [1, 2, 3]
    (table,) = build_leaderboard(runs, gallery="all", sort="mean_rank").tables  # lower is better; ties by label
    assert [r.rank for r in table.rows] == [1, 2, 3]
    runs = records(make_results(mrr=0.3, mean_rank=90.0), make_results(mrr=0.1, mean_rank=10.0, margin=0.5))
    (table,) = build_leaderboard(runs, gallery="all", sort="mean-rank").tables
    assert table.rows[0].metrics["text_to_molecule"]["mean_rank"].mean == 10.0


def test_filters_and_composition_pattern():
    runs = records(make_results(name="text2mol_gcn"), make_results(name="aman", loss="infonce"),
                   make_results(name="aman", margin=0.5))
    assert [r.composition for t in build_leaderboard(runs, composition="text2mol*").tables for r in t.rows] == ["text2mol_gcn"] * 2
    only = build_leaderboard(runs, gallery="all", filters=["loss=infonce"]).tables[0].rows
    assert [r.components["loss"] for r in only] == ["infonce"]
    margin = build_leaderboard(runs, gallery="all", filters=["loss.margin=0.5"]).tables[0].rows
    assert len(margin) == 1 and margin[0].spec["loss"]["margin"] == 0.5
    excluded = build_leaderboard(runs, gallery="all", filters=["loss!=infonce"]).tables[0].rows
    assert {r.components["loss"] for r in excluded} == {"triplet"}
    with pytest.raises(LeaderboardError, match="Did you mean: loss"):
        build_leaderboard(runs, filters=["los=infonce"])
    with pytest.raises(LeaderboardError, match="no results match"):
        build_leaderboard(runs, filters=["loss=contrastive"])


def test_unknown_metric_direction_gallery_have_close_matches():
    runs = records(make_results())
    with pytest.raises(LeaderboardError, match="Did you mean.*mrr"):
        build_leaderboard(runs, sort="mmr")
    with pytest.raises(LeaderboardError, match="text_to_molecule"):
        build_leaderboard(runs, direction="text_to_mol")
    with pytest.raises(LeaderboardError, match="Galleries in these results: all, test"):
        build_leaderboard(runs, gallery="al")


def test_duplicate_seed_keeps_the_newest_with_a_warning():
    runs = records(make_results(mrr=0.1, created="2026-01-01T00:00:00+00:00"),
                   make_results(mrr=0.4, created="2026-02-01T00:00:00+00:00"))
    board = build_leaderboard(runs, gallery="all")
    row = board.tables[0].rows[0]
    assert row.n_seeds == 1 and row.metrics["text_to_molecule"]["mrr"].mean == 0.4
    assert any("same configuration and seed" in w for w in board.warnings)


@pytest.mark.parametrize("older, newer", [
    # (older, newer) instants whose strings sort the other way
    ("2026-01-01T12:00:00+05:00", "2026-01-01T08:00:00+00:00"),  # 07:00 UTC vs 08:00 UTC
    ("2026-01-01T09:30:00Z", "2026-01-01T09:00:00-01:00"),  # 09:30 UTC vs 10:00 UTC
    ("2026-01-02T00:30:00+02:00", "2026-01-01T23:00:00+00:00"),  # 22:30 UTC on the 1st vs 23:00
])
def test_duplicate_seed_compares_created_at_as_instants(older, newer):
    for order in ((older, newer), (newer, older)):
        runs = records(*(make_results(mrr=0.4 if c == newer else 0.1, created=c) for c in order))
        board = build_leaderboard(runs, gallery="all")
        assert board.tables[0].rows[0].metrics["text_to_molecule"]["mrr"].mean == 0.4, order


def test_unparseable_created_at_counts_as_older_with_a_warning():
    for order in (("yesterday", "2026-01-01T00:00:00+00:00"), ("2026-01-01T00:00:00+00:00", "yesterday")):
        runs = records(*(make_results(mrr=0.1 if c == "yesterday" else 0.4, created=c) for c in order))
        board = build_leaderboard(runs, gallery="all")
        assert board.tables[0].rows[0].metrics["text_to_molecule"]["mrr"].mean == 0.4, order
        assert any("created_at 'yesterday' is not an ISO 8601 time" in w for w in board.warnings)


def test_markdown_csv_json_outputs():
    runs = records(make_results(seed=0, mrr=0.2), make_results(seed=1, mrr=0.3), make_results(loss="infonce", mrr=0.5))
    board = build_leaderboard(runs, gallery="all", direction="both")
    md = render(board)
    assert "### chebi20 | offline-low-data | split=test | gallery=all" in md
    assert "t→m MRR (%)" in md and "m→t MRR (%)" in md
    assert "25.0 ± 7.1" in md  # mean 0.25, sample std 0.0707 over seeds, in percent
    lines = [line for line in md.splitlines() if line.startswith("| 1 ")]
    assert "infonce" in lines[0]
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    assert len(rows) == 2 and rows[0]["loss"] == "infonce"
    assert float(rows[1]["text_to_molecule.mrr.mean"]) == pytest.approx(0.25)
    assert rows[1]["seeds"] == "0;1" and rows[1]["n_seeds"] == "2"
    data = json.loads(render(board, "json"))
    assert data["tables"][0]["rows"][1]["metrics"]["text_to_molecule"]["mrr"]["values"] == [0.2, 0.3]
    assert data["tables"][0]["protocol"]["gallery"] == "all"
    with pytest.raises(LeaderboardError, match="unknown format"):
        render(board, "xlsx")


def test_plot_writes_a_png(tmp_path):
    runs = records(make_results(seed=0, mrr=0.2), make_results(seed=1, mrr=0.3), make_results(loss="infonce"))
    path = plot_leaderboard(build_leaderboard(runs), tmp_path / "board.png", metric="hits@1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_runs_scans_folders_and_skips_corrupt_files_with_a_warning(tmp_path):
    write(tmp_path, "a-s0", make_results(seed=0))
    write(tmp_path, "nested/a-s1", make_results(seed=1))
    (tmp_path / "a-s0" / "eval-test.json").write_text(json.dumps(make_results(seed=5)))  # not picked up
    bad = tmp_path / "broken" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    runs, warnings = load_runs([tmp_path])
    assert sorted(r.seed for r in runs) == [0, 1]
    assert len(warnings) == 1 and str(bad) in warnings[0]
    with pytest.raises(LeaderboardError, match="broken"):
        load_runs([tmp_path], strict=True)
    with pytest.raises(LeaderboardError, match=str(bad)):
        load_runs([bad])  # named explicitly: an error
    with pytest.raises(LeaderboardError, match="no results.json found"):
        load_runs([_empty(tmp_path)])
    with pytest.raises(LeaderboardError, match="no such file or folder"):
        load_runs([tmp_path / "missing"])


def _empty(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def test_results_missing_scores_are_rejected_with_the_file_name(tmp_path):
    results = make_results()
    results["scores"] = {"all": {"text_to_molecule": {"mrr": "high"}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    with pytest.raises(LeaderboardError, match=r"r\.json.*metric names to numbers"):
        load_runs([path])


def test_cli_leaderboard_writes_out_file_and_plot(tmp_path, capsys):
    write(tmp_path, "runs/a-s0", make_results(seed=0, mrr=0.2))
    write(tmp_path, "runs/a-s1", make_results(seed=1, mrr=0.4))
    out, png = tmp_path / "board.csv", tmp_path / "board.png"
    assert main(["leaderboard", str(tmp_path / "runs"), "--format", "csv", "--out", str(out), "--plot", str(png),
                 "--gallery", "test", "--metric", "mrr"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and float(rows[0]["text_to_molecule.mrr.mean"]) == pytest.approx(0.6)
    assert png.stat().st_size > 1000
    assert main(["leaderboard", str(tmp_path / "runs"), "--sort", "hits@100"]) == 2
    assert "unknown metric 'hits@100'" in capsys.readouterr().err


def test_real_tiny_run_is_listed(tiny_run, capsys):
    _, run_dir, results = tiny_run
    assert main(["leaderboard", str(run_dir), "--gallery", "test"]) == 0
    out = capsys.readouterr().out
    mrr = results["scores"]["test"]["text_to_molecule"]["mrr"]
    assert f"{mrr * 100:.1f}" in out and "graph_transformer" in out


@pytest.mark.parametrize("old_rule", [None, "optimistic: rank = 1 + number of candidates scored strictly higher"])
def test_results_of_the_old_tie_rule_are_shown_apart_and_never_ranked_with_new_ones(old_rule):
    runs = records(make_results(seed=0, mrr=0.30, ties=old_rule), make_results(seed=0, mrr=0.20, loss="infonce"))
    board = build_leaderboard(runs, gallery="all")
    assert [len(t.rows) for t in board.tables] == [1, 1]
    new, old = board.tables
    assert new.key.ties == "expected" and new.rows[0].components["loss"] == "infonce"
    assert old.key.ties != "expected" and "NOT comparable" in old.key.label()
    assert "NOT comparable" in render(board)


def test_runs_of_one_spec_that_behaved_differently_are_separate_rows():
    frozen = make_results(seed=0, mrr=0.2, training={"text_mode": "frozen", "stop_reason": "completed all epochs"})
    tuned = make_results(seed=1, mrr=0.4, training={"text_mode": "finetune", "stop_reason": "completed all epochs"})
    substituted = make_results(seed=2, mrr=0.3, training={"text_mode": "frozen"},
                               substitutions=[{"requested": "scibert", "used": "minilm", "reason": "offline"}])
    (table,) = build_leaderboard(records(frozen, tuned, substituted), gallery="all").tables
    assert len(table.rows) == 3
    labels = sorted(row.label for row in table.rows)
    assert any("ran.text_mode=finetune" in label for label in labels)
    assert any("minilm for scibert" in label for label in labels)


def test_a_row_cut_by_its_time_budget_is_marked_capped():
    capped = make_results(seed=0, training={"stop_reason": "time budget: train.max_minutes=18.0 reached"})
    done = make_results(seed=1, training={"stop_reason": "early stop: no held-out MRR gain for 10 epochs"})
    (table,) = build_leaderboard(records(capped, done), gallery="all").tables
    assert table.rows[0].capped and "(capped)" in render(build_leaderboard(records(capped, done), gallery="all"))
    (table,) = build_leaderboard(records(done), gallery="all").tables
    assert not table.rows[0].capped


def test_ties_column_comes_from_the_results_files():
    runs = records(*(make_results(seed=s) for s in range(2)))
    for run, ties in zip(runs, (12.0, 14.0)):
        run.results["scores"]["all"]["text_to_molecule"]["queries_with_ties"] = ties
    (table,) = build_leaderboard(runs, gallery="all").tables
    assert table.rows[0].metrics["text_to_molecule"]["queries_with_ties"].mean == 13.0
    assert "| ties |" in render(build_leaderboard(runs, gallery="all")).replace(" ties ", " ties ")


def test_shipped_keeps_only_installed_compositions_as_shipped(tmp_path, capsys):
    from zoo.spec import load_spec, shipped_spec_hashes

    def shipped_spec_hash(name: str, seed: int) -> str:
        return load_spec(name).with_overrides([f"train.seed={seed}"]).hash()

    shipped = shipped_spec_hash("tfidf_fp", 1)
    assert shipped in shipped_spec_hashes("tfidf_fp", 1) and shipped not in shipped_spec_hashes("tfidf_fp", 0)
    assert shipped_spec_hashes("no_such_thing", 0) == set()
    as_shipped = {**make_results(seed=1, mrr=0.30, name="tfidf_fp"), "requested_spec_hash": shipped}
    variant = {**make_results(seed=1, mrr=0.50, name="tfidf_fp", loss="infonce"), "requested_spec_hash": "0123456789ab"}
    write(tmp_path, "runs/a", as_shipped)
    write(tmp_path, "runs/b", variant)  # an ablation variant or a --set run of the same composition
    write(tmp_path, f"runs/tfidf_fp-{shipped_spec_hash('tfidf_fp', 0)}-s0", make_results(seed=0, mrr=0.20, name="tfidf_fp"))
    write(tmp_path, "runs/c", make_results(seed=0, mrr=0.9, name="my_screen"))  # not an installed composition
    assert main(["leaderboard", str(tmp_path / "runs"), "--shipped", "--gallery", "all", "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["composition"] == "tfidf_fp" and row["seeds"] == "0;1"  # the folder-named old run counts too
    assert float(row["text_to_molecule.mrr.mean"]) == pytest.approx(0.25)
    write(tmp_path, "other/c", make_results(seed=0, name="my_screen"))
    assert main(["leaderboard", str(tmp_path / "other"), "--shipped"]) == 2
    assert "--shipped: none of the 1 runs" in capsys.readouterr().err


def test_combined_slot_parts_flatten_to_set_keys_and_empty_lists_show():
    """A combined slot's parts read as ``--set`` spells them (``text_encoder.tfidf.svd_dim``), not as dict reprs;
    two parts of one component are told apart by index; an empty list shows as ``[]``."""
    from zoo.evals.leaderboard import _fmt_value, flatten_spec

    flat = flatten_spec({"text_encoder": {"name": "combined", "mode": "auto", "parts": [
        {"name": "minilm", "pooling": "attention"}, {"name": "tfidf", "svd_dim": 512}, {"name": "tfidf", "svd_dim": 64}]}})
    assert flat == {"text_encoder": "combined", "text_encoder.mode": "auto", "text_encoder.parts": ["minilm", "tfidf", "tfidf"],
                    "text_encoder.minilm.pooling": "attention", "text_encoder.1.svd_dim": 512, "text_encoder.2.svd_dim": 64}
    assert _fmt_value(flat["text_encoder.parts"]) == "minilm,tfidf,tfidf" and _fmt_value([]) == "[]"


def test_markdown_varies_shows_only_what_differs_from_the_shipped_spec():
    """With the shipped specs supplied, a row's Markdown ``varies`` cell names only its changes from its
    composition as shipped (the closest spelling; a swapped component, not its options); JSON and CSV keep
    the full ``varies`` and spec; a composition the caller does not know keeps the between-rows cell."""
    wide = copy.deepcopy(SPEC)
    wide["molecule_encoder"].update({f"opt{i}": i for i in range(30)})  # options every row shares
    shipped_spec = {**copy.deepcopy(wide), "name": "aman"}
    spelling = copy.deepcopy(shipped_spec)
    spelling["train"]["cpu_bf16"] = True  # another spelling that counts as shipped
    shipped = {"aman": [shipped_spec, spelling]}
    runs = [make_results(mrr=0.30), make_results(mrr=0.20, margin=0.5), make_results(mrr=0.25, loss="infonce"),
            make_results(mrr=0.10, name="my_screen", margin=0.4)]
    for r in runs:
        r["spec"]["molecule_encoder"].update(wide["molecule_encoder"])
    runs[0]["spec"]["train"]["cpu_bf16"] = True
    board = build_leaderboard(records(*runs), gallery="all", shipped=lambda name: shipped.get(name))
    (table,) = board.tables
    cells = {(r.composition, r.components["loss"], r.varies.get("loss.margin")): r for r in table.rows}
    md = render(board, "markdown")
    lines = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| #")}
    assert cells[("aman", "triplet", 0.2)].shipped_diff == {}  # as shipped, in its bf16 spelling
    assert cells[("aman", "triplet", 0.5)].shipped_diff == {"loss.margin": 0.5}
    assert cells[("aman", "infonce", None)].shipped_diff == {"loss": "infonce"}  # not the new loss's options
    assert cells[("my_screen", "triplet", 0.4)].shipped_diff is None  # not installed: today's cell
    varying_cell = ", ".join(f"{k}={v}" for k, v in cells[("my_screen", "triplet", 0.4)].varies.items())
    assert "molecule_encoder.opt" not in md and "| loss.margin=0.5 |" in md and "| loss=infonce |" in md
    assert f"| {varying_cell} |" in lines["my_screen"] and "| – |" in md
    assert max(len(line.split(" | ")[6]) for line in lines.values()) < 60
    full = json.loads(render(board, "json"))["tables"][0]["rows"]
    assert [r["varies"] for r in full] == [r.varies for r in table.rows] and "shipped_diff" not in full[0]
    assert render(board, "csv") == render(build_leaderboard(records(*runs), gallery="all"), "csv")


def test_cli_leaderboard_varies_is_relative_to_the_installed_composition(tmp_path, capsys):
    from zoo.spec import load_spec

    stored = load_spec("tfidf_fp").with_overrides(["train.seed=0"]).resolve().to_dict()
    assert stored["train"]["cpu_bf16"] == "auto"
    for i, (lr, bf16) in enumerate(((0.001, False), (0.005, False))):
        results = make_results(seed=0, mrr=0.2 + i / 10, name="tfidf_fp")
        results["spec"] = {**copy.deepcopy(stored), "train": {**stored["train"], "lr": lr, "cpu_bf16": bf16}}
        results["spec"]["text_encoder"]["svd_dim"] = 64 if i else stored["text_encoder"]["svd_dim"]
        write(tmp_path, f"runs/r{i}", results)
    assert main(["leaderboard", str(tmp_path / "runs"), "--gallery", "all"]) == 0
    out = capsys.readouterr().out
    assert "| text_encoder.svd_dim=64, train.lr=0.005 |" in out  # not cpu_bf16: false is how "auto" hashes
    assert "| – |" in out  # the run as shipped
    assert main(["leaderboard", str(tmp_path / "runs"), "--gallery", "all", "--format", "csv"]) == 0
    assert "text_encoder.svd_dim=64; train.lr=0.005" in capsys.readouterr().out


def test_shipped_difference_names_a_substituted_component_by_its_request_only_in_ran_substituted():
    from zoo.evals.leaderboard import flatten_spec, shipped_difference

    shipped = {**copy.deepcopy(SPEC), "text_encoder": {"name": "combined", "parts": [{"name": "scibert", "pooling": "cls"},
                                                                                     {"name": "tfidf", "svd_dim": 512}]}}
    ran = copy.deepcopy(shipped)
    ran["text_encoder"]["parts"][0] = {"name": "minilm", "pooling": "attention"}  # MiniLM offline for SciBERT
    def seedless(spec: dict) -> dict:  # as RunRecord.flat_spec holds it
        return flatten_spec({k: v for k, v in spec.items() if k not in ("name", "description", "train")})

    flat = {**seedless(ran), "ran.substituted": "minilm for scibert"}
    assert shipped_difference(flat, [shipped], ["ran.substituted"], {"minilm": "scibert"}) == {"ran.substituted": "minilm for scibert"}
    assert shipped_difference(flat, [shipped], [], {}) == {  # not substituted: a part swapped, with its options
        "text_encoder.parts": ["minilm", "tfidf"], "text_encoder.minilm.pooling": "attention"}
    ran["text_encoder"]["parts"][1]["svd_dim"] = 64
    assert shipped_difference(seedless(ran), [shipped], [], {"minilm": "scibert"}) == {"text_encoder.tfidf.svd_dim": 64}
