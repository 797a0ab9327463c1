"""Integrity and provenance: content hashes on every file the zoo reads back, the training data's
fingerprint checked on resume / eval / search / report, the usual file permissions, and a fuzz
test feeding damaged bytes to every file kind (a clear one-line error, or the documented skip).

One real tiny ``tfidf_fp`` run (checkpoints, a fitted TF-IDF state, results) and one library
index are made per module; tests copy what they damage.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from zoo.cli import main

TINY_TFIDF = ["text_encoder.svd_dim=16", "text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32",
              "molecule_encoder.n_bits=256", "embed_dim=32", "train.batch_size=16", "train.lr=0.003",
              "train.holdout_fraction=0.15", "train.eval_batch_size=64", "train.warmup_epochs=1", "train.epochs=2"]
LIBRARY = ["CCO", "c1ccccc1O", "not_a_smiles", "CC(=O)O", "c1ccncc1", "CCN", "C1CCCCC1Cl", "OCCO"]
QUERY = "The molecule is a pyridine derivative carrying a nitro substituent attached directly to the ring."


def run_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    args = ["run", "tfidf_fp", "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for item in [*TINY_TFIDF, *extra]:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``(root, data_dir, other_data_dir, run_dir)``: a finished run on data A (its index in
    ``RUN/indexes/lib``), and data B, which differs from A in one training description."""
    from tiny import write_tiny_chebi

    root = tmp_path_factory.mktemp("integrity")
    umask = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
            mp.setenv("HF_HUB_OFFLINE", "1")
            data = write_tiny_chebi(root / "A")
            other = write_tiny_chebi(root / "B")
            validation = other / "validation.txt"
            validation.write_text(validation.read_text().replace("derivative", "compound", 1))
            run = root / "run"
            assert main(run_args(data, run)) == 0
            (root / "lib.smi").write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(LIBRARY)))
            assert main(["index", str(run), "--molecules", str(root / "lib.smi"), "--out", str(run / "indexes" / "lib"),
                         "--no-progress"]) == 0
            yield root, data, other, run
    finally:
        os.umask(umask)


