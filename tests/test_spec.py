"""Composition specs: loading, TOML round trips, hashing, resolution, overrides and errors."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from zoo.errors import ComponentError, SpecError
from zoo.registry import get_component
from zoo.spec import SLOTS, CompositionSpec, SlotSpec, TrainConfig, load_spec


@pytest.fixture(scope="module")
def aman() -> CompositionSpec:
    return load_spec("aman")


def _write(tmp_path, text: str, name: str = "spec.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
name = "tiny"
[text_encoder]
name = "minilm"
[molecule_encoder]
name = "graph_transformer"
[aligner]
name = "none"
[loss]
name = "triplet"
"""


# -- loading -------------------------------------------------------------------------------
def test_load_aman_by_name(aman):
    assert aman.name == "aman"
    assert {slot: getattr(aman, slot).name for slot in SLOTS} == {
        "text_encoder": "combined",
        "molecule_encoder": "graph_transformer",
        "aligner": "adversarial",
        "loss": "triplet",
    }
    assert [part.name for part in aman.text_encoder.options["parts"]] == ["scibert", "tfidf", "chem_names"]
    assert aman.molecule_encoder.options["readout"] == "attention"
    assert aman.aligner.options["mode"] == "grl"
    assert aman.loss.options["mining"] == "semihard"
    assert aman.train.epochs == 60
    assert aman.eval.galleries == ("all", "test")


def test_spec_is_frozen(aman):
    with pytest.raises(dataclasses.FrozenInstanceError):
        aman.embed_dim = 3  # type: ignore[misc]


def test_load_spec_from_file(tmp_path):
    spec = load_spec(str(_write(tmp_path, MINIMAL)))
    assert spec.name == "tiny"
    assert spec.text_encoder == SlotSpec("minilm", {})
    assert spec.train == TrainConfig()  # all defaults
    assert spec.embed_dim == 256


def test_slot_may_be_a_bare_name():
    spec = CompositionSpec.from_dict(
        {"text_encoder": "minilm", "molecule_encoder": "graph_transformer", "aligner": "none", "loss": "triplet"}
    )
    assert spec.text_encoder == SlotSpec("minilm", {})
    assert spec.name == "custom"


# -- TOML round trip and hashing -------------------------------------------------------------
@pytest.mark.parametrize("resolved", [False, True])
def test_toml_round_trip(aman, tmp_path, resolved):
    spec = aman.resolve() if resolved else aman
    path = _write(tmp_path, spec.to_toml())
    again = CompositionSpec.from_toml(path)
    assert again == spec
    assert again.hash() == spec.hash()
    assert again.to_toml() == spec.to_toml()


def test_hash_is_stable_and_resolution_invariant(aman):
    h = aman.hash()
    assert len(h) == 12 and int(h, 16) >= 0
    assert load_spec("aman").hash() == h
    # the hash is over the resolved spec: spelling out a default does not change it
    assert aman.resolve().hash() == h
    explicit = aman.with_overrides(["loss.margin=0.2"])  # the registered default
    assert explicit.hash() == h


def test_hash_ignores_name_and_description(aman):
    renamed = dataclasses.replace(aman, name="other", description="something else")
    assert renamed.hash() == aman.hash()


@pytest.mark.parametrize(
    "override",
    ["loss.margin=0.3", "train.epochs=5", "embed_dim=128", "text_encoder.scibert.pooling=\"cls\"", "text_encoder.tfidf.svd_dim=256",
     "eval.galleries=[\"test\"]",
     "aligner=none", "train.seed=1"],
)
def test_hash_changes_with_options(aman, override):
    assert aman.with_overrides([override]).hash() != aman.hash()


def test_int_and_float_spellings_hash_equal(aman):
    # margin is a float option: 1 and 1.0 are the same spec
    a = aman.with_overrides(["loss.margin=1"]).resolve()
    b = aman.with_overrides(["loss.margin=1.0"]).resolve()
    assert isinstance(a.loss.options["margin"], float)
    assert a.hash() == b.hash()


# -- resolve -------------------------------------------------------------------------------
def test_resolve_fills_defaults(aman):
    resolved = aman.resolve()
    for slot, kind in SLOTS.items():
        component = get_component(kind, getattr(aman, slot).name)
        options = resolved.__getattribute__(slot).options
        assert set(options) == set(component.config), slot
    # explicit spec values win over registered defaults, missing ones get the default
    assert resolved.loss.options["mining"] == "semihard"  # aman.toml overrides the registered default "hard"
    assert resolved.loss.options["margin"] == get_component("loss", "triplet").config["margin"]
    scibert = resolved.text_encoder.options["parts"][0]
    assert set(scibert.options) == set(get_component("text_encoder", "scibert").config)  # parts are resolved too
    assert scibert.options["model"] == "allenai/scibert_scivocab_uncased"
    assert resolved.resolve() == resolved  # idempotent


def test_resolve_rejects_unknown_option_in_toml(tmp_path):
    path = _write(tmp_path, MINIMAL.replace('name = "triplet"', 'name = "triplet"\nmargn = 0.5'))
    spec = CompositionSpec.from_toml(path)
    with pytest.raises(SpecError) as err:
        spec.resolve()
    assert "margn" in str(err.value) and "margin" in str(err.value) and "[loss]" in str(err.value)


def test_resolve_rejects_wrong_option_type(aman):
    spec = aman.with_overrides(["loss.margin=abc"])
    with pytest.raises(SpecError, match=r"loss.margin must be a number"):
        spec.resolve()


def test_resolve_unknown_component_in_toml(tmp_path):
    spec = CompositionSpec.from_toml(_write(tmp_path, MINIMAL.replace('"minilm"', '"minilmm"')))
    with pytest.raises(ComponentError, match="Did you mean: minilm"):
        spec.resolve()


