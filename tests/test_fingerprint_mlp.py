"""FingerprintMLP: featurization, batching, caching, shapes, gradients, options, registration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from zoo.errors import SmilesError
from zoo.plugins.molecule.fingerprint_mlp import FingerprintMLP, morgan_counts
from zoo.protocols import Encoded, MoleculeEncoder

SMILES = ["CCO", "c1ccccc1O", "CC(=O)N[C@@H](C)C(=O)O", "C/C=C/Cl", "O=C1CCCN1"]
TINY = dict(radius=2, n_bits=64, hidden_dim=16, layers=2, dropout=0.0)


def batch(model, smiles=SMILES) -> Batch:
    return Batch.from_data_list([model.featurize(s) for s in smiles])


def test_featurize_counts():
    model = FingerprintMLP(embed_dim=8, **TINY)
    assert model.featurizer == "morgan_count/r2/64/2"
    data = model.featurize("CCCCCCCC")
    assert data.fp.shape == (1, 64) and data.fp.dtype == torch.float32
    assert data.fp.max() > 1  # counts, not bits: octane repeats its CH2 environments
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    want = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=64, includeChirality=True).GetCountFingerprintAsNumPy(
        Chem.MolFromSmiles("CCCCCCCC"))
    np.testing.assert_array_equal(data.fp[0].numpy(), want.astype(np.float32))


def test_chebi_doubled_backslashes_and_errors():
    assert np.array_equal(morgan_counts("C/C=C\\\\C"), morgan_counts("C/C=C\\C"))
    with pytest.raises(SmilesError):
        morgan_counts("not a smiles")


def test_shapes_states_and_no_pyg_warning():
    model = FingerprintMLP(embed_dim=8, **TINY)
    assert isinstance(model, MoleculeEncoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. PyG's "Unable to accurately infer 'num_nodes'"
        b = batch(model)
    assert b.fp.shape == (5, 64) and b.num_graphs == 5
    out = model(b)
    assert isinstance(out, Encoded) and out.embedding.shape == (5, 8) and out.states is None
    model.return_states = True
    out = model(b)
    assert out.states.shape == (5, 1, 16) and out.mask.shape == (5, 1) and out.mask.all()


def test_survives_graph_cache(tmp_path):
    from zoo.cache import PackedGraphs

    model = FingerprintMLP(embed_dim=8, **TINY).eval()
    graphs = [model.featurize(s) for s in SMILES]
    PackedGraphs.pack(graphs).save(tmp_path / "fp.safetensors")
    loaded = PackedGraphs.load(tmp_path / "fp.safetensors")
    b = Batch.from_data_list(loaded.select([4, 0, 2]))
    torch.testing.assert_close(b.fp, torch.cat([graphs[i].fp for i in (4, 0, 2)]))
    torch.testing.assert_close(model(b).embedding, model(batch(model, [SMILES[i] for i in (4, 0, 2)])).embedding)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = FingerprintMLP(embed_dim=8, **{**TINY, "dropout": 0.2})
    model.return_states = True
    out = model(batch(model))
    (out.embedding.pow(2).sum() + out.states.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = FingerprintMLP(embed_dim=8, **TINY).eval()
        outs.append(model(batch(model)).embedding)
    assert torch.equal(outs[0], outs[1])


def test_wrong_width_batch():
    model = FingerprintMLP(embed_dim=8, **TINY)
    other = FingerprintMLP(embed_dim=8, **{**TINY, "n_bits": 32})
    with pytest.raises(ValueError, match="n_bits"):
        model(batch(other))


@pytest.mark.parametrize(
    "options, word",
    [(dict(radius=-1), "radius"), (dict(n_bits=0), "n_bits"), (dict(layers=0), "layers"),
     (dict(hidden_dim=0), "hidden_dim"), (dict(dropout=1.0), "dropout"), (dict(n_bits=64.0), "n_bits")],
)
def test_invalid_options(options, word):
    with pytest.raises(ValueError, match=rf"fingerprint_mlp: {word}="):
        FingerprintMLP(embed_dim=8, **options)


def test_registered(fresh_registry):
    from zoo.errors import PluginLoadWarning
    from zoo.registry import get_component

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        component = get_component("molecule_encoder", "fingerprint_mlp")
    model = component.create(embed_dim=8, **component.resolve_options({"n_bits": 64, "hidden_dim": 16}))
    assert isinstance(model, FingerprintMLP) and model.featurizer == "morgan_count/r2/64/2"
    assert dict(component.config) == {"radius": 2, "n_bits": 2048, "hidden_dim": 512, "layers": 2, "dropout": 0.2,
                                      "extra": [], "pretrain_epochs": 0, "pretrain_mask": 0.2}


def test_extra_fingerprints_are_appended_and_key_the_cache():
    from rdkit import Chem
    from rdkit.Chem import MACCSkeys, rdFingerprintGenerator

    model = FingerprintMLP(embed_dim=8, **TINY, extra=["maccs", "atompair"])
    assert model.width == 64 + 167 + 64
    assert model.featurizer == "morgan_count/r2/64/2+maccs+atompair"  # another cache entry than plain Morgan
    fp = model.featurize("CCCCCCCCO").fp[0].numpy()
    mol = Chem.MolFromSmiles("CCCCCCCCO")
    np.testing.assert_array_equal(fp[:64], morgan_counts("CCCCCCCCO", 2, 64))
    np.testing.assert_array_equal(fp[64:231], np.array(list(MACCSkeys.GenMACCSKeys(mol)), dtype=np.float32))
    pairs = rdFingerprintGenerator.GetAtomPairGenerator(fpSize=64).GetCountFingerprintAsNumPy(mol)
    np.testing.assert_array_equal(fp[231:], pairs.astype(np.float32))
    assert model(batch(model)).embedding.shape == (len(SMILES), 8)


@pytest.mark.parametrize("extra", [["ecfp"], ["maccs", "maccs"], "maccs", [1]])
def test_bad_extra_fingerprints(extra):
    with pytest.raises(ValueError, match="fingerprint_mlp: extra="):
        FingerprintMLP(embed_dim=8, **TINY, extra=extra)


# -- self-supervised pretraining on unlabeled molecules -------------------------------------------
MANY = [f"{a}C{b}" for a in ("CC", "OC", "NC", "ClC", "c1ccccc1") for b in ("O", "N", "C(=O)O", "Br", "S")]


def _pretrain(model, smiles=MANY, seed=0):
    fps = Batch.from_data_list([model.featurize(s) for s in smiles])
    return model.pretrain(lambda chosen: Batch.from_data_list([fps.get_example(i) for i in chosen]), len(smiles),
                          seed=seed, log=lambda _m: None)


def test_pretrain_is_opt_in_seeded_and_leaves_the_global_random_state():
    torch.manual_seed(0)
    off = FingerprintMLP(embed_dim=8, **TINY)
    before = {k: v.clone() for k, v in off.state_dict().items()}
    assert _pretrain(off) is None  # pretrain_epochs=0: nothing happens
    assert all(torch.equal(before[k], v) for k, v in off.state_dict().items())

    weights, records = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = FingerprintMLP(embed_dim=8, **TINY, pretrain_epochs=10).eval()
        state = torch.random.get_rng_state()
        records.append(_pretrain(model))
        assert torch.equal(torch.random.get_rng_state(), state)  # the run's own random stream is untouched
        assert not model.training  # the mode it was in
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # same seed, same weights
    assert not torch.equal(weights[0]["hidden.0.weight"], before["hidden.0.weight"])
    record = records[0]
    assert record["molecules"] == len(MANY) and record["epochs"] == 10 and len(record["loss"]) == 10
    assert record["loss"][-1] < record["loss"][0]  # the views of a molecule are matched better


@pytest.mark.parametrize("options, word", [(dict(pretrain_epochs=-1), "pretrain_epochs"),
                                           (dict(pretrain_mask=0.0), "pretrain_mask"),
                                           (dict(pretrain_mask=1.0), "pretrain_mask"),
                                           (dict(pretrain_mask=True), "pretrain_mask")])
def test_invalid_pretrain_options(options, word):
    with pytest.raises(ValueError, match=rf"fingerprint_mlp: {word}="):
        FingerprintMLP(embed_dim=8, **options)


def test_pretraining_sees_only_training_side_molecules(tiny_env):
    """zoo run hands the encoder the unlabeled train molecules and the training pairs' molecules:
    never a held-out (selection) or test molecule."""
    from zoo.gallery import PreparedGallery
    from zoo.plugins.tasks.chebi20 import load_chebi20
    from zoo.train import _pretrain_molecule_encoder

    data = load_chebi20(tiny_env, holdout_fraction=0.15)
    seen: list[int] = []

    class Graphs:
        def batch(self, positions):
            seen.extend(positions)
            return None

    class Encoder:
        def pretrain(self, batches, count, *, seed, device, log):
            batches(list(range(count)))
            return {"molecules": count}

    model = type("Model", (), {"molecule_encoder": Encoder()})()
    prepared = PreparedGallery(data, Graphs(), {m.cid: i for i, m in enumerate(data.gallery)}, [], {})
    record = _pretrain_molecule_encoder(model, prepared, torch.device("cpu"), 0, log=lambda _m: None)
    cids = {data.gallery[i].cid for i in seen}
    assert len(data.unlabeled) == 6 and record == {"molecules": 6 + len(data.train)}
    assert cids == {m.cid for m in data.unlabeled} | {p.cid for p in data.train}
    assert not cids & {p.cid for p in [*data.select, *data.test]}
