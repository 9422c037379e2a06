"""The energy offset between a scan's monochromator scale and its reference standards'.

A quick 2D XANES of the sample (8 or more energies across the Ni K edge) is a set of pixel
spectra. Each pixel's optical density is modelled as in the retrieval, with the standards'
spectra read at ``E + delta``::

    od_p(E) = B_p b(E) + J_p j(E) S_d(E + delta) + K_p j(E) [S_l(E + delta) - S_d(E + delta)]

(B, J, K free per pixel, so the pixel's thickness, lithiation and any smooth background or
normalization difference cost nothing) and one ``delta`` shared by every pixel minimises the
weighted residual. A rigid shift of the edge and a change of lithiation are told apart by the
edge's shape: a mixture of two end members broadens the edge, a shift does not. For a fixed
``delta`` the residual of every pixel's least squares is ``trace((I - P) C)``, with ``P`` the
projector onto the model's columns and ``C`` the pixels' summed outer product, so the whole
search costs a few thousand operations on ``n_E x n_E`` matrices, whatever the number of
pixels. The standard uncertainty is the larger of the curvature estimate and a jackknife over
ten groups of pixels (which also sees model error and correlated noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.attenuation import background_energy_dependence, jump_energy_dependence
from xtwin.physics.spectra import NormalizedSpectrum

#: Offsets searched, eV (either sign): a monochromator calibration rarely moves more.
MAX_OFFSET_EV = 4.0

#: Search grid step, eV (refined by a parabola through the three best points).
GRID_STEP_EV = 0.02

#: Extra Gaussian broadening of the standards searched (sigma, eV): a scan through a wider
#: monochromator bandwidth than the standards' (Si(111) 1.3e-4 is 0.46 eV sigma at 8.35 keV;
#: 2.6e-4 adds 0.80 eV) has broader edges, which an offset alone would absorb.
BROADENING_GRID_EV = np.round(np.arange(0.0, 1.61, 0.1), 2)

#: Fewest energies a quick scan needs, and how many within [edge - 5, edge + 10] eV.
MIN_ENERGIES = 8
MIN_EDGE_ENERGIES = 3

#: Pixels kept: at least this fraction of the robust largest edge jump.
MIN_JUMP_FRACTION = 0.25

#: Jackknife groups of pixels for the uncertainty.
N_GROUPS = 10

#: A reduced chi-square above this (the photon noise known) says the standards do not
#: describe the pixels.
POOR_FIT_CHI2 = 1.25


@dataclass(frozen=True)
class EnergyOffset:
    """An energy offset: true energy on the standards' scale = recorded energy + ``value_eV``.

    Attributes
    ----------
    value_eV, sigma_eV : float
        The offset and its standard uncertainty (0 when given by hand).
    method : str
        ``given`` (``--energy-offset-ev``), ``quick-xanes`` (a separate quick scan) or
        ``scan`` (the scan's own projections).
    n_pixels : int
        Pixel spectra fitted (0 when given).
    details : dict
        What the fit used and found, for the provenance.
    """

    value_eV: float
    sigma_eV: float = 0.0
    method: str = "given"
    n_pixels: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    broadening_eV: float = 0.0

    def provenance(self) -> dict[str, Any]:
        """The record for ``/provenance`` ``energy_offset_eV``."""
        return {
            "value": round(self.value_eV, 4),
            "sigma": round(self.sigma_eV, 4),
            "standards_broadened_by_sigma_eV": round(self.broadening_eV, 3),
            "method": self.method,
            "n_pixels": self.n_pixels,
            "convention": "true energy on the standards' scale = recorded energy + value",
            **self.details,
        }

    def line(self) -> str:
        """One line for the terminal (with a warning when the standards describe the pixel
        spectra poorly: the offset may then absorb a chemistry they miss)."""
        if self.method == "given":
            return f"energy offset {self.value_eV:+.3f} eV (given)"
        out = (
            f"energy offset {self.value_eV:+.3f} +- {self.sigma_eV:.3f} eV from "
            f"{self.n_pixels} pixel spectra ({self.method})"
        )
        if self.broadening_eV:
            out += (
                f"; the scan's edges are broader than the standards' (a wider bandwidth): "
                f"standards broadened by {self.broadening_eV:.1f} eV (sigma)"
            )
        chi2 = self.details.get("reduced_chi2", 1.0)
        if chi2 > POOR_FIT_CHI2:
            out += (
                f"; warning: the standards describe the pixel spectra poorly (reduced "
                f"chi-square {chi2:.1f}), so the offset may absorb a chemistry they miss: "
                "give a calibration series (--calibration-series)"
            )
        return out


def check_spans_edge(
    energy_eV: np.ndarray, edge_eV: float, what: str, min_energies: int = MIN_ENERGIES
) -> None:
    """Refuse energies that cannot calibrate the edge position (``min_energies`` below
    :data:`MIN_ENERGIES`, for a scan fitted on itself, needs one energy on the edge).

    Raises
    ------
    XtwinInputError
        Fewer than :data:`MIN_ENERGIES`, none below ``edge - 5`` or above ``edge + 10`` eV,
        or fewer than :data:`MIN_EDGE_ENERGIES` between them.
    """
    e = np.asarray(energy_eV, dtype=float)
    on_edge = int(np.sum((e >= edge_eV - 5) & (e <= edge_eV + 10)))
    need_edge = MIN_EDGE_ENERGIES if min_energies >= MIN_ENERGIES else 1
    if (
        e.size < min_energies
        or not np.any(e < edge_eV - 5)
        or not np.any(e > edge_eV + 10)
        or on_edge < need_edge
    ):
        raise XtwinInputError(
            f"{what} has {e.size} energies ({e.min():.1f}-{e.max():.1f} eV, {on_edge} within "
            f"[{edge_eV - 5:.0f}, {edge_eV + 10:.0f}] eV): an energy calibration needs at least "
            f"{min_energies} energies spanning the Ni K edge at {edge_eV:.0f} eV, with one "
            f"below {edge_eV - 5:.0f} eV, one above {edge_eV + 10:.0f} eV and "
            f"{need_edge} or more on the edge; take a quick XANES across the edge"
        )


def broaden(spectrum: NormalizedSpectrum, sigma_eV: float) -> NormalizedSpectrum:
    """``spectrum`` convolved with a Gaussian of ``sigma_eV`` (on a 0.05 eV grid), as a
    monochromator of wider bandwidth would have recorded it."""
    import dataclasses

    from scipy.ndimage import gaussian_filter1d

    if sigma_eV <= 0:
        return spectrum
    e = spectrum.energy_eV
    fine = np.arange(e[0], e[-1] + 1e-9, 0.05)

    def conv(y: np.ndarray) -> np.ndarray:
        smooth = gaussian_filter1d(np.interp(fine, e, y), sigma_eV / 0.05, mode="nearest")
        return np.interp(e, fine, smooth)

    return dataclasses.replace(spectrum, flat=conv(spectrum.flat), norm=conv(spectrum.norm))


def _design(
    energy_eV: np.ndarray, spectra: Sequence[NormalizedSpectrum], delta: float
) -> np.ndarray:
    """Model columns at ``energy_eV`` with the standards read at ``E + delta``: background,
    then the jump times each standard (the pixel's mixture is free)."""
    e = energy_eV + delta
    j = jump_energy_dependence(energy_eV)
    cols = [background_energy_dependence(energy_eV)]
    cols += [j * np.interp(e, s.energy_eV, s.flat) for s in spectra]
    return np.column_stack(cols)


def _residual(m: np.ndarray, c: np.ndarray) -> float:
    """``trace((I - P) C)`` with ``P`` the projector onto the columns of ``m``."""
    q, _ = np.linalg.qr(m)
    return float(np.trace(c) - np.sum(q * (c @ q)))


def _search(
    energy_eV: np.ndarray,
    spectra: Sequence[NormalizedSpectrum],
    c: np.ndarray,
    grid: np.ndarray,
    weights: np.ndarray,
) -> tuple[float, np.ndarray]:
    """The offset minimising the residual (grid, then a parabola), and the residual curve."""
    sw = np.sqrt(weights)[:, None]
    curve = np.array([_residual(sw * _design(energy_eV, spectra, d), c) for d in grid])
    i = int(np.argmin(curve))
    if i in (0, grid.size - 1):
        return float(grid[i]), curve
    y0, y1, y2 = curve[i - 1 : i + 2]
    denom = y0 - 2 * y1 + y2
    step = grid[1] - grid[0]
    return float(grid[i] + (0.5 * step * (y0 - y2) / denom if denom > 0 else 0.0)), curve


def fit_energy_offset(
    od: np.ndarray,
    energy_eV: np.ndarray,
    spectra: Sequence[NormalizedSpectrum],
    *,
    edge_eV: float,
    od_var: np.ndarray | None = None,
    method: str = "quick-xanes",
    max_offset_eV: float = MAX_OFFSET_EV,
    min_energies: int = MIN_ENERGIES,
) -> EnergyOffset:
    """Fit one energy offset shared by every pixel spectrum.

    Parameters
    ----------
    od : ndarray, shape (n_energy, n_pixels)
        Optical density (``-ln(I / I0)``) of each pixel at each energy, registered between
        energies. Pixels without Ni, or not finite at every energy, are left out.
    energy_eV : ndarray, shape (n_energy,)
        Recorded energies.
    od_var : ndarray, optional
        The variance of ``od`` (photon statistics): the energies are weighted by it and its
        expected contribution to the residual is taken out (noise that differs between
        energies and pixels otherwise pulls the offset); estimated from the residuals when
        not given.
    spectra : sequence of NormalizedSpectrum
        The standards (two end members, or every spectrum of a calibration series): each
        pixel is a free mixture of them.
    edge_eV : float
        The Ni edge of the standards (for the span check).
    method : str
        Recorded in the result.
    max_offset_eV : float
        Largest offset searched (either sign), further limited by the standards' range.
    min_energies : int
        Fewest energies accepted (:func:`check_spans_edge`).

    Returns
    -------
    EnergyOffset

    Raises
    ------
    XtwinInputError
        Energies that do not span the edge, no pixel with a Ni edge, or a best offset at the
        edge of the search (another edge, another sample, or a gross calibration error).
    """
    e = np.asarray(energy_eV, dtype=float)
    order = np.argsort(e)
    e, od = e[order], np.asarray(od, dtype=np.float64)[order]
    if od_var is not None:
        od_var = np.asarray(od_var, dtype=np.float64)[order]
    check_spans_edge(
        e, edge_eV, "the quick XANES" if "quick" in method else "the scan", min_energies
    )
    lo = max(s.energy_eV[0] for s in spectra) - e[0]
    hi = min(s.energy_eV[-1] for s in spectra) - e[-1]
    lo, hi = max(lo, -max_offset_eV), min(hi, max_offset_eV)
    if hi - lo < 10 * GRID_STEP_EV:
        raise XtwinInputError(
            f"the standards ({max(s.energy_eV[0] for s in spectra):.1f}-"
            f"{min(s.energy_eV[-1] for s in spectra):.1f} eV) do not cover the quick XANES "
            f"energies {e[0]:.1f}-{e[-1]:.1f} eV with room for an offset; measure the "
            "standards over a wider range"
        )
    grid = np.arange(np.ceil(lo / GRID_STEP_EV), np.floor(hi / GRID_STEP_EV) + 1) * GRID_STEP_EV
    x, v = _pixels(od, e, spectra, od_var)
    n_e, n_p = x.shape
    n_par = len(spectra) + 1
    if v is None:  # energies weighted by their noise, from a first fit's residuals
        m0 = _design(e, spectra, 0.0)
        coef, *_ = np.linalg.lstsq(m0, x, rcond=None)
        resid = x - m0 @ coef
        var = np.median(resid * resid, axis=1) / 0.455 + 1e-30  # robust (chi2_1 median)
    else:
        var = np.mean(v, axis=1) + 1e-30
    weights = 1.0 / var
    weights /= weights.mean()
    xw = x * np.sqrt(weights)[:, None]
    groups = np.array_split(np.arange(n_p), N_GROUPS)
    # each group's summed outer product, less the noise's expected part (its diagonal)
    cs = [xw[:, g] @ xw[:, g].T for g in groups]
    if v is not None:
        cs = [cg - np.diag(weights * v[:, g].sum(axis=1)) for cg, g in zip(cs, groups)]
    c = sum(cs)
    # the offset for each extra broadening of the standards; the pair with least residual
    fits = []
    for b in BROADENING_GRID_EV:
        wide = [broaden(s, float(b)) for s in spectra]
        d, cv = _search(e, wide, c, grid, weights)
        fits.append((float(cv.min()), float(b), d, cv, wide))
    _, broadening, best, curve, spectra = min(fits, key=lambda f: f[0])
    if best <= grid[0] + GRID_STEP_EV or best >= grid[-1] - GRID_STEP_EV:
        raise XtwinInputError(
            f"the best energy offset lies at the edge of the search ({best:+.2f} eV of "
            f"{grid[0]:+.2f} to {grid[-1]:+.2f} eV): the quick XANES does not look like a mixture "
            "of the standards (another element or sample, or a gross monochromator error); "
            "check its energies, or give a known offset with --energy-offset-ev"
        )
    # the whitened noise variance per value (the residual's, when the noise is not given)
    if v is None:
        s2 = float(curve.min()) / max(n_p * (n_e - n_par), 1)
    else:
        s2 = float(np.mean(weights * v.mean(axis=1)))
    i = int(np.argmin(curve))
    step = grid[1] - grid[0]
    curv = (curve[i - 1] - 2 * curve[i] + curve[i + 1]) / step**2
    sigma_curv = float(np.sqrt(2 * s2 / curv)) if curv > 0 else float("inf")
    # jackknife: the fit without each group of pixels in turn
    near = grid[max(i - 25, 0) : i + 26]
    loo = np.array([_search(e, spectra, c - cg, near, weights)[0] for cg in cs])
    sigma_jack = float(np.sqrt((N_GROUPS - 1) / N_GROUPS * np.sum((loo - loo.mean()) ** 2)))
    return EnergyOffset(
        best,
        max(sigma_curv, sigma_jack),
        method,
        n_p,
        {
            "broadening_residuals": {
                f"{b:.1f}": round(r / max(n_p * (n_e - n_par) * s2, 1e-30), 4) for r, b, *_ in fits
            },
            "energies_eV": [round(float(v), 2) for v in e],
            "sigma_curvature": round(sigma_curv, 4),
            "sigma_jackknife": round(sigma_jack, 4),
            "noise_subtracted": v is not None,
            "reduced_chi2": round(
                (1.0 if v is not None else 0.0)
                + float(curve.min()) / max(n_p * (n_e - n_par) * s2, 1e-30),
                3,
            ),
            "model": f"each pixel a free mixture of {len(spectra)} standards with a free "
            "background; one offset for all",
            "searched_eV": [round(float(grid[0]), 2), round(float(grid[-1]), 2)],
        },
        broadening,
    )


def _pixels(
    od: np.ndarray,
    e: np.ndarray,
    spectra: Sequence[NormalizedSpectrum],
    od_var: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixel spectra with a clear Ni edge (finite everywhere, an edge jump of at least
    :data:`MIN_JUMP_FRACTION` of the robust largest one), as (n_energy, n_kept), and their
    variances."""
    x = od.reshape(od.shape[0], -1)
    v = None if od_var is None else od_var.reshape(x.shape)
    finite = np.all(np.isfinite(x), axis=0)
    if v is not None:
        finite &= np.all(np.isfinite(v) & (v > 0), axis=0)
        v = v[:, finite]
    x = x[:, finite]
    if x.shape[1] == 0:
        raise XtwinInputError("the quick XANES has no pixel that is finite at every energy")
    m = _design(e, spectra[:1], 0.0)  # background and the jump of one standard
    coef, *_ = np.linalg.lstsq(m, x, rcond=None)
    jump = coef[1]
    ref = float(np.percentile(jump, 99.5))
    resid = np.sqrt(np.mean((x - m @ coef) ** 2, axis=0))
    noise = float(np.median(resid)) + 1e-30
    keep = (jump >= MIN_JUMP_FRACTION * ref) & (jump > 10 * noise)
    if ref <= 0 or keep.sum() < 50:
        raise XtwinInputError(
            f"the quick XANES shows no Ni K edge ({int(keep.sum())} pixels with a clear edge "
            "jump): is it of this sample, and across the Ni edge?"
        )
    return x[:, keep], None if v is None else v[:, keep]
