"""``zoo index``: molecule files, library index build (chunks, workers, resume), bad input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from zoo.cli import main
from zoo.errors import DataError
from zoo.molfiles import count_records, iter_records, record_smiles

SMILES = ["CCO", "c1ccccc1O", "not_a_smiles", "CC(=O)O", "c1ccncc1", "CCN", "C1CCCCC1Cl", "OCCO", "c1ccc(cc1)C(=O)O", "CCCCBr"]
BAD_ROW = 3  # "not_a_smiles" is the 3rd line of the .smi file


@pytest.fixture
def lib(tmp_path):
    """The same 10 molecules (one unparseable) as .smi, .tsv and .sdf (the SDF without the bad one)."""
    from rdkit import Chem

    (tmp_path / "lib.smi").write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(SMILES)))
    (tmp_path / "lib.tsv").write_text("ID\tSMILES\n" + "".join(f"mol{i}\t{s}\n" for i, s in enumerate(SMILES)))
    writer = Chem.SDWriter(str(tmp_path / "lib.sdf"))
    for i, s in enumerate(SMILES):
        mol = Chem.MolFromSmiles(s)
        if mol is not None:
            mol.SetProp("_Name", f"mol{i}")
            writer.write(mol)
    writer.close()
    return tmp_path


def index(run_dir, molecules, out, *extra) -> int:
    return main(["index", str(run_dir), "--molecules", str(molecules), "--out", str(out), "--no-progress", *extra])


def search_json(capsys, run_dir, out, *query) -> dict:
    capsys.readouterr()
    assert main(["search", str(run_dir), *query, "--index", str(out), "-k", "3", "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def index_vectors(folder):
    import faiss

    index = faiss.read_index(str(folder / "index.faiss"))
    return index.reconstruct_n(0, index.ntotal)


# -- molecule files ----------------------------------------------------------------------------
def test_smiles_tsv_sdf_and_gz_read_the_same_molecules(lib):
    (lib / "lib.smi.gz").write_bytes(gzip.compress((lib / "lib.smi").read_bytes()))
    smi = list(iter_records(lib / "lib.smi"))
    assert [r.id for r in smi] == [f"mol{i}" for i in range(10)] and smi[BAD_ROW - 1].text == "not_a_smiles"
    assert [(r.id, r.text) for r in iter_records(lib / "lib.tsv")] == [(r.id, r.text) for r in smi]
    assert [r.row for r in iter_records(lib / "lib.tsv")] == list(range(2, 12))  # line numbers after the header
    assert list(iter_records(lib / "lib.smi.gz")) == smi
    sdf = list(iter_records(lib / "lib.sdf"))
    assert [r.id for r in sdf] == [f"mol{i}" for i in range(10) if i != 2]
    from rdkit import Chem

    assert [record_smiles(r) for r in sdf] == [Chem.CanonSmiles(s) for s in SMILES if s != "not_a_smiles"]
    (lib / "header.smi").write_text("smiles name\n\nCCO ethanol\n# a comment\nCCN\n")
    assert [(r.row, r.id, r.text) for r in iter_records(lib / "header.smi")] == [(3, "ethanol", "CCO"), (5, "5", "CCN")]


@pytest.mark.parametrize("name, content, message", [
    ("missing.smi", None, "molecule file not found"),
    ("lib.xyz", "CCO\n", "unknown molecule file type '.xyz'"),
    ("binary.smi", b"\xff\xfe\x00\x01", "not UTF-8"),
    ("table.tsv", "name\tvalue\nx\t1\n", "no SMILES column in the header ['name', 'value']"),
    ("truncated.smi.gz", gzip.compress(b"CCO\n" * 1000)[:40], "unreadable"),
])
def test_unreadable_molecule_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        count_records(path)
    assert message in str(info.value) and name in str(info.value)


def test_tsv_quotes_are_ordinary_characters(tmp_path):
    """Tab-separated files are not CSV: a leading quote must not swallow the rows that follow."""
    path = tmp_path / "quotes.tsv"
    path.write_text('ID\tSMILES\n"mol0\tCCO\nmol1\tCCN\nmol2 "x"\tCCC\n')
    assert [(r.row, r.id, r.text) for r in iter_records(path)] == [(2, '"mol0', "CCO"), (3, "mol1", "CCN"), (4, 'mol2 "x"', "CCC")]
    assert count_records(path) == 3


@pytest.mark.parametrize("name, content, line", [
    ("unclosed.csv", 'ID,SMILES\nmol0,CCO\n"mol1,CCN\nmol2,CCC\n', "lines 3-4"),  # an unclosed quote: not 1 record
    ("huge.tsv", "ID\tSMILES\nmol0\tCCO\nmol1\t" + "C" * 200_000 + "\n", "line 3"),  # over csv's field size limit
])
def test_malformed_table_rows_are_data_errors_naming_file_and_line(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        count_records(path)
    assert f"{name}, {line}: unreadable row" in str(info.value) and "\n" not in str(info.value)


# -- build and search --------------------------------------------------------------------------
def test_index_skips_bad_molecules_and_search_matches_brute_force(tiny_run, lib, tmp_path, capsys):
    from zoo.library import embed_smiles
    from zoo.runs import load_trained_run

    _, run_dir, _ = tiny_run
    out = tmp_path / "idx"
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "4") == 0
    printed = capsys.readouterr().out
    assert f"row {BAD_ROW} (mol2): RDKit cannot parse SMILES 'not_a_smiles'" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["molecules"] == {"records": 10, "indexed": 9, "skipped": 1}
    assert manifest["index"]["factory"] == "Flat" and manifest["build"]["molecules_per_s"] > 0
    assert (out / "skipped.tsv").read_text().splitlines()[1].startswith(f"{BAD_ROW}\tmol2\t")
    assert not (out / "chunks").exists() and not (out / "build.json").exists()

    query = "The molecule is a benzene derivative carrying a hydroxy substituent attached directly to the ring."
    result = search_json(capsys, run_dir, out, query)
    trained = load_trained_run(run_dir, "cpu")
    good = [s for s in SMILES if s != "not_a_smiles"]
    mols = embed_smiles(trained.model, good, 4, trained.device).embeddings
    items = trained.model.text_encoder.prepare([query], progress=False, device=trained.device)
    from zoo.evaluate import embed_texts

    scores = mols @ embed_texts(trained.model, items, 1, trained.device).numpy()[0]
    best = np.argsort(-scores)[:3]
    assert [h["smiles"] for h in result["results"]] == [good[i] for i in best]
    assert [h["score"] for h in result["results"]] == pytest.approx(scores[best].tolist(), abs=1e-5)
    assert [h["rank"] for h in result["results"]] == [1, 2, 3] and result["target"] == "molecules"

    # a SMILES query against a library index finds that molecule first
    hits = search_json(capsys, run_dir, out, "--smiles", "c1ccncc1")["results"]
    assert hits[0]["cid"] == "mol4" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_two_workers_build_the_same_index_as_one(tiny_run, lib, tmp_path):
    _, run_dir, _ = tiny_run
    assert index(run_dir, lib / "lib.tsv", tmp_path / "one", "--chunk-size", "3") == 0
    assert index(run_dir, lib / "lib.tsv", tmp_path / "two", "--chunk-size", "3", "--workers", "2") == 0
    assert (tmp_path / "one" / "molecules.tsv").read_text() == (tmp_path / "two" / "molecules.tsv").read_text()
    np.testing.assert_allclose(index_vectors(tmp_path / "one"), index_vectors(tmp_path / "two"), atol=1e-5)
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["build"]["workers"] == 2


def test_interrupted_build_resumes_after_the_last_chunk(tiny_run, lib, tmp_path, monkeypatch, capsys):
    import zoo.library as library

    _, run_dir, _ = tiny_run
    out = tmp_path / "idx"
    written = []
    real_write = library._write_chunk

    def interrupt_after_two(path, records, embedded):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path.name)
        real_write(path, records, embedded)

    monkeypatch.setattr(library, "_write_chunk", interrupt_after_two)
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "3") == 130
    assert sorted(p.name for p in (out / "chunks").iterdir()) == written == ["chunk-000000.npz", "chunk-000001.npz"]
    assert not (out / "manifest.json").exists()
    assert main(["search", str(run_dir), "benzene", "--index", str(out)]) == 2
    assert "not finished" in capsys.readouterr().err

    # another input file is refused; the same command resumes with the two chunks left
    (tmp_path / "other.smi").write_text("CCO\n")
    assert index(run_dir, tmp_path / "other.smi", out) == 2
    assert "unfinished build of other inputs (different chunk_size, source file content)" in capsys.readouterr().err
    embedded = []
    monkeypatch.setattr(library, "_write_chunk", lambda p, r, e: (embedded.append(p.name), real_write(p, r, e)))
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "3") == 0
    assert "resuming the build" in capsys.readouterr().out
    assert embedded == ["chunk-000002.npz", "chunk-000003.npz"]
    build = json.loads((out / "manifest.json").read_text())["build"]  # throughput of this invocation's 3 + 1 molecules
    assert build["molecules_embedded"] == 4
    assert build["molecules_per_s"] == pytest.approx(4 / build["embed_s"], rel=0.05)
    assert build["cpu_ms_per_molecule"] == pytest.approx(1e3 * build["embed_cpu_s"] / 4, rel=0.05, abs=1e-3)
    assert index(run_dir, lib / "lib.smi", tmp_path / "fresh", "--chunk-size", "3") == 0
    assert (out / "molecules.tsv").read_text() == (tmp_path / "fresh" / "molecules.tsv").read_text()
    np.testing.assert_allclose(index_vectors(out), index_vectors(tmp_path / "fresh"), atol=1e-6)
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "3") == 2  # finished: needs --fresh
    assert "already holds a finished index" in capsys.readouterr().err


def test_default_index_folder_is_the_file_name_without_extensions(tiny_run, lib, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[1], run_dir)  # the fixture's run is read-only
    (lib / "lib.smi.gz").write_bytes(gzip.compress((lib / "lib.smi").read_bytes()))
    assert main(["index", str(run_dir), "--molecules", str(lib / "lib.smi.gz"), "--no-progress"]) == 0
    assert (run_dir / "indexes" / "lib" / "manifest.json").is_file()
    assert search_json(capsys, run_dir, "lib", "--smiles", "CCN")["results"][0]["cid"] == "mol5"
    # another file of the same stem is refused, not mixed in
    assert main(["index", str(run_dir), "--molecules", str(lib / "lib.tsv"), "--no-progress"]) == 2
    assert f"{run_dir / 'indexes' / 'lib'} already holds a finished index; use --fresh to rebuild it or --out" in capsys.readouterr().err
    # a folder built under the earlier name (indexes/other.tsv) is still the default for that file
    shutil.copy(lib / "lib.tsv", lib / "other.tsv")
    assert index(run_dir, lib / "other.tsv", run_dir / "indexes" / "other.tsv") == 0
    assert main(["index", str(run_dir), "--molecules", str(lib / "other.tsv"), "--no-progress"]) == 2
    assert f"{run_dir / 'indexes' / 'other.tsv'} already holds a finished index" in capsys.readouterr().err


def test_a_failing_worker_is_a_one_line_error_and_finished_chunks_stay(tiny_run, lib, tmp_path, monkeypatch, capsys):
    import zoo.library as library

    _, run_dir, _ = tiny_run
    out = tmp_path / "idx"
    real_write = library._write_chunk

    def interrupt_after_one(path, records, embedded):
        if path.name != "chunk-000000.npz":
            raise KeyboardInterrupt
        real_write(path, records, embedded)

    monkeypatch.setattr(library, "_write_chunk", interrupt_after_one)
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "3") == 130
    monkeypatch.undo()
    (out / "chunks" / "chunk-000001.npz").mkdir()  # worker 2's first chunk cannot be written
    capsys.readouterr()
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "3", "--workers", "2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"zoo: error: worker 2/2 failed on chunk 1 (rows 4-6 of {lib / 'lib.smi'}): ")
    assert "chunk-000001.npz: it is a folder" in err
    assert "the same command resumes the build" in err
    assert not (out / "manifest.json").exists() and (out / "build.json").is_file()
    assert (out / "chunks" / "chunk-000000.npz").is_file()
    assert not [p.name for p in (out / "chunks").iterdir() if p.name.startswith(".")]  # no half-written chunk

    (out / "chunks" / "chunk-000001.npz").rmdir()
    assert index(run_dir, lib / "lib.smi", out, "--chunk-size", "3", "--workers", "2") == 0
    assert json.loads((out / "manifest.json").read_text())["molecules"]["indexed"] == 9


def test_ivf_pq_falls_back_with_a_note_when_too_few_molecules_are_readable(tiny_run, lib, tmp_path, monkeypatch, capsys):
    import zoo.library as library

    _, run_dir, _ = tiny_run
    monkeypatch.setattr(library, "PQ_MIN_COUNT", 10)  # the 10 records pass the check before embedding; 9 are readable
    assert index(run_dir, lib / "lib.smi", tmp_path / "pq", "--index-type", "ivf-pq") == 0
    assert "note: only 9 of the 10 molecules could be read, fewer than the 10 --index-type ivf-pq needs" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "pq" / "manifest.json").read_text())
    assert manifest["index"]["type"] == "flat" and manifest["index"]["requested_type"] == "ivf-pq"
    assert search_json(capsys, run_dir, tmp_path / "pq", "--smiles", "CCN")["results"][0]["cid"] == "mol5"


def test_approximate_index_types(tiny_run, lib, tmp_path, capsys):
    from zoo.library import choose_index

    assert choose_index("auto", 26_407, 256).factory == "Flat"
    big = choose_index("auto", 100_000_000, 256)
    assert big.type == "ivf-sq8" and big.factory == "IVF16384,SQ8" and big.search_params["nprobe"] > 0
    assert choose_index("ivf-pq", 1_000_000, 256).factory == "IVF1024,PQ64"
    _, run_dir, _ = tiny_run
    for kind in ("hnsw", "ivf-sq8"):
        assert index(run_dir, lib / "lib.smi", tmp_path / kind, "--index-type", kind) == 0
    exact = search_json(capsys, run_dir, tmp_path / "hnsw", "--smiles", "CCN")
    assert json.loads((tmp_path / "ivf-sq8" / "manifest.json").read_text())["index"]["factory"] == "IVF1,SQ8"
    approx = search_json(capsys, run_dir, tmp_path / "ivf-sq8", "--smiles", "CCN")
    assert [h["cid"] for h in approx["results"]][0] == [h["cid"] for h in exact["results"]][0] == "mol5"


def test_bad_input_errors_leave_nothing_behind(tiny_run, lib, tmp_path, capsys):
    _, run_dir, _ = tiny_run
    out = tmp_path / "idx"
    (tmp_path / "empty.smi").write_text("\n\n")
    (tmp_path / "bad.smi").write_text("xx\nyy\n")
    cases = [
        (["index", str(tmp_path / "no-run"), "--molecules", str(lib / "lib.smi"), "--out", str(out)], "run folder not found"),
        (["index", str(run_dir), "--molecules", str(tmp_path / "empty.smi"), "--out", str(out)], "no molecules in the file"),
        (["index", str(run_dir), "--molecules", str(tmp_path / "bad.smi"), "--out", str(out), "--no-progress"],
         "none of the 2 molecules could be read (row 1 (1): RDKit cannot parse SMILES 'xx'"),
        (["index", str(run_dir), "--molecules", str(lib / "lib.smi"), "--out", str(out), "--index-type", "ivf-pq"],
         "ivf-pq needs at least 10,000 molecules"),
        (["index", str(run_dir), "--molecules", str(lib / "lib.smi"), "--out", str(out), "--index-type", "lsh"],
         "--index-type 'lsh': choose from auto, flat, ivf-sq8, ivf-pq, hnsw"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
        assert not out.exists()

    assert index(run_dir, lib / "lib.smi", out) == 0
    (out / "index.faiss").write_bytes((out / "index.faiss").read_bytes()[:100])
    assert main(["search", str(run_dir), "benzene", "--index", str(out)]) == 2
    assert "index.faiss is corrupt" in capsys.readouterr().err
    (out / "manifest.json").write_text("{not json")
    assert main(["search", str(run_dir), "benzene", "--index", str(out)]) == 2
    assert "manifest.json is unreadable" in capsys.readouterr().err
    assert main(["search", str(run_dir), "benzene", "--index", "nothere"]) == 2
    assert "--index nothere: no such folder" in capsys.readouterr().err
