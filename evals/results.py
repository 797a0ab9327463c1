"""One JSON results file per evaluation run (DESIGN.md §6).

The layout follows lm-evaluation-harness's results files: a flat top-level
object with provenance (versions, git revision, environment), the resolved
configuration (``spec`` + ``spec_hash``), the components used, the task
description (split, galleries, counts, data checksums) and the nested
``scores`` (``{gallery: {direction: metrics}}``). The leaderboard is built from
these files only.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zoo
from zoo.cache import atomic_write_text, check_sealed_bytes, sealed_json, unseal
from zoo.errors import IntegrityError

__all__ = [
    "RESULTS_FILE",
    "RESULTS_SCHEMA_VERSION",
    "ENSEMBLE_SPEC_FORMAT",
    "REQUIRED_KEYS",
    "git_revision",
    "environment_info",
    "build_results",
    "write_results",
    "read_results",
]

#: A finished run's results file in its run folder (zoo.runs lays the folder out; this layer, which may not
#: import zoo.runs, owns the name because it reads and writes the file and finds them for leaderboards).
RESULTS_FILE = "results.json"
RESULTS_SCHEMA_VERSION = "1"
#: ``spec.format`` of a results file written by ``zoo ensemble`` (its spec lists member runs and scorers)
ENSEMBLE_SPEC_FORMAT = "molzoo.ensemble/1"

REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version",
    "molzoo_version",
    "created_at",
    "git_revision",
    "environment",
    "spec",
    "spec_hash",
    "components",
    "task",
    "scores",
    "timings",
    "seeds",
    "notes",
)

_OPTIONAL_PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "rdkit": ("rdkit", "rdkit-pypi"),
    "transformers": ("transformers",),
    "torch_geometric": ("torch-geometric", "torch_geometric"),
    "timm": ("timm",),
    "torchmetrics": ("torchmetrics",),
}


def _molzoo_version() -> str:
    return str(zoo.__version__)


def _git(args: list[str], cwd: Path) -> str | None:
    """Run ``git`` in ``cwd``; stdout stripped, or None on any failure."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except Exception:  # git missing, bad cwd, timeout, ...
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_revision(path: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of ``path`` (default: the ``zoo`` package's source tree).

    Appends ``"+dirty"`` when tracked files have uncommitted changes (untracked
    files are ignored, as with ``git describe --dirty``). Returns None when the
    directory is not in a git work tree, or — for the default — when the package
    files are not tracked by the enclosing repository (e.g. a site-packages
    directory inside some repo). Never raises.
    """
    try:
        if path is None:

            pkg_dir = Path(zoo.__file__).resolve().parent
            if _git(["ls-files", "--error-unmatch", "__init__.py"], pkg_dir) is None:
                return None
            where = pkg_dir
        else:
            where = Path(path).resolve()
            if where.is_file():
                where = where.parent
        sha = _git(["rev-parse", "HEAD"], where)
        if not sha:
            return None
        status = _git(["status", "--porcelain", "--untracked-files=no"], where)
        return f"{sha}+dirty" if status else sha
    except Exception:
        return None


def _dist_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:
            return None
    return None


def environment_info() -> dict[str, Any]:
    """Interpreter, platform, hardware and library versions (None where absent)."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "molzoo_version": _molzoo_version(),
        "torch_version": None,
        "cuda_available": False,
        "cuda_version": None,
        "cuda_device_name": None,
    }
    try:
        import torch

        info["torch_version"] = str(torch.__version__)
        info["cuda_version"] = torch.version.cuda
        if torch.cuda.is_available():
            info["cuda_available"] = True
            info["cuda_device_name"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    info["packages"] = {key: _dist_version(names) for key, names in _OPTIONAL_PACKAGES.items()}
    return info


def build_results(
    *,
    spec: dict,
    spec_hash: str,
    components: list[dict],
    task: dict,
    scores: dict,
    timings: dict,
    seeds: dict,
    notes: list[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """Assemble a results dict with provenance; inputs are deep-copied.

    ``task`` holds e.g. ``{"name": "chebi20", "protocol": ..., "split": "test",
    "galleries": {...counts}, "data_checksums": {...}}``; ``scores`` is nested
    ``{gallery: {direction: metrics}}``. ``extra`` keys are appended at top level
    and may not shadow the reserved keys.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(REQUIRED_KEYS))
    if clash:
        raise ValueError(f"extra keys shadow reserved results keys: {clash}")
    results: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "molzoo_version": _molzoo_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "environment": environment_info(),
        "spec": copy.deepcopy(spec),
        "spec_hash": spec_hash,
        "components": copy.deepcopy(components),
        "task": copy.deepcopy(task),
        "scores": copy.deepcopy(scores),
        "timings": copy.deepcopy(timings),
        "seeds": copy.deepcopy(seeds),
        "notes": list(notes or []),
    }
    results.update(copy.deepcopy(extra))
    return results


def _validate(results: Any, source: str) -> None:
    if not isinstance(results, dict):
        raise ValueError(f"{source}: results must be a JSON object, got {type(results).__name__}")
    if "schema_version" not in results:
        raise ValueError(f"{source}: missing required key 'schema_version'")
    if results["schema_version"] != RESULTS_SCHEMA_VERSION:
        raise ValueError(
            f"{source}: unsupported schema_version {results['schema_version']!r} "
            f"(expected {RESULTS_SCHEMA_VERSION!r})"
        )
    for key in REQUIRED_KEYS:
        if key not in results:
            raise ValueError(f"{source}: missing required key {key!r}")
    for key in ("environment", "spec", "task", "scores", "timings", "seeds"):
        if not isinstance(results[key], dict):
            raise ValueError(f"{source}: key {key!r} must be an object")
    for key in ("components", "notes"):
        if not isinstance(results[key], list):
            raise ValueError(f"{source}: key {key!r} must be a list")


def write_results(path: Path, results: dict) -> Path:
    """Validate and write ``results`` as JSON atomically; returns the path.

    Serialisation happens before the target is touched: NaN/inf or
    non-JSON-serialisable values raise and leave any existing file as it was.
    The file is written with :func:`zoo.cache.atomic_write_text` (temp file, fsync, replace), its
    content hash first (:func:`zoo.cache.sealed_json`).
    """
    path = Path(path)
    _validate(results, str(path))
    try:
        text = sealed_json(results, indent=2, sort_keys=False, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{path}: results contain NaN or infinity, refusing to write ({exc})") from exc
    except TypeError as exc:
        raise ValueError(f"{path}: results are not JSON-serialisable ({exc})") from exc

    atomic_write_text(path, text)
    return path


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in results")


def read_results(path: Path | str) -> dict:
    """Load a results file and check its content hash (where :func:`write_results` recorded one:
    any changed byte is an error), schema version and required keys."""
    path = Path(path)
    try:
        data = path.read_bytes()
        check_sealed_bytes(path, data, warn=False)  # results files without a hash (hand-made, older) are common
        results = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except IntegrityError as exc:
        raise ValueError(f"{exc}; rerun the command that wrote it (`zoo run ... --fresh` or `zoo eval`)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    _validate(results, str(path))
    return unseal(results)
