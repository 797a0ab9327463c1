"""Models that live outside the zoo, scored by their embeddings on a task (``zoo eval --embeddings``).

A model that is not a zoo composition (a published checkpoint, a colleague's embeddings) is scored from
its vectors: one per description and one per gallery molecule, each with its id, in an ``.npz`` file::

    text_ids   [N]      ids of the descriptions (the task's pair ids)
    text       [N, d]   their embeddings
    molecule_ids [M]    ids of the gallery molecules
    molecule   [M, d]   their embeddings

(``zoo eval RUN --save-embeddings DIR``'s ``SPLIT-all.npz`` is read too: its ``text_candidates`` and
``molecule_candidates`` with their ids.) The ids must be exactly the task's descriptions and gallery
molecules: a missing or an extra id is a one-line :class:`~zoo.errors.DataError` naming how many and a
few. Scores are cosine similarities (rows are L2-normalised; rows of unit length are used as they are),
ranked with the zoo's tie rule and metrics (:mod:`zoo.evals.ranking`) on the task's split and
galleries, exactly as ``zoo eval`` ranks a run's own embeddings. The results file names the model
``external:NAME`` (its leaderboard row, beside the zoo's compositions on the same data).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.cache import content_hash, sha256_file
from zoo.errors import DataError, RunError
from zoo.evals.ranking import Ranks, rank_of_true, retrieval_metrics
from zoo.evals.results import build_results, write_results
from zoo.runs import results_path
from zoo.spec import _coerce
from zoo.tasks import get_task, holdout_seed, load_data, parse_galleries, protocol_note, resolve_task_options, task_block

#: ``spec.format`` of an external model's results file
EXTERNAL_SPEC_FORMAT = "molzoo.external/1"
PREFIX = "external:"
#: the keys of an embeddings file, and of ``zoo eval --save-embeddings``' ``SPLIT-all.npz``
KEYS = ("text_ids", "text", "molecule_ids", "molecule")
ZOO_EXPORT_KEYS = ("text_candidate_cids", "text_candidates", "molecule_candidate_cids", "molecule_candidates")
SHOWN = 5


def read_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """An embeddings ``.npz`` file's four arrays (:data:`KEYS`), checked for shape; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--embeddings {path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"--embeddings {path}: not a readable .npz file ({exc})") from None
    if all(k in arrays for k in ZOO_EXPORT_KEYS) and not all(k in arrays for k in KEYS):
        arrays = {new: arrays[old] for new, old in zip(KEYS, ZOO_EXPORT_KEYS)}
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"--embeddings {path}: no array {', '.join(map(repr, missing))}; an embeddings file holds "
                        f"{', '.join(KEYS)} (ids and [rows, dim] vectors)")
    return {k: arrays[k] for k in KEYS}


def _matrix(ids: Any, vectors: Any, side: str, where: str) -> tuple[list[str], np.ndarray]:
    ids = [str(i) for i in np.asarray(ids).reshape(-1)]
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids) or not np.issubdtype(vectors.dtype, np.number):
        raise DataError(f"{where}: {side} embeddings must be a numeric [{len(ids)}, dim] array (one row per id), "
                        f"got shape {tuple(vectors.shape)}")
    vectors = vectors.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise DataError(f"{where}: {side} embeddings hold NaN or infinite values")
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if repeated:
        raise DataError(f"{where}: {side} id{'s' if len(repeated) > 1 else ''} {', '.join(repeated[:SHOWN])} "
                        f"appear{'' if len(repeated) > 1 else 's'} more than once")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError(f"{where}: {side} embedding of id {ids[int(np.argmax(norms[:, 0] == 0))]} is all zeros")
    off = np.abs(norms - 1.0) > 1e-4  # unit rows are used as they are (a zoo run's own exports stay bit-identical)
    vectors = np.where(off, vectors / norms, vectors).astype(np.float32)
    return ids, vectors


