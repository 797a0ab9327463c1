"""Built-in retrieval losses (``zoo.plugins.loss``): the registration hookimpl here (no torch import),
the components in ``triplet`` and ``infonce``."""

from zoo.registry import hookimpl


@hookimpl
def register_losses(register):
    register(
        "triplet",
        "zoo.plugins.loss.triplet:TripletLoss",
        description="Triplet margin loss with in-batch negative mining (hard, semi-hard or all) (AMAN).",
    )
    register(
        "infonce",
        "zoo.plugins.loss.infonce:InfoNCELoss",
        description="Symmetric CLIP-style InfoNCE over in-batch cosine similarities with a learnable temperature.",
    )
