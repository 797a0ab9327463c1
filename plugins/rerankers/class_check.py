"""The ``class_check`` re-ranker: what a description states about the molecule's class and parents, checked
on each candidate's structure, with weights learned on the training pairs.

ChEBI descriptions state classes ("It is a steroid ester, a member of flavones and a monocarboxylic acid
anion.", "The molecule is an L-alpha-amino acid that ...") and parents ("It derives from a pregnane.",
"It is functionally related to a hexadecanoic acid.", "It has a parent hydride X.").

* class phrases and their rules (``class_rules``): a curated table of RDKit checks for the most frequent
  ChEBI-20 class phrases; a description that states no ion class states ``neutral`` (net charge 0), the
  cheap check against a conjugate acid/base.
* :func:`stated_parents`: the named parents, parsed by OPSIN (``zoo.api.parse_names``, cached on disk)
  and compared with the candidate: max Morgan Tanimoto, and whether a parent's skeleton (bond orders,
  charges, hydrogens and stereo ignored) or its structure (charges ignored) is a substructure of it.

Features per (description, candidate) pair: per rule +1 (stated, satisfied), -1 (stated, not satisfied)
or 0 (not stated); the fraction of stated rules satisfied and their number failed; the parent features.
:meth:`ClassCheckReranker.fit` learns their weights by logistic regression (scikit-learn), positives
against the first stage's hard negatives; :meth:`~ClassCheckReranker.score_pairs` is the logit.
The rules and class phrases live in :mod:`zoo.plugins.rerankers.class_rules`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.api import atomic_write_text, parse_names
from zoo.plugins.rerankers.class_rules import (
    ARTICLE,
    LIST_BREAK,
    NEUTRAL,
    RULE_NAMES,
    RULES,
    RULES_VERSION,
    check_rules,
    class_phrases,
    facts_of,
    molecule_flags,
    stated_rules,
)

__all__ = ["ClassCheckReranker", "FEATURES", "RULE_NAMES", "NEUTRAL", "class_phrases", "stated_rules", "molecule_flags",
           "stated_parents", "parent_features"]


_PARENT = re.compile(r"\bIt (?:derives from|is functionally related to|has a parent hydride) (.+?)(?=\.\s|\.?$)")


def stated_parents(text: str) -> list[str]:
    """The names ``text`` states as parents ("It derives from a X", "is functionally related to X and Y",
    "has a parent hydride X"), without articles."""
    out = []
    for match in _PARENT.finditer(text):
        for part in LIST_BREAK.split(match.group(1)):
            name = ARTICLE.sub("", part.strip()).strip(" .;")
            if name and "\t" not in name and "\n" not in name:
                out.append(name)
    return out


# -- parents -----------------------------------------------------------------------------------------------
@dataclass
class Parent:
    """A named parent as the checks see it: its Morgan bits and two substructure queries (both match a candidate
    whatever its charges, hydrogens and stereo; ``skeleton`` also whatever its bond orders and aromaticity)."""

    fp: Any
    exact: Any
    skeleton: Any


def fingerprint(mol: Any, radius: int = 2) -> Any:
    """Morgan bits (2,048) of ``mol``."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = _GENERATORS.get(radius)
    if generator is None:
        generator = _GENERATORS[radius] = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=2048)
    return generator.GetFingerprint(mol)


_GENERATORS: dict[int, Any] = {}


def parent_of(smiles: str, radius: int = 2) -> Parent | None:
    """The :class:`Parent` of ``smiles`` (its largest fragment, charges removed), or ``None`` where RDKit cannot parse it."""
    from rdkit import Chem

    facts = facts_of(smiles)
    if facts is None:
        return None
    neutral = Chem.RWMol(facts.mol)
    for i in range(neutral.GetNumAtoms()):  # a neutral query atom matches a charged one, not the reverse
        neutral.GetAtomWithIdx(i).SetFormalCharge(0)
    neutral = neutral.GetMol()
    generic = Chem.AdjustQueryParameters.NoAdjustments()
    generic.makeBondsGeneric = True
    return Parent(fingerprint(facts.mol, radius), neutral, Chem.AdjustQueryProperties(neutral, generic))


