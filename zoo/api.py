"""The public API for plugin authors: everything a component plugin needs, from one module.

A plugin imports only :mod:`zoo.api` (and :mod:`zoo.registry` for lookups); the rest of ``zoo``
may change between releases. The built-in plugins (``zoo.plugins.*``) follow the same rule.

Registering (see :mod:`zoo.registry.hookspecs` for every hook)::

    from zoo.api import hookimpl

    @hookimpl
    def register_molecule_encoders(register):
        register("my_gnn", "my_package.encoders:MyGNN", description="...")

Options are stated once, in the factory's signature: ``MyGNN(embed_dim, hidden_dim=256, layers=3)``
has the options ``hidden_dim`` and ``layers`` with those defaults (:func:`options_of`; a factory that
forwards ``**options`` to a class says so with :func:`passes_options_to`). Pass ``config={...}`` only
for a factory without a readable signature.

Factories
    ``zoo`` calls a component's factory as ``factory(embed_dim=<spec embed_dim>, **options)``:
    ``options`` are the factory's defaults overlaid with the spec's options (an option it does not
    state is refused with close matches before the factory runs). A ``ValueError`` or ``TypeError`` the
    factory raises becomes a one-line :class:`ComponentError` naming the slot and component, so
    check options early with :func:`check_ints` / :func:`check_dropout`.

The featurized-batch contract (molecule encoders)
    * ``featurize(smiles) -> torch_geometric.data.Data``: one molecule, every attribute a tensor
      (``x`` [atoms, F] and ``edge_index`` [2, E] for graphs; anything else, e.g. a ``fp`` [1, D]
      vector, for fixed-size features). Raise :class:`SmilesError` for an unparsable SMILES
      (:func:`parse_smiles` does). Attributes ending in ``_index`` are node indices and are offset
      when graphs are batched, like PyG does; every other attribute is concatenated along dim 0.
    * ``forward(batch)`` receives a ``torch_geometric.data.Batch`` of those ``Data``: each
      attribute the featurizer set is ``batch.<attr>``, concatenated over the batch, plus
      ``batch.batch`` (graph id per node, from ``x``), ``batch.ptr`` and ``batch.num_graphs``.
      Return :class:`Encoded` (``embedding`` [B, embed_dim]; ``states``/``mask`` when asked).
    * ``featurizer`` (a string attribute, e.g. ``"rdkit_descriptors/1"``) is the on-disk cache key
      of the featurized molecules (``cache_root()/graphs/``) and is stored with checkpoints:
      change it whenever ``featurize``'s output changes, or stale cached features are reused and
      old checkpoints load against new features. Encoders sharing one featurization share one key.
    * ``featurize_arrays`` (optional attribute): a picklable function ``smiles -> {attr: numpy array}``
      giving ``featurize``'s attributes (same names, dtypes and shapes; a 0-dim array for a 0-dim
      tensor) from a module that imports neither torch nor PyG (e.g. :func:`graph_arrays`). The
      gallery is then featurized with it, in worker processes that start without torch (seconds
      each); without it, the workers import what ``featurize`` needs.

Tasks (``register_tasks``) return a :class:`TaskBase`-like object whose ``load(data_dir, *, download,
**options)`` returns a :class:`Dataset` (e.g. :class:`TaskData` of :class:`Pair` and :class:`Molecule`);
its options are ``load``'s keyword parameters with defaults (``[task]`` in a spec). See ``docs/tasks.md``.

Scorers (``register_scorers``) implement :class:`Scorer`: ``prepare_texts``/``prepare_molecules``
once per gallery, then ``score(text_rows, molecule_rows) -> [T, M]``; :mod:`zoo.fusion` z-scores
and fuses them with the learned similarity, with weights fitted on the held-out pairs.

Launchers (``register_launchers``) implement :class:`Launcher`: ``submit(RunJob) -> Submission`` for
each run of a grid; :func:`run_job_command` runs a job's command wherever the engine put it.

Text encoders return :class:`Encoded` from ``forward(prepare(texts))``; a frozen backbone may
cache its outputs under :func:`cache_root`, keyed by :func:`content_hash` of everything they
depend on, written with :func:`atomic_save_tensors`.

Importing this module is cheap (no torch): the featurization helpers (numpy, RDKit) and the
torch layers (:func:`mlp_blocks`, :func:`with_single_state`) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.cache import (
    CACHE_UNVERIFIED_HINT,
    atomic_path,
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_text,
    cache_root,
    content_hash,
    default_workers,
    load_sealed_npz,
    locked,
    map_in_processes,
    read_safetensors,
    save_sealed_npz,
    sha256_file,
)
from zoo.checks import check_dropout, check_ints, check_pair_batch
from zoo.errors import (
    ComponentError,
    DataError,
    DataWarning,
    FeaturizeError,
    GalleryError,
    IntegrityError,
    OpsinError,
    SmilesError,
    TextEncoderUnavailable,
    UnknownComponentError,
    UnknownOptionError,
    ZooError,
    ZooWarning,
)
from zoo.jobs import DoneSubmission, Launcher, RunJob, Submission, available_cpus, run_job_command, start_job_process, stop_process, visible_gpus
from zoo.protocols import DIRECTIONS, Aligned, Aligner, Encoded, Fittable, MoleculeEncoder, Reranker, RetrievalLoss, Scorer, ScoreSource, TextEncoder
from zoo.registry.catalog import options_of, passes_options_to
from zoo.registry.hookspecs import Register, hookimpl
from zoo.spans import MAX_TOKENS, Span, candidate_spans, clean_span
from zoo.taskdata import Dataset, Gallery, Molecule, Pair, TaskBase, TaskData, cv_fold, warn_skipped

if TYPE_CHECKING:
    from zoo.featurize import (
        ATOM_FEATURE_DIM,
        ATOM_STEREO_COLUMNS,
        BOND_FEATURE_DIM,
        BOND_STEREO_COLUMNS,
        FEATURIZER_NAME,
        FEATURIZER_VERSION,
        clean_smiles,
        featurize,
        graph_arrays,
        parse_smiles,
    )
    from zoo.layers import Dropout, mlp_blocks, with_single_state
    from zoo.opsin import parse_names

#: Loaded on first access (numpy + RDKit, torch): ``from zoo.api import parse_smiles`` works as usual.
_FEATURIZE = ("ATOM_FEATURE_DIM", "BOND_FEATURE_DIM", "ATOM_STEREO_COLUMNS", "BOND_STEREO_COLUMNS",
              "FEATURIZER_NAME", "FEATURIZER_VERSION", "clean_smiles", "featurize", "graph_arrays", "parse_smiles")
_LAYERS = ("Dropout", "mlp_blocks", "with_single_state")
#: formerly re-exported here (zoo.chemnames, zoo.chemrelations); now in the built-in plugin package zoo.plugins.chem
_MOVED_TO_PLUGINS = {
    **dict.fromkeys(("candidate_bits", "description_structures", "morgan_count_matrix", "structure_match_scores"),
                    "zoo.plugins.chem.chemnames"),
    **dict.fromkeys(("description_relations", "molecule_keys", "relation_match_scores"), "zoo.plugins.chem.chemrelations"),
}
#: chemical names -> canonical SMILES by OPSIN, cached on disk (see zoo.opsin)
_OPSIN = ("parse_names",)

__all__ = [
    # registration (options stated once, in the factory's signature)
    "hookimpl", "Register", "options_of", "passes_options_to",
    # component contracts
    "Encoded", "Aligned", "TextEncoder", "MoleculeEncoder", "Aligner", "RetrievalLoss", "Fittable", "Scorer", "Reranker",
    # query x gallery scores (a run, a fusion; a re-ranking stage wraps one and is one), in both DIRECTIONS
    "ScoreSource", "DIRECTIONS",
    # tasks: the data a task returns and its galleries (see zoo.taskdata)
    "Pair", "Molecule", "Dataset", "TaskData", "TaskBase", "Gallery", "warn_skipped", "cv_fold",
    # scoring a model that lives outside the zoo (its embeddings) on a task
    "score_embeddings",
    # featurization (rdkit_graph) and SMILES parsing
    *_FEATURIZE,
    # caches and atomic writes
    "cache_root", "content_hash", "atomic_path", "atomic_save_tensors", "atomic_write_bytes", "atomic_write_text",
    "locked", "read_safetensors", "CACHE_UNVERIFIED_HINT", "sha256_file", "save_sealed_npz", "load_sealed_npz",
    # preprocessing over worker processes
    "map_in_processes", "default_workers",
    # option checks and shared layers
    "check_ints", "check_dropout", "check_pair_batch", *_LAYERS,
    # chemical names: spans of a description that could name one (no chemistry), parsed into structures by OPSIN;
    # the chemistry on top (structure/relation matching) lives in the plugin module zoo.plugins.chem
    "MAX_TOKENS", "Span", "candidate_spans", "clean_span",
    *_OPSIN,
    # launchers (register_launchers): a run as a job, and running its command anywhere
    "RunJob", "Submission", "Launcher", "DoneSubmission", "run_job_command", "start_job_process", "stop_process",
    "available_cpus", "visible_gpus",
    # errors
    "ZooError", "ZooWarning", "ComponentError", "UnknownComponentError", "UnknownOptionError", "DataError", "DataWarning", "GalleryError",
    "SmilesError", "FeaturizeError", "TextEncoderUnavailable", "OpsinError", "IntegrityError",
]


def score_embeddings(*args: Any, **kwargs: Any) -> Any:
    """Score a model that lives outside the zoo by its embeddings: see :func:`zoo.external.score_embeddings`.

    For users, not for component plugins: it loads a task and writes a results file, so it is imported
    on first call (``zoo.api`` itself stays below the commands; import-linter contract (d))."""
    import importlib

    return importlib.import_module("zoo.external").score_embeddings(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # imported on first access so that `import zoo.api` (every plugin's hook module, hence `zoo list`) stays light
    if name in _FEATURIZE:
        from zoo import featurize as module  # numpy (and RDKit when a SMILES is parsed)
    elif name in _LAYERS:
        from zoo import layers as module  # torch
    elif name in _OPSIN:
        from zoo import opsin as module  # Java is started only for names not cached
    elif name in _MOVED_TO_PLUGINS:
        # 0.2 moved the scorers' chemistry out of core into the built-in plugin that uses it (zoo.api may not import plugins)
        raise AttributeError(f"module 'zoo.api' has no attribute {name!r}: since molzoo 0.2 it is "
                             f"`from {_MOVED_TO_PLUGINS[name]} import {name}`")
    else:
        raise AttributeError(f"module 'zoo.api' has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
