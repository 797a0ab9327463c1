"""Stereoisomers get different embeddings from every built-in molecule encoder.

Two real pairs: L- and D-alanine, written with the same chiral tag (``@@``) in different atom
orders, so only an order-independent label (CIP R/S) separates them; and fumaric (E) and maleic
(Z) acid, the Z one with ChEBI-20's doubled backslash. Each pair is the same molecule once
stereo is dropped, which the tests check too, so the difference they assert comes from stereo.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from zoo.cache import featurize_molecules
from zoo.featurize import ATOM_FEATURE_DIM, ATOM_STEREO_COLUMNS, BOND_STEREO_COLUMNS, featurize, parse_smiles, stereo_flags
from zoo.plugins.molecule.fingerprint_mlp import EXTRA_FINGERPRINTS, FingerprintMLP, fingerprint_vector
from zoo.plugins.molecule.gnn_baselines import GCN, GINE
from zoo.plugins.molecule.graph_transformer import GraphTransformer

L_ALA, D_ALA = "N[C@@H](C)C(=O)O", "C[C@@H](N)C(=O)O"
FUMARIC, MALEIC = "OC(=O)/C=C/C(=O)O", "OC(=O)/C=C\\\\C(=O)O"
PAIRS = {"R/S": (D_ALA, L_ALA), "E/Z": (FUMARIC, MALEIC)}
GRAPH_ENCODERS = {
    "gcn": lambda: GCN(embed_dim=8, hidden_dim=16, layers=2, dropout=0.0),
    "gine": lambda: GINE(embed_dim=8, hidden_dim=16, layers=2, dropout=0.0),
    "graph_transformer": lambda: GraphTransformer(embed_dim=8, hidden_dim=16, layers=2, heads=2, dropout=0.0),
}


def _blind(smiles: str):
    graph = featurize(smiles)
    graph.x[:, ATOM_STEREO_COLUMNS] = 0
    graph.edge_attr[:, BOND_STEREO_COLUMNS] = 0
    return graph


def _assert_apart(a: torch.Tensor, b: torch.Tensor) -> None:
    """Differ by far more than float noise (~1e-7 here)."""
    gap = (a - b).abs().max().item()
    assert gap > 1e-3 * max(a.abs().max().item(), 1e-3), gap


def test_pairs_are_stereoisomers_with_the_expected_labels():
    from rdkit import Chem

    for a, b in PAIRS.values():
        flat = [Chem.MolToSmiles(parse_smiles(s), isomericSmiles=False) for s in (a, b)]
        assert flat[0] == flat[1]  # same constitution
    tags = {str(parse_smiles(s).GetAtomWithIdx(1).GetChiralTag()) for s in (L_ALA, D_ALA)}
    assert tags == {"CHI_TETRAHEDRAL_CW"}  # the chiral tag alone cannot tell these two apart
    # [R, S, on E double bond, on Z double bond] of the stereocentre / a double-bond carbon
    assert stereo_flags(parse_smiles(L_ALA).GetAtomWithIdx(1)) == [0.0, 1.0, 0.0, 0.0]
    assert stereo_flags(parse_smiles(D_ALA).GetAtomWithIdx(1)) == [1.0, 0.0, 0.0, 0.0]
    assert stereo_flags(parse_smiles(FUMARIC).GetAtomWithIdx(3)) == [0.0, 0.0, 1.0, 0.0]
    assert stereo_flags(parse_smiles(MALEIC).GetAtomWithIdx(3)) == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("name", GRAPH_ENCODERS)
def test_graph_encoders_separate_stereoisomers(name, pair):
    torch.manual_seed(0)
    model = GRAPH_ENCODERS[name]().eval()
    a, b = PAIRS[pair]
    with torch.no_grad():
        seen = model(Batch.from_data_list([featurize(a), featurize(b)])).embedding
        blind = model(Batch.from_data_list([_blind(a), _blind(b)])).embedding
    _assert_apart(seen[0], seen[1])
    torch.testing.assert_close(blind[0], blind[1], rtol=1e-5, atol=1e-5)  # without stereo: one molecule


def test_gcn_sees_stereo_through_atom_features_alone():
    torch.manual_seed(0)
    model = GCN(embed_dim=8, hidden_dim=16, layers=2, dropout=0.0).eval()
    graphs = [featurize(s) for s in (FUMARIC, MALEIC)]
    for g in graphs:
        g.edge_attr = torch.zeros_like(g.edge_attr)  # gcn never reads them anyway
    with torch.no_grad():
        out = model(Batch.from_data_list(graphs)).embedding
    _assert_apart(out[0], out[1])


@pytest.mark.parametrize("pair", PAIRS)
def test_fingerprints_separate_stereoisomers(pair):
    from rdkit.Chem import rdFingerprintGenerator

    a, b = PAIRS[pair]
    blind = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)  # the stereo-blind version 1
    assert np.array_equal(*(blind.GetCountFingerprintAsNumPy(parse_smiles(s)) for s in (a, b)))
    fa, fb = (fingerprint_vector(s, 2, 2048, EXTRA_FINGERPRINTS) for s in (a, b))
    blocks = {"morgan": slice(0, 2048), "maccs": slice(2048, 2048 + 167)}
    for i, kind in enumerate(EXTRA_FINGERPRINTS[1:]):
        blocks[kind] = slice(2048 + 167 + i * 2048, 2048 + 167 + (i + 1) * 2048)
    differs = {kind: not np.array_equal(fa[s], fb[s]) for kind, s in blocks.items()}
    # atom pairs and torsions carry R/S but no bond stereo; MACCS keys carry neither (documented)
    sees = {"R/S": {"morgan", "atompair", "torsion", "feature_morgan"}, "E/Z": {"morgan", "feature_morgan"}}[pair]
    assert differs == {kind: kind in sees for kind in blocks}

    torch.manual_seed(0)
    model = FingerprintMLP(embed_dim=8, hidden_dim=16, dropout=0.0, extra=list(EXTRA_FINGERPRINTS)).eval()
    with torch.no_grad():
        out = model(Batch.from_data_list([model.featurize(a), model.featurize(b)])).embedding
    _assert_apart(out[0], out[1])


def test_morgan_radius_2_misses_a_centre_with_alike_branches_atom_pairs_do_not():
    """A ChEBI-20 pair (the documented limit): the centre's two CH2CH2 branches look alike for two bonds."""
    a, b = "C1=CC(=CC=C1CC[C@H](CC/C=C/C2=CC=C(C=C2)O)O)O", "C1=CC(=CC=C1CC[C@@H](CC/C=C/C2=CC=C(C=C2)O)O)O"
    fa, fb = (fingerprint_vector(s, 2, 2048, ["atompair"]) for s in (a, b))
    assert np.array_equal(fa[:2048], fb[:2048]) and not np.array_equal(fa[2048:], fb[2048:])
    assert not np.array_equal(fingerprint_vector(a, 3, 2048), fingerprint_vector(b, 3, 2048))