@pytest.fixture
def env(made, tmp_path, monkeypatch):
    """The module's run, copied (writable), with the module's cache: ``(data, other, run)``."""
    root, data, other, run = made
    monkeypatch.setenv("ZOO_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return data, other, copy


def error_line(capsys, argv: list[str]) -> str:
    """Run the CLI; it must fail with exit code 2 and ONE line ``zoo: error: ...`` (no traceback)."""
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.rstrip("\n").splitlines()[-1]
    assert line.startswith("zoo: error: ")
    return line


def data_section(path: Path) -> int:
    """Where a safetensors file's tensor bytes start."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def overwrite(path: Path, at: int, block: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + len(block)] = block
    path.write_bytes(bytes(data))


# -- the observed failures, one test each --------------------------------------------------------
def test_a_zeroed_checkpoint_is_a_one_line_error_not_other_numbers(env, capsys):
    data, _, run = env
    best = run / "checkpoint" / "best.safetensors"
    start = data_section(best)
    overwrite(best, start, bytes(min(256 * 1024, best.stat().st_size - start)))
    line = error_line(capsys, ["eval", str(run), "--data-dir", str(data), "--no-progress"])
    assert str(best) in line and "corrupt" in line and "--fresh" in line
    assert not (run / "eval-test.json").exists()


def test_random_bytes_in_a_checkpoint_are_a_one_line_error_not_a_traceback(env, capsys):
    data, _, run = env
    best = run / "checkpoint" / "best.safetensors"
    start = data_section(best)
    overwrite(best, start, random.Random(0).randbytes(min(64 * 1024, best.stat().st_size - start)))
    line = error_line(capsys, ["eval", str(run), "--data-dir", str(data), "--no-progress"])
    assert str(best) in line and "--fresh" in line


def test_resuming_on_other_data_is_refused_with_both_fingerprints(env, capsys):
    data, other, run = env
    (run / "results.json").unlink()  # an unfinished run: checkpoint/last.safetensors remains
    before = {p: p.read_bytes() for p in run.rglob("*.safetensors")}
    line = error_line(capsys, run_args(other, run))
    from zoo.data import data_fingerprint
    from zoo.plugins.tasks.chebi20 import load_chebi20

    a, b = (data_fingerprint(load_chebi20(d, holdout_fraction=0.15).checksums) for d in (data, other))
    assert a != b and a in line and b in line and "validation.txt" in line and "--fresh" in line
    assert {p: p.read_bytes() for p in run.rglob("*.safetensors")} == before  # nothing refitted or retrained
    assert not (run / "results.json").exists()
    # the same data resumes
    assert main(run_args(data, run)) == 0 and (run / "results.json").is_file()


def test_eval_on_other_data_is_refused_or_allowed_and_then_recorded_truthfully(env, capsys):
    data, other, run = env
    trained = json.loads((run / "results.json").read_text())["task"]
    line = error_line(capsys, ["eval", str(run), "--data-dir", str(other), "--no-progress"])
    from zoo.data import data_fingerprint
    from zoo.plugins.tasks.chebi20 import load_chebi20

    assert "--allow-other-data" in line and data_fingerprint(trained["data_checksums"]) in line
    assert not (run / "eval-test.json").exists()

    assert main(["eval", str(run), "--data-dir", str(other), "--no-progress", "--allow-other-data"]) == 0
    task = json.loads((run / "eval-test.json").read_text())
    used = load_chebi20(other, holdout_fraction=0.15)
    assert task["task"]["data_dir"] == str(other) and task["task"]["data_checksums"] == used.checksums
    assert task["task"]["training_data"]["data_checksums"] == trained["data_checksums"]
    assert task["task"]["training_data"]["data_dir"] == str(data) and task["task"]["same_data_as_training"] is False
    assert any("other data than the run was trained on" in n and data_fingerprint(used.checksums) in n for n in task["notes"])

    assert main(["eval", str(run), "--data-dir", str(data), "--no-progress"]) == 0  # its own data: no flag needed
    again = json.loads((run / "eval-test.json").read_text())["task"]
    assert again["data_dir"] == str(data) and again["same_data_as_training"] is True


def test_search_and_report_refuse_other_data_and_the_gallery_key_covers_the_data(env, capsys, tmp_path):
    data, other, run = env
    assert main(["search", str(run), QUERY, "--data-dir", str(data), "--no-progress", "--json"]) == 0  # caches the gallery
    line = error_line(capsys, ["search", str(run), QUERY, "--data-dir", str(other), "--no-progress"])
    assert "was made on other data" in line and "validation.txt" in line
    line = error_line(capsys, ["report", str(run), "--data-dir", str(other), "--no-progress", "--out", str(tmp_path / "r.html")])
    assert "was made on other data" in line

    from zoo.plugins.tasks.chebi20 import load_chebi20, sha256_file
    from zoo.runs import gallery_cache_path
    from zoo.search import Gallery, gallery_key

    checkpoint = sha256_file(run / "checkpoint" / "best.safetensors")
    a, b = (load_chebi20(d, holdout_fraction=0.15).checksums for d in (data, other))
    assert gallery_key(checkpoint, a) != gallery_key(checkpoint, b)
    assert Gallery.load(gallery_cache_path(run), gallery_key(checkpoint, a)) is not None
    assert Gallery.load(gallery_cache_path(run), gallery_key(checkpoint, b)) is None


def test_written_files_respect_the_umask(made, tmp_path):
    from zoo.cache import atomic_save_tensors, featurize_molecules
    from zoo.featurize import featurize

    root, _, _, run = made
    written = [p for p in [*run.rglob("*"), *(root / "cache").rglob("*")] if p.is_file()]
    assert {p.suffix for p in written} >= {".safetensors", ".json", ".faiss", ".npy", ".tsv"}
    assert {p.relative_to(root).as_posix(): oct(p.stat().st_mode & 0o777) for p in written if p.stat().st_mode & 0o777 != 0o644} == {}
    umask = os.umask(0o027)
    try:
        atomic_save_tensors({"a": torch.zeros(2)}, tmp_path / "t.safetensors")
        featurize_molecules(["CCO", "CCN"], featurize, "rdkit_graph/1", root=tmp_path / "cache", progress=False)
    finally:
        os.umask(umask)
    assert oct((tmp_path / "t.safetensors").stat().st_mode & 0o777) == oct(0o640)
    assert [oct(p.stat().st_mode & 0o777) for p in (tmp_path / "cache").rglob("*.safetensors")] == [oct(0o640)]


def test_files_without_a_recorded_hash_load_with_a_one_line_warning(env, capsys):
    from safetensors.torch import load_file, save_file

    from zoo.errors import UnverifiedFileWarning

    data, _, run = env
    for path in (run / "checkpoint" / "best.safetensors", run / "fitted" / "text_encoder.safetensors"):
        save_file(load_file(path), path)  # as written before content hashes were recorded
    with pytest.warns(UnverifiedFileWarning) as caught:
        assert main(["eval", str(run), "--data-dir", str(data), "--no-progress"]) == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, UnverifiedFileWarning)]
    assert len(messages) == 2 and all("unverified" in m and "\n" not in m for m in messages)

    from zoo.library import load_index

    manifest = run / "indexes" / "lib" / "manifest.json"
    old = {k: v for k, v in json.loads(manifest.read_text()).items() if k not in ("content_sha256", "molzoo_integrity", "files")}
    manifest.write_text(json.dumps(old, indent=2))  # an index built before content hashes were recorded
    with pytest.warns(UnverifiedFileWarning, match="manifest.json .*unverified") as caught:
        assert len(load_index(manifest.parent)) == len(LIBRARY) - 1
    assert len([w for w in caught if issubclass(w.category, UnverifiedFileWarning)]) == 1


def test_damaged_caches_are_recomputed_and_old_ones_load_unverified(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from zoo.cache import featurize_molecules
    from zoo.featurize import featurize
    from zoo.plugins.text.hf_text import cached_text_states

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))

    class Backbone:
        cache_key, calls = "stub/1", 0

        def backbone_states(self, texts, progress=True, device="cpu"):
            self.calls += 1
            return [torch.full((1 + i % 3, 4), float(i)) for i in range(len(texts))]

    encoder, texts = Backbone(), [f"text {i}" for i in range(40)]
    expected = cached_text_states(encoder, texts)
    path = next((tmp_path / "text").glob("*.safetensors"))
    overwrite(path, path.stat().st_size - 2, b"\x7f")  # inside the last state vector
    with pytest.warns(UserWarning, match="recomputing"):
        again = cached_text_states(encoder, texts)
    assert encoder.calls == 2 and all(torch.equal(a, b) for a, b in zip(again, expected))
    from zoo.errors import UnverifiedFileWarning

    save_file(load_file(path), path)  # an older cache file: used, unverified
    with pytest.warns(UnverifiedFileWarning):
        cached_text_states(encoder, texts)
    assert encoder.calls == 2

    smiles = ["CCO", "c1ccccc1O", "CCN"]
    graphs = featurize_molecules(smiles, featurize, "rdkit_graph/1", progress=False)
    path = next((tmp_path / "graphs").glob("*.safetensors"))
    overwrite(path, path.stat().st_size - 3, b"\x01")
    with pytest.warns(UserWarning, match="recomputing"):
        again = featurize_molecules(smiles, featurize, "rdkit_graph/1", progress=False)
    assert all(torch.equal(again.data[k], graphs.data[k]) for k in graphs.data)


def test_damaged_chemical_name_caches_are_recomputed(tmp_path):
    import numpy as np

    from zoo.opsin import ParseCache
    from zoo.plugins.chem.chemnames import candidate_bits

    cache = ParseCache(tmp_path / "opsin")
    cache.put({"a1": "c1ccccc1", "a2": None})
    assert cache.get(["a1", "a2"]) == {"a1": "c1ccccc1", "a2": None}
    shard = tmp_path / "opsin" / "a.json"
    shard.write_text(shard.read_text().replace("c1ccccc1", "c1ccncc1"))  # a changed parse: not used
    with pytest.warns(UserWarning, match="a.json is corrupt"):
        assert cache.get(["a1"]) == {}

    smiles = ["CCO", "c1ccccc1O", "CCN"]
    bits = candidate_bits(smiles, root=tmp_path)
    path = next((tmp_path / "chem_names" / "fingerprints").glob("*.npz"))
    data = bytearray(path.read_bytes())
    at = data.find(np.packbits(bits, axis=1).tobytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="recomputing"):
        np.testing.assert_array_equal(candidate_bits(smiles, root=tmp_path), bits)


def test_a_damaged_index_chunk_is_embedded_again_on_resume(tmp_path):
    import numpy as np

    from zoo.library import Embedded, _chunk_done, _write_chunk
    from zoo.molfiles import Record

    path = tmp_path / "chunks" / "chunk-000000.npz"
    records = [Record(1, "a", "CCO"), Record(2, "b", "xx")]
    _write_chunk(path, records, Embedded(np.ones((1, 4), np.float32), [0], ["CCO"], [(1, "cannot parse")]))
    assert _chunk_done(path)
    data = bytearray(path.read_bytes())
    data[data.find(b"\x00\x00\x80?")] ^= 0x40  # one embedding value (1.0f)
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="embedding that chunk again"):
        assert not _chunk_done(path)
    assert not path.exists()


def test_every_single_byte_change_of_a_hashed_file_is_detected(tmp_path):
    """Exhaustively: each byte of a small safetensors file and of a small JSON file, changed."""
    import numpy as np

    from zoo.cache import atomic_save_tensors, check_sealed_bytes, load_sealed_npz, read_safetensors, save_sealed_npz, sealed_json
    from zoo.errors import IntegrityError

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor([7])}
    atomic_save_tensors(tensors, tmp_path / "t.safetensors", {"note": "x"})
    loaded, meta = read_safetensors(tmp_path / "t.safetensors")
    assert meta == {"note": "x"} and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    (tmp_path / "t.json").write_text(sealed_json({"a": 1, "b": [1.5, "x"]}, indent=2))
    assert json.loads((tmp_path / "t.json").read_text())["a"] == 1

    def json_check(path):
        check_sealed_bytes(path, path.read_bytes())

    for path, check in [(tmp_path / "t.safetensors", read_safetensors), (tmp_path / "t.json", json_check)]:
        original = path.read_bytes()
        for at in range(len(original)):
            changed = bytearray(original)
            changed[at] ^= 0x20 if 0x41 <= changed[at] <= 0x7A else 0x01  # e.g. a letter's case, a digit's value
            path.write_bytes(bytes(changed))
            with pytest.raises(IntegrityError, match=path.name):
                check(path)
        path.write_bytes(original)
        check(path)

    save_sealed_npz(tmp_path / "a.npz", {"x": np.arange(4.0), "ids": np.array(["a", "b"])})
    assert load_sealed_npz(tmp_path / "a.npz")["ids"].tolist() == ["a", "b"]


# -- fuzz: damaged bytes for every file kind the zoo reads ------------------------------------------
def damaged(data: bytes, rng: random.Random, count: int, head: int = 0) -> list[tuple[str, bytes]]:
    """Variants of ``data``: single flipped bytes (half of them in the first ``head`` bytes), truncations,
    blocks of random bytes, a very long field, and whole-file garbage. Every variant differs from ``data``."""
    n = len(data)
    at = rng.randrange(n)
    out = [("empty", b""), ("random file", rng.randbytes(max(n, 16))),
           ("a 200 KB field", data[:at] + b"C" * 200_000 + data[at:])]  # over the csv module's field size limit
    for i in range(count):
        at = rng.randrange(min(head, n)) if head and i % 2 == 0 else rng.randrange(n)
        flipped = bytearray(data)
        flipped[at] ^= rng.randrange(1, 256)
        out.append((f"byte {at} flipped", bytes(flipped)))
        cut = rng.randrange(n)
        out.append((f"truncated to {cut} bytes", data[:cut]))
        size = rng.choice([1, 8, 512, 65536])
        at = rng.randrange(n)
        block = bytearray(data[:at] + rng.randbytes(size) + data[at + size :])
        if bytes(block) != data:
            out.append((f"{size} random bytes at {at}", bytes(block)))
    return out


def check_one_line(exc: BaseException, *names: str) -> None:
    from zoo.errors import ZooError

    message = str(exc)
    assert isinstance(exc, ZooError), f"{type(exc).__name__}: {message}"
    assert "\n" not in message and all(name in message for name in names), message


def fuzz(path: Path, load, rng: random.Random, *names: str, count: int = 12, head: int = 0, strict: bool = True) -> int:
    """Feed damaged variants of ``path`` to ``load``: each must raise a one-line user error naming
    ``names`` (``strict``), or else load. Returns how many loaded. The file is restored."""
    original, loaded = path.read_bytes(), 0
    try:
        for what, variant in damaged(original, rng, count, head):
            path.write_bytes(variant)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    load()
            except Exception as exc:  # noqa: BLE001 - the assertion says which
                check_one_line(exc, *names)
                continue
            assert not strict, f"{path.name} with {what} loaded without an error"
            loaded += 1
    finally:
        path.write_bytes(original)
    return loaded


def test_fuzz_run_files_always_give_one_line_errors(env):
    """Checkpoints, the fitted state, results.json, the index and its manifest: every damaged
    variant is an error naming the file (and the fix), never a traceback, never a result."""
    from zoo.checkpoints import load_weights, read_checkpoint
    from zoo.fitting import load_fitted
    from zoo.library import load_index
    from zoo.runs import load_run, load_trained_run, retrain_hint

    _, _, run = env
    rng = random.Random(1)
    model = load_trained_run(run, "cpu").model
    best, last = run / "checkpoint" / "best.safetensors", run / "checkpoint" / "last.safetensors"
    fuzz(best, lambda: load_weights(model, best, retrain_hint(run)), rng, str(best), "--fresh", head=data_section(best))
    fuzz(last, lambda: read_checkpoint(last, "rerun with --fresh"), rng, str(last), "--fresh", head=data_section(last))
    fitted = run / "fitted" / "text_encoder.safetensors"
    fuzz(fitted, lambda: load_fitted(model.text_encoder, fitted, retrain_hint(run), str(run)), rng, str(fitted), "--fresh", head=data_section(fitted))
    fuzz(run / "results.json", lambda: load_run(run), rng, "results.json", count=20)
    index = run / "indexes" / "lib"
    for name in ("manifest.json", "index.faiss", "molecules.tsv", "molecules.offsets.npy"):
        fuzz(index / name, lambda: load_index(index), rng, name, "--fresh")
    load_index(index)  # restored: intact again


def test_fuzz_a_results_file_in_a_folder_scan_is_skipped_with_a_warning(env, tmp_path):
    from zoo.evals.leaderboard import load_runs

    _, _, run = env
    scan = tmp_path / "scan"
    for name in ("a", "b"):
        (scan / name).mkdir(parents=True)
        shutil.copy(run / "results.json", scan / name / "results.json")
    damaged_file, rng = scan / "b" / "results.json", random.Random(2)
    for what, variant in damaged(damaged_file.read_bytes(), rng, 10):
        damaged_file.write_bytes(variant)
        runs, notes = load_runs([scan])
        assert len(runs) == 1 and len(notes) == 1 and "b/results.json" in notes[0] and "\n" not in notes[0], what


def test_fuzz_chebi20_files_are_refused_or_skipped_and_never_used_as_the_runs_data(env, tmp_path):
    """A damaged ChEBI-20 file is a DataError or rows skipped with a DataWarning, and in any case not
    the data the run was trained on: its checksum differs, so zoo eval/search/report refuse it."""
    from zoo.data import check_same_data
    from zoo.plugins.tasks.chebi20 import load_chebi20

    data, _, run = env
    recorded = json.loads((run / "results.json").read_text())["task"]["data_checksums"]
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    rng = random.Random(3)

    def load_and_check():
        loaded = load_chebi20(copy, holdout_fraction=0.15)
        check_same_data(recorded, str(data), loaded, f"run {run}", "pass the run's data folder with --data-dir")

    for name in ("validation.txt", "test.txt", "train_molecules.tsv"):
        fuzz(copy / name, load_and_check, rng, count=10)
    load_and_check()  # restored: the run's own data passes


@pytest.mark.parametrize("kind", ["smi", "tsv", "csv", "sdf", "smi.gz"])
def test_fuzz_molecule_files_for_zoo_index(kind, tmp_path):
    """A damaged molecule library is a DataError, or records whose unreadable molecules are skipped."""
    from rdkit import Chem

    from zoo.molfiles import count_records, iter_records, record_smiles

    path = tmp_path / f"lib.{kind}"
    rows = [(f"mol{i}", s) for i, s in enumerate(LIBRARY)]
    if kind.startswith("smi"):
        text = "".join(f"{s} {i}\n" for i, s in rows)
    elif kind in ("tsv", "csv"):
        sep = "\t" if kind == "tsv" else ","
        text = f"ID{sep}SMILES\n" + "".join(f"{i}{sep}{s}\n" for i, s in rows)
    else:
        blocks = []
        for i, s in rows:
            mol = Chem.MolFromSmiles(s)
            if mol is not None:
                mol.SetProp("_Name", i)
                blocks.append(Chem.MolToMolBlock(mol) + "$$$$\n")
        text = "".join(blocks)
    path.write_bytes(gzip.compress(text.encode()) if kind.endswith(".gz") else text.encode())

    def read():
        count = count_records(path)
        records = list(iter_records(path))
        assert len(records) == count
        for record in records:
            try:
                record_smiles(record)
            except ValueError:
                pass  # an unreadable molecule: zoo index skips it and lists it in skipped.tsv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fuzz(path, read, random.Random(4), count=15, strict=False)
