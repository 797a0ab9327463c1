"""Shared fixtures (keep this file small: add fixtures next to the tests that use them)."""

from __future__ import annotations

import pytest

from zoo.registry import plugins as _plugins


@pytest.fixture(scope="session", autouse=True)
def fp32_cpu():
    """Every test computes in fp32 on the CPU whatever the machine's bf16 support, so that scores compare
    across machines: ``train.cpu_bf16 = "auto"`` and ``zoo eval --precision auto`` resolve to fp32
    (tests/test_precision.py checks the real decision with the CPU report mocked). ``ZOO_CPU_BF16=none``
    carries the same into the ``zoo run`` subprocesses of launchers and torchrun."""
    from zoo import precision

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(precision.CPU_BF16_ENV, "none")
        mp.setattr(precision, "cpu_bf16_support", lambda: precision.Bf16Support(False, "fp32 in tests (tests/conftest.py)"))
        yield


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty registry state with no ZOO_* plugin environment variables set.

    The plugin manager and catalog are rebuilt on first use inside the test and forgotten
    again afterwards, so monkeypatched plugin lists or environment variables take effect.
    """
    for var in (_plugins.DISABLE_ENV, _plugins.ALLOW_ENV, _plugins.STRICT_ENV):
        monkeypatch.delenv(var, raising=False)
    _plugins.reset_registry()
    yield
    _plugins.reset_registry()


@pytest.fixture
def tiny_env(tmp_path, monkeypatch):
    """A private cache and the tiny synthetic ChEBI-20 folder (see ``tests/tiny.py``)."""
    from tiny import write_tiny_chebi

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return write_tiny_chebi(tmp_path / "chebi")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished tiny ``aman`` run per test session: ``(data_dir, run_dir, results)``.

    Read-only for tests: copy the folder before changing anything in it.
    """
    from tiny import run_tiny, write_tiny_chebi

    root = tmp_path_factory.mktemp("tiny-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        data_dir = write_tiny_chebi(root / "chebi")
        results = run_tiny(data_dir, root / "run", "train.epochs=3")
    return data_dir, root / "run", results
