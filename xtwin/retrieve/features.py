"""Model-free spectral features of a XANES stack, per voxel: edge position and white line.

With four or more energies the pipeline fits the two end members with a free edge jump and
background (:func:`xtwin.retrieve.three_energy.solve`). That fit assumes the voxel's spectrum is
a linear mix of the references; the edge position and the white-line position do not, so they
show chemistry the references do not span (a third Ni state, a shifted standard). Each voxel's
spectrum is normalized with the fit's own background and jump,
``n_i = (mu_i - B b_i) / (J j_i)``, then

* **edge position**: the energy where ``n`` rises through 0.5 (linear interpolation between the
  two bracketing energies; of several crossings, the one nearest the references' edge);
* **white line**: the vertex of the parabola through the largest ``n`` within 30 eV above the
  edge and its two neighbours (NaN when the maximum is at the end of that window).

Their standard uncertainties are first-order propagations of ``sigma(n_i) = sigma(mu_i) /
|J j_i|`` (the noise of B and J, shared by all energies, moves both features far less).
Both are only as good as the energy sampling: the provenance records the spacing.
"""

from __future__ import annotations

import numpy as np

from xtwin.retrieve.three_energy import Calibration, Solution

#: The white line is searched from the edge to this far above it (eV).
WHITE_LINE_WINDOW_EV = 30.0


def edge_features(
    mu: np.ndarray,
    mu_sigma: np.ndarray,
    calibration: Calibration,
    solution: Solution,
    edge_eV: float,
) -> dict[str, np.ndarray]:
    """Edge position and white-line position, with sigmas, of every voxel.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, ...)
        Attenuation per energy (calibration order) and its standard uncertainty.
    calibration : Calibration
        At least four energies.
    solution : Solution
        The fit of :func:`xtwin.retrieve.three_energy.solve` (its background and edge jump).
    edge_eV : float
        The references' half-jump energy: of several crossings of 0.5, the nearest is taken.

    Returns
    -------
    dict
        ``edge_position_eV``, ``edge_position_sigma_eV``, ``white_line_eV``,
        ``white_line_sigma_eV``: float32 arrays of shape ``mu.shape[1:]`` (NaN where undefined).
    """
    e = calibration.energy_eV.astype(np.float64)
    n_e = e.size
    shape = mu.shape[1:]
    scale = (calibration.jump[:, None] * solution.edge_jump.reshape(1, -1)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (
            mu.reshape(n_e, -1)
            - calibration.background[:, None].astype(np.float32)
            * solution.background.reshape(1, -1)
        ) / scale
        sn = mu_sigma.reshape(n_e, -1) / np.abs(scale)
    pos, pos_sig = _half_crossing(e, n, sn, edge_eV)
    wl, wl_sig = _white_line(e, n, sn, edge_eV)

    def f32(a: np.ndarray) -> np.ndarray:
        return a.reshape(shape).astype(np.float32)

    return {
        "edge_position_eV": f32(pos),
        "edge_position_sigma_eV": f32(pos_sig),
        "white_line_eV": f32(wl),
        "white_line_sigma_eV": f32(wl_sig),
    }


def _half_crossing(
    e: np.ndarray, n: np.ndarray, sn: np.ndarray, edge_eV: float
) -> tuple[np.ndarray, np.ndarray]:
    nv = n.shape[1]
    best = np.full(nv, np.inf)
    pos = np.full(nv, np.nan)
    sig = np.full(nv, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(e.size - 1):
            a, b = n[k].astype(np.float64), n[k + 1].astype(np.float64)
            d = b - a
            de = e[k + 1] - e[k]
            hit = (a <= 0.5) & (b > 0.5) & (d > 0)
            x = e[k] + (0.5 - a) / d * de
            dist = np.abs(x - edge_eV)
            take = hit & (dist < best)
            if not take.any():
                continue
            # dx/da = de (0.5 - b) / d^2, dx/db = -de (0.5 - a) / d^2
            var = (de / d**2) ** 2 * ((0.5 - b) ** 2 * sn[k] ** 2 + (0.5 - a) ** 2 * sn[k + 1] ** 2)
            pos[take] = x[take]
            sig[take] = np.sqrt(var[take])
            best[take] = dist[take]
    return pos, sig


def _vertex(x: tuple[np.ndarray, np.ndarray, np.ndarray], y0, y1, y2) -> np.ndarray:
    """Abscissa of the vertex of the parabola through (x0, y0), (x1, y1), (x2, y2)."""
    x0, x1, x2 = x
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x1 - 0.5 * num / den


def _white_line(
    e: np.ndarray, n: np.ndarray, sn: np.ndarray, edge_eV: float
) -> tuple[np.ndarray, np.ndarray]:
    nv = n.shape[1]
    out = np.full(nv, np.nan)
    sig = np.full(nv, np.nan)
    window = np.flatnonzero((e >= edge_eV - 2.0) & (e <= edge_eV + WHITE_LINE_WINDOW_EV))
    if window.size < 3:
        return out, sig
    sub = np.where(np.isfinite(n[window]), n[window], -np.inf)
    k = window[np.argmax(sub, axis=0)]
    inside = (k > window[0]) & (k < window[-1]) & np.isfinite(sub).any(axis=0)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return out, sig
    kk = k[idx]
    x = (e[kk - 1], e[kk], e[kk + 1])
    ys = [n[kk + o, idx].astype(np.float64) for o in (-1, 0, 1)]
    v = _vertex(x, *ys)
    var = np.zeros_like(v)
    for o in range(3):  # first-order propagation by central differences in each y
        h = 1e-3
        up = list(ys)
        dn = list(ys)
        up[o] = ys[o] + h
        dn[o] = ys[o] - h
        deriv = (_vertex(x, *up) - _vertex(x, *dn)) / (2 * h)
        var += deriv**2 * sn[kk + o - 1, idx].astype(np.float64) ** 2
    ok = np.isfinite(v) & (v >= x[0]) & (v <= x[2])
    out[idx[ok]] = v[ok]
    sig[idx[ok]] = np.sqrt(var[ok])
    return out, sig
