"""``train.cpu_bf16 = "auto"``: bf16 autocast on the CPU only where the CPU has native bf16 (zoo.precision)."""

from __future__ import annotations

import json

import pytest
import torch

from zoo import precision
from zoo.errors import SpecError
from zoo.precision import CpuReport
from zoo.spec import load_spec, shipped_spec_hashes

AVX2_ONLY = CpuReport("x86_64", "AVX2", {"AVX512-BF16": False, "AMX": False})
AVX512_NO_BF16 = CpuReport("x86_64", "AVX512", {"AVX512-BF16": False, "AMX": False})
SAPPHIRE_RAPIDS = CpuReport("x86_64", "AVX512", {"AVX512-BF16": True, "AMX": True})
COOPER_LAKE = CpuReport("x86_64", "AVX512", {"AVX512-BF16": True, "AMX": False})
ARM = CpuReport("aarch64", "SVE256", None)


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """Mock the CPU torch reports (the real decision, not conftest's fp32 pin); the probe's cache is private."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_bf16_support", precision.detect_cpu_bf16)
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)  # conftest's fp32 pin for subprocesses

    def mock(report: CpuReport) -> None:
        monkeypatch.setattr(precision, "_cpu_report", lambda: report)

    return mock


@pytest.mark.parametrize("report, native", [(AVX2_ONLY, False), (AVX512_NO_BF16, False), (SAPPHIRE_RAPIDS, True),
                                            (COOPER_LAKE, True)])
def test_auto_follows_the_cpus_native_bf16(cpu, report, native):
    cpu(report)
    assert precision.resolve_cpu_bf16("auto") is native
    use, line = precision.describe_precision("auto", torch.device("cpu"))
    assert use is native and line.startswith(f"precision: {'bf16' if native else 'fp32'} (train.cpu_bf16=auto: ")
    assert report.capability in line


@pytest.mark.parametrize("report", [AVX2_ONLY, SAPPHIRE_RAPIDS, ARM])
@pytest.mark.parametrize("forced", [True, False])
def test_an_explicit_value_always_wins(cpu, report, forced, monkeypatch):
    cpu(report)
    monkeypatch.setattr(precision, "_probe", lambda _r: pytest.fail("an explicit value needs no probe"))
    assert precision.resolve_cpu_bf16(forced) is forced
    assert precision.describe_precision(forced, torch.device("cpu"))[1] == \
        f"precision: {'bf16' if forced else 'fp32'} (train.cpu_bf16={str(forced).lower()})"


def test_a_capability_naming_bf16_is_native(cpu):
    cpu(CpuReport("x86_64", "AVX512_BF16", None))
    assert precision.resolve_cpu_bf16("auto") is True


@pytest.mark.parametrize("bf16_ms, native", [(0.5, True), (30.0, False)])
def test_without_flags_a_probe_decides_once_per_machine(cpu, monkeypatch, tmp_path, bf16_ms, native):
    cpu(ARM)
    calls = []

    def timed(dtype, **_kw):
        calls.append(dtype)
        return (bf16_ms if dtype == torch.bfloat16 else 1.0) / 1e3

    monkeypatch.setattr(precision, "_time_matmul", timed)
    assert precision.resolve_cpu_bf16("auto") is native
    assert len(calls) == 2
    (cached,) = (tmp_path / "cache" / "precision").glob("*.json")
    assert json.loads(cached.read_text())["native"] is native
    assert precision._probe(ARM).native is native and len(calls) == 2  # read back, not timed again


def test_cuda_always_autocasts():
    use, line = precision.describe_precision("auto", torch.device("cuda"))
    assert line == "precision: bf16 (autocast on CUDA)" and precision.precision_name(torch.device("cuda"), use) == "bf16"


def test_spec_accepts_true_false_auto_only():
    spec = load_spec("aman")
    assert spec.train.cpu_bf16 == "auto"
    assert spec.with_overrides(["train.cpu_bf16=false"]).train.cpu_bf16 is False
    assert spec.with_overrides(["train.cpu_bf16=true"]).train.cpu_bf16 is True
    with pytest.raises(SpecError, match=r'train.cpu_bf16 must be true, false or "auto"'):
        spec.with_overrides(["train.cpu_bf16=sometimes"])
    with pytest.raises(SpecError, match=r'train.cpu_bf16 must be true, false or "auto"'):
        spec.with_overrides(["train.cpu_bf16=1"])


@pytest.mark.parametrize("name", ["aman", "tfidf_fp", "gt_infonce"])
def test_the_spec_hash_does_not_depend_on_the_hardware(cpu, name):
    hashes = set()
    for report in (AVX2_ONLY, SAPPHIRE_RAPIDS, ARM):
        cpu(report)
        hashes.add(load_spec(name).hash())
    assert len(hashes) == 1
    spec = load_spec(name)
    assert spec.hash() == spec.with_overrides(["train.cpu_bf16=false"]).hash()  # auto asks for the fp32 result
    assert spec.hash() != spec.with_overrides(["train.cpu_bf16=true"]).hash()


def test_shipped_hashes_accept_the_bf16_spelling_of_auto():
    """aman's published runs forced bf16 (cpu_bf16 = true, hash d8cba5f80126): they still count as shipped."""
    from test_component_options import PREVIOUS_ENSEMBLE_HASHES, SHIPPED_ENSEMBLE_HASHES, SHIPPED_HASHES

    assert shipped_spec_hashes("aman", 0) == {SHIPPED_HASHES["aman"], "d8cba5f80126"}
    assert shipped_spec_hashes("chem_ensemble", 0) >= {SHIPPED_ENSEMBLE_HASHES["chem_ensemble"], PREVIOUS_ENSEMBLE_HASHES["chem_ensemble"]}
    assert shipped_spec_hashes("no_such_thing", 0) == set()


