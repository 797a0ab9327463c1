"""Shared fixtures (keep this file small: add fixtures next to the tests that use them)."""

from __future__ import annotations

import pytest

from zoo.registry import plugins as _plugins


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
