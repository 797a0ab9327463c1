"""Transformer text encoders (plugins/text/hf_text.py) on the offline MiniLM backbone.

Every test runs with ``ZOO_CACHE_DIR`` in a temporary folder and the Hugging Face hub offline.
One tiny encoder (``embed_dim=32``, ``max_length=32``) is built per module and reused.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402

from zoo.errors import TextEncoderUnavailable  # noqa: E402
from zoo.plugins.text import hf_text  # noqa: E402
from zoo.plugins.text.hf_text import SCIBERT_HUB_ID, HFTextEncoder  # noqa: E402
from zoo.registry import get_component  # noqa: E402

DIM, MAX_LEN, HIDDEN = 32, 32, 384
SHORT = "benzene"
LONG = ("benzene is an aromatic hydrocarbon: a planar monocyclic ring of six carbon atoms, each bonded to one "
        "hydrogen atom; it is a colourless, flammable liquid, a solvent and a precursor of many chemicals")
TEXTS = [LONG, SHORT, "a carboxylic acid"]


@pytest.fixture(scope="module", autouse=True)
def offline_cache(tmp_path_factory):
    """A private molzoo cache and an offline hub for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("zoo-cache")
        mp.setenv("ZOO_CACHE_DIR", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hf_text, "_hub_reachable", lambda timeout=3.0: False)
        mp.setattr(hf_text, "MIN_CACHED_TEXTS", 1)  # these tests cache lists of a few texts
        yield root


def make(**options) -> HFTextEncoder:
    options = {"embed_dim": DIM, "max_length": MAX_LEN, **options}
    return get_component("text_encoder", options.pop("name", "minilm")).create(**options)


@pytest.fixture(scope="module")
def encoder() -> HFTextEncoder:
    torch.manual_seed(0)
    return make()


@pytest.fixture(scope="module")
def items(encoder):
    return encoder.prepare(TEXTS, progress=False)


def head_parameters(enc: HFTextEncoder):
    return [(n, p) for n, p in enc.named_parameters() if not n.startswith("backbone.")]


# -- frozen mode ---------------------------------------------------------------------------
def test_auto_mode_is_frozen(encoder):
    assert encoder.frozen
    assert all(not p.requires_grad for p in encoder.backbone.parameters())
    assert all(p.requires_grad for _, p in head_parameters(encoder))


def test_frozen_prepare_returns_token_states(encoder, items):
    assert len(items) == len(TEXTS)
    tokens = encoder.tokenizer(TEXTS, truncation=True, max_length=MAX_LEN)["input_ids"]
    for item, ids in zip(items, tokens):
        assert item.states.dtype == torch.float16
        assert item.states.shape == (len(ids), HIDDEN)
        assert torch.isfinite(item.states).all()
        assert item.ids.tolist() == ids
    assert items[0].states.shape[0] == MAX_LEN  # the long text is truncated
    assert items[1].states.shape[0] < items[2].states.shape[0] < MAX_LEN


def test_frozen_states_do_not_depend_on_batching(encoder, items):
    # the backbone batches texts (padded); a text's states match the text encoded alone
    alone = encoder.backbone_states([SHORT], progress=False)[0]
    torch.testing.assert_close(alone.float(), items[1].states.float(), atol=1e-2, rtol=0)


def test_prepare_hits_disk_cache(encoder, items, monkeypatch, offline_cache):
    files = list((offline_cache / "text").glob("*.safetensors"))
    assert files, "frozen states are cached on disk"

    def boom(*args, **kwargs):
        raise AssertionError("backbone ran although the states are cached")

    monkeypatch.setattr(encoder, "backbone_states", boom)
    again = encoder.prepare(TEXTS, progress=False)
    assert len(again) == len(items)
    for a, b in zip(again, items):
        assert a.states.dtype == torch.float16
        assert torch.equal(a.states, b.states) and torch.equal(a.ids, b.ids)
    # other texts are a different cache entry: the backbone must run
    with pytest.raises(AssertionError, match="backbone ran"):
        encoder.prepare([SHORT, "ethanol"], progress=False)


