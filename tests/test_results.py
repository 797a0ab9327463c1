"""Tests for zoo.evals.results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from zoo.evals.results import (
    REQUIRED_KEYS,
    RESULTS_SCHEMA_VERSION,
    build_results,
    environment_info,
    git_revision,
    read_results,
    write_results,
)


def _results(**overrides: object) -> dict:
    kw: dict = dict(
        spec={"model": "aman", "dim": 256},
        spec_hash="abc123",
        components=[{"role": "text_encoder", "plugin": "minilm", "version": "0.1.0"}],
        task={
            "name": "chebi20",
            "protocol": "text2mol",
            "split": "test",
            "galleries": {"all": 33008, "test": 3300},
            "data_checksums": {"test.txt": "sha256:00"},
        },
        scores={"all": {"text2mol": {"hits@1": 0.5, "mrr": 0.6, "n_queries": 3300.0}}},
        timings={"eval_s": 1.25},
        seeds={"global": 0},
        notes=["hello"],
        extra={"run_name": "smoke"},
    )
    kw.update(overrides)
    return build_results(**kw)


def test_build_results_keys() -> None:
    r = _results()
    assert list(r)[: len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
    assert r["schema_version"] == RESULTS_SCHEMA_VERSION
    assert r["molzoo_version"] == zoo.__version__
    assert r["created_at"].endswith("+00:00")
    assert r["run_name"] == "smoke"
    with pytest.raises(ValueError, match="shadow"):
        _results(extra={"scores": {}})


def test_round_trip(tmp_path: Path) -> None:
    r = _results()
    out = write_results(tmp_path / "sub" / "run.json", r)
    assert out == tmp_path / "sub" / "run.json"
    assert read_results(out) == json.loads(json.dumps(r))
    assert [p.name for p in out.parent.iterdir()] == ["run.json"]


def test_nan_refused_and_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    bad = _results(scores={"all": {"text2mol": {"mrr": float("nan")}}})
    with pytest.raises(ValueError, match="NaN"):
        write_results(target, bad)
    assert list(tmp_path.iterdir()) == []
    write_results(target, _results())
    before = target.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        write_results(target, _results(timings={"eval_s": float("inf")}))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_unserialisable_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="serialisable"):
        write_results(tmp_path / "run.json", _results(extra={"obj": object()}))
    assert list(tmp_path.iterdir()) == []


def test_read_errors_name_file_and_key(tmp_path: Path) -> None:
    r = json.loads(json.dumps(_results()))
    del r["scores"]
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(r))
    with pytest.raises(ValueError, match=r"broken\.json.*'scores'"):
        read_results(p)
    r["scores"] = {}
    r["schema_version"] = "999"
    p.write_text(json.dumps(r))
    with pytest.raises(ValueError, match="schema_version"):
        read_results(p)
    p.write_text('{"schema_version": "1", "x": NaN}')
    with pytest.raises(ValueError, match="broken.json"):
        read_results(p)
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_results(p)


def test_git_revision_never_raises(tmp_path: Path) -> None:
    for arg in (None, tmp_path, tmp_path / "does-not-exist", Path(__file__)):
        rev = git_revision(arg)
        assert rev is None or isinstance(rev, str)
    assert git_revision(tmp_path) is None
    rev = git_revision(Path(__file__).parent)
    if rev is not None:
        assert len(rev.removesuffix("+dirty")) == 40


def test_environment_info() -> None:
    env = environment_info()
    for key in ("python", "platform", "machine", "cpu_count", "torch_version",
                "cuda_available", "cuda_device_name", "molzoo_version", "packages"):
        assert key in env
    assert set(env["packages"]) >= {"numpy", "rdkit", "transformers", "torch_geometric", "timm"}
    assert env["molzoo_version"] == zoo.__version__
    assert env["packages"]["numpy"] is not None
    json.dumps(env, allow_nan=False)
