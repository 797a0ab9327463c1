"""zoo sweep: planning (seed-major, folder naming shared with zoo ablate, base --set rules) and the leaderboard."""

from __future__ import annotations

import json
import shutil

import pytest

from zoo.ablate import build_grid, plan_runs
from zoo.cli import main
from zoo.errors import ComponentError, SpecError
from zoo.spec import load_spec
from zoo.sweep import plan_sweep

SETS = ["train.epochs=2", "molecule_encoder.heads=4"]


def test_plan_is_seed_major_and_applies_slot_options_only_where_they_exist(tmp_path):
    planned = plan_sweep(["aman", "tfidf_fp"], seeds=2, sets=SETS, out_root=tmp_path)
    assert [(p.config.label, p.seed) for p in planned] == [("aman", 0), ("tfidf_fp", 0), ("aman", 1), ("tfidf_fp", 1)]
    aman, tfidf = planned[0].spec, planned[1].spec
    assert aman.molecule_encoder.options["heads"] == 4 and aman.train.epochs == 2
    assert "heads" not in tfidf.molecule_encoder.options and tfidf.train.epochs == 2
    assert planned[1].config.not_applied == ("molecule_encoder.heads=4",)
    assert planned[2].spec.train.seed == 1
    for p in planned:
        assert p.out_dir == tmp_path / f"{p.spec.name}-{p.spec.hash()}-s{p.seed}"


def test_part_options_apply_to_combined_slots_and_swaps_come_first(tmp_path):
    """``text_encoder.scibert.pooling`` reaches aman's SciBERT part; after ``text_encoder=minilm`` (a swap, applied
    first wherever it stands) a plain ``text_encoder.pooling`` applies instead, to every composition."""
    aman, tfidf = (p.spec for p in plan_sweep(["aman", "tfidf_fp"], seeds=1, out_root=tmp_path,
                                               sets=["text_encoder.scibert.pooling=cls"]))
    assert aman.text_encoder.options["parts"][0].options["pooling"] == "cls"
    assert tfidf.text_encoder.name == "tfidf"
    swapped = [p.spec for p in plan_sweep(["aman", "tfidf_fp"], seeds=1, out_root=tmp_path,
                                          sets=["text_encoder.pooling=cls", "text_encoder=minilm"])]
    assert [(s.text_encoder.name, s.text_encoder.options["pooling"]) for s in swapped] == [("minilm", "cls")] * 2


def test_a_sweep_row_and_an_ablation_reference_share_their_runs(tmp_path):
    sweep = plan_sweep(["aman"], seeds=2, sets=["train.epochs=2"], out_root=tmp_path)
    configs = build_grid("aman", ["loss=triplet,infonce"], ["train.epochs=2"], one_at_a_time=True)
    ablation = plan_runs(configs, seeds=2, out_root=tmp_path)
    reference = [p.out_dir for p in ablation if p.config.is_reference]
    assert reference == [p.out_dir for p in sweep]
    assert configs[0].spec.hash() == load_spec("aman").with_overrides(["train.epochs=2"]).resolve().hash()


@pytest.mark.parametrize("names, sets, message", [
    (["tfidf_fpp"], [], "Did you mean: tfidf_fp"),
    (["tfidf_fp"], ["molecule_encoder.heads=4"], "none of the swept compositions"),
    (["aman"], ["text_encoder.tfidf.heads=4"], "none of the swept compositions"),
    ([], [], "at least one composition"),
])
def test_bad_input(tmp_path, names, sets, message):
    with pytest.raises(ComponentError, match=message):
        plan_sweep(names, seeds=1, sets=sets, out_root=tmp_path)


def test_bad_seeds(tmp_path):
    with pytest.raises(SpecError, match="--seeds"):
        plan_sweep(["aman"], seeds=0, out_root=tmp_path)


def test_cli_prints_the_leaderboard_of_finished_runs(tiny_run, tmp_path, capsys):
    """Runs already finished are not retrained; the leaderboard covers exactly the planned runs."""
    data_dir, run_dir, results = tiny_run
    from tiny import TINY

    args = [f"--set={s}" for s in [*TINY, "train.epochs=3"]]
    assert main(["sweep", "aman", "--seeds", "1", "--out-root", str(tmp_path), "--dry-run", *args]) == 0
    planned_dir = next(line.split(": ", 1)[1].strip() for line in capsys.readouterr().out.splitlines() if "seed 0:" in line)
    shutil.copytree(run_dir, planned_dir)
    assert main(["sweep", "aman", "--seeds", "1", "--out-root", str(tmp_path), "--data-dir", str(data_dir),
                 "--gallery", "test", "--format", "json", *args]) == 0
    out = capsys.readouterr().out
    assert "done" in out and "skipping" in out
    board = json.loads(out[out.index("{"):])
    (table,) = board["tables"]
    (row,) = table["rows"]
    assert row["composition"] == "aman" and row["n_seeds"] == 1
    assert row["metrics"]["text_to_molecule"]["mrr"]["mean"] == pytest.approx(results["scores"]["test"]["text_to_molecule"]["mrr"])
