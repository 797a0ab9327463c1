"""A tiny end-to-end run: synthetic ChEBI-20-shaped files, MiniLM frozen, graph transformer, adversarial, triplet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import TINY, run_tiny

from zoo.cli import main


def test_tiny_aman_run_beats_chance_and_records_everything(tiny_env, tmp_path, capsys):
    results = run_tiny(tiny_env, tmp_path / "run", "train.epochs=30", "train.patience=30")
    out = capsys.readouterr().out
    assert "substituting the embedded 'minilm' encoder" in out.split("epoch")[0]  # said at the start
    scores = results["scores"]
    n_all = results["task"]["galleries"]["all"]["text_to_molecule_candidates"]
    assert n_all == 86 and results["task"]["galleries"]["test"]["text_to_molecule_candidates"] == 16
    chance_all = sum(1 / r for r in range(1, n_all + 1)) / n_all  # expected MRR of a random ranking
    assert scores["all"]["text_to_molecule"]["mrr"] > 3 * chance_all, scores
    assert scores["test"]["molecule_to_text"]["mrr"] > 2 * sum(1 / r for r in range(1, 17)) / 16, scores
    # the results file records what the issue asks for
    assert results["substitutions"][0]["requested"] == "scibert"
    assert results["spec"]["text_encoder"]["name"] == "minilm"
    assert results["requested_spec_hash"] != results["spec_hash"]
    assert results["training"]["text_mode"] == "frozen"
    assert results["task"]["protocol"] == "offline-low-data"
    assert {"validation.txt", "test.txt"} <= set(results["task"]["data_checksums"])
    history = results["training"]["history"]
    assert len(history) == results["training"]["epochs_run"] and "disc_acc" in history[0]
    assert {c["slot"] for c in results["components"]} == {"text_encoder", "molecule_encoder", "aligner", "loss"}
    # a finished run refuses to be overwritten silently
    assert main(["run", "aman", "--data-dir", str(tiny_env), "--out", str(tmp_path / "run"), "--no-progress",
                 *sum((["--set", s] for s in [*TINY, "train.epochs=30", "train.patience=30"]), [])]) == 2
    assert "exists" in capsys.readouterr().err


def test_interrupted_run_resumes_to_the_same_result(tiny_env, tmp_path, monkeypatch):
    settings = ("train.epochs=4", "train.patience=10")
    reference = run_tiny(tiny_env, tmp_path / "straight", *settings)

    import zoo.loop as train  # the epoch loop saves the checkpoints

    real_save = train.save_checkpoint
    calls = {"n": 0}

    def interrupt_after_two(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", interrupt_after_two)
    args = ["run", "aman", "--data-dir", str(tiny_env), "--out", str(tmp_path / "resumed"), "--no-progress"]
    for item in [*TINY, *settings]:
        args += ["--set", item]
    assert main(args) == 130
    assert not (tmp_path / "resumed" / "results.json").exists()  # nothing half-written
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    resumed = run_tiny(tiny_env, tmp_path / "resumed", *settings)
    assert resumed["training"]["epochs_run"] == 4
    assert [h["loss"] for h in resumed["training"]["history"]] == pytest.approx([h["loss"] for h in reference["training"]["history"]], rel=1e-5)
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert resumed["scores"][gallery][direction] == pytest.approx(reference["scores"][gallery][direction], rel=1e-5)


def test_checkpoint_of_another_spec_is_refused(tiny_env, tmp_path, capsys):
    run_tiny(tiny_env, tmp_path / "run", "train.epochs=1")
    (tmp_path / "run" / "results.json").unlink()
    args = ["run", "aman", "--data-dir", str(tiny_env), "--out", str(tmp_path / "run"), "--no-progress"]
    for item in [*TINY, "train.epochs=1", "loss.margin=0.5"]:
        args += ["--set", item]
    assert main(args) == 2
    assert "different spec" in capsys.readouterr().err


def test_tiny_composition_with_the_example_plugin(tiny_env, tmp_path):
    """CI installs plugins/examples/molzoo-descriptors; a composition uses its encoder by name."""
    pytest.importorskip("molzoo_descriptors")
    results = run_tiny(tiny_env, tmp_path / "plugin-run", "molecule_encoder=descriptor_mlp", "train.epochs=3")
    mol = next(c for c in results["components"] if c["slot"] == "molecule_encoder")
    assert mol["name"] == "descriptor_mlp" and mol["plugin"] == "descriptors" and mol["version"] == "0.1.0"
    assert results["spec"]["molecule_encoder"]["name"] == "descriptor_mlp"
    assert results["scores"]["test"]["text_to_molecule"]["n_queries"] == 16


@pytest.mark.parametrize("bad, message", [
    ("loss.mining=bogus", "mining='bogus'"),
    ("molecule_encoder.heads=3", "heads=3"),
    ("train.optimizer=adamx", "adamx"),
    ("train.epochs=0", "train.epochs must be at least 1"),
    ('eval.galleries=["everything"]', "eval.galleries"),
])
def test_bad_options_fail_before_training_with_a_clear_message(tiny_env, tmp_path, capsys, bad, message):
    args = ["run", "aman", "--data-dir", str(tiny_env), "--out", str(tmp_path / "run"), "--no-progress"]
    for item in [*TINY, bad]:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_zoo_eval_reproduces_the_run_and_embeddings_recompute_the_metrics(tiny_env, tmp_path, capsys):

    run = tmp_path / "run"
    results = run_tiny(tiny_env, run, "train.epochs=3")
    emb_dir = tmp_path / "emb"
    assert main(["eval", str(run), "--data-dir", str(tiny_env), "--no-progress", "--save-embeddings", str(emb_dir),
                 "--gallery", "all", "--gallery", "test", "--gallery", "inbatch:4"]) == 0
    again = json.loads((run / "eval-test.json").read_text())
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert again["scores"][gallery][direction] == pytest.approx(results["scores"][gallery][direction], abs=1e-6)
    assert again["task"]["galleries"]["inbatch:4"] == {"block_size": 4, "queries": 16}
    # the documented few lines of numpy recompute the harness's numbers exactly
    for key, value in readme_recomputation(emb_dir / "test-all.npz").items():
        assert value == pytest.approx(again["scores"]["all"]["text_to_molecule"][key], abs=1e-9), key


def readme_recomputation(npz: Path) -> dict[str, float]:
    """Run the documented numpy snippet (taken from docs/evaluation.md itself) on ``npz``; returns its metrics."""
    import re
    import textwrap

    readme = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    snippet = re.search(r"```python\n( *import numpy as np\n *e = np.load\(.*?)```", readme, flags=re.S).group(1)
    namespace: dict = {}
    exec(textwrap.dedent(snippet).replace("DIR/test-all.npz", str(npz)), namespace)
    return namespace["metrics"]


def test_twin_molecules_tie_and_the_readme_snippet_reproduces_expected_ranks(tiny_env, tmp_path):
    """A gallery holding the same molecule under two CIDs is accepted; a fingerprint model scores the twins
    identically, the harness breaks those ties at random in expectation, and the README's numpy lines agree."""
    from test_tfidf import run_tfidf

    rows = (tiny_env / "test.txt").read_text().splitlines()[1:9]
    twins = "".join(f"{9000 + i}\t{row.split(chr(9))[1]}\n" for i, row in enumerate(rows))
    with open(tiny_env / "train_molecules.tsv", "a") as fh:
        fh.write(twins)
    run = tmp_path / "run"
    results = run_tfidf(tiny_env, run, "train.epochs=2")
    t2m = results["scores"]["all"]["text_to_molecule"]
    assert results["task"]["tie_policy"] == "expected"
    assert t2m["queries_with_ties"] >= 8  # every test molecule with a twin ties with it
    assert t2m["mrr"] < t2m["mrr_optimistic"]
    emb_dir = tmp_path / "emb"
    assert main(["eval", str(run), "--data-dir", str(tiny_env), "--no-progress", "--save-embeddings", str(emb_dir),
                 "--gallery", "all"]) == 0
    for key, value in readme_recomputation(emb_dir / "test-all.npz").items():
        assert value == pytest.approx(t2m[key], abs=1e-9), key


