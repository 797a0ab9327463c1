"""Built-in scorers (``zoo.plugins.scorers``): scores beside the learned cosine similarity, fused by
:mod:`zoo.fusion` (``[[scorers]]`` in a composition, ``zoo ensemble --scorer NAME``)."""

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
    register(
        "run",
        "zoo.fusion:RunScorer",  # core code (loads a finished run); imported only when used
        description="another finished run's learned cosine similarity (option run = RUN folder)",
    )