def parent_features(parents: Sequence[Parent], mol: Any | None, fp: Any = None) -> tuple[float, float, float]:
    """(max Tanimoto, skeleton substructure, substructure) of a candidate ``mol`` (Morgan bits ``fp``) against the
    parsed ``parents``: the substructure features are +1 where some parent is one, -1 where none is (or the
    candidate did not parse), 0 without parents."""
    if not parents:
        return 0.0, 0.0, 0.0
    if mol is None:
        return 0.0, -1.0, -1.0
    from rdkit import DataStructs

    tanimoto = max(DataStructs.BulkTanimotoSimilarity(fp, [p.fp for p in parents]))
    skeleton = any(mol.HasSubstructMatch(p.skeleton) for p in parents)
    exact = skeleton and any(mol.HasSubstructMatch(p.exact) for p in parents)
    return tanimoto, 1.0 if skeleton else -1.0, 1.0 if exact else -1.0


# -- the re-ranker -----------------------------------------------------------------------------------------
AGGREGATES = ("fraction satisfied", "n failed", "parent tanimoto", "parent skeleton", "parent substructure")
FEATURES: list[str] = [*(f"rule: {name}" for name in RULE_NAMES), "rule: neutral", *AGGREGATES]
STATE_FILE = "class_check.json"


class ClassCheckReranker:
    """Scores (description, candidate) pairs by the classes and parents the description states (module docs).

    Options: ``C`` the inverse L2 strength of the logistic regression; ``negatives`` the hardest negatives
    (the first stage's top-ranked wrong candidates) kept per training group; ``parents`` whether named parents
    are parsed by OPSIN and checked (needs Java); ``radius`` the Morgan radius of the parent Tanimoto.
    Unfitted, it scores the fraction of stated checks satisfied plus the parent features.
    """

    def __init__(self, C: float = 0.1, negatives: int = 30, parents: bool = True, radius: int = 2) -> None:
        if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
            raise ValueError(f"class_check: option C must be a positive number, got {C!r}")
        if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 1:
            raise ValueError(f"class_check: option negatives must be an integer >= 1, got {negatives!r}")
        if not isinstance(parents, bool):
            raise ValueError(f"class_check: option parents must be true or false, got {parents!r}")
        if isinstance(radius, bool) or not isinstance(radius, int) or not 1 <= radius <= 4:
            raise ValueError(f"class_check: option radius must be an integer from 1 to 4, got {radius!r}")
        self.C, self.negatives, self.parents, self.radius = float(C), negatives, parents, radius
        self.weights = np.zeros(len(FEATURES), dtype=np.float64)
        self.weights[FEATURES.index("fraction satisfied")] = 1.0
        self.weights[FEATURES.index("parent tanimoto")] = 1.0
        self.weights[FEATURES.index("parent substructure")] = 0.5
        self.bias = 0.0
        self.fitted = False
        self._memo: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}  # SMILES -> (flags, evaluated)

    # features
    def _descriptions(self, texts: Sequence[str]) -> tuple[np.ndarray, list[list[Parent]]]:
        """Per unique text: its stated rules as a bool row, and its parsed parents' structures."""
        stated = np.zeros((len(texts), len(RULES) + 1), dtype=bool)
        for row, text in enumerate(texts):
            stated[row, list(stated_rules(text))] = True
        parents: list[list[Parent]] = [[] for _ in texts]
        if self.parents:
            names = [stated_parents(text) for text in texts]
            parsed = parse_names(name for per_text in names for name in per_text)
            structures = {s: parent_of(s, self.radius) for s in set(parsed.values()) if s is not None}
            for row, per_text in enumerate(names):
                parents[row] = [structures[parsed[n]] for n in per_text
                                if parsed.get(n) is not None and structures.get(parsed[n]) is not None]
        return stated, parents

    def _molecule_rows(self, smiles: str, needed: np.ndarray, pairs: np.ndarray, texts: np.ndarray,
                       parents: list[list[Parent]], out: np.ndarray) -> np.ndarray | None:
        """One molecule: its flags for the ``needed`` rules (memoized across calls; ``None`` if unparsable), and
        the parent features of its ``pairs`` (rows of ``out``, whose descriptions are ``texts``) written in place."""
        entry = self._memo.get(smiles)
        if entry is None and smiles in self._memo:
            return None  # known unparsable
        with_parents = self.parents and any(parents[t] for t in texts)
        missing = needed if entry is None else needed & ~entry[1]
        if entry is not None and not missing.any() and not with_parents:
            return entry[0]
        facts = facts_of(smiles)
        if facts is None:
            self._memo[smiles] = None
            return None
        if entry is None:
            entry = self._memo[smiles] = (np.zeros(len(RULES) + 1, dtype=bool), np.zeros(len(RULES) + 1, dtype=bool))
        check_rules(facts, np.flatnonzero(missing), entry[0])
        entry[1][missing] = True
        if with_parents:
            fp, seen = fingerprint(facts.mol, self.radius), {}
            for row, t in zip(pairs, texts):
                if parents[t]:
                    found = seen.get(t)
                    if found is None:
                        found = seen[t] = parent_features(parents[t], facts.mol, fp)
                    out[row, -3:] = found
        return entry[0]

    def features(self, descriptions: Sequence[str], smiles: Sequence[str]) -> np.ndarray:
        """float32 [N, len(FEATURES)]: the features of each (descriptions[n], smiles[n]) pair. Each unique
        description is parsed once; each unique molecule is parsed once and checked only against the rules
        its descriptions state (flags memoized on this object across calls)."""
        if len(descriptions) != len(smiles):
            raise ValueError(f"class_check: {len(descriptions)} descriptions for {len(smiles)} molecules")
        n_rules = len(RULES) + 1
        out = np.zeros((len(descriptions), len(FEATURES)), dtype=np.float32)
        if not len(descriptions):
            return out
        texts, text_of = np.unique(np.asarray([str(d) for d in descriptions], dtype=object), return_inverse=True)
        mols, mol_of = np.unique(np.asarray([str(m) for m in smiles], dtype=object), return_inverse=True)
        stated, parents = self._descriptions(list(texts))
        flags = np.zeros((len(mols), n_rules), dtype=bool)
        valid = np.zeros(len(mols), dtype=bool)
        order = np.argsort(mol_of, kind="stable")
        bounds = np.searchsorted(mol_of[order], np.arange(len(mols) + 1))
        for m, name in enumerate(mols):
            pairs = order[bounds[m]:bounds[m + 1]]
            needed = stated[text_of[pairs]].any(0)
            found = self._molecule_rows(name, needed, pairs, text_of[pairs], parents, out)
            if found is None:
                for row in pairs:  # unparsable: every stated check fails, parents included
                    if parents[text_of[row]]:
                        out[row, -3:] = (0.0, -1.0, -1.0)
            else:
                flags[m], valid[m] = found, True
        step = 20_000
        for start in range(0, len(descriptions), step):
            t, m = text_of[start:start + step], mol_of[start:start + step]
            s, ok = stated[t], flags[m] & valid[m, None]
            out[start:start + step, :n_rules] = np.where(s, np.where(ok, 1.0, -1.0), 0.0)
            n_stated, n_ok = s.sum(1), (s & ok).sum(1)
            out[start:start + step, n_rules] = n_ok / np.maximum(n_stated, 1)
            out[start:start + step, n_rules + 1] = n_stated - n_ok
        return out

    # scoring
    def score_pairs(self, descriptions: Sequence[str], smiles: Sequence[str]) -> np.ndarray:
        """float32 [N]: the logit that smiles[n] is what descriptions[n] describes (higher = better)."""
        return self.features(descriptions, smiles) @ self.weights.astype(np.float32) + np.float32(self.bias)

    def fit(self, descriptions: Sequence[str], candidates: Sequence[Sequence[str]], positives: Sequence[int],
            log: Callable[[str], Any] = print) -> dict:
        """Learn the feature weights on training groups: ``candidates[i]`` the first stage's top-K SMILES for
        ``descriptions[i]``, ``positives[i]`` the index of the true molecule among them (the rest, up to
        ``negatives`` of the first ranked, are hard negatives). Returns the record for the results file."""
        from sklearn.linear_model import LogisticRegression

        if not len(descriptions) == len(candidates) == len(positives):
            raise ValueError(f"class_check: fit needs one candidate list and one positive per description, got "
                             f"{len(descriptions)} descriptions, {len(candidates)} candidate lists, {len(positives)} positives")
        texts, mols, labels = [], [], []
        for i, (text, group, positive) in enumerate(zip(descriptions, candidates, positives)):
            if not 0 <= int(positive) < len(group):
                raise ValueError(f"class_check: positive index {positive} of group {i} is outside its {len(group)} candidates")
            wrong = [s for j, s in enumerate(group) if j != positive][:self.negatives]
            texts.extend([text] * (1 + len(wrong)))
            mols.extend([group[positive], *wrong])
            labels.extend([1] + [0] * len(wrong))
        y = np.asarray(labels)
        if y.min() == y.max():
            raise ValueError("class_check: fit needs groups with at least one negative candidate")
        x = self.features(texts, mols)
        model = LogisticRegression(C=self.C, max_iter=2000)
        model.fit(x, y)
        self.weights = model.coef_[0].astype(np.float64)
        self.bias = float(model.intercept_[0])
        self.fitted = True
        used = np.abs(x).sum(0) > 0
        record = {
            "reranker": "class_check", "rules_version": RULES_VERSION, "n_groups": len(descriptions),
            "n_pairs": int(len(y)), "n_positive": int(y.sum()),
            "options": {"C": self.C, "negatives": self.negatives, "parents": self.parents, "radius": self.radius},
            "bias": round(self.bias, 4),
            "weights": {name: round(float(w), 4) for name, w, u in zip(FEATURES, self.weights, used) if u},
            "features_seen": int(used.sum()), "features": len(FEATURES),
        }
        log(f"class_check: fitted on {len(descriptions)} groups ({len(y)} pairs, {int(used.sum())} of "
            f"{len(FEATURES)} features seen)")
        return record

    # state
    def save(self, folder: Path) -> None:
        """The fitted state as ``folder/class_check.json`` (written atomically)."""
        state = {"rules_version": RULES_VERSION, "features": FEATURES, "weights": self.weights.tolist(),
                 "bias": self.bias, "fitted": self.fitted,
                 "options": {"C": self.C, "negatives": self.negatives, "parents": self.parents, "radius": self.radius}}
        Path(folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(folder) / STATE_FILE, json.dumps(state, indent=1))

    def load(self, folder: Path) -> None:
        """The state :meth:`save` wrote; a state of other rules or features is refused with one line."""
        path = Path(folder) / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"class_check: cannot read its fitted state {path}: {exc}") from None
        if state.get("rules_version") != RULES_VERSION or state.get("features") != FEATURES:
            raise ValueError(f"class_check: the fitted state {path} is of other rules (version "
                             f"{state.get('rules_version')!r}, this code {RULES_VERSION!r}): fit it again")
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.bias = float(state["bias"])
        self.fitted = bool(state.get("fitted", True))
        options = state.get("options", {})
        self.parents = bool(options.get("parents", self.parents))
        self.radius = int(options.get("radius", self.radius))
