"""The built-in ``pairs`` task: the user's own pairs from CSV/TSV/JSONL (.gz) or SDF, splits, decoys, bad input,
and ``zoo run`` on it; task options in specs (``[task]``, ``--set task.KEY=VALUE``)."""

from __future__ import annotations

import csv
import gzip
import json
import warnings

import pytest
from tiny import tiny_pairs

from zoo.cli import main
from zoo.errors import DataError, DataWarning, SpecError
from zoo.spec import CompositionSpec, load_spec
from zoo.tasks import load_data

PAIRS = tiny_pairs()  # 80 ChEBI-20-like (CID, SMILES, description) rows


def write_table(path, rows, header=("id", "smiles", "text"), delimiter=","):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def load(path, **options):
    return load_data("pairs", {"path": str(path), **options})


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))


# -- formats and splits -----------------------------------------------------------------------------------
def test_csv_seeded_split_is_disjoint_deterministic_and_covers_every_pair(tmp_path):
    path = write_table(tmp_path / "pairs.csv", PAIRS)
    a, b, c = load(path), load(path), load(path, split_seed=1)
    assert (len(a.train), len(a.select), len(a.test)) == (64, 8, 8) and a.protocol == "seeded-split"
    ids = [p.cid for p in a.train + a.select + a.test]
    assert sorted(ids) == sorted(r[0] for r in PAIRS) and len(set(ids)) == 80
    assert [p.cid for p in a.test] == [p.cid for p in b.test] and [p.cid for p in a.test] != [p.cid for p in c.test]
    assert [m.cid for m in a.gallery] == [r[0] for r in PAIRS] and a.checksums.keys() == {"pairs.csv"}
    assert a.data_dir == tmp_path.resolve()  # an absolute path: its folder


def test_formats_give_the_same_pairs(tmp_path):
    csv_pairs = load(write_table(tmp_path / "p.csv", PAIRS))
    tsv = load(write_table(tmp_path / "p.tsv.gz", PAIRS, delimiter="\t"))
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps({"id": c, "smiles": s, "text": t}) + "\n" for c, s, t in PAIRS))
    from rdkit import Chem

    sdf = tmp_path / "p.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for c, s, t in PAIRS:
            mol = Chem.MolFromSmiles(s)
            mol.SetProp("_Name", c)
            mol.SetProp("description", t)
            writer.write(mol)
    for other in (tsv, load(jsonl), load(sdf, text_column="description")):
        assert [(p.cid, p.description) for p in other.test] == [(p.cid, p.description) for p in csv_pairs.test]
        assert len(other.gallery) == 80


def test_columns_split_column_and_decoys(tmp_path):
    parts = ["train"] * 60 + ["valid"] * 10 + ["test"] * 10
    rows = [(c, s, t, part) for (c, s, t), part in zip(PAIRS, parts)]
    path = write_table(tmp_path / "mine.csv", rows, header=("CID", "SMILES", "description", "split"))
    decoys = tmp_path / "decoys.smi"
    decoys.write_text("CCCCCC hexane\nOCCO glycol\n")
    data = load_data("pairs", {"path": path.name, "id_column": "CID", "smiles_column": "SMILES", "text_column": "description",
                               "split_column": "split", "extra_molecules": "decoys.smi"}, data_dir=tmp_path)  # relative: in data_dir
    assert data.protocol == "split-column" and (len(data.train), len(data.select), len(data.test)) == (60, 10, 10)
    assert [m.cid for m in data.gallery[-2:]] == ["hexane", "glycol"] and len(data.descriptions) == 80
    assert set(data.checksums) == {"mine.csv", "decoys.smi"}


