"""An example molzoo plugin: ``descriptor_mlp``, an MLP over RDKit 2D descriptors."""

__version__ = "0.1.0"
