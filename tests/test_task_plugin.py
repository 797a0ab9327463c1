"""A task plugin that imports nothing but ``zoo.api`` works with every command (issue 21's proof).

The plugin below is written as a new user would, from ``docs/tasks.md`` and ``zoo.api`` alone: a CSV of
``id,smiles,text`` pairs split 80/10/10 with a seeded shuffle, returned in *its own* data class (the harness
reads attributes, never a type). It is installed as a plugin and then ``zoo run``, ``sweep``, ``ablate``,
``eval``, ``search``, ``report``, ``ensemble``, ``leaderboard`` and ``show`` run on it, on tiny data.
"""

from __future__ import annotations

import ast
import csv
import json
import textwrap

import pytest
from tiny import tiny_pairs

from zoo.cli import main
from zoo.registry import plugins as plugins_mod

PLUGIN = textwrap.dedent('''
    """A task plugin from the docs alone: id,smiles,text pairs in a CSV, split 80/10/10 by a seeded shuffle."""

    import csv
    import random
    from dataclasses import dataclass
    from pathlib import Path

    from zoo.api import DataError, Pair, Molecule, hookimpl, sha256_file


    @dataclass
    class PairsData:  # its own class, no summary(): the harness must not test for a type
        data_dir: Path
        protocol: str
        train: list
        select: list
        test: list
        gallery: list
        descriptions: list
        checksums: dict


    class CsvPairs:  # no TaskBase either: only what the Task protocol names
        name = "csv_pairs"
        galleries = ("all", "test")
        protocols = ("random-80-10-10",)

        def load(self, data_dir=None, *, file: str = "pairs.csv", seed: int = 0, download: bool = False):
            path = Path(data_dir or ".") / file
            if not path.is_file():
                raise DataError(f"{path}: file not found")
            with open(path, newline="") as f:
                pairs = [Pair(r["id"], r["smiles"], r["text"]) for r in csv.DictReader(f)]
            order = list(range(len(pairs)))
            random.Random(seed).shuffle(order)
            n = len(pairs)
            test, select = order[: n // 10], order[n // 10 : n // 5]
            part = {i: "test" for i in test} | {i: "select" for i in select}
            return PairsData(Path(path).parent.resolve(), "random-80-10-10",
                             [p for i, p in enumerate(pairs) if i not in part],
                             [pairs[i] for i in sorted(select)], [pairs[i] for i in sorted(test)],
                             [Molecule(p.cid, p.smiles) for p in pairs], pairs, {path.name: sha256_file(path)})


    @hookimpl
    def register_tasks(register):
        register("csv_pairs", CsvPairs, description="id,smiles,text pairs split 80/10/10")
''')

#: a tiny tfidf_fp on the plugin task
TINY = ["eval.task=csv_pairs", "task.seed=1", "embed_dim=32", "text_encoder.svd_dim=16", "molecule_encoder.hidden_dim=32",
        "train.batch_size=16", "train.epochs=2", "train.eval_batch_size=64"]


def write_pairs_csv(path, header=("id", "smiles", "text")):
    """The tiny ChEBI-20-like pairs (tests/tiny.py) as a CSV."""
    rows = tiny_pairs()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return rows