def test_unparsable_smiles_are_skipped_counted_and_reported(tmp_path):
    rows = [*PAIRS[:40], ("bad1", "C1CC", "a broken ring"), *PAIRS[40:], ("bad2", "XYZ", "not a molecule")]
    path = write_table(tmp_path / "pairs.csv", rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load(path)
    assert [s["cid"] for s in data.skipped] == ["bad1", "bad2"] and data.skipped[0]["row"] == 42
    assert len(data.descriptions) == 80
    assert any(issubclass(w.category, DataWarning) and "skipped 2 rows" in str(w.message) for w in caught)


@pytest.mark.parametrize("rows, header, options, message", [
    (PAIRS + [PAIRS[3]], None, {}, f"duplicate id {PAIRS[3][0]} in rows 5 and 82"),
    ([*PAIRS[:5], ("77", "", "no smiles")], None, {}, "row 7: empty SMILES (column 'smiles')"),
    ([*PAIRS[:5], ("77", "CCO", "")], None, {}, "row 7: empty text (column 'text')"),
    (PAIRS, ("id", "smile", "text"), {}, "no column 'smiles'; columns: id, smile, text. Did you mean smile for 'smiles'?"),
    (PAIRS, None, {"text_column": "description"}, "no column 'description'"),
    ([(c, s, t, "trian") for c, s, t in PAIRS], ("id", "smiles", "text", "part"), {"split_column": "part"},
     "row 2: split 'trian' in column 'part': use train, valid or test"),
    ([(c, s, t, "train") for c, s, t in PAIRS], ("id", "smiles", "text", "part"), {"split_column": "part"},
     "no valid or test rows in column 'part'"),
    (PAIRS, None, {"fractions": [0.8, 0.1]}, "give three positive fractions"),
    (PAIRS, None, {"fractions": [0.5, 0.1, 0.1]}, "sum to 0.7, not 1"),
    (PAIRS[:5], None, {}, "leave 5 for train, 0 for valid and 0 for test"),
    (PAIRS, None, {"extra_molecules": "DECOYS"}, "decoys.csv, row 2: decoy id"),
])
def test_bad_input_names_file_row_and_field(tmp_path, rows, header, options, message):
    path = write_table(tmp_path / "pairs.csv", rows, header=header or ("id", "smiles", "text", *(("part",) if len(rows[0]) == 4 else ())))
    write_table(tmp_path / "decoys.csv", [(PAIRS[0][0], "CCO", "x")])
    options = {k: str(tmp_path / "decoys.csv") if v == "DECOYS" else v for k, v in options.items()}
    with pytest.raises(DataError) as caught:
        load(path, **options)
    error = str(caught.value)
    assert message in error and (str(tmp_path) in error or error.startswith("task.fractions="))  # the file, or the option


def test_missing_path_or_file(tmp_path):
    with pytest.raises(DataError, match="--set task.path=FILE"):
        load_data("pairs", {})
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load(tmp_path / "nope.csv")
    (tmp_path / "pairs.xlsx").write_text("x")
    with pytest.raises(DataError, match="set task.format"):
        load(tmp_path / "pairs.xlsx")


# -- task options in specs --------------------------------------------------------------------------------
def test_task_options_validated_like_component_options_and_hashed_only_when_set():
    base = load_spec("tfidf_fp")
    assert base.with_overrides(["task.holdout_seed=0"]).resolve().hash() == base.resolve().hash()
    other = base.with_overrides(["task.holdout_seed=3"]).resolve()
    assert other.hash() != base.resolve().hash() and other.task == {"holdout_seed": 3}
    assert "[task]\nholdout_seed = 3" in other.to_toml()
    assert CompositionSpec.from_dict(other.to_dict()).resolve().hash() == other.hash()  # TOML/JSON round trip
    with pytest.raises(SpecError, match="Did you mean: holdout_seed"):
        base.with_overrides(["task.holdout_sed=3"]).resolve()
    with pytest.raises(SpecError, match="holdout_seed must be an integer"):
        base.with_overrides(['task.holdout_seed="x"']).resolve()
    with pytest.raises(SpecError, match="train.holdout_fraction"):
        base.with_overrides(["task.holdout_fraction=0.2"]).resolve()
    pairs = other.with_overrides(["eval.task=pairs", "task.path=p.csv"]).resolve()
    assert pairs.task == {"path": "p.csv"}  # another task: the spec's options of the old one are dropped
    with pytest.raises(SpecError, match="split_seed must be an integer"):
        base.with_overrides(["eval.task=pairs", "task.split_seed=0.5"]).resolve()


def test_chebi20_holdout_seed_changes_the_split(tiny_env):
    from zoo.tasks import load_spec_data

    spec = load_spec("tfidf_fp")
    a = load_spec_data(spec.resolve(), tiny_env)
    b = load_spec_data(spec.with_overrides(["task.holdout_seed=1"]).resolve(), tiny_env)
    assert {p.cid for p in a.select} != {p.cid for p in b.select} and [p.cid for p in a.test] == [p.cid for p in b.test]


def test_zoo_run_on_a_users_csv_then_eval_from_elsewhere(tmp_path, monkeypatch, capsys):
    """The issue's done-when command on a small CSV; zoo eval later finds the file through the recorded folder."""
    work = tmp_path / "work"
    work.mkdir()
    write_table(work / "pairs.csv", PAIRS)
    monkeypatch.chdir(work)
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    args = ["run", "tfidf_fp", "--set", "eval.task=pairs", "--set", "task.path=pairs.csv", "--set", "train.epochs=2",
            "--set", "text_encoder.svd_dim=16", "--set", "embed_dim=32", "--set", "train.batch_size=16", "--no-progress"]
    assert main(args) == 0
    run = next((work / "runs").glob("tfidf_fp-*-s0"))
    results = json.loads((run / "results.json").read_text())
    assert results["task"]["name"] == "pairs" and results["task"]["options"]["path"] == "pairs.csv"
    assert results["task"]["data_dir"] == str(work.resolve()) and results["seeds"]["holdout_seed"] == 0
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(run), "--no-progress"]) == 0
    assert json.loads((run / "eval-test.json").read_text())["scores"] == results["scores"]
    assert main(["run", "tfidf_fp", "--set", "eval.task=pairs", "--set", "task.pth=x.csv"]) == 2
    assert "Did you mean: path" in capsys.readouterr().err


def test_holdout_seed_is_recorded_and_runs_of_other_task_options_are_not_fused(tmp_path):
    from zoo.errors import RunError
    from zoo.fuse_runs import _check_same_task_and_data
    from zoo.tasks import holdout_seed

    assert holdout_seed("chebi20", {}) == 0 and holdout_seed("chebi20", {"holdout_seed": 3}) == 3
    spec = load_spec("tfidf_fp").resolve().to_dict()
    member = {"spec": spec, "task": {"data_checksums": {"a": "1"}}}
    other = {"spec": {**spec, "task": {"holdout_seed": 3}}, "task": {"data_checksums": {"a": "1"}}}
    _check_same_task_and_data([tmp_path / "a", tmp_path / "b"], [member, member])
    with pytest.raises(RunError, match="different task options"):
        _check_same_task_and_data([tmp_path / "a", tmp_path / "b"], [member, other])
