"""Built-in aligners (``zoo.plugins.align``): the registration hookimpl here (no torch import), the
components in ``adversarial`` (also the identity aligner) and ``cross_attention``."""

from zoo.registry import hookimpl


@hookimpl
def register_aligners(register):
    register(
        "none",
        "zoo.plugins.align.adversarial:IdentityAligner",
        description="No alignment: embeddings pass through unchanged, no auxiliary loss.",
    )
    register(
        "adversarial",
        "zoo.plugins.align.adversarial:AdversarialAligner",
        description="Modality discriminator trained against the encoders (gradient reversal or min-max) (AMAN).",
    )
    register(
        "cross_attention",
        "zoo.plugins.align.cross_attention:CrossAttentionAligner",
        description="Bidirectional token<->atom co-attention with a text-molecule matching loss; retrieval stays dual-encoder.",
    )
