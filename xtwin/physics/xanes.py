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

    n = normalize(read_spectrum(path), flatten=True)  # the twin's packaged model, as made
    e_last, s_last = float(n.energy_eV[-1]), float(n.flat[-1])
    tail_e = np.linspace(e_last, e_last + tail_eV, 31)[1:]
    blend = 0.5 * (1 - np.cos(np.pi * (tail_e - e_last) / tail_eV))
    energy = np.concatenate([n.energy_eV, tail_e, [e_last + tail_eV + 1e4]])
    values = np.concatenate([n.flat, s_last + (1.0 - s_last) * blend, [1.0]])
    return TabulatedEndMember(energy, values)


#: Ni K-edge shapes of the three Ni oxidation states in layered NMC (parametric): the edge
#: (1.8 eV per oxidation state), the white line (2.1 eV per state, lower with oxidation) and the
#: EXAFS phase move with the state, interpolated from the two default end members at their Ni
#: states (2.5 and 3.73, see :class:`ThreeStateChemistry`). A shifted shape is not the
#: average of its neighbours, so mixtures of these are not a two-end-member line.
NI2 = ParametricEndMember(
    edge_eV=8344.8, white_line_eV=8348.5, white_line_height=0.59, exafs_phase_rad=-0.65
)
NI3 = ParametricEndMember(
    edge_eV=8346.6, white_line_eV=8350.6, white_line_height=0.51, exafs_phase_rad=0.65
)
NI4 = ParametricEndMember(
    edge_eV=8348.4, white_line_eV=8352.8, white_line_height=0.43, exafs_phase_rad=1.95
)


@dataclass(frozen=True)
class ThreeStateChemistry:
    """Ni2+ -> Ni3+ -> Ni4+ in Li_x NMC532: the Ni K-edge as a mixture of three states.

    Charge balance of Li_x Ni0.5 Mn0.3 Co0.2 O2 with Mn4+ and Co3+ gives the mean Ni state
    ``N(x) = 2.4 + 2 (1 - x)`` when the Ni alone compensates the Li removed (Co3+/4+ and
    oxygen take part only near the top of charge, ignored here: stated). The Ni is oxidized
    sequentially, Ni2+ -> Ni3+ first and then Ni3+ -> Ni4+ [1]_, so the fractions are
    ``f2 = max(0, 3 - N)``, ``f4 = max(0, N - 3)``, ``f3 = 1 - f2 - f4``. Over the default
    window (w = 1: x = 0.95, N = 2.50; w = 0: x = 0.33, N = 3.73) the spectrum is a straight
    line in w on each side of N = 3 (w = 0.60) but not across it: the two-end-member
    retrieval carries a model bias in between.

    ``end_members_from`` optionally anchors the window's ends to measured spectra (lithiated,
    delithiated files): the states' departure from the straight line is kept, their ends
    become the measured spectra.

    References
    ----------
    .. [1] W.-S. Yoon, M. Balasubramanian, K. Y. Chung, X.-Q. Yang, J. McBreen, C. P. Grey and
       D. A. Fischer, "Investigation of the charge compensation mechanism on the
       electrochemically Li-ion deintercalated Li1-xCo1/3Ni1/3Mn1/3O2 electrode system by
       combination of soft and hard X-ray absorption spectroscopy," J. Am. Chem. Soc. 127,
       17479-17487 (2005).
    """

    states: tuple[EndMember, EndMember, EndMember] = (NI2, NI3, NI4)
    end_members_from: tuple[str, str] | None = None

    @staticmethod
    def ni_state(lithiation: np.ndarray | float) -> np.ndarray:
        """Mean Ni oxidation state at lithiation fraction w."""
        x = x_from_lithiation(lithiation)
        return np.clip(2.4 + 2.0 * (1.0 - x), 2.0, 4.0)

    def fractions(self, lithiation: np.ndarray | float) -> np.ndarray:
        """(f2, f3, f4) along the first axis, broadcast over w."""
        n = self.ni_state(lithiation)
        f2 = np.clip(3.0 - n, 0.0, 1.0)
        f4 = np.clip(n - 3.0, 0.0, 1.0)
        return np.stack([f2, 1.0 - f2 - f4, f4])

    def basis(self, energy_eV: np.ndarray, sigma_eV: np.ndarray) -> np.ndarray:
        """(5, n_E): the normalized shapes of the three states (broadened by ``sigma_eV``),
        then the measured-end corrections at w = 1 and w = 0 (measured minus modelled end
        member; zeros without measured files), which enter linearly in w."""
        shapes = np.stack([_broadened(m, energy_eV, sigma_eV) for m in self.states])
        if self.end_members_from is None:
            return np.concatenate([shapes, np.zeros((2, shapes.shape[1]))])
        corr = [
            _broadened(_tabulated(path), energy_eV, sigma_eV) - self.fractions(w) @ shapes
            for path, w in zip(self.end_members_from, (1.0, 0.0))
        ]
        return np.concatenate([shapes, np.stack(corr)])