def test_zoo_eval_bad_input(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    (tmp_path / "unfinished").mkdir()
    assert main(["eval", str(tmp_path / "unfinished")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "unfinished"), "--gallery", "everything"]) == 2
    assert "--gallery" in capsys.readouterr().err


def test_zoo_eval_bf16_is_recorded_and_close_to_fp32(tiny_run, tmp_path):
    data_dir, run_dir, results = tiny_run
    out = tmp_path / "eval-bf16.json"
    assert main(["eval", str(run_dir), "--data-dir", str(data_dir), "--no-progress", "--gallery", "test", "--bf16",
                 "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["molecule_precision"] == "bf16"
    bf16, fp32 = again["scores"]["test"]["text_to_molecule"], results["scores"]["test"]["text_to_molecule"]
    assert bf16["mrr"] == pytest.approx(fp32["mrr"], abs=0.05)


def test_default_run_folder_is_named_by_the_requested_spec_like_a_sweep(tiny_env, tmp_path, monkeypatch):
    """`zoo run aman` without --out (SciBERT substituted offline) writes where `zoo sweep aman` and ensemble
    compositions look for it: runs/NAME-HASH-sSEED with the requested spec's hash, the one `zoo run` prints."""
    from zoo.sweep import plan_sweep

    monkeypatch.chdir(tmp_path)
    sets = [*TINY, "train.epochs=1"]
    assert main(["run", "aman", "--data-dir", str(tiny_env), "--no-progress", *sum((["--set", s] for s in sets), [])]) == 0
    (planned,) = plan_sweep(["aman"], 1, sets, out_root="runs")
    results = json.loads((tmp_path / planned.out_dir / "results.json").read_text())
    assert results["requested_spec_hash"] == planned.spec.hash() != results["spec_hash"]  # substituted, named by the request
