"""Built-in aligners (registration only: no torch import here)."""

from zoo.registry import hookimpl


@hookimpl
def register_aligners(register):
    register(
        "none",
        "zoo.plugins.adversarial:IdentityAligner",
        description="No alignment: embeddings pass through unchanged, no auxiliary loss.",
        config={},
    )
    register(
        "adversarial",
        "zoo.plugins.adversarial:AdversarialAligner",
        description="Modality discriminator trained against the encoders (gradient reversal or min-max) (AMAN).",
        config={
            "weight": 0.1,
            "hidden_dim": 256,
            "dropout": 0.1,
            "grl_lambda": 1.0,
            "mode": "grl",  # "grl" | "minmax"
        },
    )
