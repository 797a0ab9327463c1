"""Component options are stated once, in the factory's signature, and registered from there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from zoo.errors import ComponentError, UnknownOptionError
from zoo.registry import get_component, list_components
from zoo.registry.catalog import COMPONENT_KINDS, Component, options_of, passes_options_to
from zoo.spec import load_composition, load_spec

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"

#: ``CompositionSpec.hash()`` of the shipped compositions, computed on main 4a5bc7c / 3d81066 (before options
#: were read from signatures): moving the defaults must not change a resolved spec. The fingerprint_mlp
#: compositions were re-pinned on 38e10b2, whose new options (pretrain_epochs, pretrain_mask) and tfidf_fp
#: settings changed them on purpose; aman (its text slot's TF-IDF and chem_names parts) and the three
#: tfidf_* compositions (molecule_encoder.extra = ["maccs", "feature_morgan"]) on 2026-12-04; aman on
#: 2026-12-07, when its train.cpu_bf16 became "auto" (hashed as false; its bf16 runs keep d8cba5f80126,
#: which ``shipped_spec_hashes`` still accepts).
SHIPPED_HASHES = {
    "aman": "dd51308479fb",
    "tfidf_names": "8fd2cd284e2f",
    "gt_infonce": "7e8ec57c513d",
    "text2mol_attention": "50af666371c5",
    "text2mol_gcn": "980bcde7cd14",
    "text2mol_mlp": "10d96b4e3126",
    "tfidf_fp": "b4ec3513b2e0",
    "tfidf_chem": "ac7ee270b1d0",
}


#: ``EnsembleSpec.hash()`` of the shipped ensemble compositions (their members' hashes at seed 0 and scorers)
#: (re-pinned with aman's cpu_bf16 = "auto"; the former ones, with aman forcing bf16, are kept in PREVIOUS_ENSEMBLE_HASHES)
#: ``best`` is chem_reranked (chem_ensemble + the class_check re-ranker) since the second stage; it was chem_ensemble before
SHIPPED_ENSEMBLE_HASHES = {"names_ensemble": "4bfeae43a78c", "chem_ensemble": "a2651e95872d", "chem_reranked": "ba47b3ea6b81",
                           "best": "ba47b3ea6b81"}
PREVIOUS_ENSEMBLE_HASHES = {"names_ensemble": "8f2195413afc", "chem_ensemble": "3dd647c62203"}


def test_shipped_composition_hashes_are_unchanged():
    assert {name: load_spec(name).hash() for name in SHIPPED_HASHES} == SHIPPED_HASHES
    assert {name: load_composition(name).hash() for name in SHIPPED_ENSEMBLE_HASHES} == SHIPPED_ENSEMBLE_HASHES


def test_builtin_registrations_do_not_repeat_defaults():
    """No ``config=`` in a built-in component registration: the signature is the one statement."""
    for kind_dir in ("text", "molecule", "align", "loss", "scorers"):
        tree = ast.parse((PLUGINS / kind_dir / "__init__.py").read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "register"]
        assert calls, kind_dir
        assert not [kw.arg for call in calls for kw in call.keywords if kw.arg == "config"], kind_dir


@pytest.mark.parametrize("kind", COMPONENT_KINDS)
def test_every_builtin_component_config_is_its_signature(kind):
    for component in list_components(kind):
        assert dict(component.config) == options_of(component.load()), component.name


def test_forwarding_factories_take_the_shared_class_defaults():
    from zoo.plugins.text.hf_text import SCIBERT_HUB_ID, HFTextEncoder

    shared = options_of(HFTextEncoder)
    scibert = dict(get_component("text_encoder", "scibert").config)
    minilm = dict(get_component("text_encoder", "minilm").config)
    assert scibert == shared and scibert["model"] == SCIBERT_HUB_ID
    assert "model" not in minilm and minilm == {k: v for k, v in shared.items() if k != "model"}
    assert get_component("text_encoder", "hf").config["model"] == ""  # its own default wins


class _Encoder:
    def __init__(self, embed_dim: int, *, hidden_dim: int = 64, pooling: str = "mean", **unused) -> None:
        self.kwargs = {"embed_dim": embed_dim, "hidden_dim": hidden_dim, "pooling": pooling}


def test_options_of_reads_keyword_defaults_and_skips_context_arguments():
    assert options_of(_Encoder) == {"hidden_dim": 64, "pooling": "mean"}

    @passes_options_to(_Encoder, exclude=("pooling",))
    def small(embed_dim: int, depth: int = 2, **options):
        return _Encoder(embed_dim, **options)

    assert options_of(small) == {"depth": 2, "hidden_dim": 64}


def test_a_plugin_component_without_config_gets_its_signature_and_close_match_errors():
    component = Component("molecule_encoder", "mine", _Encoder, plugin="demo")
    assert component.resolve_options({"hidden_dim": 8}) == {"hidden_dim": 8, "pooling": "mean"}
    with pytest.raises(UnknownOptionError, match=r"no option 'hiden_dim'.*Did you mean: hidden_dim"):
        component.resolve_options({"hiden_dim": 8})
    stated = Component("molecule_encoder", "mine", _Encoder, stated_config={"hidden_dim": 32}, plugin="demo")
    assert dict(stated.config) == {"hidden_dim": 32}  # an explicit config still wins
    assert dict(Component("composition", "c", lambda: {}).config) == {}


def test_a_factory_without_a_signature_is_a_clear_error():
    with pytest.raises(ComponentError, match="cannot read the options.*config="):
        Component("loss", "builtin", max, plugin="demo").config  # noqa: B018