def test_collate_and_forward(encoder, items):
    batch = encoder.collate(items)
    assert set(batch) == {"states", "mask", "input_ids"}
    assert batch["states"].shape == (3, MAX_LEN, HIDDEN)
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == [len(t.ids) for t in items]
    encoder.eval()
    out = encoder(batch)
    assert out.embedding.shape == (3, DIM)
    assert out.embedding.dtype == torch.float32
    assert torch.isfinite(out.embedding).all()
    assert out.states is None  # only when the aligner asks for them
    encoder.return_states = True
    try:
        out = encoder(batch)
        assert out.states.shape == (3, MAX_LEN, HIDDEN) and out.mask.shape == (3, MAX_LEN)
    finally:
        encoder.return_states = False


def test_lexical_channel_is_trained_and_changes_the_embedding(items):
    torch.manual_seed(0)
    enc = make(lexical_dim=16, lexical_buckets=64)
    enc.train()
    out = enc(enc.collate(items))
    assert out.embedding.shape == (3, DIM)
    out.embedding.pow(2).sum().backward()
    assert enc.unigrams.weight.grad.abs().sum() > 0 and enc.bigrams.weight.grad.abs().sum() > 0
    # padding tokens do not contribute: a text alone equals the text inside a padded batch
    enc.eval()
    with torch.no_grad():
        batch = enc(enc.collate(items)).embedding
        alone = enc(enc.collate([items[1]])).embedding
    torch.testing.assert_close(batch[1], alone[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="lexical_dim"):
        make(lexical_dim=-1)


def test_lexical_channel_is_the_masked_mean_with_sparse_gradients(items):
    """One embedding_bag per table (no [B, L, dim] intermediate) equals the masked mean of the rows,
    and the tables (declared sparse) get sparse gradients holding the same values as dense ones."""
    torch.manual_seed(0)
    enc = make(lexical_dim=16, lexical_buckets=64)
    assert enc.unigrams.sparse and enc.bigrams.sparse
    batch = enc.collate(items)
    ids, mask = batch["input_ids"], batch["mask"]
    ids[2, 0] = ids[2, 1] = 0  # a text with one real token ...
    mask[2, 1:] = False
    mask[1, :] = False  # ... and one with none: no bigram, zero vector

    def reference(table, rows, m):
        m = m.unsqueeze(-1).float()
        return (F.embedding(rows, table.weight) * m).sum(1) / m.sum(1).clamp(min=1.0)  # dense gradient

    pair = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % 64
    expected = reference(enc.unigrams, ids, mask) + reference(enc.bigrams, pair, mask[:, :-1] & mask[:, 1:])
    got = enc.lexical(ids, mask)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got[1], torch.zeros(16))
    got.pow(2).sum().backward()
    sparse = enc.unigrams.weight.grad
    enc.zero_grad()
    expected.pow(2).sum().backward()
    assert sparse.is_sparse and not enc.unigrams.weight.grad.is_sparse
    torch.testing.assert_close(sparse.to_dense(), enc.unigrams.weight.grad)


def test_gradients_reach_head_not_backbone(items):
    torch.manual_seed(0)
    enc = make(pooling="attention", adapter_layers=1)
    enc.train()
    out = enc(enc.collate(items))
    (out.embedding ** 2).sum().backward()
    trainable = head_parameters(enc)
    assert {n.split(".")[0] for n, _ in trainable} == {"adapter", "attention_gate", "head"}
    for name, p in trainable:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if p.dim() > 1:  # every weight matrix gets a signal
            assert p.grad.abs().sum() > 0, name
    for name, p in enc.backbone.named_parameters():
        assert not p.requires_grad and p.grad is None, name


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "attention"])
def test_pooling_shapes_and_padding_invariance(pooling, encoder, items):
    torch.manual_seed(0)
    enc = encoder if pooling == "mean" else make(pooling=pooling)
    enc.eval()
    with torch.no_grad():
        batch = enc(enc.collate(items)).embedding
        alone = enc(enc.collate([items[1]])).embedding
    assert batch.shape == (3, DIM) and alone.shape == (1, DIM)
    torch.testing.assert_close(alone[0], batch[1], atol=1e-5, rtol=0)
    assert not torch.allclose(batch[0], batch[1])  # different texts, different embeddings


