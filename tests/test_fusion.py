"""Score fusion (:mod:`zoo.fusion`): z-scoring and fusion math, weights fitted on held-out pairs only,
``zoo ensemble`` (results schema, leaderboard row, search, eval, reuse), compositions with ``[[scorers]]``,
and bad input. The structure_match scorer runs the real OPSIN (Java), like tests/test_chem_names.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zoo.cli import main
from zoo.evals.results import REQUIRED_KEYS, read_results, write_results
from zoo.fusion import GalleryScores, Member, evaluate_fused, fit_weights, fuse, zscore_rows

TINY = ["text_encoder.svd_dim=16", "text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32",
        "molecule_encoder.n_bits=256", "embed_dim=32", "train.batch_size=16", "train.lr=0.003",
        "train.holdout_fraction=0.15", "train.eval_batch_size=64", "train.warmup_epochs=1", "train.epochs=2"]
QUERY = "The molecule is a pyridine derivative carrying a nitro substituent attached directly to the ring."


# -- the math --------------------------------------------------------------------------------------
def test_zscore_rows_and_weighted_sum_on_a_hand_made_matrix():
    a = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = zscore_rows(a)
    s = np.sqrt(2 / 3)  # population std of 1, 2, 3
    np.testing.assert_allclose(z[0], [-1 / s, 0, 1 / s], rtol=1e-6)
    assert np.all(z[1] == 0)  # a constant row contributes nothing
    b = np.array([[30.0, 10.0, 20.0], [0.0, 1.0, 0.0]])
    fused = fuse([a, b], [1.0, 0.5])
    np.testing.assert_allclose(fused, zscore_rows(a) + 0.5 * zscore_rows(b), rtol=1e-6)
    # scale and shift of a member do not matter, only its per-query ranking and spread
    np.testing.assert_allclose(fuse([a, 100 * b + 7], [1.0, 0.5]), fused, rtol=1e-5)
    with pytest.raises(ValueError):
        fuse([a], [1.0, 2.0])


# -- fitting on held-out pairs only ----------------------------------------------------------------
@dataclass(frozen=True)
class P:
    cid: str
    smiles: str
    description: str


def toy_data(n_select: int = 20, n_test: int = 20, n_extra: int = 20):
    """A task-shaped object: every pair's description and molecule are its CID."""
    pairs = [P(str(i), str(i), str(i)) for i in range(n_select + n_test)]
    gallery = [SimpleNamespace(cid=p.cid, smiles=p.smiles) for p in pairs] + \
        [SimpleNamespace(cid=f"x{i}", smiles=f"x{i}") for i in range(n_extra)]
    return SimpleNamespace(select=pairs[:n_select], test=pairs[n_select:], descriptions=pairs, gallery=gallery)


class Toy:
    """Scores a description (a CID) against molecules with ``fn(text, molecule) -> float``; records the texts it scored."""

    def __init__(self, fn):
        self.fn, self.scored = fn, set()

    def prepare_texts(self, texts):
        return list(texts)

    def prepare_molecules(self, smiles):
        return list(smiles)

    def score(self, texts, molecules):
        self.scored.update(texts)
        return np.array([[self.fn(t, m) for m in molecules] for t in texts], dtype=np.float32)


def noisy(seed: int, signal: float):
    rng = np.random.default_rng(seed)
    table: dict = {}

    def fn(t, m):
        if (t, m) not in table:
            table[t, m] = rng.normal() + (signal if t == m else 0.0)
        return table[t, m]

    return fn