def test_leaderboard_keeps_auto_runs_of_different_precision_apart():
    from zoo.evals.leaderboard import run_behaviour

    auto = {"spec": {"train": {"cpu_bf16": "auto"}}, "training": {"precision": "bf16"}}
    forced = {"spec": {"train": {"cpu_bf16": True}}, "training": {"precision": "bf16", "bf16_autocast": True}}
    assert run_behaviour(auto) == {"precision": "bf16"}
    assert run_behaviour({**auto, "training": {"precision": "fp32"}}) == {"precision": "fp32"}
    assert run_behaviour(forced) == {}  # the spec says it: published tables keep their rows


def test_zoo_run_says_and_records_its_precision(tiny_env, tmp_path, capsys):
    """aman as shipped (cpu_bf16 = "auto") on a CPU without native bf16 (pinned by conftest): fp32, said first."""
    from tiny import run_tiny

    results = run_tiny(tiny_env, tmp_path / "run", "train.epochs=1")
    out = capsys.readouterr().out.splitlines()
    first = [line for line in out if line.startswith("precision:")]
    assert first and out.index(first[0]) < 3, out[:5]
    assert first[0].startswith("precision: fp32 (train.cpu_bf16=auto: ")
    assert results["spec"]["train"]["cpu_bf16"] == "auto"
    assert results["training"]["precision"] == "fp32" and results["training"]["bf16_autocast"] is False


@pytest.mark.parametrize("value, native", [("native", True), ("none", False), (" NONE ", False)])
def test_the_environment_overrides_the_detection(cpu, monkeypatch, value, native):
    cpu(SAPPHIRE_RAPIDS if not native else AVX2_ONLY)  # the opposite of what the variable says
    monkeypatch.setenv(precision.CPU_BF16_ENV, value)
    assert precision.resolve_cpu_bf16("auto") is native
    assert precision.resolve_cpu_bf16(not native) is (not native)  # an explicit setting still wins
    assert precision.describe_precision("auto", torch.device("cpu"))[1].endswith(f"ZOO_CPU_BF16={value.strip().lower()})")


def test_a_bad_environment_value_is_one_line(cpu, monkeypatch):
    from zoo.errors import RunError

    monkeypatch.setenv(precision.CPU_BF16_ENV, "yes")
    with pytest.raises(RunError, match="ZOO_CPU_BF16='yes': expected one of native, none"):
        precision.resolve_cpu_bf16("auto")