def test_poolings_differ(items, encoder):
    torch.manual_seed(0)
    enc = make(pooling="max")
    enc.load_state_dict(encoder.state_dict())  # same weights, only the pooling differs
    enc.eval()
    encoder.eval()
    with torch.no_grad():
        assert not torch.allclose(enc(enc.collate(items)).embedding, encoder(encoder.collate(items)).embedding)


# -- finetune mode -------------------------------------------------------------------------
def test_finetune_mode(encoder):
    encoder.set_mode("finetune")
    try:
        assert not encoder.frozen
        # every backbone weight trains but the pooler's: only token states are used (DDP refuses unused parameters)
        assert all(p.requires_grad != name.startswith("pooler.") for name, p in encoder.backbone.named_parameters())
        ids = encoder.prepare(TEXTS, progress=False)
        expected = encoder.tokenizer(TEXTS, truncation=True, max_length=MAX_LEN)["input_ids"]
        assert [t.tolist() for t in ids] == expected
        assert all(t.dtype == torch.long for t in ids)
        batch = encoder.collate(ids)
        assert set(batch) == {"input_ids", "attention_mask"}
        assert batch["input_ids"].shape == (3, MAX_LEN)
        assert (batch["input_ids"][1, len(ids[1]):] == encoder.tokenizer.pad_token_id).all()

        encoder.eval()  # padding invariance, through the backbone this time
        with torch.no_grad():
            together = encoder(batch).embedding
            alone = encoder(encoder.collate([ids[1]])).embedding
        torch.testing.assert_close(alone[0], together[1], atol=1e-4, rtol=0)

        encoder.train()
        encoder.zero_grad()
        out = encoder(batch)
        assert out.embedding.shape == (3, DIM)
        (out.embedding ** 2).sum().backward()
        for name, p in encoder.backbone.named_parameters():
            if name.startswith("pooler."):  # BERT's pooler is not used: we pool token states
                continue
            assert p.grad is not None, name
        assert encoder.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        assert encoder.backbone.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    finally:
        encoder.zero_grad(set_to_none=True)
        encoder.set_mode("frozen")
        encoder.eval()
    assert all(not p.requires_grad for p in encoder.backbone.parameters())


def test_finetune_option_at_creation():
    enc = make(mode="finetune", adapter_layers=0)
    assert not enc.frozen and len(enc.adapter) == 0
    assert all(p.requires_grad != name.startswith("pooler.") for name, p in enc.backbone.named_parameters())
    assert isinstance(enc.prepare([SHORT], progress=False)[0], torch.Tensor)
    assert enc.prepare([SHORT], progress=False)[0].dtype == torch.long


# -- determinism ---------------------------------------------------------------------------
def test_seeded_creation_is_deterministic(items):
    encoders = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        encoders.append(make())
    a, b, c = (dict(head_parameters(e)) for e in encoders)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)  # the seed matters
    outs = []
    for enc in encoders[:2]:
        enc.eval()
        with torch.no_grad():
            outs.append(enc(enc.collate(items)).embedding)
    assert torch.equal(outs[0], outs[1])


# -- other backbones and failures ----------------------------------------------------------
def test_hf_with_local_path():
    path = hf_text.minilm_path()
    assert (path / "config.json").exists()
    enc = make(name="hf", model=str(path))
    assert enc.source == str(path)
    assert enc.hidden == HIDDEN
    enc.eval()
    with torch.no_grad():
        out = enc(enc.collate(enc.prepare([SHORT], progress=False)))
    assert out.embedding.shape == (1, DIM)


def test_hf_without_model():
    with pytest.raises(ValueError, match="needs model="):
        make(name="hf")