def test_weights_are_fitted_on_heldout_pairs_only_and_a_test_oracle_gets_weight_zero():
    data = toy_data()
    test_cids = {p.cid for p in data.test}
    learned = Toy(noisy(0, 1.5))
    # perfect on the test pairs, no information on the held-out ones (constant): fitting must not see it
    oracle = Toy(lambda t, m: (10.0 if t == m else 0.0) if t in test_cids else 1.0)
    helpful = Toy(noisy(1, 1.5))
    members = [Member("learned", "learned", {}, learned), Member("oracle", "toy", {}, oracle), Member("helpful", "toy", {}, helpful)]
    gallery = GalleryScores(members, data)
    fit = fit_weights(gallery, data.select)
    assert fit.weights[0] == 1.0 and fit.weights[1] == 0.0 and fit.weights[2] > 0
    assert not (learned.scored | oracle.scored | helpful.scored) & test_cids  # no test description was scored
    assert fit.fused_mrr >= max(fit.member_mrr[0], fit.member_mrr[2])
    assert fit == fit_weights(GalleryScores(members, data), data.select)  # deterministic

    # the oracle alone is perfect on test; at weight 0 the fused test scores ignore it
    alone, _ = evaluate_fused(gallery, data.test, ["all"], [0.0, 1.0, 0.0], log=lambda _m: None)
    assert alone["all"]["text_to_molecule"]["mrr"] == pytest.approx(1.0)
    fused, counts = evaluate_fused(gallery, data.test, ["all", "test", "inbatch:5"], fit.weights, log=lambda _m: None)
    assert fused["all"]["text_to_molecule"]["mrr"] < 1.0
    assert counts["all"] == {"text_to_molecule_candidates": 60, "molecule_to_text_candidates": 40, "queries": 20}
    assert counts["inbatch:5"] == {"block_size": 5, "queries": 20}


def test_molecule_to_text_is_zscored_per_molecule_query():
    """Molecule->text rows are molecules: a scorer whose scale differs per molecule does not drown the others."""
    data = toy_data(4, 4, 0)
    # huge scores for molecule "4" against every text, small ones with the truth for the others
    loud = Toy(lambda t, m: (1000.0 + float(t)) if m == "4" else (1.0 if t == m else 0.0))
    gallery = GalleryScores([Member("loud", "toy", {}, loud)], data)
    z = gallery.member_scores(0, "molecule_to_text", [4, 5], None)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-4)
    assert int(np.argmax(z[1])) == 5  # molecule "5" finds its own description


