"""Ni K-edge XANES model of NMC532: mu(E, w), continuous in energy and lithiation.

Near the Ni K edge the attenuation of Li_x NMC532 is::

    mu(E, w) = sum_{Z != Ni} rho_Z sigma_Z(E) + rho_Ni [sigma_Ni,bg(E) + sigma_Ni,K(E) S(E, w)]

with rho_Z the partial density of element Z (fixed lattice, so only the Li term depends on x),
sigma from xraylib (:mod:`xtwin.physics.attenuation`), and the normalized XANES shape a linear
mix of two end members::

    S(E, w) = w S_lith(E) + (1 - w) S_delith(E)

Both terms are linear in w (x is linear in w), so mu is exactly linear in w at fixed E.
Each end member is convolved with the Gaussian monochromator bandwidth (FWHM = E * dE/E) and
evaluated at the true energy ``E_nominal + energy_offset_eV``.

Parametric end members (erf edge step + Gaussian white line + damped EXAFS-like oscillation)
are calibrated to the measured NMC622 spectra in ``shared/data/spectra``: the energy at half
maximum moves from 8346.0-8346.5 eV (pristine / 3.0 V) to 8348.2-8348.4 eV (4.3 V). The
post-edge oscillations of the two end members differ by up to ~10 % at +75 eV (DESIGN.md).

References
----------
.. [1] Ni K-edge XANES of NMC622/NMC721 at pristine, 3.0, 4.3 and 4.8 V, Advanced Photon
   Source; data of arXiv:2310.07049, repository MaterialEyes/FeatureXAS,
   ``dataset/nmc_exp_xas.json`` (``shared/data/spectra``).
.. [2] T. Schoonjans et al., "The xraylib library for X-ray-matter interactions. Recent
   developments," Spectrochim. Acta B 66, 776-784 (2011) (cross sections, edge energy).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import erf

from xtwin.physics.attenuation import (
    NI_Z,
    _as_energy_eV,
    element_cross_section_cm2_g,
    ni_k_jump_cm2_g,
    ni_nonresonant_cm2_g,
)
from xtwin.physics.materials import nmc532_partial_densities_g_cm3, x_from_lithiation

if TYPE_CHECKING:
    from xtwin.physics.spectra import NormalizedSpectrum, Spectrum

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Relative bandwidth of a Si(111) double-crystal monochromator.
SI111_BANDWIDTH = 1.3e-4


@dataclass(frozen=True)
class ParametricEndMember:
    """Normalized Ni K-edge XANES: erf step + Gaussian white line + damped oscillation.

    All energies in eV. ``S -> 0`` below the edge and ``S -> 1`` far above it.

    Attributes
    ----------
    edge_eV : float
        Centre of the erf edge step.
    edge_width_eV : float
        Gaussian sigma of the step (intrinsic: core-hole lifetime and disorder).
    white_line_eV, white_line_height, white_line_width_eV : float
        Centre, height above the step, and sigma of the white line.
    exafs_amplitude, exafs_period_eV, exafs_phase_rad, exafs_decay_eV : float
        Damped post-edge oscillation ``A sin(2 pi (E - Ewl) / period + phase) exp(-(E - Ewl) /
        decay)``, switched on smoothly above the white line; A = 0 switches it off.
    """

    edge_eV: float
    edge_width_eV: float = 1.6
    white_line_eV: float = 8350.0
    white_line_height: float = 0.55
    white_line_width_eV: float = 2.6
    exafs_amplitude: float = 0.12
    exafs_period_eV: float = 45.0
    exafs_phase_rad: float = 0.0
    exafs_decay_eV: float = 80.0

    def normalized(self, energy_eV: np.ndarray, *, bandwidth_sigma_eV: float = 0.0) -> np.ndarray:
        """Normalized absorbance at ``energy_eV`` after Gaussian broadening (sigma, eV)."""
        e = np.asarray(energy_eV, dtype=float)
        s_step = np.hypot(self.edge_width_eV, bandwidth_sigma_eV)
        step = 0.5 * (1.0 + erf((e - self.edge_eV) / (np.sqrt(2.0) * s_step)))
        s_wl = np.hypot(self.white_line_width_eV, bandwidth_sigma_eV)
        wl = (
            self.white_line_height
            * (self.white_line_width_eV / s_wl)
            * np.exp(-0.5 * ((e - self.white_line_eV) / s_wl) ** 2)
        )
        de = e - self.white_line_eV
        onset = 0.5 * (1.0 + np.tanh((de - 8.0) / 3.0))
        osc = (
            self.exafs_amplitude
            * onset
            * np.sin(2 * np.pi * de / self.exafs_period_eV + self.exafs_phase_rad)
            * np.exp(-np.clip(de, 0, None) / self.exafs_decay_eV)
        )
        return step + wl + osc


#: Discharged (lithiated) NMC532: E_half 8346.1 eV after a 1.1 eV (FWHM) bandwidth.
LITHIATED_DEFAULT = ParametricEndMember(edge_eV=8345.7, white_line_eV=8349.6, exafs_phase_rad=0.0)
#: Charged (delithiated) NMC532: edge +2.3 eV, white line +2.8 eV, EXAFS out of phase.
DELITHIATED_DEFAULT = ParametricEndMember(
    edge_eV=8347.9, white_line_eV=8352.2, white_line_height=0.45, exafs_phase_rad=1.6
)


@dataclass(frozen=True)
class TabulatedEndMember:
    """A normalized end-member spectrum read from a file (see :mod:`xtwin.physics.spectra`).

    Outside the tabulated range S is 0 below and blends to the last value above (held).
    Bandwidth broadening is a numerical Gaussian convolution on a 0.05 eV grid.
    """

    energy_eV: np.ndarray
    normalized_absorbance: np.ndarray

    def normalized(self, energy_eV: np.ndarray, *, bandwidth_sigma_eV: float = 0.0) -> np.ndarray:
        """Normalized absorbance at ``energy_eV`` after Gaussian broadening (sigma, eV)."""
        e = np.asarray(energy_eV, dtype=float)
        if bandwidth_sigma_eV <= 0:
            return np.interp(e, self.energy_eV, self.normalized_absorbance, left=0.0)
        half = 5.0 * bandwidth_sigma_eV
        grid = np.arange(-half, half + 1e-9, 0.05)
        kernel = np.exp(-0.5 * (grid / bandwidth_sigma_eV) ** 2)
        kernel /= kernel.sum()
        pts = e[..., None] + grid
        vals = np.interp(pts, self.energy_eV, self.normalized_absorbance, left=0.0)
        return vals @ kernel


EndMember = ParametricEndMember | TabulatedEndMember


def tabulated_end_member(path, *, tail_eV: float = 60.0) -> TabulatedEndMember:
    """An end member from a measured spectrum file (two columns, eV or keV, raw or normalized).

    The spectrum is normalized and flattened (:func:`xtwin.physics.spectra.normalize`). Above
    its last point it relaxes to 1 over ``tail_eV`` (a cosine blend), so short scans (the
    NMC622 files end 23 eV above the edge) still give S -> 1 far above the edge.
    """
    from xtwin.physics.spectra import normalize, read_spectrum

    n = normalize(read_spectrum(path))
    e_last, s_last = float(n.energy_eV[-1]), float(n.flat[-1])
    tail_e = np.linspace(e_last, e_last + tail_eV, 31)[1:]
    blend = 0.5 * (1 - np.cos(np.pi * (tail_e - e_last) / tail_eV))
    energy = np.concatenate([n.energy_eV, tail_e, [e_last + tail_eV + 1e4]])
    values = np.concatenate([n.flat, s_last + (1.0 - s_last) * blend, [1.0]])
    return TabulatedEndMember(energy, values)


@dataclass(frozen=True)
class XanesModel:
    """Two end members, the monochromator bandwidth and an energy calibration offset.

    Attributes
    ----------
    lithiated, delithiated : EndMember
        Normalized spectra of the discharged (w = 1) and charged (w = 0) states.
    bandwidth_rel : float
        Monochromator dE/E (FWHM).
    energy_offset_eV : float
        True energy minus nominal energy.
    """

    lithiated: EndMember = LITHIATED_DEFAULT
    delithiated: EndMember = DELITHIATED_DEFAULT
    bandwidth_rel: float = SI111_BANDWIDTH
    energy_offset_eV: float = 0.0

    def end_members(self, energy_eV: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(S_lith, S_delith) at nominal energies, broadened and offset."""
        e = _as_energy_eV(energy_eV) + self.energy_offset_eV
        sigma = e * self.bandwidth_rel / FWHM_PER_SIGMA
        out = []
        for member in (self.lithiated, self.delithiated):
            vals = [member.normalized(ei, bandwidth_sigma_eV=si) for ei, si in zip(e, sigma)]
            out.append(np.asarray(vals, dtype=float).reshape(e.shape))
        return out[0], out[1]

    def shape(self, energy_eV: np.ndarray | float, lithiation: np.ndarray | float) -> np.ndarray:
        """Normalized absorbance S(E, w), broadcast over energy (last axis) and w."""
        s_l, s_d = self.end_members(energy_eV)
        w = np.asarray(lithiation, dtype=float)[..., None]
        return w * s_l + (1.0 - w) * s_d

    def nmc532_mu_per_m(
        self, energy_eV: np.ndarray | float, lithiation: np.ndarray | float
    ) -> np.ndarray:
        """Linear attenuation (1/m) of dense Li_x NMC532 at lithiation w, shape (..., n_E).

        ``mu = a(E) + w * c(E)``: see :meth:`linear_coefficients`.
        """
        a, c = self.linear_coefficients(energy_eV)
        w = np.asarray(lithiation, dtype=float)[..., None]
        return a + w * c

    def linear_coefficients(self, energy_eV: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(a(E), c(E)) in 1/m with mu(E, w) = a(E) + w c(E) for dense NMC532."""
        e_nom = _as_energy_eV(energy_eV)
        e_true = e_nom + self.energy_offset_eV
        s_l, s_d = self.end_members(e_nom)
        mu0 = _nmc_mu_per_m(e_true, 0.0, s_d)
        mu1 = _nmc_mu_per_m(e_true, 1.0, s_l)
        return mu0, mu1 - mu0


def _nmc_mu_per_m(e_true: np.ndarray, w: float, shape: np.ndarray) -> np.ndarray:
    x = float(x_from_lithiation(w))
    dens = nmc532_partial_densities_g_cm3(x)
    mu = dens[NI_Z] * (ni_nonresonant_cm2_g(e_true) + ni_k_jump_cm2_g(e_true) * shape)
    for z, rho in dens.items():
        if z != NI_Z:
            mu = mu + rho * element_cross_section_cm2_g(z, e_true)
    return mu * 100.0


def builtin_standards(bandwidth_rel: float = SI111_BANDWIDTH) -> tuple[Spectrum, Spectrum]:
    """The built-in NMC532 end members (lithiated, delithiated) as raw standards would be
    measured: broadened by the monochromator, on a 0.5 eV grid over 8150-8800 eV (far enough
    above the edge for any post-edge normalization range)."""
    from xtwin.physics.spectra import Spectrum

    grid = np.arange(8150.0, 8800.0, 0.5)
    s_l, s_d = XanesModel(bandwidth_rel=bandwidth_rel).end_members(grid)
    return (
        Spectrum(grid, s_l, "built-in lithiated NMC532"),
        Spectrum(grid, s_d, "built-in delithiated NMC532"),
    )


@lru_cache(maxsize=4)
def builtin_references(
    bandwidth_rel: float = SI111_BANDWIDTH,
) -> tuple[NormalizedSpectrum, NormalizedSpectrum]:
    """:func:`builtin_standards`, normalized (:func:`xtwin.physics.spectra.normalize`): what
    the pipeline and the planner use when no reference spectra are given."""
    from xtwin.physics.spectra import normalize

    raw_l, raw_d = builtin_standards(float(bandwidth_rel))
    return normalize(raw_l), normalize(raw_d)