def test_hf_missing_path(tmp_path):
    with pytest.raises(TextEncoderUnavailable, match="does not exist"):
        make(name="hf", model=str(tmp_path / "no-such-model"))


def test_scibert_offline_is_unavailable():
    start = time.perf_counter()
    with pytest.raises(TextEncoderUnavailable) as err:
        make(name="scibert")
    assert time.perf_counter() - start < 15
    msg = str(err.value)
    assert SCIBERT_HUB_ID in msg and "minilm" in msg and "model=PATH" in msg


@pytest.mark.parametrize(
    "option, value",
    [("pooling", "sum"), ("mode", "frozen-ish"), ("max_length", 2)],
)
def test_invalid_options(option, value):
    with pytest.raises(ValueError) as err:
        make(**{option: value})
    assert option in str(err.value) and str(value) in str(err.value)


def test_set_mode_rejects_unknown(encoder):
    with pytest.raises(ValueError, match="mode must be"):
        encoder.set_mode("auto")
    assert encoder.frozen


# -- model assembly with substitution ------------------------------------------------------
@pytest.fixture(scope="module")
def small_aman():
    from zoo.spec import load_spec

    return load_spec("aman").with_overrides(
        ["text_encoder=scibert", "embed_dim=32", "text_encoder.max_length=32", "text_encoder.pooling=cls",
         "molecule_encoder.hidden_dim=32", "molecule_encoder.layers=1", "molecule_encoder.heads=2",
         "aligner.hidden_dim=16"]
    )


def test_build_model_substitutes_minilm_offline(small_aman):
    from zoo.errors import SubstitutionWarning
    from zoo.model import build_model

    with pytest.warns(SubstitutionWarning, match="scibert"):
        model, report = build_model(small_aman)
    assert len(report.substitutions) == 1
    sub = report.substitutions[0]
    assert sub["slot"] == "text_encoder" and sub["requested"] == "scibert" and sub["used"] == "minilm"
    assert SCIBERT_HUB_ID in sub["reason"]
    assert report.components[0]["name"] == "minilm"
    assert report.components[0]["substituted_for"] == "scibert"
    assert [c["slot"] for c in report.components] == ["text_encoder", "molecule_encoder", "aligner", "loss"]
    # the recorded spec is what actually ran, options kept, and hashes differently
    assert report.spec.text_encoder.name == "minilm"
    assert report.spec.text_encoder.options["pooling"] == "cls"
    assert report.spec.text_encoder.options["max_length"] == 32
    assert report.spec.hash() != small_aman.hash()
    assert isinstance(model.text_encoder, HFTextEncoder)
    assert model.text_encoder.source == str(hf_text.minilm_path())
    assert model.text_encoder.pooling == "cls" and model.text_encoder.max_length == 32


def test_build_model_on_substitute_callback(small_aman):
    from zoo.model import build_model

    messages: list[str] = []
    _, report = build_model(small_aman, on_substitute=messages.append)
    assert len(messages) == 1 and "minilm" in messages[0]
    assert report.substitutions


def test_build_model_strict_raises(small_aman):
    from zoo.model import build_model

    with pytest.raises(TextEncoderUnavailable, match="scibert_scivocab_uncased"):
        build_model(small_aman, allow_substitution=False)


def test_a_few_texts_are_not_cached(encoder, offline_cache, monkeypatch):
    """Search queries (a text or two) are encoded without writing a cache file each."""
    monkeypatch.setattr(hf_text, "MIN_CACHED_TEXTS", 32)
    before = set((offline_cache / "text").glob("*.safetensors"))
    encoder.prepare(["a query that was never cached"], progress=False)
    assert set((offline_cache / "text").glob("*.safetensors")) == before



# -- the frozen-state cache: what its key and contents must match ---------------------------
def _cache_file(encoder: HFTextEncoder, texts):
    from zoo.cache import cache_root, content_hash

    return cache_root() / "text" / f"{content_hash(encoder.cache_key, list(texts))}.safetensors"