def _check_cover(given: Sequence[str], expected: Sequence[str], side: str, what: str, where: str) -> list[int]:
    """Row of each ``expected`` id in ``given``: the ids must match exactly (one line naming the differences)."""
    given_set, expected_set = set(given), set(expected)
    missing = [i for i in expected if i not in given_set]
    extra = [i for i in given if i not in expected_set]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the task's {what} missing ({', '.join(missing[:SHOWN])}{', …' if len(missing) > SHOWN else ''})")
        if extra:
            parts.append(f"{len(extra)} not in the task ({', '.join(extra[:SHOWN])}{', …' if len(extra) > SHOWN else ''})")
        raise DataError(f"{where}: the {side} ids must be exactly the task's {len(expected)} {what}: " + "; ".join(parts))
    row = {i: r for r, i in enumerate(given)}
    return [row[i] for i in expected]


def _score(text: np.ndarray, molecule: np.ndarray, pairs_text: list[int], pairs_mol: list[int], galleries, chunk_size: int,
           log: Callable[[str], None], label: str) -> tuple[dict, dict]:
    """Metrics per gallery and direction, as :func:`zoo.evaluate.evaluate_pairs` computes them from embeddings."""
    import torch

    text_all, mol_all = torch.from_numpy(text), torch.from_numpy(molecule)
    text_q, mol_q = text_all[torch.tensor(pairs_text)], mol_all[torch.tensor(pairs_mol)]
    device = torch.device("cpu")
    scores, counts = {}, {}
    n = len(pairs_text)
    for parsed in galleries:
        name = str(parsed)
        if parsed.name == "all":
            t2m = rank_of_true(text_q, mol_all, torch.tensor(pairs_mol), chunk_size=chunk_size, device=device)
            m2t = rank_of_true(mol_q, text_all, torch.tensor(pairs_text), chunk_size=chunk_size, device=device)
            counts[name] = {"text_to_molecule_candidates": len(mol_all), "molecule_to_text_candidates": len(text_all), "queries": n}
        else:  # test, inbatch:N: the scored pairs themselves, in blocks
            size = parsed.block or n
            t2m_parts, m2t_parts = [], []
            for start in range(0, n, size):
                block = slice(start, start + size)
                true = torch.arange(len(text_q[block]))
                t2m_parts.append(rank_of_true(text_q[block], mol_q[block], true, chunk_size=chunk_size, device=device))
                m2t_parts.append(rank_of_true(mol_q[block], text_q[block], true, chunk_size=chunk_size, device=device))
            t2m, m2t = Ranks.cat(t2m_parts), Ranks.cat(m2t_parts)
            counts[name] = ({"block_size": size, "queries": n} if parsed.is_inbatch else
                            {"text_to_molecule_candidates": n, "molecule_to_text_candidates": n, "queries": n})
        scores[name] = {"text_to_molecule": retrieval_metrics(t2m), "molecule_to_text": retrieval_metrics(m2t)}
        a, b = scores[name]["text_to_molecule"], scores[name]["molecule_to_text"]
        log(f"{label} gallery={name}: text->molecule MRR={a['mrr']:.4f} H@1={a['hits@1']:.3f} H@10={a['hits@10']:.3f} "
            f"mean rank={a['mean_rank']:.1f} ties={int(a['queries_with_ties'])} | molecule->text MRR={b['mrr']:.4f} "
            f"H@1={b['hits@1']:.3f} (expected over random tie-breaks)")
    return scores, counts


