"""K-fold cross-validation for selection (task.folds/fold, zoo sweep/ablate --folds): the folds, the runs they
plan, the held-out table and the errors for bad values."""

from __future__ import annotations

import json

import pytest

from zoo.ablate import ablation_table, build_grid, compare_paired, parse_vary, plan_runs, render_ablation
from zoo.cli import main
from zoo.errors import DataError, SpecError
from zoo.spec import load_spec, shipped_spec_hashes
from zoo.taskdata import Pair, cv_fold


def _pairs(n: int) -> list[Pair]:
    return [Pair(str(i), "C", f"text {i}") for i in range(n)]


def test_cv_folds_partition_the_pairs_disjoint_and_seeded():
    pairs = _pairs(23)
    selects = [cv_fold(pairs, 4, i, seed=0)[1] for i in range(4)]
    assert sorted(p.cid for s in selects for p in s) == sorted(p.cid for p in pairs)  # every pair in exactly one fold
    assert sorted(len(s) for s in selects) == [5, 6, 6, 6]
    for i in range(4):
        train, select = cv_fold(pairs, 4, i, seed=0)
        assert not {p.cid for p in train} & {p.cid for p in select} and len(train) + len(select) == 23
        assert [p.cid for p in train] == [p.cid for p in pairs if p not in select]  # order kept
    assert [cv_fold(pairs, 4, i, seed=0) for i in range(4)] == [cv_fold(pairs, 4, i, seed=0) for i in range(4)]
    assert cv_fold(pairs, 4, 0, seed=0)[1] != cv_fold(pairs, 4, 0, seed=1)[1]


@pytest.mark.parametrize("folds, fold, message", [
    (1, 0, "task.folds must be 0"), (-2, 0, "task.folds must be 0"), (3, 3, r"task.fold must be 0..2"),
    (3, -1, r"task.fold must be 0..2"), (0, 1, "while task.folds is 0"), (30, 0, "more folds than the 23"),
])
def test_bad_fold_values_are_one_line_errors(folds, fold, message):
    with pytest.raises(DataError, match=message) as caught:
        cv_fold(_pairs(23), folds, fold, seed=0)
    assert "\n" not in str(caught.value)


def test_chebi20_folds_partition_the_offline_training_pairs(tiny_env):
    from zoo.tasks import load_spec_data

    spec = load_spec("tfidf_fp")
    default = load_spec_data(spec.resolve(), tiny_env)
    pool = {p.cid for p in [*default.train, *default.select]}
    folds = [load_spec_data(spec.with_overrides(["task.folds=4", f"task.fold={i}"]).resolve(), tiny_env) for i in range(4)]
    selects = [{p.cid for p in data.select} for data in folds]
    assert set().union(*selects) == pool and sum(map(len, selects)) == len(pool) == 64
    for data, select in zip(folds, selects):
        assert {p.cid for p in data.train} == pool - select
        assert [p.cid for p in data.test] == [p.cid for p in default.test] and len(data.gallery) == len(default.gallery)
    reseeded = load_spec_data(spec.with_overrides(["task.folds=4", "task.fold=0", "task.holdout_seed=1"]).resolve(), tiny_env)
    assert {p.cid for p in reseeded.select} != selects[0]


def test_fold_specs_hash_apart_and_the_default_hashes_as_before():
    base = load_spec("tfidf_fp").resolve()
    assert base.with_overrides(["task.folds=0", "task.fold=0"]).resolve().hash() == base.hash()
    assert base.hash() in shipped_spec_hashes("tfidf_fp", 0)
    fold = base.with_overrides(["task.folds=5", "task.fold=2"]).resolve()
    assert fold.task == {"folds": 5, "fold": 2} and fold.hash() != base.hash()
    for bad, message in [("task.folds=1", "task.folds must be 0"), ("task.fold=2", "while task.folds is 0")]:
        with pytest.raises(SpecError, match=message):
            base.with_overrides([bad]).resolve()
    with pytest.raises(SpecError, match=r"task.fold must be 0..4"):
        base.with_overrides(["task.folds=5", "task.fold=5"]).resolve()


def test_plan_runs_with_folds_gives_every_fold_run_its_own_spec_and_folder(tmp_path):
    configs = build_grid("tfidf_fp", ['molecule_encoder.extra=["maccs","feature_morgan"],["maccs"]'])
    assert configs[1].spec.molecule_encoder.options["extra"] in (["maccs"], ("maccs",))
    planned = plan_runs(configs, 2, tmp_path, folds=3)
    assert len(planned) == 12 and len({p.out_dir for p in planned}) == 12 and len({p.spec.hash() for p in planned}) == 12
    assert [(p.seed, p.fold) for p in planned[:4]] == [(0, 0), (0, 0), (0, 1), (0, 1)]  # fold-major within a seed
    assert all(p.spec.task == {"folds": 3, **({"fold": p.fold} if p.fold else {})} and p.spec.train.seed == p.seed
               for p in planned)  # fold 0 is the option's default: not written
    assert [p.out_dir for p in planned] == [p.out_dir for p in plan_runs(configs, 2, tmp_path, folds=3)]
    with pytest.raises(SpecError, match="--folds must be at least 2"):
        plan_runs(configs, 1, tmp_path, folds=1)
    with pytest.raises(SpecError, match="drop --set/--vary task.fold"):
        plan_runs(build_grid("tfidf_fp", ["task.fold=0,1"], ["task.folds=2"]), 1, tmp_path, folds=2)


