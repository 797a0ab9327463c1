"""ChEBI-20 loader: layouts, protocols, bad input, lookup order, download checks, real data."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest
from tiny import shared_chebi20

from zoo.errors import DataError, DataWarning
from zoo.plugins.tasks import chebi20 as zdata
from zoo.plugins.tasks.chebi20 import Molecule, find_data_dir, load_chebi20, read_molecules, read_pairs

PAIR_HEADER = "CID\tSMILES\tdescription"
SMILES = ["CCO", "CC(=O)O", "c1ccccc1", "CCN", "C/C=C\\\\C", "O=C=O", "CCCl", "CCBr", "C1CCCCC1", "CS"]


def _pairs(prefix: int, n: int) -> list[str]:
    return [f"{prefix + i}\t{SMILES[i % len(SMILES)]}\tThe molecule {prefix + i} is a test." for i in range(n)]


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def make_dir(root: Path, layout: str = "offline", n_val: int = 20, n_test: int = 5, n_train: int = 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "validation.txt", PAIR_HEADER, _pairs(1000, n_val))
    _write(root / "test.txt", PAIR_HEADER, _pairs(2000, n_test))
    if layout == "canonical":
        _write(root / "train.txt", PAIR_HEADER, _pairs(1, n_train))
    elif layout == "offline":
        _write(root / "train_molecules.tsv", "CID\tSMILES", [f"{i}\tC{'C' * i}" for i in range(1, n_train + 1)])
    return root


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv(zdata.DATA_ENV, raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))


def test_canonical_layout(tmp_path):
    d = load_chebi20(make_dir(tmp_path / "d", "canonical"))
    assert d.protocol == "canonical"
    assert [p.cid for p in d.train] == [str(i) for i in range(1, 9)]
    assert [p.cid for p in d.select] == [str(1000 + i) for i in range(20)]
    assert [m.cid for m in d.gallery] == [p.cid for p in d.train + d.select + d.test]
    assert len(d.descriptions) == 33 and len(d.test) == 5
    assert d.gallery[4].smiles == "C/C=C\\\\C"  # stored as in the file; featurize cleans it
    s = d.summary()
    assert s["counts"]["gallery"] == 33 and set(s["checksums"]) == {"train.txt", "validation.txt", "test.txt"}


def test_offline_holdout_deterministic_disjoint(tmp_path):
    root = make_dir(tmp_path / "d")
    a = load_chebi20(root, holdout_fraction=0.25, holdout_seed=3)
    b = load_chebi20(root, holdout_fraction=0.25, holdout_seed=3)
    c = load_chebi20(root, holdout_fraction=0.25, holdout_seed=4)
    assert a.protocol == "offline-low-data"
    assert a.train == b.train and a.select == b.select
    assert a.select != c.select
    assert len(a.select) == 5 and len(a.train) == 15
    tr, se = {p.cid for p in a.train}, {p.cid for p in a.select}
    assert not tr & se and tr | se == {str(1000 + i) for i in range(20)}
    assert not (tr | se) & {p.cid for p in a.test}
    assert [m.cid for m in a.gallery[:8]] == [str(i) for i in range(1, 9)] and len(a.gallery) == 33
    assert len(a.descriptions) == 25  # validation + test: no train descriptions


def test_test_pairs_never_in_train_or_select(tmp_path):
    root = make_dir(tmp_path / "d", "canonical")
    with open(root / "validation.txt", "a") as f:
        f.write("2001\tCC\tleaked test pair\n")
    with open(root / "train.txt", "a") as f:
        f.write("2002\tCC\tleaked test pair\n")
    with pytest.warns(DataWarning, match=r"validation\.txt, row 22, CID 2001: CID also in test\.txt"):
        d = load_chebi20(root)
    assert not {p.cid for p in d.train + d.select} & {p.cid for p in d.test}
    assert {(s["cid"], s["row"]) for s in d.skipped} == {("2001", 22), ("2002", 10)}
    assert len([m for m in d.gallery if m.cid == "2001"]) == 1  # gallery de-duplicated by CID


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_holdout_fraction_range(tmp_path, fraction):
    with pytest.raises(DataError, match="holdout_fraction"):
        load_chebi20(make_dir(tmp_path / "d"), holdout_fraction=fraction)


def test_holdout_needs_one_each(tmp_path):
    with pytest.raises(DataError, match="at least 1"):
        load_chebi20(make_dir(tmp_path / "d", n_val=3), holdout_fraction=0.1)
    d = load_chebi20(make_dir(tmp_path / "e", n_val=2), holdout_fraction=0.5)
    assert len(d.train) == len(d.select) == 1


def test_missing_files(tmp_path):
    root = make_dir(tmp_path / "d", layout="none")
    with pytest.raises(DataError, match=r"train\.txt.*train_molecules\.tsv"):
        load_chebi20(root)
    with pytest.raises(DataError, match=r"nope\.txt: file not found"):
        read_pairs(tmp_path / "nope.txt")


@pytest.mark.parametrize("header", ["CID\tSMILES\tdesc", "CID\tSMILES", "cid,smiles,description", ""])
def test_bad_header(tmp_path, header):
    p = _write(tmp_path / "v.txt", header, _pairs(1, 2))
    with pytest.raises(DataError) as e:
        read_pairs(p)
    msg = str(e.value)
    assert "v.txt" in msg and "'CID', 'SMILES', 'description'" in msg


def test_bad_molecule_header(tmp_path):
    p = _write(tmp_path / "m.tsv", PAIR_HEADER, ["1\tC\tx"])
    with pytest.raises(DataError, match=r"m\.tsv, row 1: header columns \['CID', 'SMILES', 'description'\]"):
        read_molecules(p)


def test_wrong_field_count(tmp_path):
    p = _write(tmp_path / "v.txt", PAIR_HEADER, _pairs(1, 2) + ["7\tCC"])
    with pytest.raises(DataError, match=r"v\.txt, row 4: expected 3 .* saw 2"):
        read_pairs(p)
    p = _write(tmp_path / "w.txt", PAIR_HEADER, ["7\tCC\tdesc\textra"])
    with pytest.raises(DataError, match=r"w\.txt, row 2: expected 3 .* saw 4"):
        read_pairs(p)


@pytest.mark.parametrize("row,field", [("\tCC\tdesc", "CID"), ("5\t\tdesc", "SMILES"), ("5\tCC\t  ", "description")])
def test_empty_field(tmp_path, row, field):
    p = _write(tmp_path / "v.txt", PAIR_HEADER, _pairs(1, 2) + [row])
    with pytest.raises(DataError, match=rf"v\.txt, row 4: empty {field}"):
        read_pairs(p)


def test_empty_description_not_skipped_in_load(tmp_path):
    root = make_dir(tmp_path / "d")
    with open(root / "test.txt", "a") as f:
        f.write("2999\tCC\t\n")
    with pytest.raises(DataError, match=r"test\.txt, row 7: empty description"):
        load_chebi20(root)


def test_duplicate_cid(tmp_path):
    p = _write(tmp_path / "v.txt", PAIR_HEADER, _pairs(1, 3) + ["2\tCC\tagain"])
    with pytest.raises(DataError, match=r"v\.txt: duplicate CID 2 in rows 3 and 5"):
        read_pairs(p)


def test_not_utf8(tmp_path):
    p = tmp_path / "v.txt"
    p.write_bytes(b"CID\tSMILES\tdescription\n1\tCC\t\xff\xfe bad\n")
    with pytest.raises(DataError, match=r"v\.txt: not UTF-8"):
        read_pairs(p)


def test_blank_lines_and_crlf(tmp_path):
    p = tmp_path / "v.txt"
    p.write_bytes(b"CID\tSMILES\tdescription\r\n1\tCC\ta\r\n\r\n2\tCCO\tb\r\n")
    assert [x.cid for x in read_pairs(p)] == ["1", "2"]


def test_unparseable_smiles_skipped_with_one_warning(tmp_path):
    root = make_dir(tmp_path / "d", n_val=40)
    bad_val = [f"{3000 + i}\tC1CC\tunclosed ring" for i in range(22)]
    with open(root / "validation.txt", "a") as f:
        f.write("\n".join(bad_val) + "\n")
    with open(root / "train_molecules.tsv", "a") as f:
        f.write("99\tnot_a_smiles\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = load_chebi20(root)
    dw = [x for x in w if issubclass(x.category, DataWarning)]
    assert len(dw) == 1
    msg = str(dw[0].message)
    assert "skipped 23" in msg and "and 3 more" in msg and "row 42, CID 3000" in msg and "'C1CC'" in msg
    assert len(d.skipped) == 23 and {s["field"] for s in d.skipped} == {"SMILES"}
    assert {s["row"] for s in d.skipped if s["cid"] == "99"} == {10}
    assert all(not p.cid.startswith("30") for p in d.train + d.select)
    assert "99" not in {m.cid for m in d.gallery}
    # without validation the rows are kept
    assert len(load_chebi20(root, validate_smiles=False).gallery) == 33 + 22 + 21


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env, cached = make_dir(tmp_path / "explicit"), make_dir(tmp_path / "env"), tmp_path / "cache/data/chebi20"
    make_dir(cached)
    assert find_data_dir() == cached
    monkeypatch.setenv(zdata.DATA_ENV, str(env))
    assert find_data_dir() == env
    assert find_data_dir(explicit) == explicit
    assert load_chebi20(explicit).data_dir == explicit
    with pytest.raises(DataError, match="no validation.txt"):
        find_data_dir(tmp_path / "empty")  # an explicit dir does not fall back
    monkeypatch.setenv(zdata.DATA_ENV, str(tmp_path / "missing"))
    assert find_data_dir() == cached  # env var not qualifying: fall through to the cache


def test_not_found_lists_places(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        find_data_dir()
    msg = str(e.value)
    assert "ZOO_DATA_DIR: not set" in msg and str(tmp_path / "cache/data/chebi20") in msg
    assert "--data-dir" in msg and "--download" in msg
    monkeypatch.setenv(zdata.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        find_data_dir()


def _fake_download(files: dict[str, bytes], fail: str | None = None):
    def fetch(url: str, path: Path) -> None:
        name = url.rsplit("/", 1)[1]
        path.write_bytes(files[name][: len(files[name]) // 2])  # partial write first
        if name == fail:
            raise OSError("connection reset")
        path.write_bytes(files[name])
    return fetch


@pytest.fixture
def fake_remote(tmp_path, monkeypatch):
    src = make_dir(tmp_path / "remote", "canonical")
    files = {n: (src / n).read_bytes() for n in zdata.SPLIT_FILES}
    monkeypatch.setattr(zdata, "PUBLISHED_SHA256", {n: hashlib.sha256(files[n]).hexdigest() for n in ("validation.txt", "test.txt")})
    monkeypatch.setattr(zdata, "TRAIN_ROWS", 8)
    return files


def test_download_ok(tmp_path, monkeypatch, fake_remote):
    monkeypatch.setattr(zdata, "_download_to", _fake_download(fake_remote))
    with pytest.raises(DataError):
        find_data_dir()
    d = find_data_dir(download=True)
    assert d == tmp_path / "cache/data/chebi20"
    assert sorted(p.name for p in d.iterdir()) == ["SHA256SUMS", "test.txt", "train.txt", "validation.txt"]
    assert hashlib.sha256(fake_remote["train.txt"]).hexdigest() in (d / "SHA256SUMS").read_text()
    assert load_chebi20(download=True).protocol == "canonical"


@pytest.mark.parametrize("problem", ["checksum", "rows", "network"])
def test_failed_download_leaves_nothing(tmp_path, monkeypatch, fake_remote, problem):
    fail = None
    if problem == "checksum":
        fake_remote["test.txt"] += b"9999\tCC\ttampered\n"
    elif problem == "rows":
        fake_remote["train.txt"] += b"9999\tCC\textra\n"
    else:
        fail = "test.txt"
    monkeypatch.setattr(zdata, "_download_to", _fake_download(fake_remote, fail))
    with pytest.raises(DataError, match={"checksum": "sha256", "rows": "9 rows", "network": "connection reset"}[problem]):
        find_data_dir(download=True)
    d = tmp_path / "cache/data/chebi20"
    assert not d.exists() or not list(d.iterdir())


REAL_DIR = shared_chebi20()


@pytest.mark.skipif(REAL_DIR is None, reason="shared ChEBI-20 files not present")
def test_real_shared_data():
    d = load_chebi20(REAL_DIR)  # its time is a benchmark (tests/benchmarks/test_throughput.py -k load_chebi20)
    assert d.protocol == "offline-low-data"
    assert len(d.gallery) == 33008 and len(d.test) == 3300
    assert len(d.train) + len(d.select) == 3301 and not d.skipped
    assert not {p.cid for p in d.train + d.select} & {p.cid for p in d.test}
    assert all(d.summary()["published_checksum_match"].values())
    assert isinstance(d.gallery[0], Molecule)