def _broadened(member, energy_eV: np.ndarray, sigma_eV: np.ndarray) -> np.ndarray:
    """A member's normalized absorbance at each energy with its own broadening sigma."""
    vals = [member.normalized(e, bandwidth_sigma_eV=s) for e, s in zip(energy_eV, sigma_eV)]
    return np.asarray(vals, dtype=float).reshape(np.shape(energy_eV))


def measured_nmc622_files() -> tuple[str, str]:
    """The packaged measured NMC622 Ni K-edge spectra: (pristine, 4.3 V) paths."""
    from pathlib import Path

    d = Path(__file__).resolve().parent.parent / "data" / "spectra"
    return str(d / "nmc622_ni_k_pristine_1.csv"), str(d / "nmc622_ni_k_4p3V_1.csv")


def chemistry_model(ni_chemistry: str, end_members: str) -> ThreeStateChemistry | None:
    """The chemistry of a scenario's ``ni_chemistry`` and ``end_members`` keys (None: two
    parametric end members, linearly mixed)."""
    files = measured_nmc622_files() if end_members == "measured-nmc622" else None
    if ni_chemistry == "two-state" and files is None:
        return None
    if ni_chemistry == "two-state":  # measured ends, straight line between: no departure
        return ThreeStateChemistry(states=(LITHIATED_DEFAULT,) * 3, end_members_from=files)
    return ThreeStateChemistry(end_members_from=files)


