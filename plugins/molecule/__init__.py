"""Built-in molecule encoders (``zoo.plugins.molecule``): the registration hookimpl here (no torch
import), the components in ``graph_transformer``, ``gnn_baselines`` (over ``graph_base``) and ``fingerprint_mlp``."""

from zoo.registry import hookimpl


@hookimpl
def register_molecule_encoders(register):
    register(
        "graph_transformer",
        "zoo.plugins.molecule.graph_transformer:GraphTransformer",
        description="Edge-aware graph transformer over RDKit atom/bond graphs with gated attention readout (AMAN).",
    )
    register(
        "gcn",
        "zoo.plugins.molecule.gnn_baselines:GCN",
        description="Text2Mol-style GCN over RDKit atom graphs with mean+max pooling (baseline).",
    )
    register(
        "gine",
        "zoo.plugins.molecule.gnn_baselines:GINE",
        description="Edge-aware GIN (GINEConv with bond features, residual LayerNorm) with sum+mean pooling.",
    )
    register(
        "fingerprint_mlp",
        "zoo.plugins.molecule.fingerprint_mlp:FingerprintMLP",
        description="MLP over log1p-scaled Morgan count fingerprints (Text2Mol MLP baseline); no graph.",
        # extra: more RDKit fingerprints appended to the Morgan counts: maccs, atompair, torsion, feature_morgan;
        # pretrain_epochs > 0: self-supervised pretraining on the unlabeled training molecules (two masked views)
    )
