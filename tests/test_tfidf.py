"""The ``tfidf`` text encoder: fitting on training texts only, the fitted state saved with the run
(not in checkpoints), reloaded identically on resume and by ``zoo eval``, and clear errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from zoo.cli import main
from zoo.plugins.text.tfidf_text import TfidfText
from zoo.registry import get_component

TEXTS = [f"The molecule is a {ring} compound carrying a {group} group." for ring in ("benzene", "pyridine", "furan", "thiophene")
         for group in ("hydroxy", "amino", "chloro", "methyl", "nitro")]
SMALL = {"svd_dim": 8, "hidden_dim": 16}
TINY_TFIDF = ["text_encoder.svd_dim=16", "text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32",
              "molecule_encoder.n_bits=256", "embed_dim=32", "train.batch_size=16", "train.lr=0.003",
              "train.holdout_fraction=0.15", "train.eval_batch_size=64", "train.warmup_epochs=1", "train.patience=10"]


def run_tfidf(data_dir, out, *extra: str, composition: str = "tfidf_fp") -> dict:
    args = ["run", composition, "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for item in [*TINY_TFIDF, *extra]:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())


def vocabulary(run_dir, prefix: str = "") -> set[str]:
    from safetensors.torch import load_file

    state = load_file(str(run_dir / "fitted" / "text_encoder.safetensors"))
    return set(bytes(state[f"{prefix}vocabulary"].numpy()).decode().split("\0"))


# -- the component -----------------------------------------------------------------------------
def test_registered_defaults_match_the_constructor():
    import inspect

    component = get_component("text_encoder", "tfidf")
    params = inspect.signature(TfidfText).parameters
    assert {k: params[k].default for k in component.config} == dict(component.config)
    assert component.config["svd_dim"] == 512 and component.config["analyzer"] == "char_wb"


def test_fitted_state_round_trip_gives_identical_features(tmp_path):
    from safetensors.torch import load_file

    from zoo.cache import atomic_save_tensors

    encoder = TfidfText(32, **SMALL)
    encoder.fit(TEXTS, seed=0)
    atomic_save_tensors(encoder.fitted_state(), tmp_path / "fitted.safetensors")
    again = TfidfText(32, **SMALL)
    again.load_fitted_state(load_file(str(tmp_path / "fitted.safetensors")))
    unseen = ["A completely new sentence about a nitro furan.", "zzz"]
    assert np.array_equal(encoder.features(TEXTS + unseen), again.features(TEXTS + unseen))
    feats = encoder.features(TEXTS)
    assert feats.shape == (len(TEXTS), 8) and np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # nothing fitted is a module parameter or buffer: checkpoints do not repeat it
    assert set(encoder.state_dict()) == set(TfidfText(32, **SMALL).state_dict())


def test_fitted_state_of_other_options_is_refused():
    encoder = TfidfText(32, **SMALL)
    encoder.fit(TEXTS)
    other = TfidfText(32, svd_dim=8, hidden_dim=16, ngram_max=4)
    with pytest.raises(ValueError, match="other options"):
        other.load_fitted_state(encoder.fitted_state())
    with pytest.raises(ValueError, match="lacks vocabulary"):
        other.load_fitted_state({})
    with pytest.raises(ValueError, match="not fitted"):
        TfidfText(32, **SMALL).prepare(["text"])


def test_svd_dim_adapts_to_a_small_corpus_and_the_fitted_state_records_it():
    encoder = TfidfText(32, svd_dim=64, hidden_dim=16)
    encoder.fit(TEXTS)  # 20 texts: at most 19 SVD dimensions
    assert tuple(encoder.fitted_state()["components"].shape)[0] == 19
    notes = encoder.fitted_notes()
    assert len(notes) == 1 and "svd_dim lowered from 64 to 19" in notes[0] and "20 training texts" in notes[0]
    feats = encoder.features(TEXTS)
    assert feats.shape == (20, 64) and not feats[:, 19:].any()  # the head keeps svd_dim inputs; the missing ones are 0
    again = TfidfText(32, svd_dim=64, hidden_dim=16)
    again.load_fitted_state(encoder.fitted_state())  # zoo eval / zoo search: the same features, the same note
    assert np.array_equal(again.features(TEXTS), feats) and again.fitted_notes() == encoder.fitted_notes()
    unchanged = TfidfText(32, **SMALL)
    unchanged.fit(TEXTS)  # svd_dim=8 fits: nothing to say
    assert unchanged.fitted_notes() == []
    with pytest.raises(ValueError, match="leave no SVD dimension"):
        TfidfText(32, svd_dim=8, min_df=1).fit(["one text"])


def test_forward_shapes_states_and_gradients():
    encoder = TfidfText(32, **SMALL, layers=2)
    encoder.fit(TEXTS)
    batch = encoder.collate(encoder.prepare(TEXTS[:5])).to("cpu")
    out = encoder(batch)
    assert out.embedding.shape == (5, 32) and out.states is None
    out.embedding.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    encoder.return_states = True
    out = encoder(batch)
    assert out.states.shape == (5, 1, 16) and out.mask.all()


@pytest.mark.parametrize("options, word", [({"analyzer": "chars"}, "analyzer"), ({"ngram_min": 6}, "ngram_min"),
                                           ({"svd_dim": 0}, "svd_dim"), ({"dropout": 1.5}, "dropout")])
def test_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        TfidfText(32, **options)


# -- inside zoo run / zoo eval ---------------------------------------------------------------------
def _with_test_only_word(data_dir, word: str = "zanzibarite") -> None:
    test = data_dir / "test.txt"
    test.write_text(test.read_text().replace(" derivative", f" {word} derivative"))


def test_fit_sees_only_the_training_descriptions(tiny_env, tmp_path):
    from zoo.plugins.tasks.chebi20 import load_chebi20

    _with_test_only_word(tiny_env)
    run_tfidf(tiny_env, tmp_path / "run", "train.epochs=1")
    saved = vocabulary(tmp_path / "run")
    assert "benz" in saved and not any("zanz" in term for term in saved)  # a test-only word is absent
    # exactly the vocabulary of the training pairs (not the held-out or test ones)
    data = load_chebi20(str(tiny_env), holdout_fraction=0.15, holdout_seed=0)
    expected = TfidfText(32, svd_dim=16)
    expected.fit([p.description for p in data.train])
    assert saved == set(expected._vectorizer.vocabulary_)
    from safetensors.torch import load_file

    idf = load_file(str(tmp_path / "run" / "fitted" / "text_encoder.safetensors"))["idf"]
    assert torch.equal(idf, expected.fitted_state()["idf"])  # document frequencies of the 54 training texts
    with_held_out = TfidfText(32, svd_dim=16)
    with_held_out.fit([p.description for p in data.train + data.select])
    assert not torch.equal(idf, with_held_out.fitted_state()["idf"])


def _interrupted_after_first_checkpoint(tiny_env, out, monkeypatch, *settings) -> None:
    """``zoo run tfidf_fp`` into ``out``, interrupted (as Ctrl-C: exit 130) right after its first
    checkpoint is written; the epoch loop's ``save_checkpoint`` is restored afterwards."""
    import zoo.loop  # the epoch loop saves the checkpoints

    real_save = zoo.loop.save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    args = ["run", "tfidf_fp", "--data-dir", str(tiny_env), "--out", str(out), "--no-progress"]
    for item in [*TINY_TFIDF, *settings]:
        args += ["--set", item]
    with monkeypatch.context() as patch:
        patch.setattr(zoo.loop, "save_checkpoint", save_then_interrupt)
        assert main(args) == 130


