"""Tiny synthetic ChEBI-20-shaped data and tiny runs, shared by the end-to-end tests.

``write_tiny_chebi`` writes 80 pairs (ring x substituent x linker); ``run_tiny`` trains a tiny
``aman`` (or another composition, via ``--set``) on it through the CLI. The fixtures
``tiny_env`` (function scope) and ``tiny_run`` (one finished run per test session) live in
``conftest.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

from zoo.cli import main

RINGS = {
    "benzene": "c1ccc(cc1){}",
    "cyclohexane": "C1CCC(CC1){}",
    "pyridine": "c1cc(ccn1){}",
    "thiophene": "c1ccc(s1){}",
    "furan": "c1ccc(o1){}",
}
GROUPS = {
    "hydroxy": "O",
    "amino": "N",
    "chloro": "Cl",
    "carboxylic acid": "C(=O)O",
    "nitro": "[N+](=O)[O-]",
    "methyl": "C",
    "bromo": "Br",
    "sulfanyl": "S",
}
LINKERS = {"attached directly to the ring": "", "attached through a methylene linker": "C"}

#: a tiny ``aman``: its text slot is the SciBERT part alone (MiniLM offline) with aman's settings for it — the
#: TF-IDF and OPSIN-name parts have their own tests (test_text_encoders.py, test_chem_names.py)
TINY = [
    "text_encoder=scibert", "text_encoder.pooling=attention", "text_encoder.adapter_layers=0", "text_encoder.max_length=48",
    "text_encoder.lexical_dim=16", "text_encoder.lexical_buckets=1024", "embed_dim=64",
    "molecule_encoder.hidden_dim=64", "molecule_encoder.layers=2", "molecule_encoder.heads=4",
    "aligner.hidden_dim=32", "train.batch_size=16", "train.lr=0.002", "train.warmup_epochs=1",
    "train.holdout_fraction=0.15", "train.eval_batch_size=64",
]


def tiny_pairs() -> list[tuple[str, str, str]]:
    """80 synthetic ChEBI-20-like ``(CID, SMILES, description)`` pairs (ring x substituent x linker), shuffled."""
    pairs = []
    for cid, ((ring, ring_smi), (group, group_smi), (linker, linker_smi)) in enumerate(
        itertools.product(RINGS.items(), GROUPS.items(), LINKERS.items()), start=1000
    ):
        text = f"The molecule is a {ring} derivative carrying a {group} substituent {linker}."
        pairs.append((str(cid), ring_smi.format(linker_smi + group_smi), text))
    random.Random(0).shuffle(pairs)
    return pairs


def write_tiny_chebi(root: Path) -> Path:
    """80 synthetic molecule-description pairs (:func:`tiny_pairs`): 64 validation, 16 test,
    plus 6 description-less train molecules, in the layout of the shared offline data."""
    pairs = tiny_pairs()
    header = "CID\tSMILES\tdescription\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "validation.txt").write_text(header + "".join("\t".join(p) + "\n" for p in pairs[:64]))
    (root / "test.txt").write_text(header + "".join("\t".join(p) + "\n" for p in pairs[64:]))
    extra = ["CCCCCC", "CCCCCCO", "CC(C)C", "OCCO", "NCCN", "CC(=O)C"]
    (root / "train_molecules.tsv").write_text("CID\tSMILES\n" + "".join(f"{i}\t{s}\n" for i, s in enumerate(extra, 1)))
    return root


def run_tiny(data_dir: Path, out: Path, *extra: str, composition: str = "aman", base: list[str] = TINY) -> dict:
    """``zoo run COMPOSITION`` on the tiny data with the ``base`` overrides (``TINY`` fits aman) and ``extra``."""
    args = ["run", composition, "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for item in [*base, *extra]:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())


def shared_chebi20() -> Path | None:
    """The real ChEBI-20 folder for tests and benchmarks that need it: ``$ZOO_DATA_DIR``, else ``shared/data/chebi20``
    beside the repository (where CI lays it), when it holds the test pairs and the train molecules; else None."""
    for folder in (os.environ.get("ZOO_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared/data/chebi20"):
        if folder and (Path(folder) / "test.txt").is_file() and (Path(folder) / "train_molecules.tsv").is_file():
            return Path(folder)
    return None
