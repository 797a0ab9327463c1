"""``zoo run`` of an ensemble composition: train its members, then fuse them with its scorers.

An ensemble composition (:class:`zoo.spec.EnsembleSpec`) names member compositions and scorers.
Each member trains at the ensemble's seed into its usual run folder, ``MEMBERS_ROOT/NAME-HASH-sSEED``
(the folders of ``zoo run``, ``zoo sweep`` and ``zoo ablate``, so a member finished by any of them
is reused, never retrained), then :func:`zoo.fuse_runs.build_ensemble` fuses the members' similarities
and the scorers with weights fitted on the held-out pairs only, into ``--out`` (default
``MEMBERS_ROOT/NAME-HASH-sSEED``, beside its members). The results file is an ensemble's, named after
the composition (``requested_spec_hash``: the composition's hash, the folder's HASH); its seeds make one
leaderboard row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zoo.ablate import AblationConfig, PlannedRun
from zoo.errors import RunError
from zoo.fuse_runs import build_ensemble
from zoo.fusion import scorer_member
from zoo.launch import LauncherChoice, failure_report, launch_runs
from zoo.rerank import reranker_member
from zoo.runs import default_out_dir, run_folder_name
from zoo.spec import EnsembleSpec

__all__ = ["run_ensemble_composition", "default_ensemble_out"]


def default_ensemble_out(spec: EnsembleSpec, root: str | Path = "runs") -> Path:
    """``ROOT/NAME-HASH-sSEED``: where ``zoo run`` writes an ensemble composition without ``--out`` (ROOT: its members' root)."""
    return Path(root) / run_folder_name(spec.name, spec.hash(), spec.seed)


def run_ensemble_composition(spec: EnsembleSpec, *, out: str | Path | None = None, members_root: str | Path = "runs",
                             data_dir: str | None = None, strict: bool = False, fresh: bool = False, progress: bool = True,
                             log: Callable[[str], None] = print, launcher: "LauncherChoice | None" = None,
                             retries: int = 1) -> Path:
    """Train the members missing under ``members_root`` (finished ones are reused) through ``launcher``
    (default ``local``: one after another in this process), fuse them with the scorers (``fresh``: refit
    a finished fusion; members are never retrained by it). Returns the results path."""
    spec = spec.resolve()
    scorers = [scorer_member(s.name, dict(s.options)) for s in spec.scorers]  # a bad scorer fails before training
    rerankers = [reranker_member(r.name, dict(r.options)) for r in spec.rerankers]
    planned = [PlannedRun(AblationConfig(label=m.name, settings=(), assignments=(), spec=m, is_reference=False),
                          spec.seed, m, default_out_dir(m, members_root)) for m in spec.member_specs()]
    log(f"ensemble {spec.name} seed {spec.seed}: members " + ", ".join(str(p.out_dir) for p in planned)
        + "".join(f" + scorer {s.label}" for s in scorers) + "".join(f" >> reranker {r.label}" for r in rerankers))
    outcome = launch_runs(planned, launcher or LauncherChoice(), retries=retries, data_dir=data_dir, strict=strict,
                          progress=progress, log=log)
    if outcome.failed:
        raise RunError(f"ensemble {spec.name}: members did not finish, nothing fused.\n{failure_report(outcome.failed).rstrip()}")
    return build_ensemble([p.out_dir for p in planned], scorers, out=out or default_ensemble_out(spec, members_root), fresh=fresh,
                          data_dir=data_dir, composition=spec, rerankers=rerankers, rerank_k=spec.rerank_k, log=log)
