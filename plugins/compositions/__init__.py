"""Built-in compositions (``zoo.plugins.compositions``): the TOML specs beside this file."""

from pathlib import Path

from zoo.registry import hookimpl

SPEC_DIR = Path(__file__).parent
#: What ``best`` resolves to: the strongest composition measured (docs/results.md, "best").
BEST = "chem_reranked"


def _spec_file(name: str):
    def factory() -> Path:
        return SPEC_DIR / f"{name}.toml"

    factory.__name__ = f"{name}_spec"
    return factory


@hookimpl
def register_compositions(register):
    register(
        "aman",
        _spec_file("aman"),
        description="AMAN reference: scibert + graph_transformer + adversarial + triplet",
    )
    register(
        "text2mol_mlp",
        _spec_file("text2mol_mlp"),
        description="Text2Mol MLP baseline: scibert + fingerprint_mlp + none + infonce",
    )
    register(
        "text2mol_gcn",
        _spec_file("text2mol_gcn"),
        description="Text2Mol GCN baseline: scibert + gcn + none + infonce",
    )
    register(
        "text2mol_attention",
        _spec_file("text2mol_attention"),
        description="Text2Mol attention, bidirectional: scibert + gcn + cross_attention + infonce",
    )
    register(
        "gt_infonce",
        _spec_file("gt_infonce"),
        description="CLIP-style dual encoder: scibert + graph_transformer + none + infonce",
    )
    register(
        "tfidf_fp",
        _spec_file("tfidf_fp"),
        description="lexical baseline: char n-gram TF-IDF + fingerprint_mlp + none + infonce (minutes on a CPU)",
    )
    register(
        "tfidf_names",
        _spec_file("tfidf_names"),
        description="tfidf_fp fused with the structure_match scorer (OPSIN-parsed names), weights fitted on held-out pairs",
    )
    register(
        "tfidf_chem",
        _spec_file("tfidf_chem"),
        description="tfidf_fp whose text side also reads OPSIN-parsed chemical names (combined tfidf + chem_names)",
    )
    register(
        "names_ensemble",
        _spec_file("names_ensemble"),
        description="ensemble: tfidf_fp + tfidf_chem + aman fused with the structure_match scorer, weights fitted on held-out pairs",
    )
    register(
        "chem_ensemble",
        _spec_file("chem_ensemble"),
        description="ensemble: names_ensemble + the relation_match scorer (stated conjugate acid/base, enantiomer, tautomer)",
    )
    register(
        "chem_reranked",
        _spec_file("chem_reranked"),
        description="ensemble: chem_ensemble with its top 100 re-ranked by the class_check re-ranker (stated classes and parents)",
    )
    register("best", _spec_file(BEST), description=f"alias of {BEST}: the strongest composition measured")
