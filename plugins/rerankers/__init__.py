"""Built-in re-rankers (``zoo.plugins.rerankers``): second stages over a first stage's top k candidates
(``[[rerankers]]`` of a composition or an ensemble composition; :mod:`zoo.rerank` applies and weighs them)."""

from zoo.registry import hookimpl


@hookimpl
def register_rerankers(register):
    register(
        "cross_encoder",
        "zoo.plugins.rerankers.cross_encoder:CrossEncoderReranker",
        description="co-attention over the description's tokens (frozen MiniLM) and the molecule's Morgan substructures, "
                    "trained on the training pairs with the first stage's hard negatives",
    )
    register(
        "class_check",
        "zoo.plugins.rerankers.class_check:ClassCheckReranker",
        description="the classes ('is a steroid ester', 'a monocarboxylic acid anion') and parents ('derives from X', OPSIN) "
                    "a description states, checked on the candidate (RDKit rules), weights by logistic regression",
    )
