"""Combined text encoders: ``text_encoder = ["tfidf", "minilm"]`` in specs (TOML, ``--set``, hash,
errors), the model assembly (part substitution) and a tiny end-to-end ``zoo run`` / ``zoo eval``."""

from __future__ import annotations

import json
import tomllib

import pytest

from zoo.errors import ComponentError, SpecError
from zoo.registry import get_component
from zoo.spec import CompositionSpec, SlotSpec, load_spec

LIST_FORM = """
name = "combo"
text_encoder = ["tfidf", "minilm"]
molecule_encoder = "fingerprint_mlp"
aligner = "none"
loss = "infonce"
"""

TABLE_FORM = """
name = "combo"
molecule_encoder = "fingerprint_mlp"
aligner = "none"
loss = "infonce"

[[text_encoder]]
name = "tfidf"
svd_dim = 64

[[text_encoder]]
name = "minilm"
pooling = "max"
"""


def _spec(text: str) -> CompositionSpec:
    return CompositionSpec.from_dict(tomllib.loads(text), source="test")


# -- specs -------------------------------------------------------------------------------------
def test_list_form_is_a_combined_slot_with_resolved_parts():
    spec = _spec(LIST_FORM)
    assert spec.text_encoder == SlotSpec("combined", {"parts": (SlotSpec("tfidf", {}), SlotSpec("minilm", {}))})
    resolved = spec.resolve()
    tfidf, minilm = resolved.text_encoder.options["parts"]
    assert dict(tfidf.options) == dict(get_component("text_encoder", "tfidf").config)
    assert dict(minilm.options) == dict(get_component("text_encoder", "minilm").config)
    assert resolved.text_encoder.options["mode"] == "auto"
    assert resolved.resolve() == resolved


@pytest.mark.parametrize("text", [LIST_FORM, TABLE_FORM])
def test_toml_round_trip_and_stable_hash(tmp_path, text):
    spec = _spec(text)
    for version in (spec, spec.resolve()):
        path = tmp_path / "spec.toml"
        path.write_text(version.to_toml())
        again = CompositionSpec.from_toml(path)
        assert again == version and again.hash() == spec.hash() and again.to_toml() == version.to_toml()
    shown = tomllib.loads(spec.resolve().to_toml())["text_encoder"]
    assert shown["name"] == "combined" and [p["name"] for p in shown["parts"]] == ["tfidf", "minilm"]
    assert "svd_dim" in shown["parts"][0] and "pooling" in shown["parts"][1]  # every part's options, with defaults


def test_part_options_change_the_hash_and_defaults_do_not():
    base = _spec(LIST_FORM)
    assert base.with_overrides(["text_encoder.tfidf.svd_dim=512"]).hash() == base.hash()  # the default
    assert base.with_overrides(["text_encoder.tfidf.svd_dim=64"]).hash() != base.hash()
    assert _spec(TABLE_FORM).hash() == base.with_overrides(["text_encoder.0.svd_dim=64", "text_encoder.1.pooling=max"]).hash()
    assert _spec(LIST_FORM.replace('["tfidf", "minilm"]', '["minilm", "tfidf"]')).hash() != base.hash()  # order matters


def test_set_replaces_the_slot_with_parts_and_sets_part_options():
    aman = load_spec("aman")
    spec = aman.with_overrides(['text_encoder=["tfidf","minilm"]', "text_encoder.tfidf.svd_dim=32", "text_encoder.1.pooling=cls",
                                "text_encoder.mode=frozen"])
    parts = spec.text_encoder.options["parts"]
    assert spec.text_encoder.name == "combined" and spec.text_encoder.options["mode"] == "frozen"
    assert parts == (SlotSpec("tfidf", {"svd_dim": 32}), SlotSpec("minilm", {"pooling": "cls"}))
    assert spec.with_overrides(["text_encoder=minilm"]).text_encoder == SlotSpec("minilm", {})  # and back


def _error(spec: CompositionSpec, assignments: list[str]) -> str:
    with pytest.raises(ComponentError) as err:
        spec.with_overrides(assignments)
    return str(err.value)


