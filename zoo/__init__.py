"""molzoo: a plugin model zoo for cross-modal text-molecule retrieval."""

import os

__version__ = "0.2.0"

#: Set to 1 to see tracebacks: of errors the CLI reports in one line, and of plugins that fail to load.
DEBUG_ENV = "ZOO_DEBUG"


def debug_enabled() -> bool:
    """Whether ``ZOO_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").lower() in {"1", "true", "yes"}