def test_resume_and_zoo_eval_reproduce_the_scores(tiny_env, tmp_path, monkeypatch, capsys):
    settings = ("train.epochs=3",)
    reference = run_tfidf(tiny_env, tmp_path / "straight", *settings)
    _interrupted_after_first_checkpoint(tiny_env, tmp_path / "resumed", monkeypatch, *settings)
    fitted = tmp_path / "resumed" / "fitted" / "text_encoder.safetensors"
    assert fitted.is_file() and not (tmp_path / "resumed" / "results.json").exists()
    written = fitted.stat().st_mtime_ns
    capsys.readouterr()
    resumed = run_tfidf(tiny_env, tmp_path / "resumed", *settings)
    assert "loaded the fitted state" in capsys.readouterr().out and fitted.stat().st_mtime_ns == written
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert resumed["scores"][gallery][direction] == pytest.approx(reference["scores"][gallery][direction], rel=1e-5)

    # the fitted matrices live once in fitted/, never in the per-epoch checkpoints
    from safetensors import safe_open

    with safe_open(str(tmp_path / "resumed" / "checkpoint" / "last.safetensors"), framework="pt") as f:
        assert not any("vocabulary" in k or "components" in k for k in f.keys())

    assert main(["eval", str(tmp_path / "straight"), "--data-dir", str(tiny_env), "--no-progress"]) == 0
    again = json.loads((tmp_path / "straight" / "eval-test.json").read_text())
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert again["scores"][gallery][direction] == pytest.approx(reference["scores"][gallery][direction], rel=1e-6)

    (tmp_path / "straight" / "fitted" / "text_encoder.safetensors").unlink()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "straight"), "--data-dir", str(tiny_env), "--no-progress"]) != 0
    assert "text_encoder.safetensors is missing" in capsys.readouterr().err


