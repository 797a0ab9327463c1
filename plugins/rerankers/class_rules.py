"""Class phrases of ChEBI descriptions and the structure checks they state (the ``class_check`` re-ranker's rules).

* :func:`class_phrases`: the class phrases of a text (``It is a/an ...`` and ``The molecule is a/an ...``
  sentences, cut before their explanation and split at ``, `` and `` and ``; relations such as "conjugate
  base of" are left to the ``relation_match`` scorer).
* :data:`RULES`: a curated table of the most frequent ChEBI-20 class phrases (counted on the validation
  descriptions), each a regular expression over a class phrase and a structure check (RDKit SMARTS
  counts, net charge, ring, sugar-ring and residue counts). :func:`stated_rules` gives the rules a text
  states; :func:`check_rules` / :func:`molecule_flags` evaluate them on a molecule (:class:`Facts`, whose
  counts are computed on first use). A text that states no ion class states :data:`NEUTRAL` (net charge 0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: bump when a rule, a phrase or a feature changes: it is stored with a fitted state
RULES_VERSION = "1"


# -- class phrases -----------------------------------------------------------------------------------------
_SENTENCE = re.compile(r"(?<=[.])\s+(?=[A-Z(])")
_CLASS_SENTENCE = re.compile(r"^(?:It|The molecule|This compound) is (?:an?|the) (.+?)\.?$")
_NOT_CLASS = re.compile(r"^(?:conjugate (?:acid|base)|enantiomer|tautomer|diastereomer)\b")
#: where a class phrase ends and its explanation starts ("a steroid ester that is ...")
_CLAUSE = re.compile(r"\s(?:that|in which|which|where|whose|obtained|resulting|arising|having|with|consisting|derived|"
                     r"bearing|formed|isolated|found|carrying|substituted|composed|containing|comprising|used|"
                     r"produced|in|from|of which|attached|linked|joined)\s")
LIST_BREAK = re.compile(r",\s+(?:and\s+|or\s+)?|\s+(?:and|or)\s+")
ARTICLE = re.compile(r"^(?:an?|the|one)\s+")
_MEMBER = re.compile(r"^(?:member|members|class) of (?:the (?:class|family) of )?(?:an?\s+|the\s+)?")


def class_phrases(text: str) -> list[str]:
    """The class phrases ``text`` states, lower case, in order (see the module docs)."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text.strip()):
        match = _CLASS_SENTENCE.match(sentence.strip())
        if match is None:
            continue
        body = _CLAUSE.split(" " + match.group(1) + " ", maxsplit=1)[0].strip()
        if _NOT_CLASS.match(body):
            continue
        for part in LIST_BREAK.split(body):
            part = _MEMBER.sub("", ARTICLE.sub("", part.strip())).strip(" .;").lower()
            if part and not _NOT_CLASS.match(part):
                out.append(part)
    return out


# -- structure facts of a molecule, computed once per molecule and only when a rule asks -------------------
class Facts:
    """What the rules look at in one molecule: ``mol`` is its largest fragment; counts and matches are
    computed on first use and memoized (a molecule is checked only against the rules its descriptions state)."""

    def __init__(self, mol: Any, fragments: Sequence[Any], charge: int) -> None:
        self.mol, self.fragments, self.charge = mol, fragments, charge
        self._memo: dict[str, Any] = {}

    def _get(self, key: str, compute: Callable[[], Any]) -> Any:
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = compute()
        return found

    def count(self, smarts: str) -> int:
        """Unique matches of ``smarts`` in the largest fragment (at most 50)."""
        return self._get("#" + smarts, lambda: len(self.mol.GetSubstructMatches(_pattern(smarts), uniquify=True, maxMatches=50)))

    def has(self, smarts: str) -> bool:
        found = self._memo.get("#" + smarts)
        return found > 0 if found is not None else self._get("?" + smarts, lambda: self.mol.HasSubstructMatch(_pattern(smarts)))

    @property
    def n_frags(self) -> int:
        return len(self.fragments)

    @property
    def frag_charge(self) -> int:
        """Net formal charge of the largest fragment."""
        return sum(self._charges)

    @property
    def pos(self) -> int:
        return sum(c > 0 for c in self._charges)

    @property
    def neg(self) -> int:
        return sum(c < 0 for c in self._charges)

    @property
    def n_c(self) -> int:
        return self._get("n_c", lambda: sum(self._atom(i).GetAtomicNum() == 6 for i in range(self.mol.GetNumAtoms())))

    def _atom(self, i: int) -> Any:
        return self.mol.GetAtomWithIdx(i)  # faster than iterating mol.GetAtoms()

    @property
    def _charges(self) -> list[int]:
        return self._get("charges", lambda: [self._atom(i).GetFormalCharge() for i in range(self.mol.GetNumAtoms())])

    @property
    def rings(self) -> int:
        return self.mol.GetRingInfo().NumRings()

    @property
    def frag_smiles(self) -> tuple[str, ...]:
        from rdkit import Chem

        return self._get("frag_smiles", lambda: tuple(Chem.MolToSmiles(f) for f in self.fragments))

    @property
    def sugars(self) -> int:
        """5/6 rings of one O and sp3 carbons, >= 2 of the carbons bearing an exocyclic O or N."""
        return self._get("sugars", self._sugar_rings)[0]

    @property
    def amino_sugars(self) -> int:
        return self._get("sugars", self._sugar_rings)[1]

    def _sugar_rings(self) -> tuple[int, int]:
        mol, sugars, amino = self.mol, 0, 0
        for ring in mol.GetRingInfo().AtomRings():
            if len(ring) not in (5, 6):
                continue
            atoms = [mol.GetAtomWithIdx(i) for i in ring]
            if sum(a.GetAtomicNum() == 8 for a in atoms) != 1 or any(a.GetAtomicNum() not in (6, 8) or a.GetIsAromatic() for a in atoms):
                continue
            ring_set, substituted, nitrogen = set(ring), 0, False
            for atom in atoms:
                if atom.GetAtomicNum() != 6:
                    continue
                for bond in atom.GetBonds():
                    other = bond.GetOtherAtom(atom)
                    if other.GetIdx() not in ring_set and other.GetAtomicNum() in (7, 8) and bond.GetBondTypeAsDouble() == 1.0:
                        substituted += 1
                        nitrogen |= other.GetAtomicNum() == 7
                        break
            if substituted >= 2:
                sugars += 1
                amino += nitrogen
        return sugars, amino


