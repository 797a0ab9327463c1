"""Chemical names in descriptions, parsed to structures, and a symbolic structure-match score.

ChEBI-20 descriptions name molecules in IUPAC-style nomenclature ("... that is methyl
4-hydroxybenzoate ...", "It derives from a hydride of a pregnane"). Here:

* :func:`candidate_spans` (:mod:`zoo.spans`, re-exported by :mod:`zoo.api` and here): every run of
  1..``max_tokens`` whitespace tokens of a description that could be a name: edge punctuation and
  unbalanced edge brackets stripped, no sentence or clause break (a token ending in ``.,;:!?``)
  inside, no stop-word or number anywhere ("phosphate and diphosphate" is two names, not one),
  holding a letter.
* :func:`description_structures`: all descriptions' spans, de-duplicated, parsed by OPSIN in one
  batch (:func:`zoo.api.parse_names`, cached on disk); per description the parsed spans are
  taken longest first (characters, then position), a span inside an already taken span is
  dropped, as is a repeated structure, up to ``max_structures``. Deterministic.
* :func:`structure_match_scores`: per description and candidate molecule, the highest Tanimoto
  similarity (Morgan radius 2, 2048 bits, chirality on) between the description's structures and
  the candidate, 0 when nothing parsed. Candidate fingerprints are cached on disk.

Shared by the ``structure_match`` scorer and the ``chem_names`` text encoder; written against
:mod:`zoo.api` only, like any plugin (its caches live under ``cache_root()/chem_names/``, as when it was ``zoo.chemnames``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.api import (
    MAX_TOKENS,
    IntegrityError,
    SmilesError,
    Span,
    cache_root,
    candidate_spans,
    clean_span,
    content_hash,
    load_sealed_npz,
    locked,
    map_in_processes,
    parse_names,
    parse_smiles,
    save_sealed_npz,
)

__all__ = [
    "FINGERPRINT_VERSION", "MAX_STRUCTURES", "MAX_TOKENS", "MIN_CACHED_MOLECULES", "Span", "candidate_bits", "candidate_spans",
    "clean_span", "description_structures", "morgan_bit_matrix", "morgan_count_matrix", "select_structures", "structure_match_scores",
]

#: bump when the candidate fingerprints change: it keys their disk cache
FINGERPRINT_VERSION = "1"
MAX_STRUCTURES = 4


def select_structures(parsed: Sequence[tuple[Span, str]], max_structures: int = MAX_STRUCTURES) -> list[str]:
    """From one description's ``(span, smiles)`` parses: longest span first (characters, then position), skipping
    spans inside a taken span and repeated structures, at most ``max_structures`` SMILES."""
    taken: list[Span] = []
    smiles_out: list[str] = []
    for span, smiles in sorted(parsed, key=lambda p: (-len(p[0].text), p[0].start, p[0].end)):
        if len(smiles_out) >= max_structures:
            break
        if any(t.start <= span.start and span.end <= t.end for t in taken):
            continue
        taken.append(span)
        if smiles not in smiles_out:
            smiles_out.append(smiles)
    return smiles_out


def description_structures(texts: Sequence[str], *, max_structures: int = MAX_STRUCTURES, max_tokens: int = MAX_TOKENS,
                           cache=None, workers: int | None = None) -> list[list[str]]:
    """Per text, the canonical SMILES of the chemical names found in it (see the module docs).
    All texts' spans are parsed by OPSIN together (cached names excluded; one JVM per worker)."""
    spans = [candidate_spans(text, max_tokens) for text in texts]
    parses = parse_names((s.text for per_text in spans for s in per_text), cache=cache, workers=workers)
    return [select_structures([(s, parses[s.text]) for s in per_text if parses[s.text] is not None], max_structures)
            for per_text in spans]


# -- fingerprints ---------------------------------------------------------------------------------
@functools.cache
def _generator(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits, includeChirality=True)


def _mol(smiles: str):
    try:
        return parse_smiles(smiles)
    except SmilesError:
        return None


