"""Character n-gram TF-IDF + truncated SVD text features with a trainable head.

Fitting (:meth:`TfidfText.fit`, called by ``zoo run`` on the training descriptions only):
scikit-learn's :class:`~sklearn.feature_extraction.text.TfidfVectorizer` (``analyzer``
``char_wb``, n-grams ``ngram_min``..``ngram_max``, ``sublinear_tf``, n-grams seen in at least
``min_df`` training texts, at most ``max_features`` of them) and
:class:`~sklearn.decomposition.TruncatedSVD` (``svd_dim`` components, ``random_state`` = the
run's seed). The fitted transform is fixed: its state (vocabulary, idf, SVD components) is
saved once with the run (:meth:`fitted_state`, safetensors, no pickle) and loaded instead of
refitting on resume and by ``zoo eval``. It is deliberately not part of the module's
``state_dict``, so checkpoints do not repeat it.

Model: the L2-normalized SVD features (latent semantic analysis) go through ``layers`` blocks
``Linear -> LayerNorm -> GELU -> Dropout`` (width ``hidden_dim``) and a final ``Linear`` to
``embed_dim``. With :attr:`return_states` set, the last hidden vector is returned as a single
state per text (``[B, 1, hidden_dim]``, mask all True).

Small corpora: the SVD keeps ``min(svd_dim, n_texts - 1, n_features - 1)`` dimensions (a
truncated SVD needs fewer than both); the fitted state records how many, the features of the
dimensions it lacks are zero (so the head and the checkpoints keep their shapes), and
:meth:`fitted_notes` says what was lowered (``zoo run`` logs it and writes it to the results' notes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo.api import Encoded, check_dropout, check_ints, mlp_blocks, with_single_state

ANALYZERS = ("char_wb", "char", "word")
FIT_VERSION = "1"  # bump when the fitted transform changes meaning


class TextFeatures(dict):
    """A batch of fixed text features: ``features`` ``[B, svd_dim]`` float32."""

    def to(self, device: torch.device | str) -> "TextFeatures":
        return TextFeatures({k: v.to(device) for k, v in self.items()})


class TfidfText(nn.Module):
    """Fitted char n-gram TF-IDF -> SVD features, then a trainable MLP head to ``embed_dim``."""

    def __init__(
        self,
        embed_dim: int,
        analyzer: str = "char_wb",
        ngram_min: int = 3,
        ngram_max: int = 5,
        lowercase: bool = True,
        sublinear_tf: bool = True,
        min_df: int = 2,
        max_features: int = 32768,
        svd_dim: int = 512,
        hidden_dim: int = 512,
        layers: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_ints("tfidf", embed_dim=embed_dim, ngram_min=ngram_min, ngram_max=ngram_max, min_df=min_df,
                   max_features=max_features, svd_dim=svd_dim, hidden_dim=hidden_dim, layers=layers)
        check_dropout("tfidf", dropout)
        if analyzer not in ANALYZERS:
            raise ValueError(f"tfidf: analyzer={analyzer!r}; choose one of {', '.join(ANALYZERS)}")
        if ngram_min > ngram_max:
            raise ValueError(f"tfidf: ngram_min={ngram_min} is larger than ngram_max={ngram_max}")
        self.dim = embed_dim
        self.state_dim = hidden_dim
        self.svd_dim = svd_dim
        self.frozen = True  # the fitted transform never trains; only the head does
        self.return_states = False
        self.vectorizer_params: dict[str, Any] = {
            "analyzer": analyzer, "ngram_range": [ngram_min, ngram_max], "lowercase": bool(lowercase),
            "sublinear_tf": bool(sublinear_tf), "min_df": min_df, "max_features": max_features,
        }
        self._vectorizer: Any = None  # sklearn TfidfVectorizer with a fixed vocabulary and idf
        self._projection: np.ndarray | None = None  # [n_features, svd_dim] float32, C-contiguous
        self._fitted_state: dict[str, Tensor] | None = None

        self.hidden = mlp_blocks(svd_dim, hidden_dim, layers, dropout)
        self.out = nn.Linear(hidden_dim, embed_dim)

    # -- fitting --------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self._fitted_state is not None

    def _new_vectorizer(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        p = self.vectorizer_params
        return TfidfVectorizer(analyzer=p["analyzer"], ngram_range=tuple(p["ngram_range"]), lowercase=p["lowercase"],
                               sublinear_tf=p["sublinear_tf"], min_df=p["min_df"] if vocabulary is None else 1,
                               max_features=p["max_features"] if vocabulary is None else None, vocabulary=vocabulary)

    def fit(self, texts: Sequence[str], seed: int = 0) -> None:
        """Fit TF-IDF and SVD on ``texts`` (the training descriptions only)."""
        from sklearn.decomposition import TruncatedSVD

        texts = list(texts)
        vectorizer = self._new_vectorizer()
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError as exc:  # e.g. no n-gram reaches min_df
            raise ValueError(f"tfidf: cannot fit on {len(texts)} training texts: {exc}; lower text_encoder.min_df "
                             f"(now {self.vectorizer_params['min_df']}) or use more training data") from None
        n_texts, n_features = matrix.shape
        dims = min(self.svd_dim, n_texts - 1, n_features - 1)  # a truncated SVD needs fewer than both
        if dims < 1:
            raise ValueError(f"tfidf: {n_texts} training text(s) with {n_features} n-gram feature(s) leave no SVD "
                             "dimension: needs at least 2 of each; lower text_encoder.min_df or use more training data")
        svd = TruncatedSVD(n_components=dims, random_state=seed).fit(matrix)
        vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)  # in column order
        self.load_fitted_state({
            "vocabulary": torch.frombuffer(bytearray("\0".join(vocabulary).encode("utf-8")), dtype=torch.uint8),
            "idf": torch.from_numpy(vectorizer.idf_.astype(np.float64)),
            "components": torch.from_numpy(svd.components_.astype(np.float32)),
            "explained_variance_ratio": torch.from_numpy(svd.explained_variance_ratio_.astype(np.float32)),
            "params": torch.frombuffer(bytearray(self._params_json().encode("utf-8")), dtype=torch.uint8),
            "fit_shape": torch.tensor([n_texts, n_features], dtype=torch.int64),
        })

    def _params_json(self) -> str:
        return json.dumps({**self.vectorizer_params, "svd_dim": self.svd_dim, "version": FIT_VERSION}, sort_keys=True)

    def fitted_state(self) -> dict[str, Tensor]:
        """Everything :meth:`load_fitted_state` needs to rebuild the fitted transform (plain tensors)."""
        if self._fitted_state is None:
            raise ValueError("tfidf: not fitted yet (fit() runs on the training descriptions)")
        return dict(self._fitted_state)

    def load_fitted_state(self, state: dict[str, Tensor]) -> None:
        """Install a state written by :meth:`fitted_state`; refuses one fitted with other options."""
        missing = [k for k in ("vocabulary", "idf", "components", "params") if k not in state]
        if missing:
            raise ValueError(f"tfidf: fitted state lacks {', '.join(missing)}")
        params = bytes(state["params"].numpy()).decode("utf-8")
        if params != self._params_json():
            raise ValueError(f"tfidf: fitted state was made with other options ({params}), expected {self._params_json()}")
        terms = bytes(state["vocabulary"].numpy()).decode("utf-8").split("\0")
        components = state["components"].numpy().astype(np.float32)
        if (components.ndim != 2 or not 1 <= components.shape[0] <= self.svd_dim or components.shape[1] != len(terms)
                or state["idf"].shape != (len(terms),)):
            raise ValueError(f"tfidf: fitted state shapes disagree: {len(terms)} terms, idf {tuple(state['idf'].shape)}, "
                             f"components {tuple(components.shape)} (svd_dim={self.svd_dim})")
        vectorizer = self._new_vectorizer({term: i for i, term in enumerate(terms)})
        vectorizer.idf_ = state["idf"].numpy().astype(np.float64)
        # transposed once here (``sparse @ components.T`` would copy the 64 MB matrix on every call), with
        # zero columns for the dimensions a small corpus could not give (features keep svd_dim columns)
        projection = np.zeros((len(terms), self.svd_dim), dtype=np.float32)
        projection[:, : components.shape[0]] = components.T
        self._vectorizer, self._projection = vectorizer, projection
        self._fitted_state = dict(state)

    def fitted_notes(self) -> list[str]:
        """What the fit adapted to the training data (empty when nothing was)."""
        if self._fitted_state is None:
            return []
        dims = int(self._fitted_state["components"].shape[0])
        if dims == self.svd_dim:
            return []
        n_texts, n_features = (self._fitted_state["fit_shape"].tolist() if "fit_shape" in self._fitted_state else ("?", "?"))
        return [f"tfidf: svd_dim lowered from {self.svd_dim} to {dims} for {n_texts} training texts and {n_features} "
                "n-gram features (a truncated SVD needs fewer dimensions than both; the other features are zero)"]

    # -- features -------------------------------------------------------------------------
    def features(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized SVD features ``[N, svd_dim]`` float32 of ``texts`` (fitted transform)."""
        if self._vectorizer is None:
            raise ValueError("tfidf: not fitted: zoo run fits it on the training descriptions; "
                             "a finished run loads RUN/fitted/text_encoder.safetensors")
        sparse = self._vectorizer.transform(list(texts)).astype(np.float32)  # float64 x float32 would upcast the projection
        reduced = np.asarray(sparse @ self._projection, dtype=np.float32)
        norms = np.linalg.norm(reduced, axis=1, keepdims=True)
        return reduced / np.maximum(norms, 1e-12)

    def prepare(self, texts: Sequence[str], progress: bool = True, device: torch.device | str = "cpu") -> list[Tensor]:
        """One ``[svd_dim]`` feature vector per text (computed on the CPU: sparse x dense)."""
        return list(torch.from_numpy(self.features(texts)))

    def collate(self, items: Sequence[Tensor]) -> TextFeatures:
        return TextFeatures(features=torch.stack(list(items)))

    # -- forward --------------------------------------------------------------------------
    def forward(self, batch: TextFeatures) -> Encoded:
        h = self.hidden(batch["features"].to(self.out.weight.dtype))
        embedding = self.out(h)
        return with_single_state(embedding, h, self.return_states)