def test_stereo_blind_caches_of_version_1_are_not_reused(tmp_path):
    """A cache written under the old (stereo-blind) keys is a different file: never read for the new ones."""
    smiles = [L_ALA, D_ALA, FUMARIC, MALEIC]
    models = {"rdkit_graph/1": GCN(embed_dim=8), "morgan_count/r2/64/1": FingerprintMLP(embed_dim=8, n_bits=64)}
    for old_key, model in models.items():
        stale = featurize_molecules(smiles, model.featurize, old_key, root=tmp_path, progress=False)
        assert model.featurizer != old_key
        calls = []

        def counting(s, model=model, calls=calls):
            calls.append(s)
            return model.featurize(s)

        fresh = featurize_molecules(smiles, counting, model.featurizer, root=tmp_path, progress=False)
        assert calls == smiles  # featurized anew, not loaded from the old entry
        assert len(stale) == len(fresh)
    assert len(list((tmp_path / "graphs").glob("*.safetensors"))) == 4
    assert featurize(L_ALA).x.shape[1] == ATOM_FEATURE_DIM


def _copy_run(tiny_run, tmp_path):
    import shutil

    data_dir, run_dir, _ = tiny_run
    shutil.copytree(run_dir, tmp_path / "run")
    return data_dir, tmp_path / "run", tmp_path / "run" / "checkpoint" / "best.safetensors"


def _error_line(capsys) -> str:
    """The one ``zoo: error:`` line (stderr may also hold the text model's loading bar)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if "zoo: error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_checkpoint_records_its_molecule_features_and_refuses_others(tiny_run, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from zoo.cli import main
    from zoo.featurize import FEATURIZER_NAME, FEATURIZER_VERSION

    data_dir, run_dir, checkpoint = _copy_run(tiny_run, tmp_path)
    with safe_open(str(checkpoint), framework="pt") as f:
        meta = f.metadata()
    assert meta["molecule_featurizer"] == f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}"  # the tiny run is aman
    from zoo.cache import atomic_save_tensors, unseal

    # as a molzoo with the older featurizer wrote it (with its own content hash)
    atomic_save_tensors(load_file(checkpoint), checkpoint, {**unseal(meta), "molecule_featurizer": "rdkit_graph/1"})
    assert main(["eval", str(run_dir), "--data-dir", str(data_dir), "--no-progress"]) == 2
    err = _error_line(capsys)
    assert "trained on molecule features 'rdkit_graph/1'" in err and "retrain" in err
    assert not (run_dir / "eval-test.json").exists()


def test_stereo_blind_weights_of_an_older_molzoo_are_refused_in_one_line(tiny_run, tmp_path, capsys):
    """A checkpoint from before the featurizer recorded itself, with version-1 atom width (82 columns)."""
    from safetensors.torch import load_file, save_file

    from zoo.cli import main

    data_dir, run_dir, checkpoint = _copy_run(tiny_run, tmp_path)
    weights = load_file(checkpoint)
    name = next(k for k, v in weights.items() if k.startswith("molecule_encoder") and v.dim() == 2
                and v.shape[1] == ATOM_FEATURE_DIM)
    weights[name] = weights[name][:, :82].contiguous()
    save_file(weights, checkpoint)  # no metadata, as before
    assert main(["eval", str(run_dir), "--data-dir", str(data_dir), "--no-progress"]) == 2
    err = _error_line(capsys)
    assert "does not match the model (size mismatch for molecule_encoder." in err and "retrain" in err
