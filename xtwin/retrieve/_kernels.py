"""Compiled per-voxel loops of the retrieval (numba; imported where first used): the exact
three-energy solve and the Ni mask, one pass each instead of a dozen numpy passes.

Only multiply-adds are contracted (``fastmath={"contract"}``): NaN and infinity keep their
IEEE meaning, which the mask relies on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_jit = njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")


@_jit
def solve_three(
    mu, mu_sigma, pinv, cov, w, sigma, jump, jump_sigma, background
):  # pragma: no cover
    """Per voxel (columns of ``mu``, ``mu_sigma``: (3, N) float32): ``(B, J, K) = pinv mu``;
    the variance of J, of K and their covariance as ``cov`` (rows ``pinv[1]**2``,
    ``pinv[2]**2``, ``pinv[1] pinv[2]``) times ``mu_sigma**2``; and ``w = K / J`` with its
    second-order ratio bias removed and its first-order sigma; into the (N,) outputs."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for i in range(mu.shape[1]):
        m0, m1, m2 = mu[0, i], mu[1, i], mu[2, i]
        v0 = mu_sigma[0, i] * mu_sigma[0, i]
        v1 = mu_sigma[1, i] * mu_sigma[1, i]
        v2 = mu_sigma[2, i] * mu_sigma[2, i]
        j = pinv[1, 0] * m0 + pinv[1, 1] * m1 + pinv[1, 2] * m2
        k = pinv[2, 0] * m0 + pinv[2, 1] * m1 + pinv[2, 2] * m2
        c_jj = cov[0, 0] * v0 + cov[0, 1] * v1 + cov[0, 2] * v2
        c_kk = cov[1, 0] * v0 + cov[1, 1] * v1 + cov[1, 2] * v2
        c_jk = cov[2, 0] * v0 + cov[2, 1] * v1 + cov[2, 2] * v2
        r = k / j
        r -= (r * c_jj - c_jk) / (j * j)
        s = c_kk - two * r * c_jk + r * r * c_jj
        w[i] = r
        sigma[i] = np.sqrt(max(s, zero)) / abs(j)
        jump[i] = j
        jump_sigma[i] = np.sqrt(c_jj)
        background[i] = pinv[0, 0] * m0 + pinv[0, 1] * m1 + pinv[0, 2] * m2


@_jit
def mask_voxels(
    w, sigma, jump, jump_sigma, min_snr, min_jump, finite_of_w, mask
):  # pragma: no cover - compiled
    """The Ni mask (``J / sigma_J >= min_snr``, ``J >= min_jump`` and a finite ``w``, or a
    finite ``J`` when not ``finite_of_w``) into ``mask``; ``w`` and ``sigma`` NaN outside it,
    in place."""
    nan = np.float32(np.nan)
    for i in range(w.size):
        j = jump[i]
        ok = j / jump_sigma[i] >= min_snr and j >= min_jump
        ok = ok and (np.isfinite(w[i]) if finite_of_w else np.isfinite(j))
        mask[i] = ok
        if not ok:
            w[i] = nan
            sigma[i] = nan


@_jit
def ratio_range(mu, main, rows, w, where, half_range):  # pragma: no cover - compiled
    """Half the range of ``w`` and of the ratios ``K / J`` of every ``rows`` (n_alt, 2, 3:
    the J and K rows of each alternative's inverse), each less the bias correction that
    ``w`` carries (its ratio under ``main``, (2, 3), minus ``w``), per voxel (columns of
    ``mu``) where ``where`` holds; the other voxels of ``half_range`` are left as they are."""
    half = np.float32(0.5)
    for i in range(mu.shape[1]):
        if not where[i]:
            continue
        m0, m1, m2 = mu[0, i], mu[1, i], mu[2, i]
        wi = w[i]
        j = main[0, 0] * m0 + main[0, 1] * m1 + main[0, 2] * m2
        k = main[1, 0] * m0 + main[1, 1] * m1 + main[1, 2] * m2
        delta = k / j - wi
        lo = wi
        hi = wi
        for a in range(rows.shape[0]):
            j = rows[a, 0, 0] * m0 + rows[a, 0, 1] * m1 + rows[a, 0, 2] * m2
            k = rows[a, 1, 0] * m0 + rows[a, 1, 1] * m1 + rows[a, 1, 2] * m2
            alt = k / j - delta
            if alt < lo or np.isnan(lo):  # fmin / fmax: a NaN loses to a number
                lo = alt if not np.isnan(alt) else lo
            if alt > hi or np.isnan(hi):
                hi = alt if not np.isnan(alt) else hi
        half_range[i] = (hi - lo) * half