@pytest.fixture
def plugin_task(tmp_path, monkeypatch, fresh_registry):
    """The plugin installed (as a plugin module on sys.path), tiny pairs in ``data/``, cwd = ``tmp_path``."""
    src = tmp_path / "plugin_src"
    src.mkdir()
    (src / "my_pairs_task.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(plugins_mod, "DEFAULT_PLUGINS", (*plugins_mod.DEFAULT_PLUGINS, "my_pairs_task"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    write_pairs_csv(tmp_path / "data" / "pairs.csv")
    return tmp_path / "data"


def zoo(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


def sets(*extra):
    return [x for item in [*TINY, *extra] for x in ("--set", item)]


def test_the_plugin_imports_only_zoo_api():
    imported = {n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(ast.parse(PLUGIN))
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert {m for m in imported if m.startswith("zoo")} == {"zoo.api"}


def test_every_command_works_on_a_plugin_task(plugin_task, capsys):
    data = plugin_task
    # zoo show names the task's options; a typo in them is refused with close matches
    zoo("show", "tfidf_fp", *sets())
    shown = capsys.readouterr().out
    assert '[task]\nseed = 1' in shown and 'task = "csv_pairs"' in shown
    assert main(["show", "tfidf_fp", *sets("task.sed=2")]) == 2
    assert "Did you mean: seed" in capsys.readouterr().err

    # zoo run, then zoo sweep (reuses that run, trains seed 1) and zoo ablate (reuses the reference, trains a variant)
    zoo("run", "tfidf_fp", *sets(), "--data-dir", data, "--no-progress")
    run0 = next((data.parent / "runs").glob("tfidf_fp-*-s0"))
    results = json.loads((run0 / "results.json").read_text())
    assert results["task"]["name"] == "csv_pairs" and results["task"]["protocol"] == "random-80-10-10"
    assert results["task"]["options"] == {"file": "pairs.csv", "seed": 1} and results["spec"]["task"] == {"seed": 1}
    assert results["task"]["galleries"]["all"]["text_to_molecule_candidates"] == 80
    zoo("sweep", "tfidf_fp", "--seeds", 2, *sets(), "--out-root", "runs", "--data-dir", data, "--no-progress")
    run1 = next((data.parent / "runs").glob("tfidf_fp-*-s1"))
    zoo("ablate", "tfidf_fp", "--vary", "molecule_encoder.hidden_dim=32,16", "--seeds", 1, *sets(), "--out-root", "runs",
        "--data-dir", data, "--no-progress")
    assert "hidden_dim" in capsys.readouterr().out

    # re-evaluation, search, report and ensembles find the data where the run recorded it (no --data-dir)
    zoo("eval", run0, "--gallery", "all", "--gallery", "inbatch:4", "--no-progress")
    again = json.loads((run0 / "eval-test.json").read_text())
    assert again["scores"]["all"] == results["scores"]["all"] and again["task"]["galleries"]["inbatch:4"]["block_size"] == 4
    zoo("search", run0, "a pyridine derivative carrying a nitro substituent", "-k", 3, "--no-progress")
    zoo("search", run0, "--smiles", "c1ccc(cc1)O", "-k", 2, "--no-progress")
    out = capsys.readouterr().out
    assert "csv_pairs gallery of" in out and "ChEBI-20" not in out
    zoo("report", run0, run1, "--out", "report.html", "--samples", 2, "--no-progress")
    assert (data.parent / "report.html").stat().st_size > 1000
    zoo("ensemble", run0, run1, "--out", "runs/ens")
    zoo("eval", "runs/ens")
    zoo("search", "runs/ens", "a furan derivative", "-k", 2)
    zoo("leaderboard", "runs", "--gallery", "all")
    board = capsys.readouterr().out
    assert "csv_pairs | random-80-10-10" in board and "ensemble(" in board

    # zoo serve: the API answers over the plugin task's gallery, for the run and the ensemble
    from fastapi.testclient import TestClient

    from zoo.serve import Service
    from zoo.webapp import create_app

    service = Service.load([run0, data.parent / "runs/ens"], names_available=False, log=lambda _m: None)
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        models = client.get("/api/v1/models").json()
        assert len(models["models"]) == 2
        for model in models["models"]:
            hits = client.post("/api/v1/search", json={"query": "a pyridine derivative", "k": 3, "model": model["name"]})
            assert hits.status_code == 200 and len(hits.json()["results"]) == 3, hits.text
        assert client.post("/api/v1/search", json={"smiles": "c1ccc(cc1)O", "k": 2}).status_code == 200


def test_show_refuses_an_unknown_task_as_run_does(capsys):
    for command in ("show", "run"):
        assert main([command, "tfidf_fp", "--set", "eval.task=chebi2O"]) == 2
        err = capsys.readouterr().err
        assert "unknown task 'chebi2O'" in err and "Did you mean: chebi20" in err
