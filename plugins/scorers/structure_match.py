"""The ``structure_match`` scorer: names in the description, parsed to structures, matched to the candidate.

Texts are prepared by :func:`zoo.plugins.chem.chemnames.description_structures` (spans parsed by OPSIN in one batch,
cached on disk), molecules by :func:`zoo.plugins.chem.chemnames.candidate_bits` (Morgan bits, cached on disk); the score
is :func:`zoo.plugins.chem.chemnames.structure_match_scores`: the highest Tanimoto similarity between any structure the
description names and the candidate, 0 where no name parsed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.api import check_ints
from zoo.plugins.chem.chemnames import candidate_bits, description_structures, structure_match_scores


class StructureMatchScorer:
    """Max Tanimoto between the structures a description names and each candidate molecule."""

    def __init__(self, max_structures: int = 4, max_tokens: int = 4, radius: int = 2, n_bits: int = 2048) -> None:
        check_ints("structure_match", max_structures=max_structures, max_tokens=max_tokens, n_bits=n_bits)
        check_ints("structure_match", minimum=0, radius=radius)
        self.max_structures, self.max_tokens, self.radius, self.n_bits = max_structures, max_tokens, radius, n_bits

    def prepare_texts(self, texts: Sequence[str]) -> list[list[str]]:
        return description_structures(list(texts), max_structures=self.max_structures, max_tokens=self.max_tokens)

    def prepare_molecules(self, smiles: Sequence[str]) -> np.ndarray:
        return candidate_bits(list(smiles), self.radius, self.n_bits)

    def score(self, texts: list[list[str]], molecules: np.ndarray) -> np.ndarray:
        return structure_match_scores(texts, molecules, radius=self.radius, n_bits=self.n_bits)