def morgan_count_matrix(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Folded Morgan count fingerprints (chirality on) ``[N, n_bits]`` uint8 (counts capped at 255);
    a row of zeros where RDKit cannot parse the SMILES."""
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = _mol(s)
        if mol is not None:
            out[i] = np.minimum(_generator(radius, n_bits).GetCountFingerprintAsNumPy(mol), 255)
    return out


def morgan_bit_matrix(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048, workers: int | None = 1) -> np.ndarray:
    """Folded Morgan bit fingerprints (chirality on) ``[N, n_bits]`` bool; zeros where RDKit cannot parse.
    ``workers`` processes (None: :func:`zoo.api.default_workers`), the same matrix as one."""
    out = np.zeros((len(smiles), n_bits), dtype=bool)
    rows = map_in_processes(functools.partial(_packed_bits, radius=radius, n_bits=n_bits), list(smiles), workers)
    for i, row in enumerate(rows):
        if row is not None:
            out[i] = np.unpackbits(row, count=n_bits).astype(bool)
    return out


#: fewer molecules than this (one: a search query) are fingerprinted without the disk cache: cheaper than a file
#: per query, and a server's queries write no file
MIN_CACHED_MOLECULES = 2


def _packed_bits(smiles: str, radius: int, n_bits: int) -> np.ndarray | None:
    mol = _mol(smiles)
    return None if mol is None else np.packbits(_generator(radius, n_bits).GetFingerprintAsNumPy(mol).astype(bool))


def candidate_bits(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048, root: Path | None = None,
                   workers: int | None = None) -> np.ndarray:
    """:func:`morgan_bit_matrix` of a candidate gallery (over ``workers`` processes, default :func:`zoo.api.default_workers`),
    cached on disk (packed) by the SMILES list; processes asking at once wait for the one computing it
    (a single molecule, :data:`MIN_CACHED_MOLECULES`, is not cached)."""
    if len(smiles) < MIN_CACHED_MOLECULES:
        return morgan_bit_matrix(smiles, radius, n_bits, 1)
    key = content_hash("candidate-morgan-bits", list(smiles), radius, n_bits, FINGERPRINT_VERSION)
    path = Path(root or cache_root()) / "chem_names" / "fingerprints" / f"{key}.npz"
    with locked(path):
        if path.exists():
            try:
                packed = load_sealed_npz(path)["bits"]  # checked against its content hash
                if packed.shape == (len(smiles), (n_bits + 7) // 8):
                    return np.unpackbits(packed, axis=1, count=n_bits).astype(bool)
            except (IntegrityError, KeyError) as exc:  # damaged: recompute and rewrite
                warnings.warn(f"fingerprint cache {path} is unreadable ({exc}); recomputing")
        bits = morgan_bit_matrix(smiles, radius, n_bits, workers)
        save_sealed_npz(path, {"bits": np.packbits(bits, axis=1)})
        return bits


# -- the symbolic scorer ----------------------------------------------------------------------------
def structure_match_scores(query_structures: Sequence[Sequence[str]], candidates: Sequence[str] | np.ndarray, *,
                           radius: int = 2, n_bits: int = 2048, max_chunk_floats: int = 2**25) -> np.ndarray:
    """``[Q, C]`` float32: for query ``q`` and candidate ``c``, the highest Tanimoto similarity between
    ``c`` and any SMILES in ``query_structures[q]`` (Morgan bits, chirality on); 0 where a query has no
    structure, and where neither fingerprint has a bit.

    ``candidates`` is a list of SMILES (fingerprinted through the disk cache, :func:`candidate_bits`)
    or a ``[C, n_bits]`` bool matrix. Each distinct structure is scored once against every candidate:
    the intersection counts are a sparse (structure bits) x dense (candidate bits) product, i.e. a
    ``torch`` ``embedding_bag`` sum, exact in float32; candidates go in column chunks of at most
    ``max_chunk_floats`` intermediate values.
    """
    import torch
    import torch.nn.functional as F

    bits = candidates if isinstance(candidates, np.ndarray) else candidate_bits(candidates, radius, n_bits)
    if bits.ndim != 2 or bits.shape[1] != n_bits:
        raise ValueError(f"candidate fingerprints must be [C, {n_bits}], got {bits.shape}")
    n_q, n_c = len(query_structures), bits.shape[0]
    scores = np.zeros((n_q, n_c), dtype=np.float32)
    unique = sorted({s for structures in query_structures for s in structures})
    if not unique or not n_c:
        return scores
    row = {s: i for i, s in enumerate(unique)}
    # level k: the queries with more than k structures and the row of their k-th one
    levels = []
    for k in range(max(len(structures) for structures in query_structures)):
        pairs = [(q, row[structures[k]]) for q, structures in enumerate(query_structures) if len(structures) > k]
        levels.append(tuple(torch.tensor(column, dtype=torch.long) for column in zip(*pairs)))
    on = [np.flatnonzero(b) for b in morgan_bit_matrix(unique, radius, n_bits)]
    flat = torch.from_numpy(np.concatenate(on).astype(np.int64))
    offsets = torch.from_numpy(np.cumsum([0] + [len(b) for b in on[:-1]]).astype(np.int64))
    query_sizes = torch.tensor([len(b) for b in on], dtype=torch.float32)[:, None]
    bits_t = np.ascontiguousarray(bits.T)  # [n_bits, C]: a chunk of candidates is a slice of its columns
    cand_sizes = torch.from_numpy(bits.sum(1, dtype=np.float32))
    step = max(1, min(n_c, max_chunk_floats // len(unique)))
    for c0 in range(0, n_c, step):
        cand_t = torch.from_numpy(bits_t[:, c0:c0 + step]).to(torch.float32)  # [n_bits, c], contiguous
        inter = F.embedding_bag(flat, cand_t, offsets, mode="sum")  # [S, c]: exact integer counts
        del cand_t
        union = (query_sizes + cand_sizes[c0:c0 + step]).sub_(inter).clamp_(min=1)  # 0 only where inter is 0 too
        tanimoto = inter.div_(union)
        del union
        best = torch.zeros(n_q, tanimoto.shape[1])
        for k, (queries, rows) in enumerate(levels):
            chosen = tanimoto.index_select(0, rows)
            best[queries] = chosen if k == 0 else torch.maximum(best.index_select(0, queries), chosen)
        scores[:, c0:c0 + step] = best.numpy()
    return scores
