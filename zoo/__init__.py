"""molzoo: a plugin model zoo for cross-modal text-molecule retrieval."""

__version__ = "0.1.0"
