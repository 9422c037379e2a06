"""Materials with sourced compositions and densities.

Compositions are mass fractions by atomic number; attenuation is computed from them with
xraylib (see :mod:`xtwin.physics.attenuation`), which is exactly what xraylib's own
``CS_Total_CP`` does for a chemical formula.

Lithiation conventions (see ``docs/physics.md``)
-----------------------------------------------
``w`` (lithiation fraction, what XANES measures) is the fraction of Ni in the lithiated
(discharged) end-member state, in [0, 1]. PyBaMM's positive stoichiometry ``theta = c / c_max``
maps linearly onto it between the stoichiometries at 0 % and 100 % state of charge::

    w = (theta - theta_100) / (theta_0 - theta_100)

With Mohtat2020, theta_0 = 0.891, theta_100 = 0.034. PyBaMM's c_max (35,380 mol/m3) is an
effective fitted value, 72 % of the crystallographic Li site density (49,110 mol/m3 for
rho = 4.742 g/cm3), so theta is not x in Li_x NMC. We map by charge passed::

    x = x_discharged - (theta_0 - theta) * c_max / c_site

with ``x_discharged = 0.95`` (first-cycle loss), giving x = 0.33 at theta_100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from xtwin.errors import XtwinInputError

AVOGADRO = 6.02214076e23

#: NMC532 hexagonal lattice (R-3m, 3 formula units per cell): a = 2.869 A, c = 14.23 A.
NMC532_A_ANGSTROM = 2.869
NMC532_C_ANGSTROM = 14.23
NMC532_FORMULA_UNITS_PER_CELL = 3

#: Mohtat2020 (PyBaMM) positive electrode stoichiometries at 0 % and 100 % SOC, and c_max.
THETA_0_SOC = 0.891
THETA_100_SOC = 0.034
C_MAX_MOL_M3 = 35380.0
X_DISCHARGED = 0.95


@dataclass(frozen=True)
class Material:
    """A homogeneous material: composition (mass fraction per atomic number) and density.

    Attributes
    ----------
    name : str
        Human-readable name (``"NMC532"``, ``"electrolyte"``, ...).
    mass_fractions : dict[int, float]
        Mass fraction per atomic number; sums to 1.
    density_g_cm3 : float
        Density in g/cm3.
    formula : str
        A chemical formula (or a description for mixtures), for provenance.
    """

    name: str
    mass_fractions: dict[int, float] = field(hash=False)
    density_g_cm3: float
    formula: str = ""

    def __post_init__(self) -> None:
        total = sum(self.mass_fractions.values())
        if not np.isclose(total, 1.0, atol=1e-6):
            raise XtwinInputError(f"mass fractions of {self.name} sum to {total}, not 1")
        if self.density_g_cm3 <= 0:
            raise XtwinInputError(f"density of {self.name} must be positive")

    @property
    def density_kg_m3(self) -> float:
        """Density in kg/m3."""
        return self.density_g_cm3 * 1000.0

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.mass_fractions.items())), self.density_g_cm3))


@lru_cache(maxsize=256)
def _parse_formula(formula: str) -> tuple[tuple[int, float], ...]:
    import xraylib

    try:
        cd = xraylib.CompoundParser(formula)
    except ValueError as exc:
        raise XtwinInputError(f"cannot parse chemical formula {formula!r}: {exc}") from None
    return tuple(zip(cd["Elements"], cd["massFractions"], strict=True))


def material_from_formula(name: str, formula: str, density_g_cm3: float) -> Material:
    """Build a :class:`Material` from a chemical formula (parsed by xraylib)."""
    return Material(name, dict(_parse_formula(formula)), float(density_g_cm3), formula)


def mix(name: str, parts: list[tuple[Material, float]], density_g_cm3: float) -> Material:
    """Mix materials by mass fraction into one effective material.

    Parameters
    ----------
    name : str
        Name of the mixture.
    parts : list of (Material, float)
        Components and their mass fractions (normalized to 1 here).
    density_g_cm3 : float
        Density of the mixture.
    """
    total = sum(frac for _, frac in parts)
    out: dict[int, float] = {}
    for mat, frac in parts:
        for z, wz in mat.mass_fractions.items():
            out[z] = out.get(z, 0.0) + wz * frac / total
    desc = " + ".join(f"{frac / total:.3f} {mat.name}" for mat, frac in parts)
    return Material(name, out, float(density_g_cm3), desc)


def nmc532_formula(x: float) -> str:
    """Chemical formula of Li_x Ni0.5 Mn0.3 Co0.2 O2."""
    if not 0.0 <= x <= 1.2:
        raise XtwinInputError(f"Li content x = {x} is outside [0, 1.2]")
    return f"Li{x:.6f}Ni0.5Mn0.3Co0.2O2" if x > 0 else "Ni0.5Mn0.3Co0.2O2"


def nmc532_density_g_cm3(x: float = 1.0) -> float:
    """Crystallographic density of Li_x NMC532 from the lattice (fixed cell volume).

    a = 2.869 A, c = 14.23 A, Z = 3: V = sqrt(3)/2 a^2 c = 101.44 A^3; at x = 1 this gives
    4.742 g/cm3 (Li loss at fixed lattice lowers it by 0.07 g/cm3 per unit x).
    """
    molar_mass = 6.94 * x + 0.5 * 58.693 + 0.3 * 54.938 + 0.2 * 58.933 + 2 * 15.999
    cell_cm3 = np.sqrt(3) / 2 * NMC532_A_ANGSTROM**2 * NMC532_C_ANGSTROM * 1e-24
    return NMC532_FORMULA_UNITS_PER_CELL * molar_mass / AVOGADRO / cell_cm3


def nmc532(x: float = 1.0) -> Material:
    """Li_x NMC532 at its crystallographic density."""
    return material_from_formula("NMC532", nmc532_formula(x), nmc532_density_g_cm3(x))


def li_site_density_mol_m3() -> float:
    """Crystallographic Li site density of NMC532 (mol/m3), about 49,110."""
    rho = nmc532_density_g_cm3(1.0) * 1e3  # kg/m3
    molar_mass = (6.94 + 0.5 * 58.693 + 0.3 * 54.938 + 0.2 * 58.933 + 2 * 15.999) * 1e-3
    return rho / molar_mass


def x_from_lithiation(
    w: np.ndarray | float,
    *,
    theta_0: float = THETA_0_SOC,
    theta_100: float = THETA_100_SOC,
    c_max_mol_m3: float = C_MAX_MOL_M3,
    x_discharged: float = X_DISCHARGED,
) -> np.ndarray:
    """Li content x in Li_x NMC532 from lithiation fraction ``w`` (by charge passed)."""
    theta = theta_100 + np.asarray(w, dtype=float) * (theta_0 - theta_100)
    return x_discharged - (theta_0 - theta) * c_max_mol_m3 / li_site_density_mol_m3()


def electrolyte(
    molarity_mol_l: float = 1.2,
    *,
    ec_volume_fraction: float = 0.5,
    density_g_cm3: float = 1.30,
) -> Material:
    """LiPF6 in EC:DMC (the source experiment: 1.2 M, EC:DMC 1:1 by volume).

    The salt mass fraction is ``molarity * 151.9 g/mol / (1000 * density)``; EC (1.32 g/cm3)
    and DMC (1.07 g/cm3) share the rest by their volume ratio. Density 1.30 g/cm3 is that of
    LP30-type electrolytes.
    """
    salt = molarity_mol_l * 151.905 / (1000.0 * density_g_cm3)
    if not 0 <= salt < 1:
        raise XtwinInputError(f"electrolyte molarity {molarity_mol_l} M is not physical")
    ec_mass = ec_volume_fraction * 1.32
    dmc_mass = (1 - ec_volume_fraction) * 1.07
    ec = (1 - salt) * ec_mass / (ec_mass + dmc_mass)
    parts = [
        (material_from_formula("LiPF6", "LiPF6", 2.84), salt),
        (material_from_formula("EC", "C3H4O3", 1.32), ec),
        (material_from_formula("DMC", "C3H6O3", 1.07), 1 - salt - ec),
    ]
    return mix(f"{molarity_mol_l:g} M LiPF6 EC:DMC", parts, density_g_cm3)


def carbon_binder(
    *,
    carbon_to_pvdf_mass: float = 1.0,
    nanoporosity: float = 0.5,
    electrolyte_material: Material | None = None,
) -> Material:
    """Carbon-binder domain: carbon black (1.95 g/cm3) + PVDF (1.78 g/cm3), nanopores wet.

    Parameters
    ----------
    carbon_to_pvdf_mass : float
        Mass ratio of carbon black to PVDF (1.0 for the common 90:5:5 electrode).
    nanoporosity : float
        Volume fraction of the CBD that is nanopore, filled with electrolyte.
    electrolyte_material : Material, optional
        The electrolyte in the nanopores (default: :func:`electrolyte`).
    """
    if not 0 <= nanoporosity < 1:
        raise XtwinInputError(f"CBD nanoporosity {nanoporosity} must be in [0, 1)")
    elyte = electrolyte_material or electrolyte()
    cb = material_from_formula("carbon black", "C", 1.95)
    pvdf = material_from_formula("PVDF", "C2H2F2", 1.78)
    f_cb = carbon_to_pvdf_mass / (1 + carbon_to_pvdf_mass)
    solid_density = 1.0 / (f_cb / 1.95 + (1 - f_cb) / 1.78)
    solid = mix("CB+PVDF", [(cb, f_cb), (pvdf, 1 - f_cb)], solid_density)
    m_solid = (1 - nanoporosity) * solid_density
    m_elyte = nanoporosity * elyte.density_g_cm3
    return mix(
        "carbon-binder",
        [(solid, m_solid), (elyte, m_elyte)],
        m_solid + m_elyte,
    )


def kapton() -> Material:
    """Polyimide window, C22H10N2O5, 1.42 g/cm3."""
    return material_from_formula("Kapton", "C22H10N2O5", 1.42)


def glassy_carbon() -> Material:
    """Glassy carbon window, 1.50 g/cm3."""
    return material_from_formula("glassy carbon", "C", 1.50)


def aluminium() -> Material:
    """Al current collector, 2.70 g/cm3."""
    return material_from_formula("Al", "Al", 2.70)


def nmc532_partial_densities_g_cm3(x: float) -> dict[int, float]:
    """Partial density (g/cm3) of each element in Li_x NMC532 at fixed lattice volume."""
    cell_cm3 = np.sqrt(3) / 2 * NMC532_A_ANGSTROM**2 * NMC532_C_ANGSTROM * 1e-24
    per_fu = NMC532_FORMULA_UNITS_PER_CELL / AVOGADRO / cell_cm3
    comp = {3: (x, 6.94), 28: (0.5, 58.693), 25: (0.3, 54.938), 27: (0.2, 58.933), 8: (2, 15.999)}
    return {z: n * m * per_fu for z, (n, m) in comp.items()}
