"""Built-in scorers (``zoo.plugins.scorers``): scores beside the learned cosine similarity, fused by
:mod:`zoo.fusion` (``[[scorers]]`` in a composition, ``zoo ensemble --scorer NAME``). The ``run`` scorer (a
finished run's similarity) needs core internals: core registers it (:mod:`zoo.core_components`)."""

from zoo.registry import hookimpl


@hookimpl
def register_scorers(register):
    register(
        "structure_match",
        "zoo.plugins.scorers.structure_match:StructureMatchScorer",
        description="chemical names in the description (OPSIN) -> max Morgan Tanimoto to the candidate",
    )
    register(
        "relation_match",
        "zoo.plugins.scorers.relation_match:RelationMatchScorer",
        description="'conjugate base/acid, enantiomer, tautomer of NAME' (OPSIN) -> 1 where the candidate is that molecule",
    )
