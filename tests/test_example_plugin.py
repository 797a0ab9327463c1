"""The example third-party plugin in plugins/examples/molzoo-descriptors.

Skipped unless it is installed: ``pip install -e plugins/examples/molzoo-descriptors``.
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("molzoo_descriptors")
torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch  # noqa: E402

from zoo.api import Encoded, MoleculeEncoder  # noqa: E402
from zoo.registry import get_component, list_components, plugin_info  # noqa: E402
from zoo.registry import plugins as plugins_mod  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_registry")

SMILES = ["CCO", "CC(=O)Oc1ccccc1C(=O)O", "C[N+](C)(C)CC(=O)[O-]"]


@pytest.fixture
def no_builtins(monkeypatch):
    """Only entry-point plugins: keeps these tests independent of the built-ins' state."""
    monkeypatch.setattr(plugins_mod, "DEFAULT_PLUGINS", ())


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", plugins_mod.PluginLoadWarning)
        return function(*args, **kwargs)


def test_entry_point_is_discovered_with_name_and_version():
    info = {p["name"]: p for p in _quiet(plugin_info)}
    assert "descriptors" in info
    record = info["descriptors"]
    assert record["source"] == "entry point molzoo-descriptors"
    assert record["version"] == "0.1.0"
    assert record["hooks"] == ["register_molecule_encoders"]
    assert record["error"] is None

    component = _quiet(get_component, "molecule_encoder", "descriptor_mlp")
    assert component.plugin == "descriptors"
    assert component.plugin_version == "0.1.0"
    assert component.factory == "molzoo_descriptors.encoder:DescriptorMLP"  # registered lazily
    assert component.description
    assert dict(component.config) == {"hidden_dim": 256, "layers": 2, "dropout": 0.1}
    assert "descriptor_mlp" in [c.name for c in _quiet(list_components, "molecule_encoder", "descriptor_*")]


def test_can_be_disabled(monkeypatch, no_builtins):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "descriptors")
    with pytest.raises(KeyError):
        get_component("molecule_encoder", "descriptor_mlp")


def test_encodes_a_batch_and_trains(no_builtins):
    from molzoo_descriptors.encoder import NUM_DESCRIPTORS

    torch.manual_seed(0)
    component = get_component("molecule_encoder", "descriptor_mlp")
    encoder = component.create(**component.resolve_options(), embed_dim=32)
    assert isinstance(encoder, torch.nn.Module)
    assert isinstance(encoder, MoleculeEncoder)
    assert encoder.dim == 32
    assert encoder.featurizer == "rdkit_descriptors/1"

    graphs = [encoder.featurize(s) for s in SMILES]
    for graph in graphs:
        assert graph.desc.shape == (1, NUM_DESCRIPTORS)
        assert graph.desc.dtype == torch.float32
        assert torch.isfinite(graph.desc).all()
        assert graph.desc.abs().max() < 20  # squashed: sane scales
    assert not torch.equal(graphs[0].desc, graphs[1].desc)

    batch = Batch.from_data_list(graphs)
    assert batch.desc.shape == (3, NUM_DESCRIPTORS)
    out = encoder(batch)
    assert isinstance(out, Encoded)
    assert out.embedding.shape == (3, 32)
    assert torch.isfinite(out.embedding).all()

    out.embedding.pow(2).sum().backward()
    params = dict(encoder.named_parameters())
    assert params
    missing = [name for name, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_options_are_applied_and_validated(no_builtins):
    component = get_component("molecule_encoder", "descriptor_mlp")
    encoder = component.create(**component.resolve_options({"hidden_dim": 16, "layers": 3}), embed_dim=8)
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [16, 16, 16, 8]
    from zoo.errors import UnknownOptionError

    with pytest.raises(UnknownOptionError, match="hidden_dim"):
        component.resolve_options({"hiden_dim": 16})


def test_bad_smiles_is_a_smiles_error(no_builtins):
    from zoo.errors import SmilesError

    component = get_component("molecule_encoder", "descriptor_mlp")
    encoder = component.create(**component.resolve_options(), embed_dim=8)
    with pytest.raises(SmilesError):
        encoder.featurize("not a molecule((")


@pytest.mark.parametrize("pair", [("N[C@@H](C)C(=O)O", "C[C@@H](N)C(=O)O"), ("OC(=O)/C=C/C(=O)O", "OC(=O)/C=C\\\\C(=O)O")])
def test_descriptors_are_stereo_blind_as_documented(pair):
    """L-/D-alanine and fumaric/maleic acid: the same descriptors (the README says so), up to the
    float rounding that a different atom order brings to a few sums (~1e-15)."""
    from molzoo_descriptors.encoder import descriptor_vector

    assert descriptor_vector(pair[0]) == pytest.approx(descriptor_vector(pair[1]), rel=1e-12, abs=1e-12)