# -- overrides -----------------------------------------------------------------------------
def test_override_component_resets_options(aman):
    spec = aman.with_overrides(["text_encoder=minilm"])
    assert spec.text_encoder == SlotSpec("minilm", {})
    resolved = spec.resolve()
    assert dict(resolved.text_encoder.options) == dict(get_component("text_encoder", "minilm").config)
    assert "model" not in resolved.text_encoder.options  # scibert's option is gone
    # other slots untouched
    assert spec.loss == aman.loss and spec.molecule_encoder == aman.molecule_encoder


def test_override_with_the_same_component_keeps_its_options(aman):
    """An ablation's reference point names the composition's own components: that must not reset them."""
    same = aman.with_overrides(["loss=triplet", "molecule_encoder=graph_transformer"])
    assert same.loss == aman.loss and same.molecule_encoder == aman.molecule_encoder
    assert same.hash() == aman.hash()


def test_overrides_apply_with_types(aman):
    spec = aman.with_overrides(["loss.margin=0.3", "train.epochs=5", "embed_dim=128", "text_encoder.scibert.pooling=max"])
    assert spec.loss.options["margin"] == pytest.approx(0.3)
    assert isinstance(spec.loss.options["margin"], float)
    assert spec.train.epochs == 5 and isinstance(spec.train.epochs, int)
    assert spec.embed_dim == 128
    assert spec.text_encoder.options["parts"][0].options["pooling"] == "max"  # bare strings are accepted
    assert spec.train.batch_size == aman.train.batch_size
    assert aman.train.epochs == 60  # the original is unchanged


def test_override_train_float_accepts_int(aman):
    assert aman.with_overrides(["train.lr=1"]).train.lr == 1.0


def test_overrides_apply_in_order(aman):
    spec = aman.with_overrides(["text_encoder=minilm", "text_encoder.pooling=cls"])
    assert spec.text_encoder == SlotSpec("minilm", {"pooling": "cls"})
    spec = aman.with_overrides(["text_encoder.scibert.pooling=cls", "text_encoder=minilm"])
    assert spec.text_encoder == SlotSpec("minilm", {})


# -- errors ----------------------------------------------------------------------------------
def _error(spec, assignments) -> str:
    with pytest.raises(ComponentError) as err:
        spec.with_overrides(assignments)
    return str(err.value)


def test_unknown_slot_option_suggests(aman):
    msg = _error(aman, ["loss.margn=1"])
    assert "'margn'" in msg and "Did you mean: margin" in msg and "loss.margn=1" in msg


def test_unknown_component_suggests(aman):
    msg = _error(aman, ["text_encoder=minilmm"])
    assert "'minilmm'" in msg and "Did you mean: minilm" in msg and "Available:" in msg


def test_unknown_train_key(aman):
    msg = _error(aman, ["train.epoch=3"])
    assert "'train.epoch'" in msg and "epochs" in msg


def test_unknown_top_level_key(aman):
    msg = _error(aman, ["embed_dims=3"])
    assert "'embed_dims'" in msg and "embed_dim" in msg


@pytest.mark.parametrize(
    "assignment, expected",
    [("train.epochs=abc", "train.epochs must be an integer"), ("train.epochs=1.5", "train.epochs must be an integer"),
     ("train.lr=fast", "train.lr must be a number"), ("embed_dim=abc", "embed_dim must be a positive integer"),
     ("embed_dim=0", "embed_dim must be a positive integer"), ("train.device=3", "train.device must be a string")],
)
def test_wrong_type(aman, assignment, expected):
    assert expected in _error(aman, [assignment])


@pytest.mark.parametrize("assignment", ["loss.margin", "=3", ""])
def test_malformed_assignment(aman, assignment):
    assert "expected KEY=VALUE" in _error(aman, [assignment])


def test_slot_takes_a_name(aman):
    assert "takes a component name" in _error(aman, ["loss=3"])


def test_missing_slot_in_toml(tmp_path):
    path = _write(tmp_path, MINIMAL.replace('[aligner]\nname = "none"\n', ""))
    with pytest.raises(SpecError) as err:
        CompositionSpec.from_toml(path)
    assert "missing [aligner]" in str(err.value) and str(path) in str(err.value)


def test_slot_without_name(tmp_path):
    path = _write(tmp_path, MINIMAL.replace('[loss]\nname = "triplet"', "[loss]\nmargin = 0.3"))
    with pytest.raises(SpecError, match=r"\[loss\] needs a component name"):
        CompositionSpec.from_toml(path)


def test_unknown_top_level_key_in_toml(tmp_path):
    path = _write(tmp_path, "embed_dimm = 3\n" + MINIMAL)
    with pytest.raises(SpecError, match="embed_dimm.*Did you mean: embed_dim"):
        CompositionSpec.from_toml(path)


def test_invalid_toml(tmp_path):
    path = _write(tmp_path, "name = \n[loss\n")
    with pytest.raises(SpecError) as err:
        load_spec(str(path))
    assert "invalid TOML" in str(err.value) and str(path) in str(err.value)
    assert err.value.__cause__ is None  # a clean message, not a chained parser traceback


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="spec file not found") as err:
        load_spec(str(path))
    assert str(path) in str(err.value)


def test_unknown_composition_name():
    with pytest.raises(ComponentError, match="Did you mean: aman"):
        load_spec("amann")


def test_to_toml_is_valid_toml(aman):
    data = tomllib.loads(aman.resolve().to_toml())
    assert data["loss"]["name"] == "triplet"
    assert data["eval"]["galleries"] == ["all", "test"]
