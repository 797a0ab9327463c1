"""Built-in molecule encoders (``zoo.plugins.molecule``): the registration hookimpl here (no torch
import), the components in ``graph_transformer``, ``gnn_baselines`` (over ``graph_base``) and ``fingerprint_mlp``."""

from zoo.registry import hookimpl


@hookimpl
def register_molecule_encoders(register):
    register(
        "graph_transformer",
        "zoo.plugins.molecule.graph_transformer:GraphTransformer",
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
    register(
        "gcn",
        "zoo.plugins.molecule.gnn_baselines:GCN",
        description="Text2Mol-style GCN over RDKit atom graphs with mean+max pooling (baseline).",
        config={"hidden_dim": 256, "layers": 3, "dropout": 0.1},
    )
    register(
        "gine",
        "zoo.plugins.molecule.gnn_baselines:GINE",
        description="Edge-aware GIN (GINEConv with bond features, residual LayerNorm) with sum+mean pooling.",
        config={"hidden_dim": 256, "layers": 4, "dropout": 0.1},
    )
    register(
        "fingerprint_mlp",
        "zoo.plugins.molecule.fingerprint_mlp:FingerprintMLP",
        description="MLP over log1p-scaled Morgan count fingerprints (Text2Mol MLP baseline); no graph.",
        # extra: more RDKit fingerprints appended to the Morgan counts: maccs, atompair, torsion, feature_morgan;
        # pretrain_epochs > 0: self-supervised pretraining on the unlabeled training molecules (two masked views)
        config={"radius": 2, "n_bits": 2048, "hidden_dim": 512, "layers": 2, "dropout": 0.2, "extra": [],
                "pretrain_epochs": 0, "pretrain_mask": 0.2},
    )
