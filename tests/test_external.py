"""External models on the board: ``zoo eval --embeddings FILE.npz --task NAME`` and ``zoo.api.score_embeddings``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.cli import main
from zoo.errors import DataError


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run's own embeddings, exported by ``zoo eval --save-embeddings`` (the run folder is left alone)."""
    data_dir, run_dir, results = tiny_run
    out = tmp_path_factory.mktemp("exported")
    assert main(["eval", str(run_dir), "--data-dir", str(data_dir), "--save-embeddings", str(out / "emb"),
                 "--out", str(out / "eval.json"), "--no-progress"]) == 0
    return data_dir, run_dir, results, out / "emb" / "test-all.npz"


def _close(a: dict, b: dict, tol: float = 1e-9) -> None:
    assert a.keys() == b.keys()
    for gallery in a:
        for direction in a[gallery]:
            for metric, value in a[gallery][direction].items():
                assert abs(value - b[gallery][direction][metric]) <= tol, (gallery, direction, metric)


def test_a_runs_exported_embeddings_score_the_runs_metrics(exported, tmp_path, capsys):
    data_dir, run_dir, results, npz = exported
    out = tmp_path / "ext" / "results.json"
    assert main(["eval", "--embeddings", str(npz), "--task", "chebi20", "--data-dir", str(data_dir), "--name", "tiny",
                 "--out", str(out)]) == 0
    external = json.loads(out.read_text())
    _close(external["scores"], results["scores"])
    assert external["spec"]["name"] == "external:tiny" and external["task"]["name"] == "chebi20"
    assert external["task"]["data_checksums"] == results["task"]["data_checksums"]
    assert main(["leaderboard", str(run_dir / "results.json"), str(out), "--gallery", "all"]) == 0
    board = capsys.readouterr().out
    table = board.split("### ")[1]  # one table: same task, protocol, split, gallery and data
    assert "external:tiny" in table and "| aman |" in table and board.count("### ") == 1


def test_score_embeddings_from_python_with_its_own_ids(exported):
    from zoo.api import score_embeddings

    data_dir, _run, results, npz = exported
    arrays = dict(np.load(npz))
    given = {"text_ids": arrays["text_candidate_cids"][::-1], "text": arrays["text_candidates"][::-1],  # any order
             "molecule_ids": arrays["molecule_candidate_cids"], "molecule": arrays["molecule_candidates"] * 3.0}  # any norm
    scored = score_embeddings(given, "chebi20", name="py", data_dir=data_dir, galleries=["all", "inbatch:4"], log=lambda _m: None)
    _close({"all": scored["scores"]["all"]}, {"all": results["scores"]["all"]}, tol=1e-6)
    assert scored["task"]["galleries"]["inbatch:4"] == {"block_size": 4, "queries": 16}


@pytest.mark.parametrize("edit, message", [
    (lambda a: {**a, "molecule_ids": a["molecule_ids"][3:], "molecule": a["molecule"][3:]},
     "the molecule ids must be exactly the task's 86 gallery molecules: 3 of the task's gallery molecules missing ("),
    (lambda a: {**a, "text_ids": np.append(a["text_ids"], ["x1", "x2"]), "text": np.vstack([a["text"], a["text"][:2]])},
     "text ids must be exactly the task's 80 descriptions: 2 not in the task (x1, x2)"),
    (lambda a: {**a, "text": a["text"][:, :5]}, "text embeddings have 5 dimensions"),
    (lambda a: {**a, "text_ids": a["text_ids"][:-1]}, "text embeddings must be a numeric [79, dim] array"),
])
def test_ids_must_cover_the_task_exactly(exported, edit, message):
    from zoo.external import score_embeddings

    data_dir, _run, _results, npz = exported
    arrays = dict(np.load(npz))
    given = edit({"text_ids": arrays["text_candidate_cids"], "text": arrays["text_candidates"],
                  "molecule_ids": arrays["molecule_candidate_cids"], "molecule": arrays["molecule_candidates"]})
    with pytest.raises(DataError) as caught:
        score_embeddings(given, "chebi20", name="bad", data_dir=data_dir, log=lambda _m: None)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("argv, message", [
    (["eval", "--embeddings", "x.npz"], "needs both --embeddings FILE.npz and --task NAME"),
    (["eval", "--embeddings", "x.npz", "--task", "chebi2"], "Did you mean: chebi20"),
    (["eval", "--embeddings", "missing.npz", "--task", "chebi20"], "missing.npz: file not found"),
    (["eval", "--embeddings", "x.npz", "--task", "pairs", "--set", "train.epochs=2"], "only task options"),
    (["eval"], "needs a run folder, or --embeddings"),
])
def test_bad_external_input_is_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "x.npz", text_ids=np.array(["1"]), text=np.ones((1, 2)), molecule_ids=np.array(["1"]),
             molecule=np.ones((1, 2)))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "runs").exists()