def test_cached_states_of_other_token_counts_are_recomputed(encoder, items):
    """States made with another tokenizer (e.g. one loaded from a half-unpacked model folder) must not
    meet this tokenizer's ids: their lengths would not match the padding mask of a batch."""
    from safetensors.torch import save_file

    texts = ["The molecule is a Cyclohexanecarboxylic acid.", *TEXTS]
    good = encoder.prepare(texts, progress=False)
    shorter = [item.states[:-2] for item in good]  # what a tokenizer reading each capitalized word as one [UNK] gives
    save_file({"states": torch.cat(shorter), "lengths": torch.tensor([len(s) for s in shorter])}, str(_cache_file(encoder, texts)))
    with pytest.warns(UserWarning, match="other token counts"):
        again = encoder.prepare(texts, progress=False)
    assert [len(i.states) for i in again] == [len(i.ids) for i in again] == [len(i.ids) for i in good]
    batch = encoder.collate(again)
    assert batch["states"].shape[1] == batch["mask"].shape[1]


def test_cache_key_follows_the_local_weights(tmp_path):
    """A local model whose weights change gets another cache key (hashed from its files, no network)."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "minilm-copy"
    shutil.copytree(hf_text.minilm_path(), folder)
    before = make(name="hf", model=str(folder)).cache_key
    assert make(name="hf", model=str(folder)).cache_key == before  # stable
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    after = make(name="hf", model=str(folder)).cache_key
    assert after != before and str(folder) in after
    (folder / "tokenizer_config.json").write_text((folder / "tokenizer_config.json").read_text().replace("512", "510"))
    assert make(name="hf", model=str(folder)).cache_key not in (before, after)


def test_hub_revision_is_the_cached_snapshot(tmp_path, monkeypatch):
    """A hub id's revision is the Hugging Face cache's snapshot commit (read locally, never fetched)."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--org--model"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (repo / "refs" / "main").write_text("a" * 40)
    assert hf_text.model_revision("org/model") == "snapshot:" + "a" * 40
    (repo / "refs" / "main").write_text("b" * 40)  # the model was updated
    assert hf_text.model_revision("org/model") == "snapshot:" + "b" * 40
    assert hf_text.model_revision("org/absent") == "unresolved"


def test_a_late_minilm_unpack_leaves_the_finished_copy_alone(tmp_path, monkeypatch):
    """Two processes (torchrun ranks) unpack MiniLM at once: the one finishing second must not delete
    or replace the folder the first one is already loading its tokenizer from."""
    import zipfile

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    real_extract = zipfile.ZipFile.extractall
    finished: list[int] = []

    def other_process_finishes_first(self, path, *args, **kwargs):
        real_extract(self, path, *args, **kwargs)
        if not finished:  # while this process extracted, the other one renamed its copy into place
            target = tmp_path / "cache" / "models" / "all-MiniLM-L6-v2"
            other = target.with_name(".other-process.tmp")
            real_extract(self, other)
            other.rename(target)
            finished.append((target / "tokenizer.json").stat().st_ino)

    monkeypatch.setattr(zipfile.ZipFile, "extractall", other_process_finishes_first)
    path = hf_text.minilm_path()
    assert (path / "tokenizer.json").stat().st_ino == finished[0]  # the same files, never removed
    assert sorted(p.name for p in path.parent.iterdir()) == ["all-MiniLM-L6-v2"]  # no leftovers


@pytest.mark.parametrize("name", ["minilm", "tfidf", "chem_names", "combined"])
def test_built_in_text_encoders_implement_the_documented_protocol(name, tiny_env):
    """What register_text_encoders documents (prepare with progress/device, collate, forward, dim, frozen)
    is what zoo.api.TextEncoder states, and every built-in text encoder has it."""
    import inspect

    from zoo.api import TextEncoder
    from zoo.registry import get_component

    options = {"parts": [{"name": "tfidf"}, {"name": "minilm"}]} if name == "combined" else {}
    encoder = get_component("text_encoder", name).create(embed_dim=32, **options)
    assert isinstance(encoder, TextEncoder)
    assert {"progress", "device"} <= set(inspect.signature(encoder.prepare).parameters)
