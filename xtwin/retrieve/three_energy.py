"""Closed-form three-energy lithiation retrieval, calibrated only from reference spectra.

Model per voxel (DESIGN.md)::

    mu(E_i) = B b(E_i) + J j(E_i) [w S_lith(E_i) + (1 - w) S_delith(E_i)]

With ``K = J w`` this is linear in (B, J, K)::

    mu_i = B b_i + J j_i S_delith,i + K j_i (S_lith,i - S_delith,i)

so three energies give (B, J, K) by one 3x3 solve shared by every voxel, and ``w = K / J``.
Four or more energies (sparse or full XANES stacks) give the same three unknowns by weighted
least squares per voxel (weights 1/var(mu_i): the fit of the two end members with a free edge
jump and background, whose covariance is the inverse normal matrix), with the reduced
chi-square of the fit. Two energies (a pre-edge / post-edge quick look) give only (B, J): the
Ni edge jump, with S the mean of the two end members (or a unit step when no reference spectra
are given); the lithiation needs a third energy on the edge.

b and j are the xraylib energy dependences of the non-resonant background and of the Ni K
jump (:mod:`xtwin.physics.attenuation`); S are the flattened normalized reference spectra
interpolated at the scan energies, so the post-edge S != 1 and
the j(E_edge) != j(E_post) traps are both handled.

Uncertainty: the covariance of (B, J, K) follows from the per-energy variance of mu; then
``var(w) = (C_KK - 2 w C_JK + w^2 C_JJ) / J^2`` (first order). A ratio of noisy quantities is
biased: ``E[K/J] ~ w + (w C_JJ - C_JK) / J^2``; we subtract that second-order bias, and mask
voxels whose J is not significant (J / sigma_J < ``min_jump_snr``) or below
``min_jump_fraction`` of the robust maximum J (pores, binder, partial volumes). The lithiation
is not clipped to [0, 1], so averages over particles stay unbiased.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.attenuation import background_energy_dependence, jump_energy_dependence
from xtwin.physics.spectra import NormalizedSpectrum
from xtwin.retrieve.path import (
    ChemistryPath,
    build_path,
    map_three,
    pool_nodes,
    segment_coefficients,
)

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
    edge_eV: float = 8346.0
    energy_offset_eV: float = 0.0
    path: ChemistryPath | None = None

    def __post_init__(self) -> None:
        n = np.size(self.energy_eV)
        for name in ("background", "jump", "s_lithiated", "s_delithiated"):
            if np.shape(getattr(self, name)) != (n,):
                raise XtwinInputError(f"calibration {name} needs one value per energy ({n})")
        if self.path is not None and self.path.spectra.shape[1] != n:
            raise XtwinInputError(f"calibration path needs one value per energy ({n})")

    @property
    def mode(self) -> str:
        """``attenuation`` (1 energy: no retrieval), ``edge-jump`` (2 energies),
        ``three-energy`` (3) or ``multi-energy`` (4 or more)."""
        n = np.size(self.energy_eV)
        return (
            "attenuation"
            if n == 1
            else "edge-jump"
            if n == 2
            else "three-energy"
            if n == 3
            else "multi-energy"
        )

    @property
    def matrix(self) -> np.ndarray:
        """Design matrix, rows = energies, columns = (B, J, K); (B, J) for two energies, (B)
        for one."""
        if self.mode == "attenuation":
            return np.column_stack([self.background])
        cols = [self.background, self.jump * self.s_delithiated]
        if self.mode != "edge-jump":
            cols.append(self.jump * (self.s_lithiated - self.s_delithiated))
        return np.column_stack(cols)

    @cached_property
    def inverse(self) -> np.ndarray:
        """The design matrix's pseudo-inverse in float32, (parameters, energies): the rows
        that give (B, J, K) from the attenuations (computed once; the retrieval asks for it
        on every detector row)."""
        return np.linalg.pinv(self.matrix).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        """The calibration for provenance."""
        out = {
            k: np.round(getattr(self, k), 6).tolist()
            for k in ("energy_eV", "background", "jump", "s_lithiated", "s_delithiated")
        } | {"mode": self.mode, "edge_eV": round(self.edge_eV, 2)}
        if self.mode == "attenuation":
            return {"mode": self.mode, "energy_eV": [float(x) for x in self.energy_eV]}
        if self.energy_offset_eV:
            out["energy_offset_eV"] = round(self.energy_offset_eV, 4)
        if self.path is not None:
            out["chemistry_path"] = self.path.as_dict()
        return out


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


#: Ni K half-jump energy assumed for NMC-type cathodes when no reference spectra are given
#: (between the lithiated and delithiated edges of shared/data's NMC622 spectra).
DEFAULT_EDGE_EV = 8346.0


def calibrate(
    energy_eV: np.ndarray,
    lithiated: NormalizedSpectrum | None = None,
    delithiated: NormalizedSpectrum | None = None,
    *,
    allow_swapped: bool = False,
    energy_offset_eV: float = 0.0,
    series: tuple[np.ndarray, tuple[NormalizedSpectrum, ...]] | None = None,
) -> Calibration:
    """Build the retrieval model at ``energy_eV`` from two normalized reference spectra.

    Parameters
    ----------
    energy_eV : ndarray
        Scan energies (two or more).
    lithiated, delithiated : NormalizedSpectrum, optional
        End-member reference spectra; required for three or more energies. With two energies
        they only set the mean edge shape at the two energies (a unit step at
        :data:`DEFAULT_EDGE_EV` without them).
    allow_swapped : bool
        Accept a lithiated edge above the delithiated one (unusual standards).
    energy_offset_eV : float
        The standards' energy scale minus the scan's: the spectra are read at
        ``energy_eV + energy_offset_eV`` (:mod:`xtwin.retrieve.energy_scale`).
    series : (lithiations, spectra), optional
        A calibration series in ascending lithiation (its first and last spectra are
        ``delithiated`` and ``lithiated``): three or more energies then retrieve w on the
        piecewise-linear path through it (:mod:`xtwin.retrieve.path`).

    Raises
    ------
    XtwinInputError
        Fewer than two energies, missing references for three or more, energies outside the
        reference spectra, energies that do not bracket the Ni edge, swapped references, or no
        contrast between the end members.
    """
    e_scan = np.sort(np.asarray(energy_eV, dtype=float))
    e = e_scan + energy_offset_eV if energy_offset_eV else e_scan
    if e.size < 2:
        raise XtwinInputError(
            f"{e.size} energy given; the retrieval needs at least two (pre- and post-edge) for "
            "the Ni edge jump and three (pre-edge, edge, post-edge) for the lithiation"
        )
    if (lithiated is None) != (delithiated is None):
        raise XtwinInputError("give both reference spectra (lithiated and delithiated) or none")
    if lithiated is None or delithiated is None:
        if e.size > 2:
            raise XtwinInputError(
                f"{e.size} energies: the lithiation retrieval needs the two end members' "
                "reference spectra; pass --lithiated and --delithiated"
            )
        return _edge_jump_calibration(e_scan, None)
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
    if e.size == 2:
        return _edge_jump_calibration(e_scan, (lithiated, delithiated))
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
    cal = Calibration(
        e_scan,
        background_energy_dependence(e),
        jump_energy_dependence(e),
        s_l,
        s_d,
        float(edge),
        float(energy_offset_eV),
    )
    if np.linalg.cond(cal.matrix) > 1e6:
        raise XtwinInputError(
            "the energies give an ill-conditioned retrieval; spread them across the edge"
        )
    if series is not None:
        cal = _with_path(cal, build_path(e, series[0], series[1]))
    return cal


def attenuation_calibration(energy_eV: np.ndarray) -> Calibration:
    """One energy (known or NaN): the attenuation is reconstructed, nothing is retrieved."""
    e = np.asarray(energy_eV, dtype=float).reshape(1)
    one, zero = np.ones(1), np.zeros(1)
    return Calibration(e, one, zero, zero, zero, DEFAULT_EDGE_EV)


def _with_path(cal: Calibration, path: ChemistryPath) -> Calibration:
    """The calibration with a chemistry path; for three energies, nodes that the energies
    cannot tell apart are pooled first (:func:`xtwin.retrieve.path.pool_nodes`)."""
    import dataclasses

    if cal.mode == "three-energy":
        pinv = np.linalg.pinv(cal.matrix)[1:]
        a, c, b, d = segment_coefficients(pinv, cal.jump, path)
        path = pool_nodes(path, np.append(c / a, (c[-1] + d[-1]) / (a[-1] + b[-1])))[0]
    return dataclasses.replace(cal, path=path)


def _edge_jump_calibration(
    e: np.ndarray, refs: tuple[NormalizedSpectrum, NormalizedSpectrum] | None
) -> Calibration:
    """Two energies: background and Ni edge jump, with the mean end-member shape."""
    if refs is None:
        edge = DEFAULT_EDGE_EV
        s = (e > edge).astype(float)
    else:
        edge = 0.5 * (refs[0].e_half_jump_eV + refs[1].e_half_jump_eV)
        s = 0.5 * sum(np.interp(e, r.energy_eV, r.flat) for r in refs)
    if not (e[0] < edge - 5.0 and e[1] > edge and s[1] - s[0] > 0.5):
        raise XtwinInputError(
            f"the two energies {e[0]:.1f} and {e[1]:.1f} eV do not bracket the Ni K edge at "
            f"{edge:.1f} eV: the edge jump needs one energy below the edge (< edge - 5 eV) and "
            "one above it, where the normalized absorbance exceeds 0.5"
        )
    return Calibration(
        e, background_energy_dependence(e), jump_energy_dependence(e), s, s, float(edge)
    )


def best_edge_energy(
    lithiated: NormalizedSpectrum, delithiated: NormalizedSpectrum, lo_eV: float, hi_eV: float
) -> tuple[float, float]:
    """The energy in ``[lo_eV, hi_eV]`` where the two end members differ most (in Ni jump
    units, times the jump's energy dependence), and that difference: where a third energy
    gives the lithiation with the least noise."""
    grid = np.arange(max(lo_eV, lithiated.energy_eV[0]), min(hi_eV, lithiated.energy_eV[-1]), 0.1)
    if grid.size == 0:
        return float("nan"), 0.0
    diff = np.interp(grid, lithiated.energy_eV, lithiated.flat) - np.interp(
        grid, delithiated.energy_eV, delithiated.flat
    )
    score = np.abs(diff) * jump_energy_dependence(grid)
    i = int(np.argmax(score))
    return float(grid[i]), float(diff[i])


@dataclass(frozen=True)
class Solution:
    """Unmasked per-voxel solution of the linear model (see :func:`solve`).

    ``lithiation`` and ``sigma`` are NaN for two energies (edge-jump mode); ``chi2`` (the
    reduced chi-square of the fit) is given for four or more energies only.
    """

    lithiation: np.ndarray
    sigma: np.ndarray
    edge_jump: np.ndarray
    edge_jump_sigma: np.ndarray
    background: np.ndarray
    chi2: np.ndarray | None = None


def solve(
    mu: np.ndarray, mu_sigma: np.ndarray, calibration: Calibration, out: Solution | None = None
) -> Solution:
    """Solve for (B, J, w) in every voxel, with first-order sigma and the ratio-bias correction.

    Three energies: one exact 3x3 solve shared by every voxel. Four or more: weighted least
    squares per voxel (weights ``1 / mu_sigma**2``), covariance from the inverse normal
    matrix, and the reduced chi-square. Two: (B, J) only.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, ...)
        Attenuation (or optical density) per energy, in the calibration's energy order, and
        its standard uncertainty.
    calibration : Calibration
        From :func:`calibrate`.
    out : Solution, optional
        float32 arrays of shape ``mu.shape[1:]`` to write the solution into (returned).

    Returns
    -------
    Solution
        float32 arrays of shape ``mu.shape[1:]``; no mask applied.
    """
    m = calibration.matrix
    n_e, n_p = m.shape
    if mu.shape[0] != n_e or mu_sigma.shape != mu.shape:
        raise XtwinInputError(f"{mu.shape[0]} attenuation maps for {n_e} energies")
    if n_e == n_p == 3:
        return _solve_three(mu, mu_sigma, calibration, out)
    res = _solve(mu, mu_sigma, calibration)
    if out is None:
        return res
    for f in _SOLVED:
        getattr(out, f)[...] = getattr(res, f)
    return dataclasses.replace(out, chi2=res.chi2)


def _solve_three(
    mu: np.ndarray, mu_sigma: np.ndarray, calibration: Calibration, out: Solution | None
) -> Solution:
    """Three energies: one compiled pass over the voxels (float32 arithmetic: w is a ratio,
    its relative rounding error, 1e-7, is far below any noise); on a chemistry path the
    end-member ratio ``u = K / J`` is then mapped onto the path."""
    from xtwin.retrieve._kernels import solve_three

    shape = mu.shape[1:]
    if out is None:
        out = Solution(*(np.empty(shape, np.float32) for _ in range(5)))
    pinv = calibration.inverse
    cov = np.stack([pinv[1] ** 2, pinv[2] ** 2, pinv[1] * pinv[2]])
    given = [getattr(out, f) for f in _SOLVED]
    direct = all(a.flags.c_contiguous and a.dtype == np.float32 for a in given)
    dest = given if direct else [np.empty(shape, np.float32) for _ in given]
    solve_three(  # strided views where they can be (an energy's row of a block): no copies
        np.asarray(mu.reshape(3, -1), dtype=np.float32),
        np.asarray(mu_sigma.reshape(3, -1), dtype=np.float32),
        pinv,
        cov,
        *(a.reshape(-1) for a in dest),
    )
    path = calibration.path
    if path is not None:
        w, sigma, jump, jump_sigma = dest[:4]
        coefficients = segment_coefficients(pinv[1:], calibration.jump, path)
        w[...], sigma[...], factor = map_three(w, sigma, jump, coefficients, path)
        jump *= factor
        jump_sigma *= np.abs(factor)
    if not direct:
        for a, b in zip(given, dest):
            a[...] = b
    return out


#: The fields :func:`solve` writes, in the order of the compiled solve's outputs.
_SOLVED = ("lithiation", "sigma", "edge_jump", "edge_jump_sigma", "background")


def _solve(mu: np.ndarray, mu_sigma: np.ndarray, calibration: Calibration) -> Solution:
    """:func:`solve` of two energies, or of four and more (weighted least squares; on a
    chemistry path, per segment)."""
    m = calibration.matrix
    n_e, n_p = m.shape
    if calibration.path is not None and n_e > 3:
        return _solve_on_path(mu, mu_sigma, calibration)
    # float32 arithmetic (one BLAS product per quantity): w is a ratio, its relative
    # rounding error (1e-7) is far below any noise
    flat_mu = mu.reshape(n_e, -1).astype(np.float32, copy=False)
    var = np.square(mu_sigma.reshape(n_e, -1), dtype=np.float32)
    chi2 = None
    if n_e == n_p:
        pinv = calibration.inverse  # (n_p, n_e)
        coef = pinv @ flat_mu
        c_jj = (pinv[1] ** 2) @ var
    else:
        coef, cov, chi2 = _weighted_fit(m, flat_mu, var)
        c_jj, c_kk, c_jk = cov[1, 1], cov[2, 2], cov[1, 2]
    b, j = coef[0], coef[1]
    shape = mu.shape[1:]

    def f32(a: np.ndarray) -> np.ndarray:
        return a.reshape(shape).astype(np.float32, copy=False)

    if n_p == 2:
        nan = np.full(shape, np.nan, dtype=np.float32)
        return Solution(nan, nan.copy(), f32(j), f32(np.sqrt(c_jj)), f32(b))
    k = coef[2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = k / j
        j2 = j * j
        w -= (w * c_jj - c_jk) / j2
        sigma = c_kk - 2 * w * c_jk + w * w * c_jj
        np.maximum(sigma, 0.0, out=sigma)
        np.sqrt(sigma, out=sigma)
        sigma /= np.abs(j)
    c_jj = np.sqrt(c_jj)
    return Solution(
        f32(w),
        f32(sigma),
        f32(j),
        f32(c_jj),
        f32(b),
        None if chi2 is None else f32(chi2),
    )


def _solve_on_path(mu: np.ndarray, mu_sigma: np.ndarray, cal: Calibration) -> Solution:
    """Four or more energies on a chemistry path: the weighted fit of every segment
    (background, its start spectrum, its step t); per voxel the segment whose t lies in
    [0, 1] (the end segments extrapolate) with the smallest chi-square."""
    path = cal.path
    assert path is not None
    n_e = mu.shape[0]
    shape = mu.shape[1:]
    flat_mu = mu.reshape(n_e, -1)
    var = np.square(mu_sigma.reshape(n_e, -1), dtype=np.float64)
    n_seg = path.lithiation.size - 1
    best_score = np.full(flat_mu.shape[1], np.inf)
    out = [np.full(flat_mu.shape[1], np.nan) for _ in range(6)]
    for k in range(n_seg):
        m = np.column_stack(
            [
                cal.background,
                cal.jump * path.spectra[k],
                cal.jump * (path.spectra[k + 1] - path.spectra[k]),
            ]
        )
        coef, cov, chi2 = _weighted_fit(m, flat_mu, var)
        b, j, kk = coef
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = kk / j
            t -= (t * cov[1, 1] - cov[1, 2]) / (j * j)
            s_t = np.sqrt(np.maximum(cov[2, 2] - 2 * t * cov[1, 2] + t * t * cov[1, 1], 0))
            s_t /= np.abs(j)
            lo = t < 0 if k > 0 else np.zeros_like(t, dtype=bool)
            hi = t > 1 if k < n_seg - 1 else np.zeros_like(t, dtype=bool)
            outside = np.where(lo, -t, 0.0) + np.where(hi, t - 1, 0.0)
            score = np.where(np.isfinite(chi2), outside * 1e6 + chi2, np.inf)
        take = score < best_score
        best_score = np.where(take, score, best_score)
        dw = path.lithiation[k + 1] - path.lithiation[k]
        values = (
            path.lithiation[k] + t * dw,
            s_t * abs(dw),
            j,
            np.sqrt(cov[1, 1]),
            b,
            chi2,
        )
        for o, v in zip(out, values):
            np.copyto(o, v, where=take)

    def f32(a: np.ndarray) -> np.ndarray:
        return a.reshape(shape).astype(np.float32)

    return Solution(*(f32(a) for a in out))


def convention_half_range(
    mu: np.ndarray,
    mu_sigma: np.ndarray,
    solution: Solution,
    calibration: Calibration,
    alternatives: tuple[Calibration, ...],
    *,
    where: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Half the range of w over ``calibration`` (whose ``solution`` is given) and the
    ``alternatives`` (other reference normalizations), per voxel.

    Three energies: each alternative's w is its ratio ``k / j`` with the main solution's
    second-order bias correction (the corrections differ between conventions by far less
    than the spread), two matrix rows per alternative instead of a full solve, in one
    compiled pass. Otherwise each alternative is solved in full.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, ...)
    solution : Solution
        ``calibration``'s solution of ``mu``.
    calibration : Calibration
    alternatives : tuple of Calibration
    where : ndarray of bool, optional
        The voxels to compute (default: all); ``out``'s others are left as they are (NaN in
        a new array).
    out : ndarray, optional
        float32 of the voxels' shape, written in place.

    Returns
    -------
    ndarray
        ``out`` (or a new float32 array).
    """
    if out is None:
        out = np.full(solution.lithiation.shape, np.nan, np.float32)
    flat = out.reshape(-1)  # a view of a contiguous ``out``, else a copy written back below
    if mu.shape[0] == 3 and calibration.matrix.shape == (3, 3) and out.dtype == np.float32:
        from xtwin.retrieve._kernels import ratio_range

        ratio_range(
            np.asarray(mu.reshape(3, -1), dtype=np.float32),
            calibration.inverse[1:],
            np.array([c.inverse[1:] for c in alternatives], np.float32).reshape(-1, 2, 3),
            np.asarray(solution.lithiation.reshape(-1), dtype=np.float32),
            np.ones(flat.size, bool) if where is None else np.asarray(where).reshape(-1),
            flat,
        )
    else:
        idx = np.arange(flat.size) if where is None else np.flatnonzero(where)
        n_e = mu.shape[0]
        m, v = mu.reshape(n_e, -1)[:, idx], mu_sigma.reshape(n_e, -1)[:, idx]
        lo_w = solution.lithiation.reshape(-1)[idx]
        hi_w = lo_w.copy()
        for cal in alternatives:
            w_alt = solve(m, v, cal).lithiation
            np.fmin(lo_w, w_alt, out=lo_w)
            np.fmax(hi_w, w_alt, out=hi_w)
        flat[idx] = 0.5 * (hi_w - lo_w)
    if not np.shares_memory(flat, out):
        out[...] = flat.reshape(out.shape)
    return out


