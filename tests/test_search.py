"""``zoo search`` against a run's gallery: text and SMILES queries, the embedding cache, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from zoo.cli import main

QUERY = "The molecule is a pyridine derivative carrying a nitro substituent attached directly to the ring."


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    """A writable copy of the tiny run (the gallery cache is written into the run folder)."""
    data_dir, run_dir, _ = tiny_run
    copy = tmp_path_factory.mktemp("search") / "run"
    shutil.copytree(run_dir, copy)
    return data_dir, copy


def search(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["search", *map(str, argv), "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_text_and_smiles_queries_rank_the_gallery(run_copy, capsys):
    from zoo.library import embed_smiles
    from zoo.runs import load_trained_run

    data_dir, run_dir = run_copy
    result = search(capsys, run_dir, QUERY, "-k", "5", "--data-dir", data_dir)
    hits = result["results"]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    assert result["query_type"] == "text" and result["target"] == "molecules" and "86 molecules, 80 descriptions" in result["searched"]

    # the cached gallery holds the same embeddings as embedding the SMILES directly
    cache = np.load(run_dir / "search" / "gallery.npz")
    trained = load_trained_run(run_dir, "cpu")
    direct = embed_smiles(trained.model, [h["smiles"] for h in hits], 8, trained.device).embeddings
    rows = [list(cache["molecule_cids"]).index(h["cid"]) for h in hits]
    np.testing.assert_allclose(cache["molecule_embeddings"][rows], direct, atol=1e-5)

    described = search(capsys, run_dir, "--smiles", "c1cc(ccn1)[N+](=O)[O-]", "-k", "3")
    assert described["target"] == "descriptions" and len(described["results"]) == 3
    assert all(h["description"].startswith("The molecule is") for h in described["results"])
    capsys.readouterr()
    assert main(["search", str(run_dir), QUERY, "-k", "2", "--no-progress"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("text query") and table[1].split()[0] == "1" and len(table) == 3


def test_gallery_cache_is_reused_and_follows_the_checkpoint(run_copy, capsys, monkeypatch):
    from safetensors.torch import load_file, save_file

    import zoo.plugins.tasks.chebi20 as chebi20

    data_dir, run_dir = run_copy
    search(capsys, run_dir, QUERY, "--data-dir", data_dir)  # makes sure the cache exists
    monkeypatch.setattr(chebi20, "load_chebi20", lambda *a, **k: pytest.fail("the cached gallery should be used"))
    first = search(capsys, run_dir, QUERY, "-k", "3")

    checkpoint = run_dir / "checkpoint" / "best.safetensors"
    weights = load_file(checkpoint)
    name = next(k for k in weights if k.startswith("molecule_encoder") and weights[k].is_floating_point())
    weights[name] = weights[name] + 0.5
    save_file(weights, checkpoint)
    with pytest.raises(pytest.fail.Exception, match="cached gallery"):
        search(capsys, run_dir, QUERY)  # new weights: the stale cache is not used
    monkeypatch.undo()
    changed = search(capsys, run_dir, QUERY, "-k", "3", "--data-dir", data_dir)
    assert [h["score"] for h in changed["results"]] != [h["score"] for h in first["results"]]


def test_queries_file_reports_latency(run_copy, tmp_path, capsys):
    data_dir, run_dir = run_copy
    (tmp_path / "q.txt").write_text(f"{QUERY}\n\nThe molecule is a furan derivative.\n")
    out = search(capsys, run_dir, "--queries", tmp_path / "q.txt", "-k", "2", "--data-dir", data_dir)
    assert [q["query"] for q in out["queries"]] == [QUERY, "The molecule is a furan derivative."]
    assert set(out["latency_ms"]) == {"encode", "search", "total", "cpu"} and out["latency_ms"]["total"]["p99"] > 0


@pytest.mark.parametrize("argv, message", [
    (["no-such-run", "benzene"], "run folder not found"),
    (["RUN", "   "], "empty query"),
    (["RUN", "--smiles", ""], "--smiles: empty query"),
    (["RUN"], "give exactly one of"),
    (["RUN", "benzene", "--smiles", "CCO"], "give exactly one of"),
    (["RUN", "benzene", "-k", "0"], "-k must be at least 1"),
    (["RUN", "--smiles", "C1CC"], "--smiles 'C1CC': cannot read this molecule"),
    (["RUN", "--queries", "EMPTY"], "no queries"),
])
def test_bad_search_input(run_copy, tmp_path, capsys, argv, message):
    data_dir, run_dir = run_copy
    (tmp_path / "empty.txt").write_text("\n")
    argv = [{"RUN": str(run_dir), "EMPTY": str(tmp_path / "empty.txt")}.get(a, a) for a in argv]
    assert main(["search", *argv, "--data-dir", str(data_dir), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_a_finished_run_seeds_its_search_cache_with_the_evaluated_gallery(tiny_run, tmp_path):
    """`zoo run` writes RUN/search/gallery.npz from its test evaluation on gallery `all`: the gallery `zoo search` and
    fusion would embed (same order, same embeddings), so they do not embed it again."""
    from zoo.plugins.tasks.chebi20 import load_chebi20, sha256_file
    from zoo.runs import gallery_cache_path, load_trained_run
    from zoo.search import Gallery, gallery_key, run_gallery

    data_dir, run_dir, _ = tiny_run
    seeded_path = gallery_cache_path(run_dir)
    trained = load_trained_run(run_dir, "cpu")
    data = load_chebi20(data_dir, holdout_fraction=trained.spec.train.holdout_fraction, holdout_seed=0)
    seeded = Gallery.load(seeded_path, gallery_key(sha256_file(trained.checkpoint), data.checksums))
    assert seeded is not None, "the run left no usable search cache"
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    gallery_cache_path(copy).unlink()
    embedded = run_gallery(load_trained_run(copy, "cpu"), sha256_file(trained.checkpoint), data=data, progress=False, log=lambda _m: None)
    assert embedded.molecule_cids.tolist() == seeded.molecule_cids.tolist() == [m.cid for m in data.gallery]
    assert embedded.text_cids.tolist() == seeded.text_cids.tolist() and embedded.descriptions.tolist() == seeded.descriptions.tolist()
    np.testing.assert_allclose(seeded.molecule_embeddings, embedded.molecule_embeddings, atol=1e-5)
    np.testing.assert_allclose(seeded.text_embeddings, embedded.text_embeddings, atol=1e-5)
