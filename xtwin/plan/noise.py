"""Predicted noise of the lithiation w, per voxel and per particle, from the acquisition.

Pure physics and the pipeline's own operators; no twin. The chain, per energy ``i``:

1. **Counts**: a ray through the centre of a cylindrical sample of diameter D crosses
   ``L_i = D (f_NMC mu_NMC,i(w) + f_CBD mu_CBD,i + f_pore mu_el,i) + t_el mu_el,i``
   (plus an electrolyte layer ``t_el`` outside the sample); with ``N_i`` flat-field photons per
   pixel per projection and ``n_flat`` flats, Poisson statistics give
   ``var(p_i) = 1 / (N_i exp(-L_i)) + 1 / (N_i n_flat)`` (DESIGN.md) [1].
2. **Reconstruction**: the pipeline's filtered back-projection is linear, so
   ``var(mu_i) = var(p_i) g(n_angle) / pixel^2`` with the noise gain ``g`` of the pipeline's own
   reconstructor for white projection noise (computed with it, :func:`fbp_noise_gain`).
3. **Retrieval**: the pipeline's model ``mu_i = B b_i + J j_i S_d,i + K j_i (S_l,i - S_d,i)``
   (:mod:`xtwin.retrieve.three_energy`) with the weighted least-squares covariance
   ``C = (M^T W M)^-1``, ``W = diag(1 / var(mu_i))``; ``var(w) = (C_KK - 2 w C_JK + w^2 C_JJ) /
   J^2`` for a dense NMC voxel (J its Ni edge jump). With Gaussian noise of known variance this
   covariance is also the Cramer-Rao bound of (B, J, K) given the reconstructed mu, which the
   closed form (three energies) and the weighted fit (more) attain [2].
4. **Particles**: FBP noise is correlated between neighbouring pixels (the ramp filter
   removes low frequencies), so the mean over a particle is less noisy than ``sigma / sqrt(n)``.
   The variance of the mean over a sphere of radius R pixels is computed from the pipeline's
   reconstructor applied to white noise (:func:`region_factor`; detector rows are independent).

References
----------
.. [1] A. C. Kak and M. Slaney, *Principles of Computerized Tomographic Imaging*, IEEE Press
   (1988), ch. 5 (noise in reconstructed images).
.. [2] S. M. Kay, *Fundamentals of Statistical Signal Processing: Estimation Theory*,
   Prentice Hall (1993), ch. 3 (Cramer-Rao bound) and 4 (linear models).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.spectra import NormalizedSpectrum
from xtwin.physics.xanes import builtin_references


@dataclass(frozen=True)
class SampleModel:
    """What the beam crosses: a cylindrical electrode sample (pillar) in electrolyte.

    Attributes
    ----------
    diameter_m : float
        Path length through the sample (the pillar diameter).
    active_fraction, cbd_fraction : float
        Volume fractions of NMC532 and carbon-binder along the path; the rest is pores filled
        with electrolyte.
    lithiation : float
        Lithiation w of the NMC.
    electrolyte_path_m : float
        Electrolyte outside the sample in the beam (the cell's liquid layer).
    electrolyte_molarity_mol_l : float
        LiPF6 in EC:DMC.
    ni_chemistry : str
        ``"two-state"`` (the Ni edge a linear mix of two end members) or ``"three-state"``
        (Ni2+ -> Ni3+ -> Ni4+, :class:`xtwin.physics.xanes.ThreeStateChemistry`): the planner's
        model-bias term then carries the retrieval's linear-mixing bias at this lithiation.
    """

    diameter_m: float = 23e-6
    active_fraction: float = 0.445
    cbd_fraction: float = 0.255
    lithiation: float = 0.5
    electrolyte_path_m: float = 0.0
    electrolyte_molarity_mol_l: float = 1.2
    ni_chemistry: str = "two-state"

    def __post_init__(self) -> None:
        if not (self.diameter_m > 0 and self.electrolyte_path_m >= 0):
            raise XtwinInputError("the sample diameter must be positive (metres)")
        if not (0 < self.active_fraction and self.active_fraction + self.cbd_fraction <= 1):
            raise XtwinInputError("active_fraction + cbd_fraction must lie in (0, 1]")
        if not 0 <= self.lithiation <= 1:
            raise XtwinInputError("lithiation must lie in [0, 1]")
        if self.ni_chemistry not in ("two-state", "three-state"):
            raise XtwinInputError("ni_chemistry must be two-state or three-state")


@dataclass(frozen=True)
class AcquisitionPlan:
    """Energies, photons and angles of a tomographic XANES acquisition.

    Attributes
    ----------
    energies_eV : tuple of float
        Two or more energies (three or more for lithiation).
    photons_per_pixel : tuple of float
        Flat-field photons per detector pixel per projection, one per energy.
    n_angles : int
        Projections per energy over 180 degrees.
    pixel_size_m : float
        Pixel size at the sample.
    n_flats : int
        Flat-field frames per energy (at the same photons per frame).
    """

    energies_eV: tuple[float, ...]
    photons_per_pixel: tuple[float, ...]
    n_angles: int
    pixel_size_m: float
    n_flats: int = 10

    def __post_init__(self) -> None:
        if len(self.energies_eV) != len(self.photons_per_pixel):
            raise XtwinInputError("give one photon count per energy")
        if min(self.photons_per_pixel) <= 0 or self.n_angles < 2 or self.pixel_size_m <= 0:
            raise XtwinInputError("photons, angles and pixel size must be positive")

    @property
    def total_photons_per_pixel(self) -> float:
        """Photons per pixel over the whole acquisition (every energy and angle)."""
        return float(sum(self.photons_per_pixel) * self.n_angles)


@dataclass(frozen=True)
class NoisePrediction:
    """What :func:`predict` returns (numbers per energy in the plan's energy order)."""

    sigma_w_voxel: float
    sigma_w_particle: float | None
    transmission: np.ndarray
    sigma_p: np.ndarray
    sigma_mu_per_m: np.ndarray
    edge_jump_per_m: float
    dose_gy_nmc: float
    dose_gy_electrolyte: float
    fbp_gain: float
    particle_factor: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = [round(float(x), 6) for x in v]
        return out


@lru_cache(maxsize=64)
def fbp_noise_gain(n_angles: int, filter_name: str = "shepp-logan") -> float:
    """Variance of the pipeline's FBP (attenuation per pixel) at the centre for unit-variance
    white projection noise: ``var(mu) = var(p) * gain / pixel^2``."""
    from xtwin.recon.fourier import FourierFBP

    n = 64
    geom = FourierFBP(n, np.linspace(0, 180, n_angles, endpoint=False), filter_name=filter_name)
    v = geom.fbp_variance(np.ones((n_angles, n), dtype=np.float32))
    return float(v[n // 2 - 4 : n // 2 + 4, n // 2 - 4 : n // 2 + 4].mean())


@lru_cache(maxsize=64)
def region_factor(n_angles: int, radius_px: float, filter_name: str = "shepp-logan") -> float:
    """Variance of the mean of FBP noise over a sphere of ``radius_px`` (detector rows
    independent) divided by the single-voxel variance, for white projection noise.

    Computed by applying the pipeline's reconstructor to white noise: 48 realizations of a
    slice holding many disjoint disks (a fixed seed, so the number is reproducible).
    """
    from xtwin.recon.fourier import FourierFBP

    r = max(float(radius_px), 0.5)
    r_int = int(np.ceil(r))
    n = int(max(96, 2 * (2 * r_int + 3) * 4))
    geom = FourierFBP(n, np.linspace(0, 180, n_angles, endpoint=False), filter_name=filter_name)
    rng = np.random.default_rng(20261126)
    sino = rng.standard_normal((48, n_angles, n)).astype(np.float32)
    rec = geom.fbp(sino).astype(np.float64)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    inside = np.hypot(yy, xx) < n / 2 - 2
    v_pix = float(rec[:, inside].var())
    step = 2 * r_int + 3
    # disk centres on pixel centres, disjoint, inside the reconstruction circle
    centres = [
        (yy[i, 0], xx[0, j])
        for i in range(r_int + 2, n - r_int - 2, step)
        for j in range(r_int + 2, n - r_int - 2, step)
        if np.hypot(yy[i, 0], xx[0, j]) < n / 2 - r_int - 3
    ]
    zs = np.arange(-r_int, r_int + 1)
    radii = np.sqrt(np.clip(r * r - zs.astype(float) ** 2, 0, None))
    num = 0.0
    den = 0.0
    for rz in radii:
        if rz <= 0:
            continue
        means = []
        for cy, cx in centres:
            disk = np.hypot(yy - cy, xx - cx) <= max(rz, 0.5)
            means.append(rec[:, disk].mean(axis=1))
        v_disk = float(np.var(np.concatenate(means)))
        area = float(np.pi * max(rz, 0.5) ** 2)
        num += area**2 * v_disk
        den += area
    return float(num / den**2 / v_pix)


def _materials(sample: SampleModel, energies_eV: np.ndarray, bandwidth_rel: float):
    from xtwin.physics import materials
    from xtwin.physics.attenuation import mu_per_m
    from xtwin.physics.xanes import XanesModel

    elyte = materials.electrolyte(sample.electrolyte_molarity_mol_l)
    cbd = materials.carbon_binder(electrolyte_material=elyte)
    xanes = XanesModel(bandwidth_rel=bandwidth_rel)
    mu_nmc = xanes.nmc532_mu_per_m(energies_eV, sample.lithiation)
    return mu_nmc, mu_per_m(cbd, energies_eV), mu_per_m(elyte, energies_eV), xanes, elyte


def predict(
    sample: SampleModel,
    acq: AcquisitionPlan,
    *,
    references: tuple[NormalizedSpectrum, NormalizedSpectrum] | None = None,
    particle_diameter_m: float | None = None,
    bandwidth_rel: float = 1.3e-4,
    filter_name: str = "shepp-logan",
) -> NoisePrediction:
    """Predict the noise of w for an acquisition, per voxel of dense NMC at the sample centre
    and per particle (see the module docstring for the chain).

    Parameters
    ----------
    sample : SampleModel
    acq : AcquisitionPlan
    references : (lithiated, delithiated) NormalizedSpectrum, optional
        The end members the pipeline is calibrated with (default: the built-in NMC532 ones).
    particle_diameter_m : float, optional
        Diameter of the particles whose mean lithiation is wanted.
    bandwidth_rel : float
        Monochromator dE/E (FWHM) of the physics model.
    filter_name : str
        The reconstruction filter (the pipeline's default: Shepp-Logan).

    Returns
    -------
    NoisePrediction
    """
    from xtwin.physics.attenuation import ni_k_jump_cm2_g
    from xtwin.physics.dose import nmc532_mu_en_rho_cm2_g
    from xtwin.physics.materials import nmc532_partial_densities_g_cm3, x_from_lithiation
    from xtwin.retrieve.three_energy import calibrate

    e = np.asarray(acq.energies_eV, dtype=float)
    order = np.argsort(e)
    e_sorted = e[order]
    n0 = np.asarray(acq.photons_per_pixel, dtype=float)
    mu_nmc, mu_cbd, mu_el, xanes, elyte = _materials(sample, e, bandwidth_rel)
    pore = 1.0 - sample.active_fraction - sample.cbd_fraction
    mu_path = sample.active_fraction * mu_nmc + sample.cbd_fraction * mu_cbd + pore * mu_el
    line = sample.diameter_m * mu_path + sample.electrolyte_path_m * mu_el
    trans = np.exp(-line)
    var_p = 1.0 / (n0 * trans) + 1.0 / (n0 * acq.n_flats)
    gain = fbp_noise_gain(acq.n_angles, filter_name)
    var_mu = var_p * gain / acq.pixel_size_m**2
    refs = references or builtin_references(bandwidth_rel)
    cal = calibrate(e_sorted, refs[0], refs[1])
    dens = nmc532_partial_densities_g_cm3(float(x_from_lithiation(sample.lithiation)))
    jump = float(dens[28] * ni_k_jump_cm2_g(np.array([8345.0]))[0] * 100.0)  # 1/m at 8345 eV
    m = cal.matrix
    w = sample.lithiation
    if m.shape[1] < 3:
        raise XtwinInputError("the lithiation needs three or more energies; give a third")
    fisher = m.T @ (m / var_mu[order][:, None])
    cov = np.linalg.inv(fisher)
    var_w = (cov[2, 2] - 2 * w * cov[1, 2] + w * w * cov[1, 1]) / jump**2
    sigma_voxel = float(np.sqrt(max(var_w, 0.0)))
    factor = None
    sigma_particle = None
    if particle_diameter_m:
        factor = region_factor(
            acq.n_angles, 0.5 * particle_diameter_m / acq.pixel_size_m, filter_name
        )
        sigma_particle = sigma_voxel * float(np.sqrt(factor))
    # entrance dose: fluence x E x mu_en/rho (DESIGN.md), over every energy and projection
    from xtwin.physics.attenuation import mu_en_rho_cm2_g
    from xtwin.physics.dose import EV_TO_J

    fluence = n0 * acq.n_angles / acq.pixel_size_m**2
    mu_en_nmc = nmc532_mu_en_rho_cm2_g(e, sample.lithiation, xanes) * 0.1
    mu_en_el = mu_en_rho_cm2_g(elyte, e) * 0.1
    dose_nmc = float(np.sum(fluence * e * EV_TO_J * mu_en_nmc))
    dose_el = float(np.sum(fluence * e * EV_TO_J * mu_en_el))
    return NoisePrediction(
        sigma_w_voxel=sigma_voxel,
        sigma_w_particle=sigma_particle,
        transmission=trans,
        sigma_p=np.sqrt(var_p),
        sigma_mu_per_m=np.sqrt(var_mu),
        edge_jump_per_m=jump,
        dose_gy_nmc=dose_nmc,
        dose_gy_electrolyte=dose_el,
        fbp_gain=gain,
        particle_factor=factor,
        details={"calibration": cal.as_dict(), "covariance_BJK": cov.tolist()},
    )