@lru_cache(maxsize=8)
def _tabulated(path: str) -> TabulatedEndMember:
    return tabulated_end_member(path)


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
    chemistry: ThreeStateChemistry | None = None

    def _state_basis(self, energy_eV: np.ndarray | float) -> np.ndarray:
        """The (n_b, n_E) shapes S_b(E) with S(E, w) = sum_b g_b(w) S_b(E) (:meth:`_weights`
        gives the g_b), broadened and offset."""
        e = _as_energy_eV(energy_eV) + self.energy_offset_eV
        sigma = e * self.bandwidth_rel / FWHM_PER_SIGMA
        if self.chemistry is None:
            return np.stack([_broadened(m, e, sigma) for m in (self.lithiated, self.delithiated)])
        return self.chemistry.basis(e, sigma)

    def _weights(self, lithiation: np.ndarray | float) -> np.ndarray:
        """g_b(w) of :meth:`_state_basis`, along the first axis."""
        w = np.asarray(lithiation, dtype=float)
        if self.chemistry is None:
            return np.stack([w, 1.0 - w])
        return np.concatenate([self.chemistry.fractions(w), np.stack([w, 1.0 - w])])

    def end_members(self, energy_eV: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(S_lith, S_delith) at nominal energies, broadened and offset: the shapes at w = 1
        and w = 0."""
        basis = self._state_basis(energy_eV)
        return self._weights(1.0) @ basis, self._weights(0.0) @ basis

    def shape(self, energy_eV: np.ndarray | float, lithiation: np.ndarray | float) -> np.ndarray:
        """Normalized absorbance S(E, w), broadcast over energy (last axis) and w."""
        basis = self._state_basis(energy_eV)
        g = self._weights(lithiation)
        return np.tensordot(np.moveaxis(g, 0, -1), basis, axes=1)

    def nmc532_mu_per_m(
        self, energy_eV: np.ndarray | float, lithiation: np.ndarray | float
    ) -> np.ndarray:
        """Linear attenuation (1/m) of dense Li_x NMC532 at lithiation w, shape (..., n_E):
        ``mu = a(E) + sum_k C_k(E) g_k(w)`` (:meth:`field_model`)."""
        a, c = self.field_model(energy_eV)
        g = self.field_values(lithiation)
        return a + np.tensordot(np.moveaxis(g, 0, -1), c, axes=1)

    def field_model(self, energy_eV: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(a(E), C(E)) in 1/m, C of shape (n_g, n_E), with ``mu(E, w) = a(E) + sum_k C_k(E)
        g_k(w)`` for dense NMC532 (:meth:`field_values` gives the g_k). Two end members:
        g = (w,), exactly linear. Three Ni states: g = (w, f3(w), f4(w)) (the Li content and
        the fractions of Ni3+ and Ni4+), linear in each but piecewise in w."""
        e_nom = _as_energy_eV(energy_eV)
        e_true = e_nom + self.energy_offset_eV
        if self.chemistry is None:
            s_l, s_d = self.end_members(e_nom)
            mu0 = _nmc_mu_per_m(e_true, 0.0, s_d)
            return mu0, (_nmc_mu_per_m(e_true, 1.0, s_l) - mu0)[None]
        basis = self._state_basis(e_nom)  # S2, S3, S4, corr(w=1), corr(w=0)
        zero = np.zeros_like(e_true)
        mu_x0 = _nmc_mu_per_m(e_true, 0.0, zero)  # no Ni edge: the Li content's part
        mu_x1 = _nmc_mu_per_m(e_true, 1.0, zero)
        jump = _ni_jump_per_m(e_true)
        # S = S2 + f3 (S3 - S2) + f4 (S4 - S2) + w corr1 + (1 - w) corr0
        a = mu_x0 + jump * (basis[0] + basis[4])
        c = np.stack(
            [
                mu_x1 - mu_x0 + jump * (basis[3] - basis[4]),
                jump * (basis[1] - basis[0]),
                jump * (basis[2] - basis[0]),
            ]
        )
        return a, c

    def field_values(self, lithiation: np.ndarray | float) -> np.ndarray:
        """The g_k(w) of :meth:`field_model`, along the first axis."""
        w = np.asarray(lithiation, dtype=float)
        if self.chemistry is None:
            return w[None]
        f = self.chemistry.fractions(w)
        return np.stack([w, f[1], f[2]])

    def linear_coefficients(self, energy_eV: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(a(E), c(E)) in 1/m of the straight line through mu(E, 0) and mu(E, 1) (exact for
        two end members; the chord of the three-state model)."""
        mu = self.nmc532_mu_per_m(energy_eV, np.array([0.0, 1.0]))
        return mu[0], mu[1] - mu[0]


def _ni_jump_per_m(e_true: np.ndarray) -> np.ndarray:
    """rho_Ni sigma_Ni,K(E) in 1/m (the Ni density does not change with x)."""
    dens = nmc532_partial_densities_g_cm3(1.0)
    return dens[NI_Z] * ni_k_jump_cm2_g(e_true) * 100.0


def _nmc_mu_per_m(e_true: np.ndarray, w: float, shape: np.ndarray) -> np.ndarray:
    x = float(x_from_lithiation(w))
    dens = nmc532_partial_densities_g_cm3(x)
    mu = dens[NI_Z] * (ni_nonresonant_cm2_g(e_true) + ni_k_jump_cm2_g(e_true) * shape)
    for z, rho in dens.items():
        if z != NI_Z:
            mu = mu + rho * element_cross_section_cm2_g(z, e_true)
    return mu * 100.0


def builtin_standards(
    bandwidth_rel: float = SI111_BANDWIDTH, chemistry: ThreeStateChemistry | None = None
) -> tuple[Spectrum, Spectrum]:
    """The built-in NMC532 end members (lithiated, delithiated) of ``chemistry`` (default: the
    two parametric end members) as raw standards would be measured: broadened by the
    monochromator, on a 0.5 eV grid over 8150-8800 eV (far enough above the edge for any
    post-edge normalization range)."""
    from xtwin.physics.spectra import Spectrum

    grid = np.arange(8150.0, 8800.0, 0.5)
    s_l, s_d = XanesModel(bandwidth_rel=bandwidth_rel, chemistry=chemistry).end_members(grid)
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
