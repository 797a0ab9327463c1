"""Built-in molecule encoders (registration only: no torch import here)."""

from zoo.registry import hookimpl


@hookimpl
def register_molecule_encoders(register):
    register(
        "graph_transformer",
        "zoo.plugins.graph_transformer:GraphTransformer",
        description="Edge-aware graph transformer over RDKit atom/bond graphs with gated attention readout (AMAN).",
        config={
            "hidden_dim": 256,
            "layers": 4,
            "heads": 8,
            "dropout": 0.1,
            "readout": "attention",  # "attention" | "mean" | "attention+mean"
            "ffn_mult": 2,
        },
    )