def test_unfittable_corpus_is_a_clear_run_error_and_leaves_nothing(tiny_env, tmp_path, capsys):
    args = ["run", "tfidf_fp", "--data-dir", str(tiny_env), "--out", str(tmp_path / "run"), "--no-progress",
            "--set", "text_encoder.min_df=1000"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"cannot fit the \[text_encoder\] on 58 training texts: .*lower text_encoder.min_df", err)
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_tfidf_fp_composition():
    from zoo.spec import load_spec

    spec = load_spec("tfidf_fp").resolve()
    assert (spec.text_encoder.name, spec.molecule_encoder.name, spec.aligner.name, spec.loss.name) == (
        "tfidf", "fingerprint_mlp", "none", "infonce")
    # a fixed short schedule, no wall-clock budget: the result does not depend on the machine's load
    assert spec.train.epochs == 10 and spec.train.max_minutes == 0 and spec.text_encoder.options["svd_dim"] == 512
    assert (spec.molecule_encoder.options["layers"], spec.molecule_encoder.options["hidden_dim"]) == (1, 1024)
    assert spec.molecule_encoder.options["pretrain_epochs"] == 0  # measured: no gain beyond seed noise


# -- the unlabeled training molecules: pretraining ------------------------------------------------------
def test_molecule_pretraining_is_recorded_and_a_resumed_run_does_not_repeat_it(tiny_env, tmp_path, monkeypatch, capsys):
    """With molecule pretraining on, the results record it; an interrupted run resumes without pretraining
    again (the checkpoint holds the pretrained weights) and reaches the uninterrupted run's scores."""

    settings = ("train.epochs=3", "molecule_encoder.pretrain_epochs=2")
    plain = run_tfidf(tiny_env, tmp_path / "plain", "train.epochs=3")
    reference = run_tfidf(tiny_env, tmp_path / "straight", *settings)
    record = reference["training"]["molecule_pretraining"]
    assert record["epochs"] == 2 and record["molecules"] == 6 + reference["task"]["counts"]["counts"]["train"]
    assert reference["scores"]["all"] != plain["scores"]["all"]  # the pretraining changes the model
    assert plain["training"]["molecule_pretraining"] is None
    _interrupted_after_first_checkpoint(tiny_env, tmp_path / "resumed", monkeypatch, *settings)
    capsys.readouterr()
    resumed = run_tfidf(tiny_env, tmp_path / "resumed", *settings)
    assert "pretraining epoch" not in capsys.readouterr().out
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert resumed["scores"][gallery][direction] == pytest.approx(reference["scores"][gallery][direction], rel=1e-5)