def _weighted_fit(
    m: np.ndarray, mu: np.ndarray, var: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel weighted least squares of ``mu ~ m @ coef`` (3 unknowns): the coefficients
    (3, N), their covariance (3, 3, N) and the reduced chi-square (N,). Voxels with a
    non-positive or non-finite variance at some energy get NaN."""
    # float64: B and J are strongly correlated (b and j S are both smooth power laws), so
    # the normal matrix is ill-conditioned and its cofactors cancel
    m64 = m.astype(np.float64)
    mu = mu.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        wgt = np.where(var > 0, 1.0 / var.astype(np.float64), np.nan)
        # normal matrix A = M^T W M (symmetric 3x3 per voxel) and right side M^T W mu
        a = np.einsum("ep,eq,en->pqn", m64, m64, wgt, optimize=True)
        rhs = m64.T @ (wgt * mu)
        c00 = a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1]
        c01 = a[0, 2] * a[2, 1] - a[0, 1] * a[2, 2]
        c02 = a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1]
        det = a[0, 0] * c00 + a[1, 0] * c01 + a[2, 0] * c02
        inv = np.empty_like(a)
        inv[0, 0], inv[0, 1], inv[0, 2] = c00, c01, c02
        inv[1, 1] = a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0]
        inv[1, 2] = a[0, 2] * a[1, 0] - a[0, 0] * a[1, 2]
        inv[2, 2] = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
        inv[1, 0], inv[2, 0], inv[2, 1] = inv[0, 1], inv[0, 2], inv[1, 2]
        inv /= det
        coef = np.einsum("pqn,qn->pn", inv, rhs)
        resid = mu - m64 @ coef
        chi2 = np.sum(resid * resid * wgt, axis=0) / (m.shape[0] - m.shape[1])
    return coef, inv, chi2


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
    require_lithiation: bool = True,
) -> Retrieval:
    """Keep voxels with a significant Ni edge jump; NaN elsewhere.

    A voxel has Ni when ``J / sigma_J >= min_jump_snr`` and
    ``J >= min_jump_fraction * jump_reference_value`` (and, unless ``require_lithiation`` is
    False, as in the two-energy mode, its lithiation is finite).
    """
    s = solution
    masked = dataclasses.replace(
        s,
        lithiation=np.array(s.lithiation, dtype=np.float32),
        sigma=np.array(s.sigma, dtype=np.float32),
    )
    mask = np.empty(np.shape(s.lithiation), bool)
    mask_in_place(
        masked,
        jump_reference_value,
        mask,
        min_jump_snr=min_jump_snr,
        min_jump_fraction=min_jump_fraction,
        require_lithiation=require_lithiation,
    )
    return Retrieval(masked.lithiation, masked.sigma, mask, s.edge_jump, s.background)


def mask_in_place(
    solution: Solution,
    jump_reference_value: float,
    mask: np.ndarray,
    *,
    min_jump_snr: float = 3.0,
    min_jump_fraction: float = 0.2,
    require_lithiation: bool = True,
) -> None:
    """:func:`apply_mask` into ``mask`` (bool, the solution's shape), the solution's
    lithiation and sigma set to NaN outside it in place (float32 C-contiguous arrays)."""
    from xtwin.retrieve._kernels import mask_voxels

    s = solution
    f32 = np.float32
    for a in (s.lithiation, s.sigma, mask):
        if not a.flags.c_contiguous or a.dtype != (bool if a is mask else f32):
            raise ValueError("mask_in_place needs C-contiguous float32 maps and a bool mask")
    mask_voxels(
        s.lithiation.reshape(-1),
        s.sigma.reshape(-1),
        np.ascontiguousarray(s.edge_jump, dtype=f32).reshape(-1),
        np.ascontiguousarray(s.edge_jump_sigma, dtype=f32).reshape(-1),
        f32(min_jump_snr),
        f32(min_jump_fraction * jump_reference_value),
        require_lithiation,
        mask.reshape(-1),
    )
