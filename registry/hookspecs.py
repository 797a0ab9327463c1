"""Hook specifications: the contract between molzoo and its plugins.

Every hook receives a ``register`` callback. Call it once per component::

    @hookimpl
    def register_molecule_encoders(register):
        register(
            "my_gnn",
            "my_package.encoders:MyGNN",       # callable or lazy "module:attr" string
            description="A three-layer GIN over RDKit graphs.",
            config={"hidden_dim": 256, "layers": 3},
        )

``config`` lists every option the factory accepts with its default; specs are validated
against it. Factories are imported only when a component is created, so keep heavy imports
(torch, transformers, torch_geometric) inside the factory's module, never at the top of the
module that holds the hook implementations.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("molzoo")
hookimpl = pluggy.HookimplMarker("molzoo")


@hookspec
def register_text_encoders(register):
    """Register text encoders.

    A text encoder factory is called with the spec's options plus ``embed_dim`` and returns a
    ``torch.nn.Module`` implementing :class:`zoo.protocols.TextEncoder`: texts in, ``[B, d]``
    embeddings out (optionally token states and a mask).
    """


@hookspec
def register_molecule_encoders(register):
    """Register molecule encoders.

    A molecule encoder factory is called with the spec's options plus ``embed_dim`` and returns a
    ``torch.nn.Module`` implementing :class:`zoo.protocols.MoleculeEncoder`: a batch of featurized
    molecules in, ``[B, d]`` embeddings out. It names the featurizer it needs in ``featurizer``.
    """


@hookspec
def register_aligners(register):
    """Register alignment modules.

    An aligner factory is called with the spec's options plus ``embed_dim`` and returns a
    ``torch.nn.Module`` implementing :class:`zoo.protocols.Aligner`: it maps the two embeddings
    to aligned embeddings and a dict of auxiliary losses and logged metrics.
    """


@hookspec
def register_losses(register):
    """Register retrieval losses: ``(text_emb [B, d], mol_emb [B, d]) -> scalar``."""


@hookspec
def register_compositions(register):
    """Register compositions.

    The factory returns a mapping (the spec as read from TOML) or a path to a TOML file; it
    names one component per slot (``text_encoder``, ``molecule_encoder``, ``aligner``,
    ``loss``) plus ``train`` settings.
    """


@hookspec
def register_tasks(register):
    """Register evaluation tasks (datasets with a split and gallery protocol), e.g. ``chebi20``."""