def test_parse_vary_keeps_a_toml_list_whole():
    axis = parse_vary('molecule_encoder.extra=["maccs","feature_morgan"], ["maccs"]')
    assert axis.values == ('["maccs","feature_morgan"]', '["maccs"]')


def _fold_results(heldout: float, test: float, seed: int, fold: int) -> dict:
    metrics = {"hits@1": test / 2, "hits@10": test * 2, "mrr": test, "mean_rank": 1 / test, "median_rank": 1 / test}
    return {"schema_version": "1", "spec": {"name": "tfidf_fp", "train": {"seed": seed}, "task": {"folds": 3, "fold": fold}},
            "task": {"name": "chebi20", "protocol": "offline-low-data", "split": "test", "data_checksums": {"t": "v1"}},
            "scores": {"all": {"text_to_molecule": metrics, "molecule_to_text": metrics}}, "seeds": {"seed": seed},
            "training": {"best_heldout_mrr": heldout, "best_epoch": 3}}


def test_cv_table_compares_heldout_mrr_across_folds_and_never_test(tmp_path):
    configs = build_grid("tfidf_fp", ['molecule_encoder.extra=["maccs","feature_morgan"],["maccs"]'])
    planned = plan_runs(configs, 1, tmp_path, folds=3)
    heldout = {(0, 0): (0.70, 0.72), (0, 1): (0.60, 0.63), (0, 2): (0.80, 0.81)}  # (seed, fold): (reference, variant)
    for p in planned:
        p.out_dir.mkdir(parents=True)
        value = heldout[p.seed, p.fold][0 if p.config.is_reference else 1]
        p.results_path.write_text(json.dumps(_fold_results(value, 0.123 if p.config.is_reference else 0.987, p.seed, p.fold)))
    table = ablation_table(planned, metrics=["mrr", "h10"])
    ref, var = table.rows
    assert table.folds == 3 and table.metrics == ("heldout_mrr",)
    assert ref.summaries["text_to_molecule"]["heldout_mrr"].mean == pytest.approx(0.70)
    assert ref.summaries["text_to_molecule"]["heldout_mrr"].std == pytest.approx(0.10)
    comparison = var.comparisons["text_to_molecule"]["heldout_mrr"]
    assert comparison.delta == pytest.approx(0.02) and comparison.significant  # paired: the fold spread cancels
    text = render_ablation(table)
    assert "held-out MRR" in text and "| 1 | 3 | 0.70 ± 0.10 |" in text and "paired by (seed, fold)" in text
    assert "0.12" not in text and "0.99" not in text and "12.30" not in text  # test never shown
    assert json.loads(render_ablation(table, "json"))["selection"].startswith("held-out MRR, 3-fold")
    unpaired_noise = compare_paired({1: 0.5, 2: 0.9}, {1: 0.9, 2: 0.5}, True)
    assert unpaired_noise.delta == 0 and unpaired_noise.significant is False


def test_cli_folds_errors_are_one_line(tiny_env, capsys):
    assert main(["sweep", "tfidf_fp", "--folds", "1", "--dry-run", "--data-dir", str(tiny_env)]) == 2
    err = capsys.readouterr().err
    assert "--folds must be at least 2" in err and err.count("\n") == 1
    assert main(["run", "tfidf_fp", "--set", "task.folds=3", "--set", "task.fold=7", "--data-dir", str(tiny_env)]) == 2
    assert "task.fold must be 0..2" in capsys.readouterr().err


def test_tiny_sweep_with_folds_trains_each_fold_and_prints_the_heldout_table(tiny_env, tmp_path, capsys):
    out_root = tmp_path / "cv"
    args = ["sweep", "tfidf_fp", "--folds", "2", "--seeds", "1", "--out-root", str(out_root), "--data-dir", str(tiny_env),
            "--no-progress"]
    for item in ["train.epochs=1", "text_encoder.svd_dim=16", "embed_dim=32", "train.batch_size=16"]:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    runs = sorted(out_root.glob("tfidf_fp-*-s0/results.json"))
    assert len(runs) == 2
    results = [json.loads(r.read_text()) for r in runs]
    assert sorted(r["task"]["options"]["fold"] for r in results) == [0, 1]  # all options recorded, defaults included
    assert all(r["task"]["options"]["folds"] == 2 for r in results)
    assert all(r["task"]["counts"]["counts"]["select"] == 32 for r in results)
    assert "held-out MRR" in out and "| tfidf_fp | 1 | 2 |" in out
    values = [r["training"]["best_heldout_mrr"] for r in results]
    assert f"{sum(values) / 2:.2f}" in out


def test_ablation_table_without_folds_shows_heldout_beside_test(tmp_path):
    from test_ablate import _fake_results

    configs = build_grid("aman", ["loss=triplet,infonce"])
    planned = plan_runs(configs, 2, tmp_path)
    for p in planned:
        p.out_dir.mkdir(parents=True)
        results = {**_fake_results(0.2 + 0.1 * p.seed, p.seed, p.spec.hash()), "training": {"best_heldout_mrr": 0.7 + 0.02 * p.seed}}
        p.results_path.write_text(json.dumps(results))
    table = ablation_table(planned)
    assert table.rows[0].heldout.mean == pytest.approx(0.71)
    text = render_ablation(table)
    assert "| config | seeds | held-out MRR (%, selects) | MRR (%) |" in text and "| 2 | 71.00 ± 1.41 | 25.00 ± 7.07 |" in text
    assert json.loads(render_ablation(table, "json"))["rows"][0]["heldout_mrr"]["n"] == 2
