"""zoo ablate: grid construction, option values, the noise rule, a tiny real ablation and resuming."""

from __future__ import annotations

import json

import pytest

from zoo.ablate import (
    ablation_table,
    build_grid,
    compare,
    describe_plan,
    parse_vary,
    plan_runs,
    render_ablation,
)
from zoo.cli import main
from zoo.errors import SpecError
from zoo.evals.leaderboard import summarize


def test_parse_vary_and_its_errors():
    axis = parse_vary("loss.margin=0.1, 0.2,0.3")
    assert axis.key == "loss.margin" and axis.values == ("0.1", "0.2", "0.3") and not axis.is_component
    assert parse_vary("loss=triplet,infonce").is_component
    for bad, message in [("loss", "expected KEY=A,B"), ("loss=triplet", "at least two"),
                         ("loss=a,,b", "empty value"), ("loss=a,a", "repeated")]:
        with pytest.raises(SpecError, match=message):
            parse_vary(bad)


def test_cartesian_grid_reference_first():
    configs = build_grid("aman", ["loss=triplet,infonce", "embed_dim=64,128"])
    assert [c.label for c in configs] == ["loss=triplet, embed_dim=64", "loss=triplet, embed_dim=128",
                                         "loss=infonce, embed_dim=64", "loss=infonce, embed_dim=128"]
    assert [c.is_reference for c in configs] == [True, False, False, False]
    assert configs[3].spec.loss.name == "infonce" and configs[3].spec.embed_dim == 128
    assert len({c.hash for c in configs}) == 4


def test_one_at_a_time_grid_and_option_values():
    configs = build_grid("aman", ["molecule_encoder=graph_transformer,gcn,fingerprint_mlp", "loss.margin=0.2,0.3"],
                         ["text_encoder=minilm", "molecule_encoder.heads=4", "train.epochs=2"], one_at_a_time=True)
    assert [c.label for c in configs] == ["reference", "molecule_encoder=gcn", "molecule_encoder=fingerprint_mlp",
                                         "loss.margin=0.3"]
    ref, gcn, fp, margin = configs
    assert ref.spec.molecule_encoder.options["heads"] == 4 and ref.spec.loss.options["margin"] == 0.2
    assert gcn.spec.molecule_encoder.name == "gcn" and "molecule_encoder.heads=4" in gcn.not_applied
    assert "heads" not in gcn.spec.molecule_encoder.options
    assert margin.spec.loss.options["margin"] == 0.3 and margin.spec.molecule_encoder.name == "graph_transformer"
    assert all(c.spec.text_encoder.name == "minilm" and c.spec.train.epochs == 2 for c in configs)
    assert "not applied (component lacks the option): molecule_encoder.heads=4" in describe_plan(plan_runs(configs, 1, "x"))


def test_grid_errors_name_the_problem():
    with pytest.raises(SpecError, match="Did you mean"):
        build_grid("aman", ["loss=triplet,infonse"])
    with pytest.raises(SpecError, match="varied twice"):
        build_grid("aman", ["loss=triplet,infonce", "loss=infonce,triplet"])
    with pytest.raises(SpecError, match="resolve to the same spec"):
        build_grid("aman", ["loss.margin=0.2,0.20"])
    with pytest.raises(SpecError, match="no configuration"):
        build_grid("aman", ["loss=triplet,infonce"], ["molecule_encoder.hedas=4"])


def test_plan_runs_is_seed_major_with_deterministic_folders(tmp_path):
    configs = build_grid("aman", ["loss=triplet,infonce"])
    planned = plan_runs(configs, 2, tmp_path)
    assert [(p.config.label, p.seed) for p in planned] == [("loss=triplet", 0), ("loss=infonce", 0),
                                                           ("loss=triplet", 1), ("loss=infonce", 1)]
    assert planned[2].spec.train.seed == 1
    assert [p.out_dir for p in planned] == [p.out_dir for p in plan_runs(configs, 2, tmp_path)]
    assert len({p.out_dir for p in planned}) == 4
    with pytest.raises(SpecError, match="at least 1"):
        plan_runs(configs, 0, tmp_path)