def test_errors_name_the_part_and_close_matches():
    base = _spec(LIST_FORM)
    msg = _error(load_spec("aman"), ['text_encoder=["tfidf","minilmm"]'])
    assert "'minilmm'" in msg and "Did you mean: minilm" in msg
    msg = _error(base, ["text_encoder.tfidf.svd_dims=3"])
    assert "'svd_dims'" in msg and "Did you mean: svd_dim" in msg
    msg = _error(base, ["text_encoder.tfdf.svd_dim=3"])
    assert "no part named 'tfdf'" in msg and "Did you mean: tfidf" in msg
    assert "no part 5" in _error(base, ["text_encoder.5.svd_dim=3"])
    assert "text_encoder.PART.svd_dim" in _error(base, ["text_encoder.svd_dim=3"])
    twice = _spec(LIST_FORM.replace('["tfidf", "minilm"]', '["minilm", "minilm"]'))
    assert "by its index" in _error(twice, ["text_encoder.minilm.pooling=max"])
    assert "takes one component" in str(pytest.raises(SpecError, _spec, LIST_FORM.replace('loss = "infonce"', 'loss = ["infonce"]')).value)


@pytest.mark.parametrize("text, message", [
    (LIST_FORM.replace('["tfidf", "minilm"]', '["tfidf", "minilmm"]'), "Did you mean: minilm"),
    (TABLE_FORM.replace("svd_dim = 64", "svd_dimm = 64"), r"\[text_encoder.parts.0\].*'svd_dimm'.*Did you mean: svd_dim"),
    (LIST_FORM.replace('["tfidf", "minilm"]', '["tfidf"]'), "at least two parts"),
    (LIST_FORM.replace('["tfidf", "minilm"]', '["tfidf", {name = "combined", parts = ["tfidf", "minilm"]}]'), "cannot itself be"),
    (TABLE_FORM.replace("svd_dim = 64", 'svd_dim = "big"'), "text_encoder.parts.0.svd_dim must be an integer"),
])
def test_resolve_errors(text, message):
    with pytest.raises(ComponentError, match=message):
        _spec(text).resolve()


# -- the model -----------------------------------------------------------------------------------
def test_offline_part_is_substituted_alone(tiny_env):
    from zoo.model import build_model

    spec = _spec(LIST_FORM.replace('"minilm"', '"scibert"')).with_overrides(["text_encoder.0.svd_dim=8", "embed_dim=16"])
    messages: list[str] = []
    model, report = build_model(spec, on_substitute=messages.append)
    parts = report.spec.text_encoder.options["parts"]
    assert [p.name for p in parts] == ["tfidf", "minilm"] and parts[0].options["svd_dim"] == 8
    assert report.substitutions[0]["slot"] == "text_encoder.parts.1" and "scibert" in messages[0]
    assert model.text_encoder.part_names == ["tfidf", "minilm"]
    with pytest.raises(ComponentError, match="set the mode of all parts on the combined encoder"):
        build_model(_spec(LIST_FORM).with_overrides(["text_encoder.minilm.mode=finetune"]))


def test_tiny_run_and_eval_with_tfidf_and_minilm(tiny_env, tmp_path, capsys):
    from safetensors import safe_open
    from test_tfidf import TINY_TFIDF

    from zoo.cli import main

    out = tmp_path / "run"
    args = ["run", "tfidf_fp", "--data-dir", str(tiny_env), "--out", str(out), "--no-progress",
            "--set", 'text_encoder=["tfidf","minilm"]', "--set", "text_encoder.tfidf.svd_dim=16",
            "--set", "text_encoder.minilm.max_length=48", "--set", "text_encoder.minilm.adapter_layers=0"]
    for item in TINY_TFIDF:
        if not item.startswith("text_encoder."):
            args += ["--set", item]
    assert main([*args, "--set", "train.epochs=2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["text_encoder"]["name"] == "combined"
    assert results["scores"]["test"]["text_to_molecule"]["mrr"] > 0
    with safe_open(str(out / "fitted" / "text_encoder.safetensors"), framework="pt") as f:
        assert "parts.0.vocabulary" in f.keys()  # the tfidf part was fitted and saved
    with safe_open(str(out / "checkpoint" / "last.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert not any(".backbone." in k for k in keys) and any(k.startswith("model.text_encoder.parts.1.head") for k in keys)
    assert list((tiny_env.parent / "cache" / "text").glob("*.safetensors"))  # frozen MiniLM states were cached

    capsys.readouterr()
    assert main(["eval", str(out), "--data-dir", str(tiny_env), "--no-progress"]) == 0
    again = json.loads((out / "eval-test.json").read_text())
    for gallery in ("all", "test"):
        for direction in ("text_to_molecule", "molecule_to_text"):
            assert again["scores"][gallery][direction] == pytest.approx(results["scores"][gallery][direction], rel=1e-5)
