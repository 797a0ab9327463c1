"""Built-in aligners (``zoo.plugins.align``): the registration hookimpl here (no torch import), the
components in ``adversarial`` (also the identity aligner) and ``cross_attention``."""

from zoo.registry import hookimpl


@hookimpl
def register_aligners(register):
    register(
        "none",
        "zoo.plugins.align.adversarial:IdentityAligner",
        description="No alignment: embeddings pass through unchanged, no auxiliary loss.",
        config={},
    )
    register(
        "adversarial",
        "zoo.plugins.align.adversarial:AdversarialAligner",
        description="Modality discriminator trained against the encoders (gradient reversal or min-max) (AMAN).",
        config={
            "weight": 0.1,
            "hidden_dim": 256,
            "dropout": 0.1,
            "grl_lambda": 1.0,
            "mode": "grl",  # "grl" | "minmax"
        },
    )
    register(
        "cross_attention",
        "zoo.plugins.align.cross_attention:CrossAttentionAligner",
        description="Bidirectional token<->atom co-attention with a text-molecule matching loss; retrieval stays dual-encoder.",
        config={
            "hidden_dim": 128,
            "heads": 4,
            "layers": 1,
            "dropout": 0.1,
            "weight": 1.0,
            "negatives": "hard",  # "hard" | "random"
            "fuse": True,
            "max_tokens": 64,
            "max_atoms": 64,
        },
    )
