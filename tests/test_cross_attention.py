"""The ``cross_attention`` aligner: co-attention matching loss in training, dual-encoder retrieval."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import TINY, run_tiny

from zoo.cli import main
from zoo.plugins.align.cross_attention import CrossAttentionAligner
from zoo.protocols import Encoded

B, EMBED = 6, 16


def _encoded(batch: int, lengths: list[int], width: int, pad_to: int | None = None, seed: int = 0) -> Encoded:
    """Random states ``[B, L, width]`` with ``mask`` True for the first ``lengths[i]`` positions;
    padded positions hold garbage (large random values) to catch any leak."""
    g = torch.Generator().manual_seed(seed)
    size = pad_to or max(lengths)
    states = torch.randn(batch, size, width, generator=g)
    mask = torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]
    states = torch.where(mask.unsqueeze(-1), states, 100 * torch.randn(batch, size, width, generator=g))
    return Encoded(torch.randn(batch, EMBED, generator=g), states, mask)


def _pad(enc: Encoded, extra: int, value: float = 7.0) -> Encoded:
    """The same batch with ``extra`` more padded positions (masked out) full of ``value``."""
    b, _, h = enc.states.shape
    states = torch.cat([enc.states, torch.full((b, extra, h), value)], dim=1)
    mask = torch.cat([enc.mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1)
    return Encoded(enc.embedding, states, mask)


def _aligner(**options) -> CrossAttentionAligner:
    torch.manual_seed(0)
    aligner = CrossAttentionAligner(EMBED, **{"hidden_dim": 32, "heads": 4, **options})
    aligner(_encoded(2, [3, 2], 24), _encoded(2, [2, 1], 8))  # materialise the lazy projections
    return aligner


def _pair(text_width: int = 24, mol_width: int = 8) -> tuple[Encoded, Encoded]:
    return _encoded(B, [5, 3, 7, 2, 4, 6], text_width, seed=1), _encoded(B, [4, 1, 3, 2, 5, 3], mol_width, seed=2)


def _fuse_out_nonzero(aligner: CrossAttentionAligner) -> None:
    """The fused read-outs start at zero (encoder embedding unchanged); perturb them so tests see them."""
    with torch.no_grad():
        for readout in (aligner.text_readout, aligner.mol_readout):
            readout.out.weight.normal_(std=0.5)


def test_training_outputs_and_metrics():
    aligner = _aligner().train()
    text, mol = _pair()
    out = aligner(text, mol)
    assert out.text.shape == out.molecule.shape == (B, EMBED)
    assert set(out.losses) == {"itm"} and out.losses["itm"].dim() == 0 and out.losses["itm"] > 0
    assert set(out.metrics) == {"itm_acc", "itm_pos_acc", "itm_neg_acc"}
    assert all(0.0 <= v <= 1.0 for v in out.metrics.values())


def test_fused_embeddings_start_at_encoder_output_and_match_embed_methods():
    aligner = _aligner().eval()
    text, mol = _pair()
    out = aligner(text, mol)
    assert torch.equal(out.text, text.embedding) and torch.equal(out.molecule, mol.embedding)  # zero-initialised
    _fuse_out_nonzero(aligner)
    out = aligner(text, mol)
    assert not torch.allclose(out.text, text.embedding)
    torch.testing.assert_close(aligner.embed_text(text), out.text)  # retrieval = what the loss saw
    torch.testing.assert_close(aligner.embed_molecule(mol), out.molecule)


def test_fuse_false_passes_embeddings_through():
    aligner = _aligner(fuse=False).eval()
    text, mol = _pair()
    assert torch.equal(aligner.embed_text(text), text.embedding)
    assert torch.equal(aligner(text, mol).molecule, mol.embedding)


def test_eval_mode_has_no_aux_loss():
    aligner = _aligner().eval()
    out = aligner(*_pair())
    assert out.losses == {} and out.metrics == {}


def test_padding_does_not_change_outputs():
    aligner = _aligner(dropout=0.0)
    _fuse_out_nonzero(aligner)
    text, mol = _pair()
    padded_text, padded_mol = _pad(text, 3), _pad(mol, 5)
    aligner.eval()
    torch.testing.assert_close(aligner.embed_text(padded_text), aligner.embed_text(text))
    torch.testing.assert_close(aligner.embed_molecule(padded_mol), aligner.embed_molecule(mol))
    project = aligner.text_in, aligner.mol_in
    logits = aligner.match_logits(project[0](text.states), text.mask, project[1](mol.states), mol.mask)
    padded = aligner.match_logits(project[0](padded_text.states), padded_text.mask, project[1](padded_mol.states),
                                  padded_mol.mask)
    torch.testing.assert_close(padded, logits)
    aligner.train()  # same negatives (same seed) -> same loss
    torch.manual_seed(3)
    loss = aligner(text, mol).losses["itm"]
    torch.manual_seed(3)
    torch.testing.assert_close(aligner(padded_text, padded_mol).losses["itm"], loss)


def test_caps_limit_what_the_pairs_attend_over_but_not_the_retrieval_embedding():
    aligner = _aligner(dropout=0.0, max_tokens=2, max_atoms=1, negatives="random")  # negatives independent of the embeddings
    _fuse_out_nonzero(aligner)
    text, mol = _pair()
    changed = Encoded(text.embedding, text.states.clone(), text.mask)
    changed.states[:, 2:] += 1.0  # only beyond the token cap
    torch.manual_seed(3)
    loss = aligner(text, mol).losses["itm"]
    torch.manual_seed(3)
    out = aligner(changed, mol)
    torch.testing.assert_close(out.losses["itm"], loss)
    assert not torch.allclose(out.text, aligner(text, mol).text)  # the read-out sees every token


def test_matching_gradient_reaches_both_states_but_not_padding():
    aligner = _aligner(fuse=False).train()  # no read-out: gradient to the states comes from the matching loss only
    text, mol = _pair()
    text.states.requires_grad_(True)
    mol.states.requires_grad_(True)
    aligner(text, mol).losses["itm"].backward()
    for enc in (text, mol):
        grad = enc.states.grad
        assert grad[enc.mask].abs().sum() > 0
        assert grad[~enc.mask].abs().sum() == 0


def test_negatives_are_never_the_positive():
    aligner = _aligner()
    emb = torch.randn(8, EMBED)
    for mode in ("hard", "random"):
        aligner.negatives = mode
        for _ in range(20):
            neg_mol, neg_text = aligner.sample_negatives(emb, emb + 0.01 * torch.randn_like(emb))
            assert (neg_mol != torch.arange(8)).all() and (neg_text != torch.arange(8)).all()


def test_learns_to_match():
    """Matched pairs share a signal in all their states; the head learns to tell them from negatives
    (always answering "no match" would score 2/3)."""
    torch.manual_seed(0)
    aligner = CrossAttentionAligner(EMBED, hidden_dim=32, heads=4, dropout=0.0, negatives="random", fuse=False)
    aligner(*_pair(text_width=8))  # materialise before building the optimizer
    optimizer = torch.optim.Adam(aligner.parameters(), lr=3e-3)
    accuracy = []
    for _step in range(150):
        key = torch.randn(16, 1, 8)
        text = Encoded(torch.randn(16, EMBED), key + 0.3 * torch.randn(16, 4, 8), torch.ones(16, 4, dtype=torch.bool))
        mol = Encoded(torch.randn(16, EMBED), key + 0.3 * torch.randn(16, 3, 8), torch.ones(16, 3, dtype=torch.bool))
        out = aligner(text, mol)
        optimizer.zero_grad()
        out.losses["itm"].backward()
        optimizer.step()
        accuracy.append(out.metrics["itm_acc"])
    assert sum(accuracy[-20:]) / 20 > 0.9


def test_state_dict_round_trip_into_fresh_lazy_aligner():
    aligner = _aligner().eval()
    _fuse_out_nonzero(aligner)
    text, mol = _pair()
    fresh = CrossAttentionAligner(EMBED, hidden_dim=32, heads=4).eval()  # uninitialised lazy projections
    fresh.load_state_dict(aligner.state_dict())
    torch.testing.assert_close(fresh.embed_text(text), aligner.embed_text(text))
    torch.testing.assert_close(fresh.embed_molecule(mol), aligner.embed_molecule(mol))


@pytest.mark.parametrize(
    ("encoder", "options", "text_width"),
    [
        ("gcn", {"hidden_dim": 24, "layers": 2}, 384),  # MiniLM-width token states
        ("gine", {"hidden_dim": 24, "layers": 2}, 768),  # SciBERT-width
        ("graph_transformer", {"hidden_dim": 24, "layers": 1, "heads": 4}, 384),
        ("fingerprint_mlp", {"hidden_dim": 24, "n_bits": 128}, 768),  # one state per molecule
    ],
)
def test_works_with_each_molecule_encoder(encoder, options, text_width):
    from torch_geometric.data import Batch

    from zoo.registry import get_component

    torch.manual_seed(0)
    mol_encoder = get_component("molecule_encoder", encoder).create(embed_dim=EMBED, **options)
    mol_encoder.return_states = True
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C"]
    batch = Batch.from_data_list([mol_encoder.featurize(s) for s in smiles])
    aligner = CrossAttentionAligner(EMBED, hidden_dim=32, heads=4, fuse=False).train()
    mol = mol_encoder(batch)
    assert mol.states.shape[-1] == mol_encoder.state_dim
    out = aligner(_encoded(4, [5, 2, 7, 3], text_width), mol)
    assert out.text.shape == out.molecule.shape == (4, EMBED)
    out.losses["itm"].backward()  # the matching loss trains the molecule encoder itself
    grads = [p.grad for p in mol_encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_missing_or_mismatched_states_are_clear_errors():
    aligner = _aligner()
    text, mol = _pair()
    with pytest.raises(ValueError, match="molecule encoder returned no states"):
        aligner(text, Encoded(mol.embedding))
    with pytest.raises(ValueError, match="text states have width 5 but the aligner was built for width 24"):
        aligner.embed_text(_encoded(2, [2, 1], 5))


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"heads": 3}, "heads=3 must divide hidden_dim=32"),
        ({"layers": 0}, "layers=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"weight": -1.0}, "weight=-1.0"),
        ({"negatives": "bogus"}, "negatives='bogus' must be one of hard, random"),
        ({"fuse": "yes"}, "fuse='yes'"),
        ({"max_tokens": 0}, "max_tokens=0"),
    ],
)
def test_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        CrossAttentionAligner(EMBED, **{"hidden_dim": 32, **options})


def test_registered():
    from zoo.registry import get_component

    component = get_component("aligner", "cross_attention")
    assert set(component.config) == {"heads", "hidden_dim", "layers", "dropout", "weight", "negatives", "fuse",
                                     "max_tokens", "max_atoms"}
    aligner = component.create(embed_dim=EMBED, hidden_dim=32)
    assert aligner.needs_states and isinstance(aligner, CrossAttentionAligner)


# -- end to end: the shipped text2mol_attention composition ----------------------------------------
TINY_GCN = [s for s in TINY if not s.startswith("molecule_encoder.heads")]  # gcn has no heads option


def test_tiny_text2mol_attention_run_and_reevaluation(tiny_env, tmp_path, capsys):
    run = tmp_path / "run"
    results = run_tiny(tiny_env, run, "train.epochs=2", composition="text2mol_attention",
                       base=TINY_GCN)
    assert results["spec"]["aligner"]["name"] == "cross_attention"
    assert results["spec"]["molecule_encoder"]["name"] == "gcn"
    history = results["training"]["history"]
    assert len(history) == 2 and {"itm", "itm_acc", "itm_pos_acc", "itm_neg_acc"} <= set(history[0])
    assert all(0.0 <= h["itm_acc"] <= 1.0 and h["itm"] > 0 for h in history)
    mrr = results["scores"]["all"]["text_to_molecule"]["mrr"]
    assert 0.0 < mrr <= 1.0
    # the best checkpoint loads into a freshly built (lazy) aligner and reproduces the scores
    assert main(["eval", str(run), "--data-dir", str(tiny_env), "--no-progress", "--gallery", "all"]) == 0
    again = json.loads((run / "eval-test.json").read_text())
    assert again["scores"]["all"]["text_to_molecule"]["mrr"] == pytest.approx(mrr, abs=1e-6)