_PATTERNS: dict[str, Any] = {}


def _pattern(smarts: str) -> Any:
    pattern = _PATTERNS.get(smarts)
    if pattern is None:
        from rdkit import Chem

        pattern = Chem.MolFromSmarts(smarts)
        if pattern is None:
            raise ValueError(f"class_check: invalid SMARTS in a rule: {smarts!r}")
        _PATTERNS[smarts] = pattern
    return pattern


def facts_of(smiles: str) -> Facts | None:
    """The :class:`Facts` of ``smiles``, or ``None`` where RDKit cannot parse it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles.replace("\\\\", "\\")) if smiles else None
    except Exception:  # noqa: BLE001 - RDKit raises odd types on odd input
        mol = None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    fragments = Chem.GetMolFrags(mol, asMols=True) if "." in smiles else (mol,)
    main = max(fragments, key=lambda m: m.GetNumHeavyAtoms())
    return Facts(main, fragments, Chem.GetFormalCharge(mol))


# -- the rule table --------------------------------------------------------------------------------------
Check = Callable[[Facts], bool]


def has(smarts: str) -> Check:
    return lambda f: f.has(smarts)


def count(smarts: str, n: int | tuple[int, int]) -> Check:
    low, high = (n, n) if isinstance(n, int) else n
    return lambda f: low <= f.count(smarts) <= high


def both(*checks: Check) -> Check:
    return lambda f: all(check(f) for check in checks)


def carbons(low: int, high: int = 10_000, minus: int = 0) -> Check:
    return lambda f: low <= f.n_c - minus <= high


COOH = "[CX3](=O)[OX2H1,OX1-]"
ESTER = "[#6][CX3](=O)[OX2][#6]"
ALCOHOL_OH = "[CX4][OX2H1]"
PHENOL_OH = "c[OX2H1]"
COA = "SCCNC(=O)CCNC(=O)C(O)C(C)(C)COP"
#: cyclopenta[a]phenanthrene, any bond orders; atoms in the steroid numbering C1..C17 (C10 after C9)
STEROID = ("[#6;R]1~[#6;R]~[#6;R]~[#6;R]~[#6;R]2~[#6;R]~[#6;R]~[#6;R]3~[#6;R](~[#6;R]~2~1)~[#6;R]~[#6;R]~[#6;R]1~[#6;R]~3"
           "~[#6;R]~[#6;R]~[#6;R]~1")


def steroid_at(position: int, substituent: str) -> str:
    """The steroid skeleton SMARTS with ``substituent`` on the atom at steroid ``position`` (1-17: :data:`STEROID`
    lists its atoms in the steroid numbering)."""
    atoms = re.findall(r"\[#6;R\][^\[]*", STEROID)
    atoms[position - 1] = atoms[position - 1].replace("[#6;R]", f"[#6;R]({substituent})", 1)
    return "".join(atoms)


FLAVONE = "O=c1cc(-c2ccccc2)oc2ccccc12"
FLAVANONE = "O=C1CC(c2ccccc2)Oc2ccccc12"
ISOFLAVONE = "O=c1c(-c2ccccc2)coc2ccccc12"
CHALCONE = "O=C(C=Cc1ccccc1)c1ccccc1"
FLAVONOID = "c1ccc2c(c1)~[#6]~[#6]~[#6](~c3ccccc3)~[#8]~2"  # 2-aryl chromane/chromene/chromone
GLYCOSIDIC = "[OX2;R][CX4;R][OX2;!R][#6]"
N_SUBSTITUTED = {"mono": 1, "di": 2, "tri": 3, "tetra": 4, "penta": 5, "hexa": 6, "hepta": 7, "octa": 8}


@dataclass(frozen=True)
class Rule:
    """A class phrase (regular expression, searched in a lower-case class phrase) and its structure check."""

    name: str
    phrase: str
    check: Check


def _rules() -> list[Rule]:
    r = Rule
    charge_rules = [
        r("anion", r"(?<!di)(?<!tri)(?<!tetra)(?<!penta)(?<!hexa)anion\b|\banionic\b|\bconjugate base\b", lambda f: f.charge < 0),
        r("dianion", r"dianion\b", lambda f: f.charge == -2),
        r("trianion", r"trianion\b", lambda f: f.charge == -3),
        r("tetraanion", r"tetra-?anion\b|\(4-\)$", lambda f: f.charge == -4),
        r("cation", r"(?<!di)cation\b|\bammonium ion\b|\biminium\b|\bcationic\b", lambda f: f.charge > 0),
        r("zwitterion", r"zwitterion|\bbetaine\b", lambda f: f.pos > 0 and f.neg > 0 and f.frag_charge == 0),
        r("oxoanion", r"oxoanion\b", lambda f: f.charge < 0 and f.has("[O-]")),
        r("salt", r"\bsalt\b|hydrochloride|hydrobromide|\bhydrate\b|\bsolvate\b", lambda f: f.n_frags > 1),
        r("sodium salt", r"sodium salt", lambda f: any(s in ("[Na+]", "[Na]") for s in f.frag_smiles)),
        r("potassium salt", r"potassium salt", lambda f: any(s in ("[K+]", "[K]") for s in f.frag_smiles)),
        r("hydrochloride", r"hydrochloride", lambda f: any(s in ("Cl", "[Cl-]") for s in f.frag_smiles)),
        r("hydrate", r"\bhydrate\b", lambda f: "O" in f.frag_smiles),
    ]
    acids = [
        r("monocarboxylic acid", r"monocarboxylic acid(?! amide| ester)", count(COOH, 1)),
        r("dicarboxylic acid", r"dicarboxylic acid(?! monoamide| amide| ester)", count(COOH, 2)),
        r("tricarboxylic acid", r"tricarboxylic acid", count(COOH, 3)),
        r("carboxylic acid", r"(?<!mono)(?<!di)(?<!tri)carboxylic acid(?! amide| ester)|\bacid anion\b", has(COOH)),
        r("oxo carboxylic acid", r"\boxo (?:mono|di)?carboxylic acid|oxo fatty acid|oxo monocarboxylic", both(has(COOH), has("[#6][CX3](=O)[#6]"))),
        r("hydroxy carboxylic acid", r"hydroxy (?:mono|di)?carboxylic acid|hydroxy fatty acid|hydroxy.*fatty acid", both(has(COOH), has(ALCOHOL_OH))),
        r("fatty acid", r"fatty acid(?! ester| methyl| amide| ascaroside)|fatty acid anion", both(has(COOH), has("[CH2X4,CH3X4][CH2X4][CH2X4]"))),
        r("long-chain fatty acid", r"(?<!very )long-chain fatty acid", both(has(COOH), carbons(13, 22))),
        r("medium-chain fatty acid", r"medium-chain fatty acid", both(has(COOH), carbons(6, 12))),
        r("very long-chain fatty acid", r"very long-chain fatty acid", both(has(COOH), carbons(23))),
        r("unsaturated fatty acid", r"unsaturated fatty acid", both(has(COOH), has("[CX3;!R]=[CX3;!R]"))),
        r("amino acid", r"amino acid(?! amide| ester| derivative)", both(has(COOH), has("[NX3,NX4+]"))),
        r("alpha-amino acid", r"alpha-amino acid(?! amide| ester)|alpha-amino-acid", has("[NX3,NX4+;!$(NC=O)][CX4][CX3](=O)[OX2H1,OX1-]")),
        r("amino acid amide", r"amino acid amide", has("[NX3,NX4+][CX4][CX3](=O)[NX3]")),
        r("alpha-amino acid ester", r"amino acid ester", has("[NX3,NX4+][CX4][CX3](=O)[OX2][#6]")),
        r("N-acylglycine", r"n-acylglycin", has("[#6]C(=O)[NH1][CH2]C(=O)[OX2H1,OX1-]")),
        r("acylcarnitine", r"acylcarnitine", has("C[N+](C)(C)CC(CC(=O)[O-,OH])OC(=O)")),
        r("hydroxamic acid", r"hydroxamic acid", has("C(=O)N[OX2H1,OX1-]")),
        r("benzoic acid", r"benzoic acids?\b", has("c" + COOH)),
        r("sulfonic acid", r"sulfonic acid|sulfonate", has("[#6]S(=O)(=O)[OX2H1,OX1-]")),
        r("organophosphate", r"organophosphate|phosphate ester|phosphoric ester|\bphosphate\b", has("[#6]O[PX4](=O)")),
        r("organosulfate", r"organosulfate|aryl sulfate|sulfate ester|oligosaccharide sulfate", has("[#6]OS(=O)(=O)[OX2H1,OX1-]")),
    ]
    coa = [
        r("acyl-CoA", r"acyl-coa|\bcoa\b", has(COA)),
        r("unsaturated acyl-CoA", r"unsaturated fatty acyl-coa|enoyl-coa", both(has(COA), has("[CX3;!R]=[CX3;!R]"))),
        r("3-hydroxy acyl-CoA", r"3-hydroxy.*acyl-coa", both(has(COA), has("SC(=O)[CH2][CX4][OX2H1]"))),
        r("3-oxo acyl-CoA", r"3-oxo.*acyl-coa", both(has(COA), has("SC(=O)[CH2]C(=O)[#6]"))),
        r("long-chain acyl-CoA", r"(?<!very )long-chain fatty acyl-coa", both(has(COA), carbons(13, 22, minus=21))),
        r("medium-chain acyl-CoA", r"medium-chain fatty acyl-coa", both(has(COA), carbons(6, 12, minus=21))),
        r("very long-chain acyl-CoA", r"(?:very|ultra) long-chain fatty acyl-coa|ultra-long-chain", both(has(COA), carbons(23, minus=21))),
    ]
    esters = [
        r("carboxylic ester", r"(?<!phosphate )(?<!phosphoric )(?<!sulfate )(?<!carbamate )(?<!phosphonate )\besters?\b", has(ESTER)),
        r("acetate ester", r"acetate ester", has("[CH3]C(=O)O[#6]")),
        r("methyl ester", r"methyl ester", has("[#6]C(=O)O[CH3]")),
        r("benzoate ester", r"benzoate ester", has("c1ccccc1C(=O)O[#6]")),
        r("enoate ester", r"enoate ester", has("C=CC(=O)O[#6]")),
        r("fatty acid ester", r"(?:fatty acid|decanoate|dodecanoate|tetradecanoate|hexadecanoate|octadecanoate) ester", has("[CH2][CH2]C(=O)O[#6]")),
        r("carbamate ester", r"carbamate ester|\bcarbamate", has("[NX3]C(=O)O[#6]")),
        r("lactone", r"lactone|olide\b", has("[#6][C;R](=O)[O;R][#6]")),
        r("gamma-lactone", r"gamma-lactone|butan-4-olide", has("O=[C;r5][O;r5]")),
        r("delta-lactone", r"delta-lactone|pentan-5-olide", has("O=[C;r6][O;r6]")),
        r("macrolide", r"macrolide", has("O=[C;r{12-}][O;r{12-}]")),
        r("diacylglycerol", r"diacyl-sn-glycerol|diacylglycerol|diglyceride", has("[#6]C(=O)OCC(OC(=O)[#6])C[OX2]")),
        r("triacylglycerol", r"triacylglycerol|triglyceride", has("[#6]C(=O)OCC(OC(=O)[#6])COC(=O)[#6]")),
        r("glycerophospholipid", r"glycero-3-phospho|phosphatidyl|glycerophospho|phosphatidic acid|lysophosph", has("OCC(O)COP(=O)")),
        r("phosphocholine", r"phosphocholine", has("P(=O)OCC[N+](C)(C)C")),
        r("phosphoethanolamine", r"phosphoethanolamine", has("P(=O)OCC[NX3,NX4+;!$(N(C)(C)C)]")),
    ]
    groups = [
        r("primary alcohol", r"primary alcohol", has("[#6][CX4H2][OX2H1]")),
        r("secondary alcohol", r"secondary alcohol", has("[#6][CX4H1]([#6])[OX2H1]")),
        r("tertiary alcohol", r"tertiary alcohol", has("[#6][CX4]([#6])([#6])[OX2H1]")),
        r("allylic alcohol", r"allylic alcohol", has("C=C[CX4][OX2H1]")),
        r("diol", r"\bdiol\b", count("[#6;!$(C=O)][OX2H1]", 2)),
        r("triol", r"\btriol\b", count("[#6;!$(C=O)][OX2H1]", 3)),
        r("tetrol", r"\btetrol\b", count("[#6;!$(C=O)][OX2H1]", 4)),
        r("polyol", r"\bpolyol\b", count("[#6;!$(C=O)][OX2H1]", (2, 50))),
        r("phenols", r"\bphenols?\b|\bnaphthols?\b", has(PHENOL_OH)),
        r("polyphenol", r"polyphenol", count(PHENOL_OH, (2, 50))),
        r("catechols", r"catechol", has("c([OX2H1,OX1-])c[OX2H1,OX1-]")),
        r("resorcinols", r"resorcinol", has("c([OX2H1])cc[OX2H1]")),
        r("phenolate", r"phenolate", has("c[OX1-]")),
        r("aromatic ether", r"aromatic ether", has("c[OX2][#6;!$(C=O)]")),
        r("ether", r"(?<!aromatic )\bether\b|(?<!aromatic )\bethers\b", has("[#6][OX2][#6;!$(C=O)]")),
        r("cyclic ether", r"cyclic ether|oxacycle", has("[#6;R][O;R][#6;R]")),
        r("methoxybenzene", r"methoxybenzene|anisole", has("c[OX2][CH3]")),
        r("epoxide", r"epoxide|\bepoxy\b", has("C1OC1")),
        r("primary amino compound", r"primary amino compound|primary amine", has("[NX3;H2;!$(N[#6]=[O,S,N])][#6]")),
        r("secondary amino compound", r"secondary amino compound|secondary amine", has("[NX3;H1;!$(N[#6]=[O,S,N]);!$(N[S,P]=O)]([#6])[#6]")),
        r("tertiary amino compound", r"tertiary amino compound|tertiary amine",
          has("[NX3;H0;!$(N[#6]=[O,S,N]);!$(N[S,P]=O);!$(N-a)]([#6])([#6])[#6]")),
        r("aromatic amine", r"aromatic amine|aminopyrimidine|aminopyridine|anilines?\b|aminobenzene", has("c[NX3;H2,H1;!$(NC=O)]")),
        r("quaternary ammonium", r"quaternary ammonium", has("[N+;H0;X4]([#6])([#6])([#6])[#6]")),
        r("carboxamide", r"carboxamide|\bamide\b|monoamide", has("[#6][CX3](=O)[NX3]")),
        r("secondary carboxamide", r"secondary carboxamide", has("[#6][CX3](=O)[NX3;H1][#6]")),
        r("primary carboxamide", r"primary carboxamide", has("[#6][CX3](=O)[NX3;H2]")),
        r("tertiary carboxamide", r"tertiary carboxamide", has("[#6][CX3](=O)[NX3;H0]([#6])[#6]")),
        r("acetamides", r"acetamide", has("[CH3]C(=O)[NX3]")),
        r("benzamides", r"benzamide", has("c1ccccc1C(=O)[NX3]")),
        r("aromatic amide", r"aromatic amide|anilide", has("[$(cC(=O)N),$(cNC(=O))]")),
        r("lactam", r"lactam", has("[#6;R][C;R](=O)[N;R]")),
        r("enamide", r"enamide", has("C=C[NX3]C=O")),
        r("ureas", r"\bureas?\b", has("[NX3]C(=O)[NX3]")),
        r("sulfonamide", r"sulfonamide", has("S(=O)(=O)[NX3]")),
        r("sulfone", r"\bsulfone", has("[#6]S(=O)(=O)[#6]")),
        r("nitrile", r"nitrile", has("C#N")),
        r("C-nitro compound", r"nitro compound|nitrobenzene", has("[#6][N+](=O)[O-]")),
        r("aldehyde", r"aldehyde", has("[CX3H1](=O)[#6,#1]")),
        r("ketone", r"ketone", has("[#6][CX3](=O)[#6]")),
        r("cyclic ketone", r"cyclic ketone|cyclic terpene ketone", has("[#6][C;R](=O)[#6]")),
        r("aromatic ketone", r"aromatic ketone", has("[#6][CX3](=O)c")),
        r("methyl ketone", r"methyl ketone", has("[CH3][CX3](=O)[#6]")),
        r("alpha-hydroxy ketone", r"alpha-hydroxy ketone", has("[#6][CX3](=O)[CX4][OX2H1]")),
        r("enone", r"\benone", has("C=C[CX3](=O)[#6]")),
        r("enol", r"\benol\b", has("C=C[OX2H1]")),
        r("olefinic compound", r"olefinic|alkene", has("[CX3;!a]=[CX3;!a]")),
        r("acetylenic", r"acetylenic|alkyne|\bynes?\b", has("C#C")),
        r("organic disulfide", r"disulfide", has("[#6]SS[#6]")),
        r("aryl sulfide", r"aryl sulfide|organic sulfide|thioether", has("[#6][SX2][#6]")),
        r("thiol", r"\bthiol\b", has("[#6][SX2H1]")),
        r("oxime", r"oxime", has("C=N[OX2]")),
        r("hydrazine", r"hydrazine|hydrazone", has("[NX3][NX3,NX2]")),
        r("azo", r"\bazo compound|bis\(azo\)", has("[#6]N=N[#6]")),
        r("quinone", r"quinone", has("[#6]1(=O)[#6]=,:[#6][#6](=O)[#6]=,:[#6]1")),
        r("organochlorine compound", r"organochlorine|chlorobenzene|chloro", has("[#6]Cl")),
        r("organofluorine compound", r"organofluorine|fluorobenzene|trifluoromethyl", has("[#6]F")),
        r("organobromine compound", r"organobromine|bromobenzene", has("[#6]Br")),
        r("organoiodine compound", r"organoiodine|iodobenzene", has("[#6]I")),
        r("(trifluoromethyl)benzenes", r"trifluoromethyl\)?benzene", has("cC(F)(F)F")),
        r("organosulfur", r"organosulfur", has("[#6][#16]")),
        r("organophosphorus", r"organophosphorus|phosphonic", has("[#6][#15]")),
    ]
    rings = [
        r("macrocycle", r"macrocycl", has("[r{12-}]")),
        r("bridged compound", r"bridged", lambda f: _bridgeheads(f) > 0),
        r("cyclopropanes", r"cyclopropane", has("[#6]1[#6][#6]1")),
        r("organic heterobicyclic", r"heterobicyclic", both(lambda f: f.rings == 2, has("[!#6;R]"))),
        r("organic heterotricyclic", r"heterotricyclic", both(lambda f: f.rings == 3, has("[!#6;R]"))),
        r("organic heterotetracyclic", r"heterotetracyclic", both(lambda f: f.rings == 4, has("[!#6;R]"))),
        r("organic heteropentacyclic", r"heteropentacyclic", both(lambda f: f.rings == 5, has("[!#6;R]"))),
        r("organic heterohexacyclic", r"heterohexacyclic", both(lambda f: f.rings == 6, has("[!#6;R]"))),
        r("heteropolycyclic", r"heteropolycyclic|heteroheptacyclic|heterooctacyclic", both(lambda f: f.rings >= 7, has("[!#6;R]"))),
        r("carbobicyclic", r"carbobicyclic", both(lambda f: f.rings == 2, lambda f: not f.has("[!#6;R]"))),
        r("carbotricyclic", r"carbotricyclic", both(lambda f: f.rings == 3, lambda f: not f.has("[!#6;R]"))),
        r("carbopolycyclic", r"carbotetracyclic|carbopolycyclic|carbopentacyclic", both(lambda f: f.rings >= 4, lambda f: not f.has("[!#6;R]"))),
        r("indoles", r"\bindol", has("c1ccc2c(c1)~[#6]~[#6]~[#7]~2")),
        r("pyridines", r"pyridine", has("n1ccccc1")),
        r("pyrimidines", r"pyrimidin", has("[#6]1:[#7]:[#6]:[#7]:[#6]:[#6]:1")),
        r("purines", r"purine|adenine|guanine|adenosine|guanosine", has("[#7]1~[#6]~[#7]~[#6]2~[#6](~[#6]~1)~[#7]~[#6]~[#7]~2")),
        r("imidazoles", r"imidazole", has("[#6]1:[#7]:[#6]:[#7]:[#6]:1")),
        r("pyrazoles", r"pyrazole", has("[#6]1:[#6]:[#7]:[#7]:[#6]:1")),
        r("triazines", r"triazine", has("[#7]1:[#6]:[#7]:[#6]:[#7]:[#6]:1")),
        r("thiazoles", r"thiazole", has("[#6]1:[#6]:[#16]:[#6]:[#7]:1")),
        r("benzothiazoles", r"benzothiazole", has("c1ccc2scnc2c1")),
        r("furans", r"\bfurans?\b", has("c1ccoc1")),
        r("benzofurans", r"benzofuran", has("c1ccc2occc2c1")),
        r("benzodioxoles", r"benzodioxole", has("c1ccc2OCOc2c1")),
        r("thiophenes", r"thiophene", has("c1ccsc1")),
        r("quinolines", r"quinolin", has("[#6]1:[#6]:[#6]:[#6]2:[#6](:[#6]:1):[#6]:[#6]:[#6]:[#7]:2")),
        r("quinazolines", r"quinazolin", has("[#6]1:[#6]:[#6]:[#6]2:[#6](:[#6]:1):[#6]:[#7]:[#6]:[#7]:2")),
        r("piperidines", r"piperidine", has("[NX3,NX4+;R1]1[CX4][CX4][CX4][CX4][CX4]1")),
        r("pyrrolidines", r"pyrrolidin(?!-2-one)", has("[NX3,NX4+]1[CX4][CX4][CX4][CX4]1")),
        r("pyrrolidin-2-ones", r"pyrrolidin-2-one|pyrrolidinone", has("O=C1CCCN1")),
        r("morpholines", r"morpholine", has("C1COCCN1")),
        r("piperazines", r"piperazine", has("C1CNCCN1")),
        r("benzenes", r"\bbenzenes?\b|dimethoxybenzene|dichlorobenzene|monochlorobenzene", has("c1ccccc1")),
        r("naphthalenes", r"naphthalene|naphthol", has("c1ccc2ccccc2c1")),
        r("coumarins", r"coumarin", has("O=c1ccc2ccccc2o1")),
        r("xanthones", r"xanthone", has("O=c1c2ccccc2oc2ccccc12")),
        r("anthraquinone", r"anthraquinone", has("O=C1c2ccccc2C(=O)c2ccccc12")),
        r("pyrans", r"\bpyrans?\b|pyranone", has("[#6]1[#6][#6][#6][#6][#8]1")),
        r("flavones", r"(?<!iso)flavones?\b|flavonol|glycosyloxyflavone", has(FLAVONE)),
        r("flavanones", r"flavanone", has(FLAVANONE)),
        r("isoflavones", r"isoflavone|isoflavonoid", has(ISOFLAVONE)),
        r("isoflavanones", r"isoflavan", has("C1(c2ccccc2)COc2ccccc2C1")),
        r("flavonoid", r"(?<!iso)(?<!bi)flavonoid|(?<!iso)flavan(?!one)|catechin", has(FLAVONOID)),
        r("chalcones", r"(?<!dihydro)chalcone", has(CHALCONE)),
        r("dihydrochalcones", r"dihydrochalcone", has("O=C(CCc1ccccc1)c1ccccc1")),
        r("anthocyanin", r"anthocyanin", has("[o+]1c(-c2ccccc2)ccc2ccccc12")),
        r("stilbenoid", r"stilben", has("c1ccccc1C=Cc1ccccc1")),
        r("4'-hydroxyflavanones", r"4'-hydroxyflavanone", has("O=C1CC(c2ccc([OX2H1])cc2)Oc2ccccc12")),
        r("biflavonoid", r"biflavonoid", count(FLAVONOID, (2, 10))),
    ]
    steroids = [
        r("steroid", r"steroid|sterol|cholestan|ergostan|pregnan|androstan|estran|bile acid|cardenolide|bufadienolide|"
                     r"withanolide|cucurbitacin|stigmastan|spirostan|furostan|campestan|cholan|ecdyster|brassinost", has(STEROID)),
        r("3-hydroxy steroid", r"3(?:alpha|beta)?-hydroxy steroid|3(?:alpha|beta)?-sterol|\bsterol", has(steroid_at(3, "[OX2H1]"))),
        r("3-oxo steroid", r"3-oxo(?:-delta\(\d+\)|-5(?:alpha|beta))? steroid", has(steroid_at(3, "=O"))),
        r("3-oxo-Delta(4) steroid", r"3-oxo-delta\(4\) steroid", has(steroid_at(3, "=O").replace("~[#6;R]~[#6;R]2", "~[#6;R]=[#6;R]2", 1))),
        r("11-oxo steroid", r"11-oxo steroid", has(steroid_at(11, "=O"))),
        r("11-hydroxy steroid", r"11(?:alpha|beta)-hydroxy steroid", has(steroid_at(11, "[OX2H1]"))),
        r("17-hydroxy steroid", r"17(?:alpha|beta)-hydroxy steroid", has(steroid_at(17, "[OX2H1]"))),
        r("17-oxo steroid", r"17-oxo steroid", has(steroid_at(17, "=O"))),
        r("20-oxo steroid", r"20-oxo steroid", has(steroid_at(17, "[CX3]=O"))),
        r("steroid acid", r"steroid acid|bile acid|cholanic acid", both(has(STEROID), has(COOH))),
        r("steroid ester", r"steroid ester", both(has(STEROID), has(ESTER))),
        r("C27 steroid", r"cholestanoid|cholestan|c27-steroid", both(has(STEROID), carbons(27, 27))),
        r("C28 steroid", r"ergostanoid|ergostan|campestan", both(has(STEROID), carbons(28, 28))),
        r("C21 steroid", r"pregnan|c21-steroid", both(has(STEROID), carbons(21, 21))),
        r("C19 steroid", r"androstan|androgen|c19-steroid", both(has(STEROID), carbons(19, 19))),
        r("pentacyclic triterpenoid", r"pentacyclic triterpenoid|oleanane|ursane|lupane|hopanoid|friedelane",
          lambda f: _largest_carbocycle_system(f) >= 5),
        r("tetracyclic triterpenoid", r"tetracyclic triterpenoid|dammarane|lanostane|cucurbitane|cycloartane|tirucallane",
          lambda f: _largest_carbocycle_system(f) >= 4 and f.n_c >= 27),
        r("triterpenoid", r"triterpen", lambda f: _largest_carbocycle_system(f) >= 4 or f.n_c >= 30),
        r("terpenoid", r"terpen|sesquiterp|diterp|monoterp|iridoid|labdane|abietane|limonoid|carotenoid",
          lambda f: f.has("[CH3][CX4,CX3][CH3]") or f.has("[CH3][#6;R]")),
    ]
    sugars = [
        r("glycoside", r"glycoside|glucoside|galactoside|mannoside|rhamnoside|xyloside|arabinoside|glucuronide|glycosyl|"
                       r"saponin|glucosiduron|fucoside|riboside|ascaroside", lambda f: f.sugars > 0 and f.has(GLYCOSIDIC)),
        r("C-glycosyl compound", r"c-glycosyl", lambda f: f.sugars > 0 and f.has("[OX2;R][CX4;R]c")),
        r("glucosiduronic acid", r"glucosiduron|glucuronide|glucuronic|uronic acid", has("[OX2;R][CX4;R]([CX3](=O)[OX2H1,OX1-])")),
        r("saponin", r"saponin", lambda f: f.sugars > 0 and _largest_carbocycle_system(f) >= 4),
        r("monosaccharide", r"monosaccharide", lambda f: f.sugars == 1),
        r("disaccharide", r"disaccharide", lambda f: f.sugars == 2),
        r("trisaccharide", r"trisaccharide", lambda f: f.sugars == 3),
        r("tetrasaccharide", r"tetrasaccharide", lambda f: f.sugars == 4),
        r("pentasaccharide", r"pentasaccharide", lambda f: f.sugars == 5),
        r("hexasaccharide", r"hexasaccharide", lambda f: f.sugars == 6),
        r("oligosaccharide", r"oligosaccharide|polysaccharide", lambda f: f.sugars >= 2),
        r("amino sugar", r"amino (?:mono|di|tri|tetra|penta|hexa|oligo)?saccharide|glucosamine|galactosamine|amino sugar|hexosamine",
          lambda f: f.amino_sugars > 0),
        r("carbohydrate", r"carbohydrate|glycan|\bsugar\b|nucleotide-sugar", lambda f: f.sugars > 0),
        r("O-acyl carbohydrate", r"o-acyl carbohydrate", lambda f: f.sugars > 0 and f.has("[#6]C(=O)O[CX4;R]")),
        r("nucleoside", r"nucleosid|nucleotide|ribonucleotide", has("[OX2;r5][CX4;r5][n]")),
    ]
    peptides = [
        r("dipeptide", r"dipeptide", lambda f: _residues(f) == 2),
        r("tripeptide", r"tripeptide", lambda f: _residues(f) == 3),
        r("tetrapeptide", r"tetrapeptide", lambda f: _residues(f) == 4),
        r("pentapeptide", r"pentapeptide", lambda f: _residues(f) == 5),
        r("oligopeptide", r"oligopeptide|polypeptide|\bpeptide\b", lambda f: _residues(f) >= 2),
    ]
    sphingo = [
        r("sphingoid", r"sphingoid|ceramide|sphingomyelin|sphingolipid", has("[CX4]([OX2H1])[CX4]([NX3,NX4+])C[OX2]")),
        r("ceramide", r"ceramide", has("[#6]C(=O)N[CX4]([CX4][OX2])[CX4][OX2H1]")),
    ]
    counts = [r(f"{prefix}{group}", rf"\b{prefix}{group}", _count_check(group, n))
              for prefix, n in N_SUBSTITUTED.items() for group in ("hydroxy", "methoxy", "chloro")]
    return [*charge_rules, *acids, *coa, *esters, *groups, *rings, *steroids, *sugars, *peptides, *sphingo, *counts]


_GROUP_SMARTS = {"hydroxy": "[#6;!$(C=O)][OX2H1]", "methoxy": "[#6][OX2][CH3]", "chloro": "[#6]Cl"}


def _count_check(group: str, n: int) -> Check:
    """Exactly ``n`` chloro/methoxy groups; at least ``n`` hydroxy groups (sugars and other parts add theirs)."""
    return count(_GROUP_SMARTS[group], (n, 10_000) if group == "hydroxy" else n)


def _residues(f: Facts) -> int:
    """Amino-acid residues: N-C-C(=O) units whose carbonyl is a peptide bond or a free acid."""
    return f.count("[NX3,NX4+][CX4][CX3](=O)[$([NX3][CX4]),$([OX2H1]),$([OX1-])]")


def _bridgeheads(f: Facts) -> int:
    from rdkit.Chem import rdMolDescriptors

    return rdMolDescriptors.CalcNumBridgeheadAtoms(f.mol)


def _largest_carbocycle_system(f: Facts) -> int:
    """Rings in the largest fused system of all-carbon rings (memoized on the facts)."""
    return f._get("carbocycle_system", lambda: _carbocycle_system(f.mol))


def _carbocycle_system(mol: Any) -> int:
    rings = [set(r) for r in mol.GetRingInfo().AtomRings() if all(mol.GetAtomWithIdx(i).GetAtomicNum() == 6 for i in r)]
    best, seen = 0, set()
    for start in range(len(rings)):
        if start in seen:
            continue
        stack, group = [start], set()
        while stack:
            i = stack.pop()
            if i in group:
                continue
            group.add(i)
            stack.extend(j for j in range(len(rings)) if j not in group and len(rings[i] & rings[j]) >= 2)
        seen |= group
        best = max(best, len(group))
    return best


RULES: list[Rule] = _rules()
RULE_NAMES: list[str] = [rule.name for rule in RULES]
_COMPILED = [re.compile(rule.phrase) for rule in RULES]
NEUTRAL = len(RULES)  # the pseudo-rule "no ion class stated -> net charge 0"
_ION_RULES = {i for i, rule in enumerate(RULES) if rule.name in
              ("anion", "dianion", "trianion", "tetraanion", "cation", "zwitterion", "oxoanion")}
_CHARGE_SUFFIX = re.compile(r"\((\d*)([+-])\)$")


def stated_rules(text: str) -> tuple[int, ...]:
    """Indices into :data:`RULES` (and :data:`NEUTRAL`) of the rules ``text``'s class phrases state."""
    stated: set[int] = set()
    for phrase in class_phrases(text):
        stated.update(i for i, pattern in enumerate(_COMPILED) if pattern.search(phrase))
    if not stated & _ION_RULES:
        stated.add(NEUTRAL)
    return tuple(sorted(stated))


def check_rules(facts: Facts, rules: Iterable[int], flags: np.ndarray) -> None:
    """Set ``flags[i]`` for each rule index ``i`` in ``rules`` (:data:`NEUTRAL` included) by ``facts``."""
    for i in rules:
        if i == NEUTRAL:
            flags[i] = facts.charge == 0
            continue
        try:
            flags[i] = bool(RULES[i].check(facts))
        except RuntimeError:  # RDKit refuses a query on an odd molecule: not satisfied
            flags[i] = False


def molecule_flags(smiles: str) -> np.ndarray | None:
    """Per rule (and the ``neutral`` pseudo-rule last), whether ``smiles`` satisfies it; ``None`` if unparsable."""
    facts = facts_of(smiles)
    if facts is None:
        return None
    flags = np.zeros(len(RULES) + 1, dtype=bool)
    check_rules(facts, range(len(RULES) + 1), flags)
    return flags