def test_noise_rule():
    ref = summarize([0.20, 0.22, 0.21])
    clear = compare(ref, summarize([0.30, 0.31, 0.29]), higher_is_better=True)
    assert clear.significant and clear.better and clear.verdict() == "yes, better"
    assert clear.delta == pytest.approx(0.09) and clear.p_value < 0.01
    noisy = compare(ref, summarize([0.15, 0.30, 0.24]), higher_is_better=True)
    assert noisy.significant is False and noisy.verdict() == "no"
    assert abs(noisy.delta) <= 2 * noisy.se
    worse_rank = compare(summarize([10.0, 11.0]), summarize([30.0, 31.0]), higher_is_better=False)
    assert worse_rank.significant and worse_rank.better is False and worse_rank.verdict() == "yes, worse"
    single = compare(summarize([0.2]), summarize([0.3]), higher_is_better=True)
    assert single.significant is None and single.verdict() == "n/a (<2 seeds)"
    exact = compare(summarize([0.2, 0.2]), summarize([0.3, 0.3]), higher_is_better=True)
    assert exact.se == 0 and exact.significant and exact.p_value == 0.0


def _fake_results(mrr: float, seed: int, spec_hash: str, checksums: str = "v1") -> dict:
    metrics = {"hits@1": mrr / 2, "hits@10": mrr * 2, "mrr": mrr, "mean_rank": 1 / mrr, "median_rank": 1 / mrr}
    return {"schema_version": "1", "spec": {"name": "aman", "train": {"seed": seed}}, "requested_spec_hash": spec_hash,
            "task": {"name": "chebi20", "protocol": "offline-low-data", "split": "test", "data_checksums": {"t": checksums}},
            "scores": {"all": {"text_to_molecule": metrics, "molecule_to_text": metrics}}, "seeds": {"seed": seed}}


def test_ablation_table_from_results_and_protocol_mismatch(tmp_path):
    configs = build_grid("aman", ["loss=triplet,infonce"])
    planned = plan_runs(configs, 2, tmp_path)
    values = {("loss=triplet", 0): 0.20, ("loss=triplet", 1): 0.22, ("loss=infonce", 0): 0.40, ("loss=infonce", 1): 0.41}
    for p in planned:
        p.out_dir.mkdir(parents=True)
        p.results_path.write_text(json.dumps(_fake_results(values[p.config.label, p.seed], p.seed, p.spec.hash())))
    table = ablation_table(planned, metrics=["mrr", "h1"])
    ref, var = table.rows
    assert ref.summaries["text_to_molecule"]["mrr"].mean == pytest.approx(0.21) and not ref.comparisons
    assert var.comparisons["text_to_molecule"]["mrr"].delta == pytest.approx(0.195)
    text = render_ablation(table)
    assert "| **reference** loss=triplet | 2 | 21.00 ± 1.41 |" in text and "yes, better" in text
    assert json.loads(render_ablation(table, "json"))["rows"][1]["metrics"]["text_to_molecule"]["mrr"]["exceeds_noise"]
    assert "exceeds_noise" in render_ablation(table, "csv").splitlines()[0]
    planned[3].results_path.write_text(json.dumps(_fake_results(0.4, 1, planned[3].spec.hash(), checksums="v2")))
    with pytest.raises(ValueError, match="different protocols"):
        ablation_table(planned)


def test_tiny_real_ablation_runs_then_resumes(tiny_env, tmp_path, monkeypatch, capsys):
    from tiny import TINY

    out_root = tmp_path / "abl"
    args = ["ablate", "aman", "--vary", "loss.margin=0.2,0.4", "--seeds", "1", "--out-root", str(out_root),
            "--data-dir", str(tiny_env), "--no-progress", "--set", "train.epochs=1", "--set", "text_encoder=minilm"]
    for item in TINY:
        args += ["--set", item]
    assert main(args + ["--dry-run"]) == 0
    assert "2 runs planned, 2 to train" in capsys.readouterr().out
    assert not out_root.exists()
    assert main(args + ["--format", "json", "--out", str(tmp_path / "abl.json")]) == 0
    table = json.loads((tmp_path / "abl.json").read_text())
    assert [r["label"] for r in table["rows"]] == ["loss.margin=0.2", "loss.margin=0.4"]
    assert table["protocol"]["gallery"] == "all" and not table["missing"]
    finished = sorted(out_root.glob("*/results.json"))
    assert len(finished) == 2

    import zoo.train

    def must_not_train(*_a, **_k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(zoo.train, "run", must_not_train)
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("skipping") == 2 and "| **reference** loss.margin=0.2 | 1 |" in out
