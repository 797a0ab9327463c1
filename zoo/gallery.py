"""A task's data prepared for one model: the one path from loaded data to embeddings.

``zoo run``, ``zoo eval``, ``zoo search`` and ``zoo report`` all featurize the gallery molecules
(cached on disk, :func:`zoo.cache.featurize_molecules`) and prepare every description with the
model's text encoder (all of them, so frozen text states come from one cache entry), then embed
what they need: :func:`prepare_gallery` does the first part, :class:`PreparedGallery` the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.cache import PackedGraphs, featurize_molecules
from zoo.evaluate import embed_molecules, embed_texts

if TYPE_CHECKING:
    import torch

    from zoo.taskdata import Dataset, Pair


@dataclass
class PreparedGallery:
    """Featurized gallery molecules and prepared descriptions, each with its CID -> position index."""

    data: "Dataset"
    graphs: "PackedGraphs"  # one graph per ``data.gallery`` molecule
    mol_index: dict[str, int]
    text_items: list[Any]  # one item per ``data.descriptions`` pair
    text_index: dict[str, int]

    def molecules_of(self, pairs: Sequence["Pair"]) -> list[int]:
        """The gallery positions of ``pairs``' molecules."""
        return [self.mol_index[p.cid] for p in pairs]

    def texts_of(self, pairs: Sequence["Pair"]) -> list[Any]:
        """The prepared descriptions of ``pairs``."""
        return [self.text_items[self.text_index[p.cid]] for p in pairs]

    def embed_molecules(self, model, indices: Sequence[int] | None, batch_size: int, device: "torch.device",
                        progress: bool = False, desc: str = "embedding molecules", cpu_bf16: bool = False) -> "torch.Tensor":
        """Embeddings of the gallery molecules at ``indices`` (all of them with ``None``)."""
        chosen = list(range(len(self.data.gallery))) if indices is None else indices
        return embed_molecules(model, self.graphs, chosen, batch_size, device, progress=progress, desc=desc, cpu_bf16=cpu_bf16)

    def embed_texts(self, model, pairs: Sequence["Pair"] | None, batch_size: int, device: "torch.device") -> "torch.Tensor":
        """Embeddings of ``pairs``' descriptions (every description with ``None``)."""
        return embed_texts(model, self.text_items if pairs is None else self.texts_of(pairs), batch_size, device)


def prepare_gallery(model, data: "Dataset", device: "torch.device | str", progress: bool = True,
                    desc: str = "featurizing molecules", timings: dict[str, float] | None = None) -> PreparedGallery:
    """Featurize ``data``'s gallery molecules and prepare all its descriptions for ``model`` (whose text
    encoder is fitted already, if it is fittable). ``timings`` receives ``featurize_s`` and ``text_features_s``."""
    import time

    t0 = time.time()
    encoder = model.molecule_encoder
    graphs = featurize_molecules([m.smiles for m in data.gallery], encoder.featurize, encoder.featurizer,
                                 progress=progress, desc=desc, arrays=getattr(encoder, "featurize_arrays", None))
    mol_index = {m.cid: i for i, m in enumerate(data.gallery)}
    t1 = time.time()
    text_items = model.text_encoder.prepare([p.description for p in data.descriptions], progress=progress, device=device)
    text_index = {p.cid: i for i, p in enumerate(data.descriptions)}
    if timings is not None:
        timings["featurize_s"], timings["text_features_s"] = t1 - t0, time.time() - t1
    return PreparedGallery(data, graphs, mol_index, text_items, text_index)
