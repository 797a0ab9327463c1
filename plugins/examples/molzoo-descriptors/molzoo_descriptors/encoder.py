"""``DescriptorMLP``: RDKit 2D descriptors of a molecule through an MLP.

Featurization: a fixed list of RDKit 2D descriptor names (:data:`DESCRIPTOR_NAMES`, the
``rdkit.Chem.Descriptors.descList`` of RDKit 2024-2026), computed per molecule; a descriptor
that fails, is missing from an older RDKit, or is nan/inf becomes 0, then every value is
squashed with a signed ``log1p`` so molecular weights and fragment counts share a scale.
Stereo-blind by nature: stereoisomers (R/S, E/Z) have identical 2D descriptors, hence one
embedding (``NumAtomStereoCenters`` counts stereocentres, not their configuration).
Bump :data:`FEATURIZER` when this changes: it keys molzoo's on-disk feature cache.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Data

from zoo.api import Encoded, parse_smiles

FEATURIZER = "rdkit_descriptors/1"

#: The descriptors, in order. Fixed here (not read from RDKit) so the feature layout does not
#: change when RDKit adds descriptors.
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "MaxAbsEStateIndex", "MaxEStateIndex", "MinAbsEStateIndex", "MinEStateIndex", "qed", "SPS",
    "MolWt", "HeavyAtomMolWt", "ExactMolWt", "NumValenceElectrons", "NumRadicalElectrons",
    "MaxPartialCharge", "MinPartialCharge", "MaxAbsPartialCharge", "MinAbsPartialCharge",
    "FpDensityMorgan1", "FpDensityMorgan2", "FpDensityMorgan3", "BCUT2D_MWHI", "BCUT2D_MWLOW",
    "BCUT2D_CHGHI", "BCUT2D_CHGLO", "BCUT2D_LOGPHI", "BCUT2D_LOGPLOW", "BCUT2D_MRHI",
    "BCUT2D_MRLOW", "AvgIpc", "BalabanJ", "BertzCT", "Chi0", "Chi0n", "Chi0v", "Chi1", "Chi1n",
    "Chi1v", "Chi2n", "Chi2v", "Chi3n", "Chi3v", "Chi4n", "Chi4v", "HallKierAlpha", "Ipc",
    "Kappa1", "Kappa2", "Kappa3", "LabuteASA", "PEOE_VSA1", "PEOE_VSA10", "PEOE_VSA11",
    "PEOE_VSA12", "PEOE_VSA13", "PEOE_VSA14", "PEOE_VSA2", "PEOE_VSA3", "PEOE_VSA4",
    "PEOE_VSA5", "PEOE_VSA6", "PEOE_VSA7", "PEOE_VSA8", "PEOE_VSA9", "SMR_VSA1", "SMR_VSA10",
    "SMR_VSA2", "SMR_VSA3", "SMR_VSA4", "SMR_VSA5", "SMR_VSA6", "SMR_VSA7", "SMR_VSA8",
    "SMR_VSA9", "SlogP_VSA1", "SlogP_VSA10", "SlogP_VSA11", "SlogP_VSA12", "SlogP_VSA2",
    "SlogP_VSA3", "SlogP_VSA4", "SlogP_VSA5", "SlogP_VSA6", "SlogP_VSA7", "SlogP_VSA8",
    "SlogP_VSA9", "TPSA", "EState_VSA1", "EState_VSA10", "EState_VSA11", "EState_VSA2",
    "EState_VSA3", "EState_VSA4", "EState_VSA5", "EState_VSA6", "EState_VSA7", "EState_VSA8",
    "EState_VSA9", "VSA_EState1", "VSA_EState10", "VSA_EState2", "VSA_EState3", "VSA_EState4",
    "VSA_EState5", "VSA_EState6", "VSA_EState7", "VSA_EState8", "VSA_EState9", "FractionCSP3",
    "HeavyAtomCount", "NHOHCount", "NOCount", "NumAliphaticCarbocycles",
    "NumAliphaticHeterocycles", "NumAliphaticRings", "NumAmideBonds", "NumAromaticCarbocycles",
    "NumAromaticHeterocycles", "NumAromaticRings", "NumAtomStereoCenters", "NumBridgeheadAtoms",
    "NumHAcceptors", "NumHDonors", "NumHeteroatoms", "NumHeterocycles", "NumRotatableBonds",
    "NumSaturatedCarbocycles", "NumSaturatedHeterocycles", "NumSaturatedRings", "NumSpiroAtoms",
    "NumUnspecifiedAtomStereoCenters", "Phi", "RingCount", "MolLogP", "MolMR", "fr_Al_COO",
    "fr_Al_OH", "fr_Al_OH_noTert", "fr_ArN", "fr_Ar_COO", "fr_Ar_N", "fr_Ar_NH", "fr_Ar_OH",
    "fr_COO", "fr_COO2", "fr_C_O", "fr_C_O_noCOO", "fr_C_S", "fr_HOCCN", "fr_Imine", "fr_NH0",
    "fr_NH1", "fr_NH2", "fr_N_O", "fr_Ndealkylation1", "fr_Ndealkylation2", "fr_Nhpyrrole",
    "fr_SH", "fr_aldehyde", "fr_alkyl_carbamate", "fr_alkyl_halide", "fr_allylic_oxid",
    "fr_amide", "fr_amidine", "fr_aniline", "fr_aryl_methyl", "fr_azide", "fr_azo",
    "fr_barbitur", "fr_benzene", "fr_benzodiazepine", "fr_bicyclic", "fr_diazo",
    "fr_dihydropyridine", "fr_epoxide", "fr_ester", "fr_ether", "fr_furan", "fr_guanido",
    "fr_halogen", "fr_hdrzine", "fr_hdrzone", "fr_imidazole", "fr_imide", "fr_isocyan",
    "fr_isothiocyan", "fr_ketone", "fr_ketone_Topliss", "fr_lactam", "fr_lactone", "fr_methoxy",
    "fr_morpholine", "fr_nitrile", "fr_nitro", "fr_nitro_arom", "fr_nitro_arom_nonortho",
    "fr_nitroso", "fr_oxazole", "fr_oxime", "fr_para_hydroxylation", "fr_phenol",
    "fr_phenol_noOrthoHbond", "fr_phos_acid", "fr_phos_ester", "fr_piperdine", "fr_piperzine",
    "fr_priamide", "fr_prisulfonamd", "fr_pyridine", "fr_quatN", "fr_sulfide", "fr_sulfonamd",
    "fr_sulfone", "fr_term_acetylene", "fr_tetrazole", "fr_thiazole", "fr_thiocyan",
    "fr_thiophene", "fr_unbrch_alkane", "fr_urea",
)
NUM_DESCRIPTORS = len(DESCRIPTOR_NAMES)

_functions: dict | None = None


def _descriptor_functions() -> dict:
    global _functions
    if _functions is None:
        from rdkit.Chem import Descriptors

        _functions = dict(Descriptors.descList)
    return _functions


def descriptor_vector(smiles: str) -> list[float]:
    """The squashed descriptors of one molecule (:class:`zoo.api.SmilesError` if unparsable)."""
    mol = parse_smiles(smiles)
    functions = _descriptor_functions()
    values = []
    for name in DESCRIPTOR_NAMES:
        function = functions.get(name)
        try:
            value = float(function(mol)) if function is not None else 0.0
        except Exception:  # noqa: BLE001 - some descriptors fail on exotic molecules
            value = 0.0
        if not math.isfinite(value):
            value = 0.0
        values.append(math.copysign(math.log1p(abs(value)), value))
    return values


class DescriptorMLP(nn.Module):
    """Molecule encoder: ``batch.desc [B, D]`` -> LayerNorm -> MLP -> ``[B, embed_dim]``.

    Implements :class:`zoo.api.MoleculeEncoder`.
    """

    featurizer = FEATURIZER

    def __init__(self, *, embed_dim: int, hidden_dim: int = 256, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        if layers < 1:
            raise ValueError(f"descriptor_mlp needs layers >= 1, got {layers}")
        self.dim = embed_dim
        blocks: list[nn.Module] = [nn.LayerNorm(NUM_DESCRIPTORS)]
        width = NUM_DESCRIPTORS
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_dim
        blocks.append(nn.Linear(width, embed_dim))
        self.mlp = nn.Sequential(*blocks)

    def featurize(self, smiles: str) -> Data:
        """One molecule as ``Data(desc=[1, D])``; a PyG ``Batch`` of these has ``desc [B, D]``."""
        return Data(desc=torch.tensor([descriptor_vector(smiles)], dtype=torch.float32))

    def forward(self, batch) -> Encoded:
        return Encoded(embedding=self.mlp(batch.desc.float()))
