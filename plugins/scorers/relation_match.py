"""The ``relation_match`` scorer: relations the description states to a named molecule, checked on the candidate.

"It is a conjugate base of X", "... conjugate acid of X", "... enantiomer of X", "... tautomer of X":
texts are prepared by :func:`zoo.plugins.chem.chemrelations.description_relations` (names parsed by OPSIN in one batch,
cached on disk), molecules by :func:`zoo.plugins.chem.chemrelations.molecule_keys` (charge-parent structure keys, cached on
disk); the score is :func:`zoo.plugins.chem.chemrelations.relation_match_scores`: 1 where the candidate satisfies a stated
relation, 0.5 for a conjugate one with the wrong charge, else 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.plugins.chem.chemrelations import description_relations, molecule_keys, relation_match_scores


class RelationMatchScorer:
    """1 for a candidate that is the stated conjugate acid/base, enantiomer or tautomer of a named molecule."""

    def prepare_texts(self, texts: Sequence[str]) -> list:
        return description_relations(list(texts))

    def prepare_molecules(self, smiles: Sequence[str]) -> np.ndarray:
        return molecule_keys(list(smiles))

    def score(self, texts: list, molecules: np.ndarray) -> np.ndarray:
        return relation_match_scores(texts, molecules)