def score_embeddings(embeddings: str | Path | Mapping[str, Any], task: str, *, name: str | None = None,
                     options: Mapping[str, Any] | None = None, data_dir: str | Path | None = None, split: str = "test",
                     galleries: Sequence[str] = ("all", "test"), holdout_fraction: float = 0.1, chunk_size: int = 1024,
                     out: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Score an external model's embeddings (an ``.npz`` path, or a mapping with :data:`KEYS`) on ``task``'s
    ``split`` and ``galleries`` with the zoo's tie rule and metrics; ``options``: the task's (``[task]``).
    Writes the results file to ``out`` when given (atomically; ``zoo leaderboard`` shows it as
    ``external:NAME``) and returns the results."""
    started = time.time()
    if split not in ("test", "heldout"):
        raise RunError(f"--split {split!r}: choose from test, heldout")
    source = str(embeddings) if not isinstance(embeddings, Mapping) else "embeddings"
    name = name or (Path(embeddings).name.split(".")[0] if not isinstance(embeddings, Mapping) else None)
    if not name:
        raise RunError("name the external model (--name NAME): its leaderboard row is external:NAME")
    the_task = get_task(task)  # an unknown task: close matches
    parsed = parse_galleries(the_task, list(galleries), "--gallery")
    options = resolve_task_options(task, dict(options or {}), _coerce)  # unknown option, wrong type: before any work
    arrays = read_embeddings(embeddings) if not isinstance(embeddings, Mapping) else dict(embeddings)
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{source}: no {', '.join(missing)}; give {', '.join(KEYS)}")
    text_ids, text = _matrix(arrays["text_ids"], arrays["text"], "text", source)
    mol_ids, molecule = _matrix(arrays["molecule_ids"], arrays["molecule"], "molecule", source)
    if text.shape[1] != molecule.shape[1]:
        raise DataError(f"{source}: text embeddings have {text.shape[1]} dimensions, molecule embeddings {molecule.shape[1]}: "
                        "they must share one space")
    data = load_data(task, options, holdout_fraction=holdout_fraction, data_dir=data_dir)
    text_rows = _check_cover(text_ids, [p.cid for p in data.descriptions], "text", "descriptions", source)
    mol_rows = _check_cover(mol_ids, [m.cid for m in data.gallery], "molecule", "gallery molecules", source)
    text, molecule = text[text_rows], molecule[mol_rows]  # in the task's order
    text_index = {p.cid: i for i, p in enumerate(data.descriptions)}
    mol_index = {m.cid: i for i, m in enumerate(data.gallery)}
    pairs = data.test if split == "test" else data.select
    scores, counts = _score(text, molecule, [text_index[p.cid] for p in pairs], [mol_index[p.cid] for p in pairs], parsed,
                            chunk_size, log, split)
    file_hash = sha256_file(embeddings) if not isinstance(embeddings, Mapping) else content_hash(text.tobytes(), molecule.tobytes())
    spec = {"format": EXTERNAL_SPEC_FORMAT, "name": f"{PREFIX}{name}",
            "description": f"external model {name}: embeddings {source}",
            "eval": {"task": task, "galleries": [str(g) for g in parsed]},
            "train": {"holdout_fraction": holdout_fraction},
            **({"task": dict(options)} if options else {})}
    results = build_results(
        spec=spec, spec_hash=content_hash(EXTERNAL_SPEC_FORMAT, name, file_hash, spec)[:12],
        components=[{"external": name, "embeddings": source, "sha256": file_hash, "dim": int(text.shape[1])}],
        task=task_block(task, data, split, counts, options),
        scores=scores, timings={"total_s": time.time() - started}, seeds={"holdout_seed": holdout_seed(task, options)},
        notes=[protocol_note(the_task, data.protocol),
               f"external model {name}: cosine similarity of the given embeddings, ranked with the zoo's tie rule"],
        extra={"external": {"name": name, "embeddings": source, "sha256": file_hash}},
    )
    if out is not None:
        write_results(Path(out), results)
        log(f"results: {out} (external:{name})")
    return results


def default_out(name: str, root: str | Path = "runs") -> Path:
    """Where ``zoo eval --embeddings`` writes without ``--out``: ``runs/external-NAME/results.json``."""
    return results_path(Path(root) / f"external-{name}")
