"""Molecules as the paper shows them (its "D" variants): a SMILES string plus a short description computed with
RDKit — atoms, rings, weight, logP, hydrogen-bond donors/acceptors, polar surface area. RDKit is optional."""

from __future__ import annotations

from functools import lru_cache

from ..errors import ConfigError


def require_rdkit() -> None:
    try:
        import rdkit  # noqa: F401
    except ImportError:
        raise ConfigError("molecule descriptions need RDKit: pip install rdkit") from None


@lru_cache(maxsize=100_000)
def describe(smiles: str) -> str | None:
    """A one-line description of the molecule, or None when the string is not a valid SMILES."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdMolDescriptors

    rdBase.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    rings = rdMolDescriptors.CalcNumRings(mol)
    aromatic = rdMolDescriptors.CalcNumAromaticRings(mol)
    return (
        f"{mol.GetNumHeavyAtoms()} heavy atoms, {rings} rings ({aromatic} aromatic), "
        f"molecular weight {rdMolDescriptors.CalcExactMolWt(mol):.1f}, "
        f"logP {rdMolDescriptors.CalcCrippenDescriptors(mol)[0]:.2f}, "
        f"{rdMolDescriptors.CalcNumHBD(mol)} H-bond donors, {rdMolDescriptors.CalcNumHBA(mol)} acceptors, "
        f"TPSA {rdMolDescriptors.CalcTPSA(mol):.1f}"
    )
