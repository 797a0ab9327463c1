"""Hook specifications: the contract between molzoo and its plugins.

A plugin is a module (a built-in ``zoo.plugins.<kind>`` package, or the module a ``molzoo``
entry point names) holding ``@hookimpl`` functions. Every hook receives one argument,
``register``; call it once per component::

    register(name, factory, description="", config=None)

:param str name: the component's name within its kind (``zoo list KIND``); two plugins
    registering one name for one kind is an error naming both.
:param factory: a callable, or a lazy ``"module:attr"`` string imported only when the component
    is created or its options are read. Keep heavy imports (torch, transformers, torch_geometric,
    RDKit) in the factory's module, never in the module holding the hook implementations:
    ``zoo list`` and ``zoo --help`` import that one.
:param str description: one line for ``zoo list``.
:param dict config: leave it out. A component's options and their defaults are stated once, in
    the factory's signature: every parameter with a default that can be passed by keyword, except
    ``embed_dim`` (:func:`zoo.api.options_of`). A factory forwarding ``**options`` to a class
    declares it with :func:`zoo.api.passes_options_to`. Give ``config`` only for a factory whose
    signature cannot be read (it then replaces the signature). Specs are validated against the
    options (an unknown one is refused with close matches) before the factory runs; a resolved
    option takes its default's type (``1`` for a float option is ``1.0``; a tuple default makes a
    list option).

Factory arguments (text and molecule encoders, aligners, losses): ``factory(embed_dim=<the spec's
embed_dim>, **options)`` where ``options`` are the defaults overlaid with the spec's settings
(scorers: ``factory(**options)``; compositions and tasks: no arguments). A ``ValueError``/``TypeError``
raised there becomes a one-line error naming the slot and component: check options first
(:func:`zoo.api.check_ints`, :func:`zoo.api.check_dropout`). The returned object is a
``torch.nn.Module`` implementing the kind's protocol from :mod:`zoo.api`. Example::

    from zoo.api import hookimpl

    @hookimpl
    def register_molecule_encoders(register):
        register(
            "my_gnn",
            "my_package.encoders:MyGNN",       # lazy: imported when a spec uses my_gnn
            description="A three-layer GIN over RDKit graphs.",
        )

    # my_package/encoders.py: the options (hidden_dim, layers) and defaults, stated once
    class MyGNN(torch.nn.Module):
        def __init__(self, embed_dim: int, hidden_dim: int = 256, layers: int = 3): ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("molzoo")
hookimpl = pluggy.HookimplMarker("molzoo")


class Register(Protocol):
    """The ``register`` callback every hook receives (see the module docstring for its arguments)."""

    def __call__(self, name: str, factory: Callable[..., Any] | str, description: str = "",
                 config: Mapping[str, Any] | None = None) -> None: ...


@hookspec
def register_text_encoders(register: Register) -> None:
    """Register text encoders (the ``text_encoder`` slot).

    The factory returns a module implementing :class:`zoo.api.TextEncoder`:

    - ``dim`` (``== embed_dim``) and ``frozen`` (``True`` if nothing before the head trains);
    - ``prepare(texts, progress=True, device="cpu") -> list``: one item per text (token ids, or the
      frozen backbone's cached outputs), computed once per run;
    - ``collate(items) -> batch``: a batch object with ``.to(device)``;
    - ``forward(batch) -> Encoded``: ``embedding [B, embed_dim]``; when the assembly sets
      ``return_states = True`` (an aligner that needs them), also ``states [B, L, h]`` and
      ``mask [B, L]`` (True where a token is real).

    Factory arguments: ``embed_dim`` and the options of its signature. Cache keys: a frozen backbone
    may cache ``prepare``'s outputs under :func:`zoo.api.cache_root`, keyed by
    :func:`zoo.api.content_hash` of the model, its revision and every option that changes them
    (the built-in transformers expose it as ``cache_key``); a fitted encoder keys nothing on disk
    itself: it implements :class:`zoo.api.Fittable` (``fit(texts, seed=0)``, ``fitted_state() -> dict of
    tensors``, ``load_fitted_state(state)``), fitted on the training descriptions only and saved as
    ``RUN/fitted/text_encoder.safetensors``. Raise :class:`zoo.api.TextEncoderUnavailable` when
    weights cannot be loaded: ``zoo run`` then substitutes ``minilm`` (unless ``--strict``). Example::

        @hookimpl
        def register_text_encoders(register):
            register("bow", "my_package.text:BagOfWords", description="hashed bag of words")

        # my_package/text.py: option ``buckets`` (default 65536)
        class BagOfWords(torch.nn.Module):
            def __init__(self, embed_dim: int, buckets: int = 65536): ...
            def prepare(self, texts, progress=True, device="cpu"): ...   # -> list, one item per text
            def collate(self, items): ...                                # -> batch with .to(device)
            def forward(self, batch): ...                                # -> Encoded(embedding [B, embed_dim])
    """


@hookspec
def register_molecule_encoders(register: Register) -> None:
    """Register molecule encoders (the ``molecule_encoder`` slot).

    The factory returns a module implementing :class:`zoo.api.MoleculeEncoder`:

    - ``dim`` (``== embed_dim``);
    - ``featurize(smiles) -> torch_geometric.data.Data``: one molecule, every attribute a tensor;
      raise :class:`zoo.api.SmilesError` for an unparsable SMILES (:func:`zoo.api.parse_smiles`);
    - ``featurizer: str``, e.g. ``"rdkit_descriptors/1"``: the on-disk cache key of the featurized
      molecules, also stored with checkpoints; change it whenever ``featurize``'s output changes;
    - ``forward(batch) -> Encoded``: ``batch`` is a ``torch_geometric.data.Batch`` of ``featurize``
      outputs, every attribute the featurizer set available as ``batch.<attr>`` (``*_index``
      attributes offset per graph; ``batch.batch``, ``batch.ptr``, ``batch.num_graphs`` as in PyG);
      ``embedding [B, embed_dim]``, plus ``states``/``mask`` per atom when ``return_states`` is set;
    - optional ``featurize_arrays``: a picklable function ``smiles -> {attr: numpy array}`` giving
      ``featurize``'s attributes without importing torch or PyG (the built-in graphs:
      :func:`zoo.api.graph_arrays`): the gallery's featurization worker processes then start in
      well under a second instead of importing torch each.

    Factory arguments: ``embed_dim`` and the options of its signature. Cache key: ``featurizer``
    (with the SMILES) keys the featurized molecules on disk under :func:`zoo.api.cache_root`.
    The built-in RDKit graphs are :func:`zoo.api.featurize` (``x [atoms, ATOM_FEATURE_DIM]``,
    ``edge_index``, ``edge_attr [edges, BOND_FEATURE_DIM]``; key
    ``f"{FEATURIZER_NAME}/{FEATURIZER_VERSION}"``). Example (``plugins/examples/molzoo-descriptors``)::

        @hookimpl
        def register_molecule_encoders(register):
            register("descriptor_mlp", "molzoo_descriptors.encoder:DescriptorMLP",
                     description="MLP over RDKit 2D descriptors")

        # molzoo_descriptors/encoder.py: options hidden_dim, layers, dropout with their defaults
        class DescriptorMLP(torch.nn.Module):
            featurizer = "rdkit_descriptors/1"
            def __init__(self, *, embed_dim: int, hidden_dim: int = 256, layers: int = 2, dropout: float = 0.1): ...
            def featurize(self, smiles): ...   # -> Data(desc=[1, D])
            def forward(self, batch): ...      # batch.desc [B, D] -> Encoded(embedding [B, embed_dim])
    """


@hookspec
def register_aligners(register: Register) -> None:
    """Register alignment modules (the ``aligner`` slot).

    The factory returns a module implementing :class:`zoo.api.Aligner`:
    ``forward(text: Encoded, molecule: Encoded) -> Aligned`` with aligned ``text``/``molecule``
    embeddings ``[B, d]``, auxiliary ``losses`` (scalar tensors, added to the retrieval loss) and
    ``metrics`` (floats, logged). Set ``needs_states = True`` to receive token/atom ``states``;
    define ``embed_text(Encoded)``/``embed_molecule(Encoded)`` (each ``-> [B, d]``) if retrieval
    embeddings are not the encoders' ``embedding``. Factory arguments: ``embed_dim`` and the options
    of its signature. Cache keys: none (an aligner trains with the model and is saved in its
    checkpoints). Example::

        @hookimpl
        def register_aligners(register):
            register("none", "zoo.plugins.align.adversarial:IdentityAligner",
                     description="embeddings pass through unchanged")

        # no options: IdentityAligner(embed_dim=None) returns
        # Aligned(text=text.embedding, molecule=molecule.embedding) (no losses, no metrics)
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register retrieval losses (the ``loss`` slot).

    The factory returns a module implementing :class:`zoo.api.RetrievalLoss`:
    ``forward(text [B, d], molecule [B, d]) -> scalar tensor``, row ``i`` of each being a positive
    pair and the other rows in-batch negatives (:func:`zoo.api.check_pair_batch` checks that);
    under ``torchrun`` the rows are gathered from every process first. Factory arguments:
    ``embed_dim`` and the options of its signature. Cache keys: none. Example::

        @hookimpl
        def register_losses(register):
            register("infonce", "zoo.plugins.loss.infonce:InfoNCELoss", description="symmetric InfoNCE")

        # options temperature, learnable, directions with their defaults
        class InfoNCELoss(torch.nn.Module):
            def __init__(self, embed_dim=None, temperature: float = 0.07, learnable: bool = True,
                         directions: str = "both"): ...
            def forward(self, text, molecule): ...   # [B, d], [B, d] -> scalar tensor
    """


@hookspec
def register_compositions(register: Register) -> None:
    """Register compositions (named specs for ``zoo run NAME``).

    The factory takes no arguments and returns a mapping (the spec as read from TOML) or the path
    of a TOML file: ``name``, ``embed_dim``, one table per slot (``text_encoder``,
    ``molecule_encoder``, ``aligner``, ``loss``) with the component ``name`` and its options,
    plus ``[train]`` and ``[eval]`` settings. Factory arguments: none; ``config`` is not used.
    Cache keys: none (the resolved spec's ``CompositionSpec.hash()`` names its runs). Example::

        @hookimpl
        def register_compositions(register):
            register("my_model", lambda: Path(__file__).with_name("my_model.toml"),
                     description="scibert + my_gnn + none + infonce")
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register evaluation tasks (datasets with a split and gallery protocol), e.g. ``chebi20``, ``pairs``.

    The factory, called without arguments, returns a task object (:class:`zoo.api.TaskBase` gives the
    defaults): ``name``, ``galleries`` (named ones; ``inbatch:N`` always exists), ``protocols`` and
    ``load(data_dir=None, *, download=False, **options)`` returning the loaded data, a
    :class:`zoo.api.Dataset` (e.g. :class:`zoo.api.TaskData` of :class:`zoo.api.Pair` and
    :class:`zoo.api.Molecule`, or any object with the same attributes): ``train``, ``select`` (held
    out), ``test``, ``gallery``, ``descriptions``, ``protocol``, ``data_dir`` and ``checksums`` (the
    data's identity: runs, checkpoints and caches record it, and a run refuses other data). Raise
    :class:`zoo.api.DataError` naming the file, row and field for bad input.

    Options: the keyword parameters of ``load`` with defaults are the task's options (``[task]`` in a
    spec, ``--set task.KEY=VALUE``), checked like a component's before any work; a spec records only
    the values that differ from the defaults. ``load`` also receives ``data_dir`` (``--data-dir``; for
    a finished run, the folder it recorded) and, where it takes them, ``download`` and
    ``holdout_fraction`` (the spec's ``train.holdout_fraction``). A spec names its task in
    ``[eval] task``. Example (``docs/tasks.md``)::

        @hookimpl
        def register_tasks(register):
            register("my_pairs", "my_package.tasks:MyPairs", description="my text-molecule pairs")

        # my_package/tasks.py: options file and seed
        class MyPairs(TaskBase):
            name, galleries, protocols = "my_pairs", ("all", "test"), ("random-80-10-10",)
            def load(self, data_dir=None, *, file: str = "pairs.csv", seed: int = 0, download: bool = False):
                ...  # -> TaskData(data_dir, protocol, train, select, test, gallery, descriptions, checksums)
    """


@hookspec
def register_scorers(register: Register) -> None:
    """Register scorers (``[[scorers]]`` of a composition; ``zoo ensemble --scorer NAME``).

    A scorer scores descriptions against molecules beside a model's learned cosine similarity
    (structure match, lexical match, another run). Factory arguments: ``factory(**options)``, the
    options of its signature overlaid with the spec's (no ``embed_dim``); it returns an object
    implementing :class:`zoo.api.Scorer`:

    - ``prepare_texts(texts) -> rows`` and ``prepare_molecules(smiles) -> rows``: one row per input
      (numpy array, tensor or list), computed once per gallery;
    - ``score(text_rows, molecule_rows) -> np.ndarray [T, M]``: higher is a better match, any scale
      (fusion z-scores each query's scores over the gallery, :mod:`zoo.fusion`);
    - optionally ``prepare_gallery(data) -> (text_rows, molecule_rows)``: a task's whole gallery at once.

    Fusion weights are fitted on the held-out pairs only. Built-ins: ``structure_match`` (chemical
    names in the description parsed by OPSIN, max Tanimoto to the candidate), ``relation_match``
    (a stated relation to a named molecule) and ``run`` (another finished run's learned cosine
    similarity; registered by core itself, :mod:`zoo.core_components`, as it loads a run). Cache keys: none required (rows are prepared once per
    gallery in memory; a scorer that caches on disk keys by :func:`zoo.api.content_hash` of its options
    and inputs). Example::

        @hookimpl
        def register_scorers(register):
            register("formula_match", "my_package.scorers:FormulaMatch",
                     description="molecular formula named in the text vs the candidate's")

        # my_package/scorers.py: option strict (default False)
        class FormulaMatch:
            def __init__(self, strict: bool = False): ...
            def prepare_texts(self, texts): ...                     # -> one row per text
            def prepare_molecules(self, smiles): ...                # -> one row per molecule
            def score(self, text_rows, molecule_rows): ...          # -> np.ndarray [T, M]
    """


@hookspec
def register_launchers(register: Register) -> None:
    """Register launchers (``zoo sweep``/``zoo ablate``/an ensemble composition's members: ``--launcher NAME``).

    A launcher decides where the runs of a grid train: this machine one after another or several at
    once, a Ray cluster, a Slurm cluster. Factory arguments: ``factory(**options)``, the options of its
    signature overlaid with ``--launcher-opt KEY=VALUE`` or a ``[launcher]`` table of a TOML file
    (validated like spec options: an unknown key is refused with close matches, a value of the wrong
    type is refused). It returns an object implementing :class:`zoo.api.Launcher`:

    - ``slots: int``: how many runs it has in flight at once (the rest wait in molzoo's queue);
      ``runs_in_process = True`` (optional) where ``submit`` trains the run here by calling
      ``job.in_process()`` (``local`` with one worker) instead of running ``job.argv``;
    - ``start(out_root) -> None`` and ``close() -> None``: set up and tear down (a local Ray cluster,
      a submitit folder under ``out_root``); ``close`` runs after the last run or on Ctrl-C;
    - ``submit(job: zoo.api.RunJob) -> zoo.api.Submission``: start one run. ``job.argv`` is the command
      that trains it (``python -m zoo.cli run SPEC.toml --out RUN ...``; it resumes from the run's
      last checkpoint), ``job.log_path`` where its output goes, ``job.env`` extra environment; a
      submission has ``job_id: str``, ``poll() -> int | None`` (the exit status once finished; an
      exception the engine raised is a failure) and ``cancel()``.

    molzoo owns everything else: it skips finished runs (``RUN/results.json`` present), checks that a
    finished run wrote its results file, retries a failed run up to ``--retries`` (resuming from its
    checkpoint), cancels what was submitted on Ctrl-C, and prints the leaderboard of what finished.
    Cache keys: none. Runs share ``--out-root`` and :func:`zoo.api.cache_root`, so both must be on a
    filesystem every worker sees. Example::

        @hookimpl
        def register_launchers(register):
            register("pbs", "my_package.launch:PBSLauncher", description="qsub one job per run")

        # my_package/launch.py: options queue, walltime with their defaults
        class PBSLauncher:
            slots = 1000
            def __init__(self, queue: str = "batch", walltime: str = "04:00:00"): ...
            def start(self, out_root): ...
            def submit(self, job): ...    # -> object with job_id, poll(), cancel()
            def close(self): ...
    """


@hookspec
def register_rerankers(register: Register) -> None:
    """Register re-rankers (``[[rerankers]]`` of a composition or an ensemble composition; ``zoo list reranker``).

    A re-ranker is a second stage: it re-scores the top ``k`` candidates (default 100) of a first
    stage (a run's similarity, a fused composition, an ensemble) by reading each (description,
    molecule) *pair* together, where the first stage ranks every candidate at once. Factory arguments:
    ``factory(**options)``, the options of its signature overlaid with the spec's. It returns an object
    implementing :class:`zoo.api.Reranker`:

    - ``fit(descriptions, candidates, positives, log=print) -> dict``: learn on the **training** pairs:
      ``candidates[i]`` are the first stage's top ``k`` SMILES for ``descriptions[i]`` (hard negatives)
      and ``positives[i]`` the index of the true molecule among them; returns a JSON-able record for
      the results file (e.g. learned feature weights). Held-out and test pairs are never passed.
    - ``score_pairs(descriptions, smiles) -> np.ndarray [N]``: higher is a better match of
      ``smiles[n]`` to ``descriptions[n]``, any scale (the stage z-scores each query's ``k`` scores).
      Called with up to ~20,000 pairs at once; cache per description and per molecule.
    - ``save(folder)`` / ``load(folder)``: the fitted state, in ``RUN/rerankers/LABEL/``;
    - ``prepare(descriptions, smiles)`` (optional): called once with the task's every description and
      gallery molecule before ``fit`` and before scoring, to compute per-text and per-molecule features
      in one batch (and find on-disk caches other runs of the task wrote).

    The stage's weights (the first stage's is 1) are fitted on the held-out pairs only, so a
    re-ranker that does not help gets weight 0 (:mod:`zoo.rerank`). Built-ins: ``cross_encoder``
    (co-attention over the description's tokens and the molecule's substructures, trained with the
    first stage's hard negatives) and ``class_check`` (the classes and parents the description states,
    checked on the candidate's structure). Cache keys: none required. Example::

        @hookimpl
        def register_rerankers(register):
            register("formula_check", "my_package.rerank:FormulaCheck",
                     description="the molecular formula stated in the text vs the candidate's")

        # my_package/rerank.py
        class FormulaCheck:
            def __init__(self, strict: bool = False): ...
            def fit(self, descriptions, candidates, positives, log=print): return {}
            def score_pairs(self, descriptions, smiles): ...   # -> np.ndarray [N]
            def save(self, folder): ...
            def load(self, folder): ...
    """
