"""Mass and linear attenuation from xraylib, vectorized over energy.

``mu/rho`` comes from ``CS_Total`` (photoelectric + coherent + incoherent) and ``mu_en/rho``
from ``CS_Energy`` of each element, weighted by mass fraction: identical to xraylib's own
``CS_Total_CP`` / ``CS_Energy_CP`` for a formula. Energies are in eV here, keV for xraylib.

The Ni K edge is split into a smooth non-resonant part and an edge jump, both power laws
fitted to xraylib (below the metal edge for the former, 8.36-9.0 keV for the jump); the jump
multiplies the normalized XANES shape in :mod:`xtwin.physics.xanes`.

References
----------
.. [1] T. Schoonjans et al., "The xraylib library for X-ray-matter interactions. Recent
   developments," Spectrochim. Acta B 66, 776-784 (2011).
.. [2] W. T. Elam, B. D. Ravel and J. R. Sieber, "A new atomic database for X-ray
   spectroscopic calculations," Radiat. Phys. Chem. 63, 121-128 (2002) (the tables xraylib
   uses).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.materials import Material

NI_Z = 28
#: xraylib's Ni K edge (metal), eV.
NI_K_EDGE_METAL_EV = 8332.8

_MIN_EV, _MAX_EV = 1000.0, 100000.0


def _as_energy_eV(energy_eV: np.ndarray | float) -> np.ndarray:
    e = np.atleast_1d(np.asarray(energy_eV, dtype=float))
    if not np.all(np.isfinite(e)) or e.min() < _MIN_EV or e.max() > _MAX_EV:
        raise XtwinInputError(
            f"energies must be finite and within {_MIN_EV:g}-{_MAX_EV:g} eV (got "
            f"{e.min():g}-{e.max():g}); give energies in eV"
        )
    return e


def element_cross_section_cm2_g(
    z: int, energy_eV: np.ndarray | float, *, kind: str = "total"
) -> np.ndarray:
    """xraylib cross section of one element (cm2/g), ``kind`` = ``"total"`` or ``"energy"``."""
    return _element_cs(int(z), kind, tuple(_as_energy_eV(energy_eV).tolist()))


@lru_cache(maxsize=4096)
def _element_cs(z: int, kind: str, energies: tuple[float, ...]) -> np.ndarray:
    import xraylib_np

    e_keV = np.asarray(energies) / 1000.0
    fn = {"total": xraylib_np.CS_Total, "energy": xraylib_np.CS_Energy}[kind]
    out = fn(np.array([z], dtype=int), e_keV)[0]
    out.setflags(write=False)
    return out


def mu_rho_cm2_g(material: Material, energy_eV: np.ndarray | float) -> np.ndarray:
    """Mass attenuation coefficient mu/rho (cm2/g) of ``material`` at each energy."""
    return sum(  # type: ignore[return-value]
        w * element_cross_section_cm2_g(z, energy_eV) for z, w in material.mass_fractions.items()
    )


def mu_en_rho_cm2_g(material: Material, energy_eV: np.ndarray | float) -> np.ndarray:
    """Mass energy-absorption coefficient mu_en/rho (cm2/g) of ``material`` at each energy."""
    return sum(  # type: ignore[return-value]
        w * element_cross_section_cm2_g(z, energy_eV, kind="energy")
        for z, w in material.mass_fractions.items()
    )


def mu_per_m(material: Material, energy_eV: np.ndarray | float) -> np.ndarray:
    """Linear attenuation coefficient (1/m) of ``material`` at each energy."""
    return mu_rho_cm2_g(material, energy_eV) * material.density_g_cm3 * 100.0


def _power_law_fit(e_eV: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(np.log(e_eV), np.log(y), 1)
    return float(intercept), float(slope)


@lru_cache(maxsize=1)
def _ni_fits() -> tuple[tuple[float, float], tuple[float, float]]:
    below = np.linspace(7800.0, 8320.0, 27)
    bg = _power_law_fit(below, element_cross_section_cm2_g(NI_Z, below))
    above = np.linspace(8360.0, 9000.0, 33)
    total = element_cross_section_cm2_g(NI_Z, above)
    jump = total - np.exp(bg[0]) * above ** bg[1]
    return bg, _power_law_fit(above, jump)


def ni_nonresonant_cm2_g(energy_eV: np.ndarray | float) -> np.ndarray:
    """Ni mass attenuation without the K-edge jump (L shells + scattering), cm2/g."""
    (a, p), _ = _ni_fits()
    return np.exp(a) * _as_energy_eV(energy_eV) ** p


def ni_k_jump_cm2_g(energy_eV: np.ndarray | float) -> np.ndarray:
    """Ni K-shell contribution above the edge (the edge jump), as a smooth power law, cm2/g.

    It is defined at every energy (extrapolated below the edge) so that the near-edge Ni
    attenuation is ``ni_nonresonant + ni_k_jump * S(E)`` with S the normalized XANES shape.
    """
    _, (a, p) = _ni_fits()
    return np.exp(a) * _as_energy_eV(energy_eV) ** p


def background_energy_dependence(energy_eV: np.ndarray | float) -> np.ndarray:
    """Energy dependence b(E) of the non-resonant background of an NMC electrode, b(8345 eV)=1.

    Taken from NMC532 without the Ni K jump; electrolyte, carbon and other light phases
    follow nearly the same power law (E^-2.6 to E^-2.8) in this 200 eV window.
    """
    from xtwin.physics.materials import nmc532_partial_densities_g_cm3

    dens = nmc532_partial_densities_g_cm3(1.0)

    def bg(e: np.ndarray) -> np.ndarray:
        out = dens[NI_Z] * ni_nonresonant_cm2_g(e)
        for z, rho in dens.items():
            if z != NI_Z:
                out = out + rho * element_cross_section_cm2_g(z, e)
        return out

    return bg(_as_energy_eV(energy_eV)) / bg(np.array([8345.0]))


def jump_energy_dependence(energy_eV: np.ndarray | float) -> np.ndarray:
    """Energy dependence j(E) of the Ni K-edge jump, normalized to 1 at 8345 eV."""
    return ni_k_jump_cm2_g(energy_eV) / ni_k_jump_cm2_g(8345.0)


#: Classical electron radius (m) and h c (eV m).
ELECTRON_RADIUS_M = 2.8179403262e-15
HC_EV_M = 1.239841984e-6


def wavelength_m(energy_eV: np.ndarray | float) -> np.ndarray:
    """X-ray wavelength (m) at ``energy_eV``."""
    return HC_EV_M / _as_energy_eV(energy_eV)


def delta(material: Material, energy_eV: np.ndarray | float) -> np.ndarray:
    """Refractive-index decrement ``delta`` (n = 1 - delta + i beta) of a material.

    ``delta = r_e lambda^2 / (2 pi) * N_A rho sum_Z w_Z (Z + f'_Z(E)) / A_Z``, with the
    anomalous scattering factor f' of each element from xraylib (``Fi``, which carries the
    dip at the Ni K edge); for a compound this is what xraylib's ``Refractive_Index_Re``
    gives (1 - n).
    """
    import xraylib

    e = _as_energy_eV(energy_eV)
    lam = wavelength_m(e)
    n_avogadro = 6.02214076e23
    electrons_per_g = np.zeros_like(e)
    for z, w in material.mass_fractions.items():
        fp = np.array([xraylib.Fi(int(z), float(x) / 1000.0) for x in e.ravel()]).reshape(e.shape)
        electrons_per_g = electrons_per_g + w * (z + fp) / xraylib.AtomicWeight(int(z))
    n_e_per_m3 = material.density_g_cm3 * 1e6 * n_avogadro * electrons_per_g
    return ELECTRON_RADIUS_M * lam**2 * n_e_per_m3 / (2 * np.pi)
