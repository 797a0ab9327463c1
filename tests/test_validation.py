"""Bad input and a bad environment fail early with one line that names the problem and the fix,
and leave nothing behind: spec ranges and nesting, unwritable outputs, runs that fail before
their first checkpoint, SIGTERM, huge queries, small data (issue 11, "Reliability")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from zoo.cli import main

SMALL_TFIDF = ["text_encoder.svd_dim=16", "text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32",
               "molecule_encoder.n_bits=256", "embed_dim=32", "train.batch_size=16", "train.holdout_fraction=0.15",
               "train.warmup_epochs=1"]


def run_args(data_dir, out, *overrides: str, composition: str = "tfidf_fp", base=SMALL_TFIDF) -> list[str]:
    args = ["run", composition, "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for item in [*base, *overrides]:
        args += ["--set", item]
    return args


def one_line_error(capsys) -> str:
    """stderr of a failed command: its ``zoo: error:`` line, and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("zoo: error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- spec values: checked before anything is built or written ------------------------------------
DEEP = "[" * 50_000 + "]" * 50_000


def test_deeply_nested_spec_file_is_one_clear_line(tmp_path, capsys):
    spec = tmp_path / "deep.toml"
    spec.write_text(f'name = "deep"\nembed_dim = {DEEP}\n')
    assert main(["show", str(spec)]) == 2
    line = one_line_error(capsys)
    assert str(spec) in line and "nested more than 10 levels" in line and len(line) < 300


@pytest.mark.parametrize("assignment", [f"embed_dim={DEEP}", "loss.margin=" + "{a=" * 400 + "1" + "}" * 400])
def test_deeply_nested_set_value_is_one_clear_line(capsys, assignment):
    assert main(["show", "tfidf_fp", "--set", assignment]) == 2
    line = one_line_error(capsys)
    assert "nested more than 10 levels" in line and len(line) < 300  # the value is not echoed whole


@pytest.mark.parametrize("assignment, message", [
    ("embed_dim=4000000000", "embed_dim must be at least 1 and at most 65536, got 4000000000"),
    (f"text_encoder.svd_dim={2**63 - 1}", f"text_encoder.svd_dim must be at least 1 and at most 65536, got {2**63 - 1}"),
])
def test_huge_sizes_are_refused_before_allocating(tiny_env, tmp_path, capsys, assignment, message):
    assert main(run_args(tiny_env, tmp_path / "run", assignment, base=[])) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("assignment, message", [
    ("molecule_encoder.hidden_dim=100000", "molecule_encoder.hidden_dim must be at least 1 and at most 65536"),
    ("molecule_encoder.layers=100000", "molecule_encoder.layers must be at least 1 and at most 256"),
    ("text_encoder.max_features=1000000000", "text_encoder.max_features must be at least 1 and at most 16777216"),
    ("train.batch_size=1", "train.batch_size must be at least 2"),
    ("train.epochs=10000000", "train.epochs must be at least 1 and at most 100000"),
    ("train.weight_decay=nan", "train.weight_decay must be a finite number at least 0, got nan"),
    ("train.grad_clip=-inf", "train.grad_clip must be a finite number at least 0, got -inf"),
    ("train.holdout_fraction=1.0", "train.holdout_fraction must be greater than 0 and less than 1"),
    ("loss.temperature=nan", "loss.temperature must be a finite number greater than 0, got nan"),
    ("text_encoder.dropout=inf", "text_encoder.dropout must be a finite number at least 0 and less than 1"),
    ("molecule_encoder.pretrain_epochs=-1", "molecule_encoder.pretrain_epochs must be at least 0 and at most 100000"),
    ("molecule_encoder.pretrain_mask=1.0", "molecule_encoder.pretrain_mask must be greater than 0 and less than 1"),
])
def test_every_numeric_option_is_range_checked(capsys, assignment, message):
    assert main(["show", "tfidf_fp", "--set", assignment]) == 2
    assert message in one_line_error(capsys)


def test_parts_of_a_combined_slot_are_range_checked(capsys):
    assert main(["show", "tfidf_fp", "--set", 'text_encoder=["tfidf","minilm"]', "--set", "text_encoder.tfidf.svd_dim=70000"]) == 2
    assert "text_encoder.parts.0.svd_dim must be at least 1 and at most 65536" in one_line_error(capsys)


def test_a_model_too_big_for_memory_is_one_clear_line(monkeypatch):
    """Within the ranges, sizes can still multiply past the memory: building says which sizes to lower."""
    from zoo.errors import ComponentError
    from zoo.model import build_model
    from zoo.plugins.molecule import fingerprint_mlp
    from zoo.spec import load_spec

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 274877906944 bytes")

    monkeypatch.setattr(fingerprint_mlp.FingerprintMLP, "__init__", out_of_memory)
    spec = load_spec("tfidf_fp").with_overrides(["molecule_encoder.n_bits=1048576", "molecule_encoder.hidden_dim=65536"])
    with pytest.raises(ComponentError, match=r"\[molecule_encoder\] .*not enough memory .*n_bits=1048576, hidden_dim=65536"):
        build_model(spec)


def test_component_default_values_pass_the_ranges(capsys):
    for name in ("aman", "text2mol_mlp", "text2mol_gcn", "text2mol_attention", "gt_infonce", "tfidf_fp"):
        assert main(["show", name]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_lr_is_refused_before_anything_is_written(tiny_env, tmp_path, capsys, value):
    assert main(run_args(tiny_env, tmp_path / "run", f"train.lr={value}")) == 2
    assert f"train.lr must be a finite number greater than 0, got {value}" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()  # no fitted/ state, no empty run folder


def test_unknown_task_is_a_registry_error_with_close_matches(tiny_env, tmp_path, capsys):
    """Tasks resolve through the registry: a typo is refused with close matches before anything is written."""
    assert main(run_args(tiny_env, tmp_path / "run", "eval.task=chebi2")) == 2
    assert "unknown task 'chebi2'. Did you mean: chebi20?" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_the_chebi20_task_owns_its_galleries_and_protocols():
    from zoo.tasks import get_task

    task = get_task("chebi20")
    assert task.galleries == ("all", "test") and set(task.protocols) == {"canonical", "offline-low-data"}
    assert all(task.valid_gallery(g) for g in ("all", "test", "inbatch:2"))
    assert not any(task.valid_gallery(g) for g in ("everything", "inbatch:1", "inbatch:x", "inbatch:"))
    assert "test never used" in task.protocol_note("offline-low-data") and task.protocol_note("canonical") == "protocol: canonical"


def test_run_whose_loss_blows_up_in_epoch_one_leaves_nothing(tiny_env, tmp_path, capsys):
    assert main(run_args(tiny_env, tmp_path / "new", "train.lr=1e30", "train.epochs=2")) == 2
    assert "lower train.lr" in one_line_error(capsys)
    assert not (tmp_path / "new").exists()

    existing = tmp_path / "existing"  # a folder that existed before is kept, with what it held
    (existing / "notes").mkdir(parents=True)
    (existing / "notes" / "mine.txt").write_text("keep me")
    assert main(run_args(tiny_env, existing, "train.lr=1e30", "train.epochs=2")) == 2
    assert sorted(p.relative_to(existing).as_posix() for p in existing.rglob("*")) == ["notes", "notes/mine.txt"]


# -- outputs and the environment -------------------------------------------------------------------
def test_leaderboard_out_is_a_folder(tmp_path, capsys):
    from test_leaderboard import make_results, write

    write(tmp_path, "runs/a-s0", make_results())
    assert main(["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path)]) == 2
    line = one_line_error(capsys)
    assert f"--out {tmp_path} is a folder" in line and f"--out {tmp_path / 'leaderboard.md'}" in line


def test_deeply_nested_leaderboard_filter_is_no_traceback(tmp_path, capsys):
    from test_leaderboard import make_results, write

    write(tmp_path, "runs/a-s0", make_results())
    assert main(["leaderboard", str(tmp_path / "runs"), "--filter", f"loss.margin={DEEP}"]) == 2
    assert "no results match --filter" in one_line_error(capsys)


def test_run_out_is_an_existing_file(tiny_env, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    assert main(run_args(tiny_env, tmp_path / "taken")) == 2
    assert "run folder" in (line := one_line_error(capsys)) and "is a file, not a folder" in line
    assert main(run_args(tiny_env, tmp_path / "taken" / "run")) == 2
    assert f"{tmp_path / 'taken'} is a file, not a folder" in one_line_error(capsys)
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_unusable_cache_dir_names_the_variable(tiny_env, tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "a-file"))
    assert main(run_args(tiny_env, tmp_path / "run")) == 2
    line = one_line_error(capsys)
    assert f"ZOO_CACHE_DIR={tmp_path / 'a-file'} is not a usable cache folder" in line and "set ZOO_CACHE_DIR" in line
    assert not (tmp_path / "run").exists()


def test_zoo_debug_shows_the_traceback(monkeypatch):
    from zoo.errors import SpecError

    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(SpecError, match="train.lr must be a finite number"):
        main(["show", "tfidf_fp", "--set", "train.lr=nan"])


# -- SIGTERM ---------------------------------------------------------------------------------------
TERMINATE_AFTER_FIRST_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import zoo.loop as train  # the epoch loop saves the checkpoints
    from zoo.cli import main

    real_save = train.save_checkpoint

    def save_then_terminate(*args, **kwargs):
        real_save(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # as a batch scheduler does at its time limit

    train.save_checkpoint = save_then_terminate
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_during_training_says_how_to_resume(tiny_env, tmp_path, capsys):
    args = run_args(tiny_env, tmp_path / "run", "train.epochs=2")
    done = subprocess.run([sys.executable, "-c", TERMINATE_AFTER_FIRST_CHECKPOINT, *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "zoo: terminated (SIGTERM). Checkpoints are written after each epoch: rerun the same command to resume." in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "run" / "checkpoint" / "last.safetensors").is_file()
    assert main(args) == 0  # the checkpoint is consistent: the same command resumes and finishes
    assert "resuming from" in capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["training"]["epochs_run"] == 2


# -- zoo search with a huge query ------------------------------------------------------------------
def test_huge_query_is_echoed_shortened():
    from zoo.search import _result, format_result

    query = "benzene " * 125_000  # 1 MB
    result = _result("text", "molecules", "gallery", query, [], 0.0, 0.0, 0.0)
    text = format_result(result)
    assert len(text) < 300 and f"… ({len(query)} chars)" in text and text.count("benzene") == 10
    assert len(json.dumps(result)) < 1500 and result["query_chars"] == len(query)  # --json: the first 1000 chars
    description = "The molecule is a pyridine derivative carrying a nitro substituent attached directly to the ring."
    usual = _result("text", "molecules", "gallery", description, [], 0.0, 0.0, 0.0)
    assert usual["query"] == description  # a description-sized query is kept whole for --json
    assert f"{description[:80]}… ({len(description)} chars)" in format_result(usual)


# -- small data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_tfidf_run(tmp_path_factory):
    """The shipped ``tfidf_fp`` (svd_dim=512) trained for one epoch on the 80-pair tiny data."""
    from tiny import write_tiny_chebi

    root = tmp_path_factory.mktemp("small-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        data_dir = write_tiny_chebi(root / "chebi")
        assert main(run_args(data_dir, root / "run", "train.epochs=1", base=[])) == 0
        yield data_dir, root / "run"


def test_shipped_tfidf_fp_adapts_svd_dim_to_small_data(shipped_tfidf_run, capsys):
    data_dir, run = shipped_tfidf_run
    results = json.loads((run / "results.json").read_text())
    note = "[text_encoder] tfidf: svd_dim lowered from 512 to 57 for 58 training texts"
    assert any(n.startswith(note) for n in results["notes"])
    assert results["spec"]["text_encoder"]["svd_dim"] == 512  # the spec (and its hash) stay as asked
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(run.parent / "cache"))
        assert main(["eval", str(run), "--data-dir", str(data_dir), "--no-progress"]) == 0  # loads the fitted state
        again = json.loads((run / "eval-test.json").read_text())
        for gallery in ("all", "test"):
            for direction in ("text_to_molecule", "molecule_to_text"):
                assert again["scores"][gallery][direction] == pytest.approx(results["scores"][gallery][direction], rel=1e-6)
        query = "The molecule is a benzene derivative carrying a nitro substituent. " * 20
        assert main(["search", str(run), query, "--data-dir", str(data_dir), "--no-progress", "-k", "3"]) == 0
        out = capsys.readouterr().out
        assert f"… ({len(query)} chars)" in out and len(out.splitlines()[0]) < 250
