"""The small typed contracts every component implements.

Components are ``torch.nn.Module`` subclasses; these protocols document what the model
assembly in :mod:`zoo.model` relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@dataclass
class Encoded:
    """An encoder's output: pooled embeddings plus optional per-token / per-node states."""

    embedding: "torch.Tensor"  # [B, d]
    states: "torch.Tensor | None" = None  # [B, L, h] padded token or node states
    mask: "torch.Tensor | None" = None  # [B, L] True where a state is real


@dataclass
class Aligned:
    """An aligner's output: aligned embeddings, auxiliary losses (summed into the objective)
    and scalar metrics to log."""

    text: "torch.Tensor"
    molecule: "torch.Tensor"
    losses: dict[str, "torch.Tensor"] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class TextEncoder(Protocol):
    """Texts to ``[B, d]``.

    ``prepare(texts, progress, device)`` turns raw strings into one model input per text (token ids, or
    cached frozen backbone features), ``collate(items)`` batches them, ``forward(batch)`` returns
    :class:`Encoded`. ``cache_key`` identifies
    the frozen backbone's outputs for the on-disk cache (``None`` when nothing is cached).
    """

    dim: int
    frozen: bool

    def prepare(self, texts: Sequence[str], progress: bool = True, device: "torch.device | str" = "cpu") -> list[Any]: ...

    def collate(self, items: Sequence[Any]) -> Any: ...  # a batch object with ``.to(device)``

    def forward(self, batch: Any) -> Encoded: ...


@runtime_checkable
class MoleculeEncoder(Protocol):
    """A PyG batch of featurized molecules to ``[B, d]``; ``featurizer`` names what it needs."""

    dim: int
    featurizer: str  # name/version of the featurization, e.g. "rdkit_graph/1": keys the on-disk cache

    def featurize(self, smiles: str) -> Any: ...  # one molecule -> torch_geometric.data.Data

    def forward(self, batch: Any) -> Encoded: ...


@runtime_checkable
class Aligner(Protocol):
    """Two embeddings (and states) to aligned embeddings plus auxiliary losses."""

    def forward(self, text: Encoded, molecule: Encoded) -> Aligned: ...


@runtime_checkable
class RetrievalLoss(Protocol):
    """``(text [B, d], molecule [B, d]) -> scalar``; row i of each is a positive pair."""

    def forward(self, text: "torch.Tensor", molecule: "torch.Tensor") -> "torch.Tensor": ...


@runtime_checkable
class Fittable(Protocol):
    """A text encoder with a data-fitted, fixed part (e.g. a TF-IDF vocabulary and SVD basis).

    Only the ``text_encoder`` slot is fitted (on texts); a combined text encoder fits its parts.
    ``zoo run`` calls ``fit(texts, seed=)`` with the **training** pairs' descriptions only
    (never the held-out or test ones) before ``prepare``, then writes ``fitted_state()`` (plain
    tensors, safetensors, no pickle) once, atomically, to ``RUN/fitted/<slot>.safetensors``. A
    resumed run and ``zoo eval`` (:func:`zoo.runs.load_trained_run`) call
    ``load_fitted_state(...)`` with that file's tensors instead of refitting. The fitted state
    is not part of the module's ``state_dict``, so checkpoints do not repeat it; an empty
    ``fitted_state()`` means nothing needs saving (see :mod:`zoo.fitting`).

    A fit that adapts a size to the data (e.g. fewer SVD dimensions than asked on a small corpus)
    records that in its state and may say so in an optional ``fitted_notes() -> list[str]``,
    which ``zoo run`` logs and writes to the results' notes.
    """

    def fit(self, texts: Sequence[str], seed: int = 0) -> None: ...

    def fitted_state(self) -> dict[str, "torch.Tensor"]: ...

    def load_fitted_state(self, state: dict[str, "torch.Tensor"]) -> None: ...


@runtime_checkable
class Scorer(Protocol):
    """Scores descriptions against molecules, beside (or instead of) a model's learned cosine similarity.

    A scorer works in two steps, so that each side is prepared once and scored in chunks:
    ``prepare_texts(texts)`` and ``prepare_molecules(smiles)`` return one row per input (a numpy
    array, a tensor or a list: anything indexed by a list of row numbers, ``rows[[3, 1]]``, or a
    list); ``score(texts, molecules)`` takes such rows and returns a ``[len(texts), len(molecules)]``
    numpy float array, higher meaning a better match. Scores need no common scale: fusion
    (:mod:`zoo.fusion`) z-scores them per query over the gallery.

    Optionally, ``prepare_gallery(data) -> (texts, molecules)`` prepares a task's whole gallery
    (``data.descriptions`` and ``data.gallery``) at once, e.g. from an on-disk cache.
    """

    def prepare_texts(self, texts: Sequence[str]) -> Any: ...

    def prepare_molecules(self, smiles: Sequence[str]) -> Any: ...

    def score(self, texts: Any, molecules: Any) -> Any: ...


@runtime_checkable
class Reranker(Protocol):
    """A second stage: scores (description, molecule) pairs among a first stage's top ``k`` candidates.

    ``fit`` learns on the training pairs (``candidates[i]``: the first stage's top ``k`` SMILES for
    ``descriptions[i]``, ``positives[i]``: the true one's index) and returns a JSON-able record;
    ``score_pairs(descriptions, smiles)`` returns one float per pair, higher meaning a better match, any
    scale (:mod:`zoo.rerank` z-scores each query's ``k`` scores); ``save``/``load`` keep the fitted state in
    a folder of the run. An optional ``prepare(descriptions, smiles)`` receives the task's whole gallery once,
    before fitting and scoring.
    """

    def fit(self, descriptions: Sequence[str], candidates: Sequence[Sequence[str]], positives: Sequence[int],
            log: Any = print) -> dict: ...

    def score_pairs(self, descriptions: Sequence[str], smiles: Sequence[str]) -> Any: ...

    def save(self, folder: Any) -> None: ...

    def load(self, folder: Any) -> None: ...


#: The two retrieval directions: a description's scores over molecules, a molecule's over descriptions.
DIRECTIONS: tuple[str, str] = ("text_to_molecule", "molecule_to_text")


@runtime_checkable
class ScoreSource(Protocol):
    """Query x gallery scores of a task: a run's learned similarity, a fusion of scorers and runs, or a
    stage on top of another source (a re-ranker). :func:`zoo.scoring.open_scoring` opens the one a
    results folder records; evaluation, ``zoo search``, ``zoo report`` and ``zoo serve`` consume it.

    Rows: ``molecules`` are the gallery molecules (the columns of ``text_to_molecule`` scores, the
    queries of ``molecule_to_text``), ``descriptions`` the task's descriptions (the other way round);
    each item has a ``cid`` (molecules a ``smiles``, descriptions a ``description``).

    * ``scores(direction, query_rows, candidate_rows)``: ``[len(query_rows), C]`` float32 scores of
      those query rows against ``candidate_rows`` (``None``: every row of the other side); callers pass
      a bounded block of query rows at a time;
    * ``query_scores(direction, query)``: one free query (a description for ``text_to_molecule``, a
      SMILES for ``molecule_to_text``) scored against every row of the other side, ``[C]``;
    * ``record()``: what it is, as JSON (``kind``, ``label`` and, for a fusion, its ``members``).
    """

    molecules: Sequence[Any]
    descriptions: Sequence[Any]

    def scores(self, direction: str, query_rows: Sequence[int], candidate_rows: Sequence[int] | None = None) -> Any: ...

    def query_scores(self, direction: str, query: str) -> Any: ...

    def record(self) -> dict[str, Any]: ...