# -- zoo ensemble on tiny runs ---------------------------------------------------------------------
def _run(data_dir, out, *extra: str) -> dict:
    args = ["run", "tfidf_fp", "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished tiny tfidf_fp runs (seeds 0 and 1) on the tiny data, with their own cache."""
    from tiny import write_tiny_chebi

    root = tmp_path_factory.mktemp("fusion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        data = write_tiny_chebi(root / "chebi")
        _run(data, root / "a", "train.seed=0")
        _run(data, root / "b", "train.seed=1")
    return root, data


@pytest.fixture
def env(two_runs, monkeypatch):
    root, data = two_runs
    monkeypatch.setenv("ZOO_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root, data


def test_ensemble_results_leaderboard_search_eval_and_reuse(env, tmp_path, capsys):
    root, data = env
    out = tmp_path / "ens"
    args = ["ensemble", str(root / "a"), str(root / "b"), "--scorer", "structure_match", "--data-dir", str(data), "--out", str(out)]
    assert main(args) == 0
    results = read_results(out / "results.json")
    assert set(REQUIRED_KEYS) <= set(results) and "git_revision" in results
    assert results["task"]["tie_policy"] == "expected" and results["task"]["split"] == "test"
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            metrics = results["scores"][gallery][direction]
            assert {"mrr", "hits@1", "hits@10", "queries_with_ties", "mrr_optimistic"} <= set(metrics)
    fusion = results["fusion"]
    assert [m["scorer"] for m in fusion["members"]] == ["run", "run", "structure_match"]
    assert fusion["members"][0]["weight"] == 1.0 and all(m["weight"] in fusion["grid"] for m in fusion["members"])
    assert all(0 < m["heldout_mrr"] <= 1 for m in fusion["members"]) and 0 < fusion["heldout_mrr"] <= 1
    assert fusion["heldout_queries"] == 10  # 15% of the 64 validation pairs
    assert [m["composition"] for m in results["spec"]["members"]] == ["tfidf_fp", "tfidf_fp"]
    assert [m["seed"] for m in results["spec"]["members"]] == [0, 1] and "seed" not in results["spec"]["train"]
    assert set(results["member_scores"]) == {"a", "b", "structure_match"}
    recorded = fusion["members"][0]["options"]["run"]  # relative to the ensemble folder: the two move together
    assert not Path(recorded).is_absolute() and (out / recorded).resolve() == (root / "a").resolve()
    # a member alone scores what its run scored (z-scoring keeps each query's ranking)
    alone = results["member_scores"]["a"]["all"]["text_to_molecule"]["mrr"]
    assert alone == pytest.approx(json.loads((root / "a" / "results.json").read_text())["scores"]["all"]["text_to_molecule"]["mrr"], abs=1e-3)

    capsys.readouterr()
    assert main(["leaderboard", str(out), str(root / "a"), "--gallery", "all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    assert {r["composition"] for r in rows} == {"ensemble(tfidf_fp/s0+tfidf_fp/s1+structure_match)", "tfidf_fp"}
    assert all(not r["varies"] for r in rows)  # an ensemble and a run are not compared key by key

    assert main(["search", str(out), QUERY, "-k", "3", "--json", "--data-dir", str(data), "--no-progress"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found["results"]) == 3 and "fused" in found["searched"]
    assert all(a["score"] >= b["score"] for a, b in zip(found["results"], found["results"][1:]))
    assert main(["search", str(out), "--smiles", "c1ccncc1[N+](=O)[O-]", "-k", "2", "--json", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "descriptions"

    assert main(["eval", str(out), "--data-dir", str(data), "--no-progress"]) == 0
    again = json.loads((out / "eval-test.json").read_text())
    assert again["scores"]["all"]["text_to_molecule"]["mrr"] == pytest.approx(results["scores"]["all"]["text_to_molecule"]["mrr"])

    capsys.readouterr()
    assert main(args) == 0  # same members: reused, not refitted
    assert "reused" in capsys.readouterr().out
    assert read_results(out / "results.json")["created_at"] == results["created_at"]
    assert main([*args, "--fresh"]) == 0
    assert "reused" not in capsys.readouterr().out


def test_ensemble_bad_input_is_one_line(env, tmp_path, capsys):
    root, data = env
    other = tmp_path / "other"  # run b, as if trained on other data
    shutil.copytree(root / "b", other)
    results = read_results(other / "results.json")
    results["task"]["data_checksums"] = {**results["task"]["data_checksums"], "test.txt": "0" * 64}
    write_results(other / "results.json", results)
    cases = [
        ([str(root / "a"), str(tmp_path / "missing")], ["run folder not found", "missing"]),
        ([str(root / "a"), str(other)], ["different data", str(root / "a"), str(other), "data "]),
        ([str(root / "a"), "--scorer", "structure_mach"], ["unknown scorer 'structure_mach'", "Did you mean: structure_match"]),
        ([str(root / "a")], ["not an ensemble"]),
    ]
    assert main(["ensemble", str(root / "a"), "--scorer", "structure_match", "--out", str(other), "--fresh"]) == 2
    assert "holds the results of a run" in capsys.readouterr().err  # never replaces a run's results
    for argv, expected in cases:
        capsys.readouterr()
        assert main(["ensemble", *argv, "--data-dir", str(data), "--out", str(tmp_path / "ens")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert all(part in err for part in expected), err
    assert not (tmp_path / "ens").exists()


# -- a composition with scorers ---------------------------------------------------------------------
def test_composition_with_scorers_fits_on_heldout_and_eval_search_use_fused_scores(env, tmp_path, capsys):
    root, data = env
    out = tmp_path / "fused"
    results = _run(data, out, 'scorers=["structure_match"]')
    assert results["spec"]["scorers"][0]["name"] == "structure_match"
    fusion = results["fusion"]
    assert [m["label"] for m in fusion["members"]] == ["learned", "structure_match"]
    assert fusion["members"][0]["weight"] == 1.0 and fusion["members"][1]["weight"] in fusion["grid"]
    assert set(results["learned_scores"]) == set(results["scores"]) == {"all", "test"}
    # the learned-only metrics are the plain run's
    plain = json.loads((root / "a" / "results.json").read_text())
    assert results["learned_scores"]["all"] == plain["scores"]["all"]
    assert results["spec_hash"] != plain["spec_hash"]

    assert main(["eval", str(out), "--data-dir", str(data), "--no-progress"]) == 0
    again = json.loads((out / "eval-test.json").read_text())
    assert again["scores"]["all"]["text_to_molecule"]["mrr"] == pytest.approx(results["scores"]["all"]["text_to_molecule"]["mrr"])
    assert again["learned_scores"]["all"]["text_to_molecule"]["mrr"] == pytest.approx(plain["scores"]["all"]["text_to_molecule"]["mrr"])

    capsys.readouterr()
    assert main(["search", str(out), QUERY, "-k", "3", "--json", "--data-dir", str(data), "--no-progress"]) == 0
    assert "learned x1" in json.loads(capsys.readouterr().out)["searched"]

    assert main(["leaderboard", str(out), str(root / "a"), "--gallery", "all"]) == 0
    assert "scorers=structure_match" in capsys.readouterr().out  # the fused run is its own row, labelled by its scorers


def test_unknown_scorer_in_a_composition_fails_before_training(env, tmp_path, capsys):
    root, data = env
    spec = tmp_path / "spec.toml"
    spec.write_text((root / "a" / "spec.toml").read_text() + '\n[[scorers]]\nname = "structure_mach"\n')
    capsys.readouterr()
    assert main(["run", str(spec), "--data-dir", str(data), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Did you mean: structure_match" in err
    assert not (tmp_path / "run").exists()
    spec.write_text((root / "a" / "spec.toml").read_text() + '\n[[scorers]]\nname = "structure_match"\nradiuss = 3\n')
    assert main(["show", str(spec)]) == 2
    assert "Did you mean: radius" in capsys.readouterr().err


def test_zoo_list_shows_scorers(capsys):
    assert main(["list", "scorer"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("scorer:") and "structure_match" in out and "run " in out


def test_report_of_an_ensemble_uses_fused_scores(env, tmp_path):
    root, data = env
    out = tmp_path / "ens"
    assert main(["ensemble", str(root / "a"), "--scorer", "structure_match", "--data-dir", str(data), "--out", str(out)]) == 0
    page = tmp_path / "report.html"
    assert main(["report", str(out), str(root / "a"), "--data-dir", str(data), "--out", str(page), "--samples", "2",
                 "--no-progress"]) == 0
    html = page.read_text()
    assert "ensemble(tfidf_fp+structure_match)" in html and "fused score" in html
    from zoo.plugins.tasks.chebi20 import load_chebi20
    from zoo.report import retrieve

    results = read_results(out / "results.json")
    fused = retrieve(out, "e", load_chebi20(data, holdout_fraction=0.15), [0], "all", "cpu", progress=False)
    assert fused.metrics()["mrr"] == pytest.approx(results["scores"]["all"]["text_to_molecule"]["mrr"])


def test_a_harmful_scorer_gets_weight_zero_and_the_fit_never_falls_below_the_first_member():
    data = toy_data()
    members = [Member("learned", "toy", {}, Toy(noisy(0, 1.5))),
               Member("liar", "toy", {}, Toy(lambda t, m: -5.0 if t == m else 0.0)),  # buries the true molecule
               Member("noise", "toy", {}, Toy(noisy(2, 0.0)))]
    fit = fit_weights(GalleryScores(members, data), data.select)
    assert fit.weights[1] == 0.0
    assert fit.fused_mrr >= fit.member_mrr[0]



def test_ensembles_of_one_configuration_over_seeds_make_one_leaderboard_row(env, tmp_path, capsys):
    root, data = env
    for seed, run in ((0, "a"), (1, "b")):
        assert main(["ensemble", str(root / run), "--scorer", "structure_match", "--data-dir", str(data),
                     "--out", str(tmp_path / f"ens{seed}")]) == 0
        assert read_results(tmp_path / f"ens{seed}" / "results.json")["spec"]["train"]["seed"] == seed
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path), "--gallery", "all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    assert len(rows) == 1 and rows[0]["seeds"] == [0, 1] and rows[0]["composition"] == "ensemble(tfidf_fp+structure_match)"
    assert rows[0]["metrics"]["text_to_molecule"]["mrr"]["std"] is not None


# -- an ensemble composition ------------------------------------------------------------------------
def _ensemble_toml(tmp_path, *extra: str) -> Path:
    """A tiny tfidf_fp member spec and an ensemble composition of it + structure_match, as files."""
    from zoo.spec import load_spec

    member = tmp_path / "tiny_fp.toml"
    member.write_text(load_spec("tfidf_fp").with_overrides(TINY).to_toml(), encoding="utf-8")
    path = tmp_path / "tiny_names.toml"
    path.write_text('name = "tiny_names"\ndescription = "tiny"\nmembers = ["tiny_fp.toml"]\n'  # beside this file
                    + "".join(f"{line}\n" for line in extra) + '[[scorers]]\nname = "structure_match"\n', encoding="utf-8")
    return path


def test_an_ensemble_composition_trains_its_members_once_and_fuses_them(env, tmp_path, capsys):
    root, data = env
    spec_file = _ensemble_toml(tmp_path)
    members = tmp_path / "members"
    base = ["run", str(spec_file), "--data-dir", str(data), "--members-root", str(members), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "e0")]) == 0
    results = read_results(tmp_path / "e0" / "results.json")
    assert results["spec"]["name"] == "tiny_names" and results["spec"]["composition"]["members"] == [str(tmp_path / "tiny_fp.toml")]
    assert [m["scorer"] for m in results["fusion"]["members"]] == ["run", "structure_match"]
    (member_dir,) = members.iterdir()  # NAME-HASH-sSEED, as `zoo run` names it
    assert member_dir.name.startswith("tfidf_fp-") and member_dir.name.endswith("-s0")
    assert (tmp_path / "e0" / results["fusion"]["members"][0]["options"]["run"]).resolve() == member_dir.resolve()

    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "e0b")]) == 0  # the finished member is reused, not retrained
    assert f"done ({member_dir / 'results.json'}), skipping" in capsys.readouterr().out
    assert main([*base, "--set", "train.seed=1"]) == 0  # without --out: beside its members
    (fused,) = [d for d in members.iterdir() if d.name.startswith("tiny_names-")]
    assert fused.name.endswith("-s1") and read_results(fused / "results.json")["spec"]["train"]["seed"] == 1
    assert read_results(fused / "results.json")["requested_spec_hash"] == fused.name.split("-")[1]  # the printed hash
    assert sorted(d.name[-2:] for d in members.iterdir() if d.name.startswith("tfidf_fp-")) == ["s0", "s1"]
    shutil.move(fused, tmp_path / "e1")

    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "e0"), str(tmp_path / "e1"), "--gallery", "all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    assert len(rows) == 1 and rows[0]["composition"] == "tiny_names" and rows[0]["seeds"] == [0, 1]

    assert main(["show", str(spec_file), "--set", "train.seed=2"]) == 0
    shown = capsys.readouterr().out
    assert "members = [" in shown and "seed = 2" in shown


def test_ensemble_composition_bad_input_is_one_line(env, tmp_path, capsys, monkeypatch):
    root, data = env
    monkeypatch.chdir(tmp_path)
    spec_file = _ensemble_toml(tmp_path)
    (tmp_path / "x").mkdir()
    bad_train = _ensemble_toml(tmp_path / "x", "[train]", "epochs = 3")
    cases = [
        (["run", str(spec_file), "--set", "train.epochs=3"], ["takes only train.seed", "tiny_names"]),
        (["run", str(bad_train)], ["[train] takes only seed", "'epochs'"]),
        (["sweep", str(spec_file), "--seeds", "1"], ["is an ensemble composition", "zoo run"]),
        (["ablate", str(spec_file), "--vary", "loss=triplet,infonce"], ["is an ensemble composition"]),
        (["run", "tfidf_fp", "--members-root", str(tmp_path / "m")], ["--members-root", "not an ensemble composition"]),
    ]
    bad_member = tmp_path / "bad.toml"
    bad_member.write_text('name = "bad"\nmembers = ["tfidf_fpp"]\nscorers = ["structure_match"]\n', encoding="utf-8")
    cases.append((["run", str(bad_member)], ["unknown composition 'tfidf_fpp'", "tfidf_fp"]))
    lonely = tmp_path / "lonely.toml"
    lonely.write_text('name = "lonely"\nmembers = ["tfidf_fp"]\n', encoding="utf-8")
    cases.append((["run", str(lonely)], ["at least two members or scorers"]))
    for argv, expected in cases:
        capsys.readouterr()
        assert main([*argv, "--data-dir", str(data)] if argv[0] == "run" else argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert all(part in err for part in expected), err
    assert not (tmp_path / "runs").exists()


def test_rerankers_in_a_composition_and_an_ensemble_work_in_eval_search_and_leaderboard(env, tmp_path, capsys):
    """A second stage (issue 22): recorded with its first stage, k and each re-ranker's weight and contribution;
    zoo eval reproduces its scores with the saved re-rankers, zoo search re-ranks a free query."""
    root, data = env
    out = tmp_path / "reranked"
    results = _run(data, out, 'scorers=["relation_match"]', 'rerankers=["class_check","cross_encoder"]', "rerank_k=8")
    assert [r["name"] for r in results["spec"]["rerankers"]] == ["class_check", "cross_encoder"] and results["spec"]["rerank_k"] == 8
    rerank = results["rerank"]
    assert rerank["k"] == 8 and rerank["first_stage"] == "fused" and "training pairs" in rerank["fitted_on"]
    assert [r["label"] for r in rerank["rerankers"]] == ["class_check", "cross_encoder"]
    for entry in rerank["rerankers"]:
        assert entry["weight"] in rerank["grid"] and (out / entry["state"]).is_dir()
        assert {"heldout_mrr_alone", "heldout_mrr_without", "contribution", "fit"} <= set(entry)
    assert rerank["heldout_mrr"] >= rerank["heldout_mrr_first_stage"]
    assert set(results["first_stage_scores"]) == {"all", "test"}

    assert main(["eval", str(out), "--data-dir", str(data), "--no-progress"]) == 0
    again = json.loads((out / "eval-test.json").read_text())
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert again["scores"][gallery][direction]["mrr"] == pytest.approx(results["scores"][gallery][direction]["mrr"], abs=1e-6)
    assert again["rerank"] == rerank

    capsys.readouterr()
    assert main(["search", str(out), QUERY, "-k", "3", "--json", "--data-dir", str(data), "--no-progress"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3

    ens = tmp_path / "ens-reranked"
    assert main(["ensemble", str(root / "a"), str(root / "b"), "--reranker", "class_check", "--rerank-k", "5",
                 "--data-dir", str(data), "--out", str(ens)]) == 0
    fused = read_results(ens / "results.json")
    assert fused["rerank"]["k"] == 5 and fused["spec"]["rerankers"][0]["reranker"] == "class_check"
    plain = ["ensemble", str(root / "a"), str(root / "b"), "--data-dir", str(data), "--out", str(tmp_path / "ens-plain")]
    assert main(plain) == 0
    assert read_results(tmp_path / "ens-plain" / "results.json")["spec_hash"] != fused["spec_hash"]
    assert main(["leaderboard", str(ens), str(out), "--gallery", "all"]) == 0
    capsys.readouterr()
    assert main(["ensemble", str(root / "a"), "--reranker", "class_chek", "--data-dir", str(data), "--out", str(tmp_path / "bad")]) == 2
    assert "class_check" in capsys.readouterr().err and not (tmp_path / "bad").exists()  # close matches, nothing written
