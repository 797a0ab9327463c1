"""Components that molzoo's core provides itself, registered like a built-in plugin (``DEFAULT_PLUGINS``).

The ``run`` scorer loads a finished run (its model, best weights and search cache): core internals that
:mod:`zoo.api` does not offer plugins, so it lives in :mod:`zoo.scoring` and core registers it here,
lazily by name, so that ``zoo list`` imports no torch.
"""

from __future__ import annotations

from zoo.registry.hookspecs import Register, hookimpl


@hookimpl
def register_scorers(register: Register) -> None:
    register(
        "run",
        "zoo.scoring:RunScorer",  # imported only when used
        description="another finished run's learned cosine similarity (option run = RUN folder)",
    )
