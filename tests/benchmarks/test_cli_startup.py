"""CLI start-up time: ``zoo --help`` and ``zoo list`` must answer in under a second.

Run with ``pytest tests/benchmarks --benchmark-only`` (the default suite skips benchmarks).
Both commands must stay free of heavy imports (torch, transformers, PyG, RDKit): component
factories are lazy ``"module:attr"`` strings resolved only on creation.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TARGET_S = 1.0


def _zoo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize(
    "args, expected",
    [(("--help",), "usage: zoo"), (("list",), "graph_transformer")],
    ids=["help", "list"],
)
def test_cli_startup(benchmark, args, expected):
    proc = benchmark.pedantic(_zoo, args=args, rounds=5, iterations=1, warmup_rounds=1)
    assert expected in proc.stdout
    mean = benchmark.stats["mean"]
    assert mean < TARGET_S, f"`zoo {' '.join(args)}` took {mean:.3f} s on average (target < {TARGET_S} s)"
