"""``zoo sweep``: train several compositions over several seeds under one protocol, then rank them.

``zoo sweep aman tfidf_fp text2mol_mlp --seeds 3 --set train.epochs=6`` plans one run per
(composition, seed) in ``OUT_ROOT/NAME-SPECHASH-sSEED`` (the folder naming of ``zoo ablate``, so
the two commands share finished runs when given the same ``--out-root``: an ablation's reference
is then a sweep's row), trains the
missing ones seed-major (seed 0 of every composition first, so a partial sweep is already a
one-seed leaderboard), and prints the leaderboard of exactly those runs.

The base ``--set`` list applies to every composition, component swaps (``text_encoder=minilm``)
first, as in ``zoo ablate``; an assignment to a slot option (``molecule_encoder.hidden_dim=128``,
or a combined slot's part option ``text_encoder.tfidf.svd_dim=256``) applies only to compositions
whose component in that slot (after the swaps) has the option, and is an error when none has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zoo.ablate import AblationConfig, PlannedRun, applicable_sets, plan_runs
from zoo.errors import ComponentError, SpecError
from zoo.spec import load_spec

__all__ = ["plan_sweep"]


def plan_sweep(compositions: Sequence[str], seeds: int, sets: Sequence[str] = (),
               out_root: str | Path = "runs/sweep", folds: int = 0) -> list[PlannedRun]:
    """Every (composition, seed) run of a sweep, seed-major; with ``folds`` = K, K cross-validation runs each
    (:func:`zoo.ablate.plan_runs`)."""
    names = list(dict.fromkeys(compositions))
    if not names:
        raise SpecError("sweep: name at least one composition (see `zoo list composition`)")
    configs: list[AblationConfig] = []
    applied: set[str] = set()
    for name in names:
        base = load_spec(name)
        try:
            swaps, options, _ = applicable_sets(base, sets)
            kept = swaps + options
            spec = base.with_overrides(kept).resolve() if kept else base.resolve()
        except ComponentError as exc:
            raise SpecError(f"sweep composition {name!r}: {exc}") from None
        applied.update(kept)
        configs.append(AblationConfig(label=name, settings=(), assignments=tuple(kept), spec=spec, is_reference=False,
                                      not_applied=tuple(s for s in sets if s not in kept)))
    never = [s for s in sets if s not in applied]
    if never:
        raise SpecError(f"--set {', '.join(never)}: none of the swept compositions has a component with that option")
    return plan_runs(configs, seeds, out_root, folds)
