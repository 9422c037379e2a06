"""Absorbed dose and transmission for planning an acquisition.

Dose [Gy] = fluence [photons/m2] x E [J] x mu_en/rho [m2/kg] (DESIGN.md), summed over
energies, at the entrance of the sample (no upstream attenuation) unless an upstream optical
depth is given. The fluence per energy is ``photons_per_pixel x n_projections / pixel_area``
with the photons per pixel of the flat field (the beam without the sample); flats and darks
do not irradiate the sample and are excluded.

Near the Ni K edge, xraylib's mu_en/rho of Ni has the metal edge and no XANES, so for NMC532
the Ni K-shell part uses the XANES shape: ``mu_en = mu_en(non-Ni) + rho_Ni [en_bg(E) +
f_K sigma_K(E) S(E, w)]`` where ``f_K`` is the fraction of K-shell photoabsorption energy
deposited locally (the rest leaves as fluorescence), taken from xraylib at 8.5 keV (0.65).

References
----------
.. [1] J. H. Hubbell and S. M. Seltzer, "Tables of X-ray mass attenuation coefficients and mass
   energy-absorption coefficients," NIST Internal Report 5632 (1995) (mu_en/rho and dose).
.. [2] M. R. Howells et al., "An assessment of the resolution limitation due to
   radiation-damage in X-ray diffraction microscopy," J. Electron Spectrosc. Relat. Phenom.
   170, 4-12 (2009) (dose = fluence x E x mu_en/rho for imaging).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.attenuation import (
    NI_Z,
    _as_energy_eV,
    element_cross_section_cm2_g,
    mu_per_m,
    ni_k_jump_cm2_g,
)
from xtwin.physics.materials import Material, nmc532_partial_densities_g_cm3, x_from_lithiation
from xtwin.physics.xanes import XanesModel

EV_TO_J = 1.602176634e-19


@lru_cache(maxsize=1)
def _ni_energy_fits() -> tuple[tuple[float, float], float]:
    below = np.linspace(7800.0, 8320.0, 27)
    en = element_cross_section_cm2_g(NI_Z, below, kind="energy")
    slope, intercept = np.polyfit(np.log(below), np.log(en), 1)
    e_ref = np.array([8500.0])
    en_bg = np.exp(intercept) * e_ref**slope
    f_k = (element_cross_section_cm2_g(NI_Z, e_ref, kind="energy") - en_bg) / ni_k_jump_cm2_g(e_ref)
    return (float(intercept), float(slope)), float(f_k[0])


def nmc532_mu_en_rho_cm2_g(
    energy_eV: np.ndarray | float, lithiation: float, xanes: XanesModel | None = None
) -> np.ndarray:
    """mu_en/rho of Li_x NMC532 (cm2/g) with the Ni K-edge XANES (see module docstring)."""
    xanes = xanes or XanesModel()
    e = _as_energy_eV(energy_eV)
    s = xanes.shape(e, lithiation)
    dens = nmc532_partial_densities_g_cm3(float(x_from_lithiation(lithiation)))
    (a, p), f_k = _ni_energy_fits()
    e_true = e + xanes.energy_offset_eV
    total = dens[NI_Z] * (np.exp(a) * e_true**p + f_k * ni_k_jump_cm2_g(e_true) * s)
    for z, rho in dens.items():
        if z != NI_Z:
            total = total + rho * element_cross_section_cm2_g(z, e_true, kind="energy")
    return total / sum(dens.values())


def nmc532_mu_rho_cm2_g(
    energy_eV: np.ndarray | float, lithiation: float, xanes: XanesModel | None = None
) -> np.ndarray:
    """mu/rho of Li_x NMC532 (cm2/g) with the Ni K-edge XANES."""
    xanes = xanes or XanesModel()
    dens = nmc532_partial_densities_g_cm3(float(x_from_lithiation(lithiation)))
    return xanes.nmc532_mu_per_m(energy_eV, lithiation) / 100.0 / sum(dens.values())


@dataclass(frozen=True)
class DoseReport:
    """Dose per energy and in total, in gray."""

    energy_eV: np.ndarray
    fluence_per_m2: np.ndarray
    dose_Gy: np.ndarray

    @property
    def total_Gy(self) -> float:
        """Dose summed over energies."""
        return float(self.dose_Gy.sum())


def acquisition_dose(
    mu_en_rho_cm2_g_per_energy: np.ndarray,
    energy_eV: np.ndarray,
    *,
    photons_per_pixel: float,
    n_projections: int,
    pixel_size_m: float,
    upstream_optical_depth: np.ndarray | float = 0.0,
) -> DoseReport:
    """Absorbed dose of a whole acquisition.

    Parameters
    ----------
    mu_en_rho_cm2_g_per_energy : ndarray
        mu_en/rho of the irradiated material at each energy (cm2/g).
    energy_eV : ndarray
        The energies.
    photons_per_pixel : float
        Incident photons per detector pixel per projection (flat-field level).
    n_projections : int
        Projections per energy.
    pixel_size_m : float
        Pixel size at the sample.
    upstream_optical_depth : float or ndarray
        mu*t of what the beam crosses before reaching the material (0 at the entrance).

    Examples
    --------
    NMC532 at 8300 eV (mu_en/rho = 76.38 cm2/g from xraylib), 20,000 photons per 400 nm pixel,
    121 projections: fluence 1.5125e19 /m2, photon energy 1.3298e-15 J, so
    1.5125e19 x 1.3298e-15 J x 7.638 m2/kg = 1.536e5 Gy.
    """
    e = _as_energy_eV(energy_eV)
    mu_en = np.asarray(mu_en_rho_cm2_g_per_energy, dtype=float) * 0.1  # cm2/g -> m2/kg
    if photons_per_pixel < 0 or n_projections < 0 or pixel_size_m <= 0:
        raise XtwinInputError("photons, projections and pixel size must be positive")
    fluence = (
        photons_per_pixel
        * n_projections
        / pixel_size_m**2
        * np.exp(-np.asarray(upstream_optical_depth, dtype=float))
        * np.ones_like(e)
    )
    return DoseReport(e, fluence, fluence * e * EV_TO_J * mu_en)


def transmission(layers: list[tuple[Material, float]], energy_eV: np.ndarray | float) -> np.ndarray:
    """Transmission through a stack of (material, thickness_m) layers at each energy."""
    e = _as_energy_eV(energy_eV)
    od = np.zeros_like(e)
    for material, thickness_m in layers:
        if thickness_m < 0:
            raise XtwinInputError(f"thickness of {material.name} must be >= 0")
        od = od + mu_per_m(material, e) * thickness_m
    return np.exp(-od)
