"""Closed-form three-energy lithiation retrieval, calibrated only from reference spectra.

Model per voxel (DESIGN.md)::

    mu(E_i) = B b(E_i) + J j(E_i) [w S_lith(E_i) + (1 - w) S_delith(E_i)]

With ``K = J w`` this is linear in (B, J, K)::

    mu_i = B b_i + J j_i S_delith,i + K j_i (S_lith,i - S_delith,i)

so three energies give (B, J, K) by one 3x3 solve shared by every voxel (more energies: least
squares), and ``w = K / J``. b and j are the xraylib energy dependences of the non-resonant
background and of the Ni K jump (:mod:`xtwin.physics.attenuation`); S are the flattened
normalized reference spectra interpolated at the scan energies, so the post-edge S != 1 and
the j(E_edge) != j(E_post) traps are both handled.

Uncertainty: the covariance of (B, J, K) follows from the per-energy variance of mu; then
``var(w) = (C_KK - 2 w C_JK + w^2 C_JJ) / J^2`` (first order). A ratio of noisy quantities is
biased: ``E[K/J] ~ w + (w C_JJ - C_JK) / J^2``; we subtract that second-order bias, and mask
voxels whose J is not significant (J / sigma_J < ``min_jump_snr``) or below
``min_jump_fraction`` of the robust maximum J (pores, binder, partial volumes). The lithiation
is not clipped to [0, 1], so averages over particles stay unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.attenuation import background_energy_dependence, jump_energy_dependence
from xtwin.physics.spectra import NormalizedSpectrum

#: Smallest useful contrast ``abs(S_lith - S_delith)`` at the best energy.
MIN_CONTRAST = 0.05


@dataclass(frozen=True)
class Calibration:
    """The linear model at the scan energies, from reference spectra and xraylib only."""

    energy_eV: np.ndarray
    background: np.ndarray
    jump: np.ndarray
    s_lithiated: np.ndarray
    s_delithiated: np.ndarray

    def __post_init__(self) -> None:
        n = np.size(self.energy_eV)
        for name in ("background", "jump", "s_lithiated", "s_delithiated"):
            if np.shape(getattr(self, name)) != (n,):
                raise XtwinInputError(f"calibration {name} needs one value per energy ({n})")

    @property
    def matrix(self) -> np.ndarray:
        """Design matrix, rows = energies, columns = (B, J, K)."""
        return np.column_stack(
            [
                self.background,
                self.jump * self.s_delithiated,
                self.jump * (self.s_lithiated - self.s_delithiated),
            ]
        )

    def as_dict(self) -> dict[str, list[float]]:
        """The calibration for provenance."""
        return {
            k: np.round(getattr(self, k), 6).tolist()
            for k in ("energy_eV", "background", "jump", "s_lithiated", "s_delithiated")
        }


@dataclass(frozen=True)
class Retrieval:
    """Per-voxel result; NaN outside ``mask``."""

    lithiation: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    edge_jump: np.ndarray
    background: np.ndarray


#: A lithiated edge this far above the delithiated one means the references were swapped.
SWAP_TOLERANCE_EV = 0.3


def calibrate(
    energy_eV: np.ndarray,
    lithiated: NormalizedSpectrum,
    delithiated: NormalizedSpectrum,
    *,
    allow_swapped: bool = False,
) -> Calibration:
    """Build the retrieval model at ``energy_eV`` from two normalized reference spectra.

    Raises
    ------
    XtwinInputError
        Fewer than three energies, energies outside the reference spectra, energies that do
        not bracket the Ni edge, or no contrast between the end members.
    """
    e = np.sort(np.asarray(energy_eV, dtype=float))
    if e.size < 3:
        raise XtwinInputError(
            f"{e.size} energies given; the retrieval needs at least three "
            "(pre-edge, edge, post-edge)"
        )
    for ref, name in ((lithiated, "lithiated"), (delithiated, "delithiated")):
        lo, hi = ref.energy_eV[0], ref.energy_eV[-1]
        if e[0] < lo - 1e-6 or e[-1] > hi + 1e-6:
            raise XtwinInputError(
                f"the scan energies {e[0]:.1f}-{e[-1]:.1f} eV fall outside the "
                f"{name} reference spectrum ({lo:.1f}-{hi:.1f} eV); measure "
                "the reference over a wider range"
            )
    shift = delithiated.e_half_jump_eV - lithiated.e_half_jump_eV
    if shift < -SWAP_TOLERANCE_EV and not allow_swapped:
        raise XtwinInputError(
            f"the references look swapped: the 'lithiated' edge (half jump at "
            f"{lithiated.e_half_jump_eV:.2f} eV) lies {-shift:.2f} eV above the 'delithiated' "
            f"one ({delithiated.e_half_jump_eV:.2f} eV), but the Ni K edge moves up as Li "
            "leaves; exchange --lithiated and --delithiated (or pass --allow-swapped-references "
            "for unusual standards)"
        )
    edge = 0.5 * (lithiated.e_half_jump_eV + delithiated.e_half_jump_eV)
    if not (e[0] < edge - 5.0 and e[-1] > edge + 10.0):
        raise XtwinInputError(
            f"the energies {', '.join(f'{x:.1f}' for x in e)} eV do not "
            f"bracket the Ni K edge at {edge:.1f} eV; choose one pre-edge "
            "energy (< edge - 5 eV), one at the edge and one post-edge "
            "(> edge + 10 eV)"
        )
    s_l = np.interp(e, lithiated.energy_eV, lithiated.flat)
    s_d = np.interp(e, delithiated.energy_eV, delithiated.flat)
    if np.max(np.abs(s_l - s_d)) < MIN_CONTRAST:
        raise XtwinInputError(
            f"the reference spectra differ by at most "
            f"{np.max(np.abs(s_l - s_d)):.3f} at these energies; put one "
            "energy on the edge where lithiated and delithiated differ"
        )
    cal = Calibration(e, background_energy_dependence(e), jump_energy_dependence(e), s_l, s_d)
    if np.linalg.cond(cal.matrix) > 1e6:
        raise XtwinInputError(
            "the energies give an ill-conditioned retrieval; spread them across the edge"
        )
    return cal


@dataclass(frozen=True)
class Solution:
    """Unmasked per-voxel solution of the linear model (see :func:`solve`)."""

    lithiation: np.ndarray
    sigma: np.ndarray
    edge_jump: np.ndarray
    edge_jump_sigma: np.ndarray
    background: np.ndarray


def solve(mu: np.ndarray, mu_sigma: np.ndarray, calibration: Calibration) -> Solution:
    """Solve for (B, J, w) in every voxel, with first-order sigma and the ratio-bias correction.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, ...)
        Attenuation (or optical density) per energy, in the calibration's energy order, and
        its standard uncertainty.
    calibration : Calibration
        From :func:`calibrate`.

    Returns
    -------
    Solution
        float32 arrays of shape ``mu.shape[1:]``; no mask applied.
    """
    m = calibration.matrix
    if mu.shape[0] != m.shape[0] or mu_sigma.shape != mu.shape:
        raise XtwinInputError(f"{mu.shape[0]} attenuation maps for {m.shape[0]} energies")
    # float32 arithmetic (one BLAS product per quantity): w is a ratio, its relative
    # rounding error (1e-7) is far below any noise
    pinv = np.linalg.pinv(m).astype(np.float32)  # (3, n_e)
    flat_mu = mu.reshape(mu.shape[0], -1).astype(np.float32, copy=False)
    var = np.square(mu_sigma.reshape(mu.shape[0], -1), dtype=np.float32)
    b, j, k = pinv @ flat_mu
    c_jj = (pinv[1] ** 2) @ var
    c_kk = (pinv[2] ** 2) @ var
    c_jk = (pinv[1] * pinv[2]) @ var
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = k / j
        j2 = j * j
        w -= (w * c_jj - c_jk) / j2
        sigma = c_kk - 2 * w * c_jk + w * w * c_jj
        np.maximum(sigma, 0.0, out=sigma)
        np.sqrt(sigma, out=sigma)
        sigma /= np.abs(j)
    shape = mu.shape[1:]

    def f32(a: np.ndarray) -> np.ndarray:
        return a.reshape(shape).astype(np.float32, copy=False)

    return Solution(f32(w), f32(sigma), f32(j), f32(np.sqrt(c_jj)), f32(b))


#: Percentile of the edge jump taken as the "dense NMC" reference for masking.
JUMP_REFERENCE_PERCENTILE = 99.5


def jump_reference(edge_jump: np.ndarray) -> float:
    """Robust maximum of the edge jump: its 99.5th percentile over the finite values (0 when
    there are none). The pipeline takes it over rows sampled before the blocks."""
    finite = edge_jump[np.isfinite(edge_jump)]
    return float(np.percentile(finite, JUMP_REFERENCE_PERCENTILE)) if finite.size else 0.0


def apply_mask(
    solution: Solution,
    jump_reference_value: float,
    *,
    min_jump_snr: float = 3.0,
    min_jump_fraction: float = 0.2,
) -> Retrieval:
    """Keep voxels with a significant Ni edge jump; NaN elsewhere.

    A voxel has Ni when ``J / sigma_J >= min_jump_snr`` and
    ``J >= min_jump_fraction * jump_reference_value``.
    """
    s = solution
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = s.edge_jump / s.edge_jump_sigma
    mask = (
        (snr >= min_jump_snr)
        & (s.edge_jump >= min_jump_fraction * jump_reference_value)
        & np.isfinite(s.lithiation)
    )
    return Retrieval(
        np.where(mask, s.lithiation, np.float32(np.nan)),
        np.where(mask, s.sigma, np.float32(np.nan)),
        mask,
        s.edge_jump,
        s.background,
    )


def retrieve(
    mu: np.ndarray,
    mu_sigma: np.ndarray,
    calibration: Calibration,
    *,
    min_jump_snr: float = 3.0,
    min_jump_fraction: float = 0.2,
) -> Retrieval:
    """Solve for (B, J, w) in every voxel and mask voxels without Ni.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, ...)
        Attenuation (or optical density) per energy, in the calibration's energy order, and
        its standard uncertainty.
    calibration : Calibration
        From :func:`calibrate`.
    min_jump_snr, min_jump_fraction : float
        Masking thresholds (see module docstring and :func:`apply_mask`).

    Returns
    -------
    Retrieval
    """
    sol = solve(mu, mu_sigma, calibration)
    return apply_mask(
        sol,
        jump_reference(sol.edge_jump),
        min_jump_snr=min_jump_snr,
        min_jump_fraction=min_jump_fraction,
    )
