"""Hook implementations: the module named by the ``molzoo`` entry point.

Keep this module light: molzoo imports it to list components (``zoo list``, ``zoo --help``),
so torch, torch_geometric and RDKit are imported only by the factory's module
(:mod:`molzoo_descriptors.encoder`), when a component is created.
"""

from __future__ import annotations

from zoo.api import hookimpl


@hookimpl
def register_molecule_encoders(register):
    register(
        "descriptor_mlp",
        "molzoo_descriptors.encoder:DescriptorMLP",  # lazy: imported on creation
        description="An MLP with LayerNorm over ~200 RDKit 2D descriptors (no graph; stereo-blind).",
    )
