"""Compiled per-value loops of the reader (numba; imported where first used): the
normalization of integer counts and the finite-kernel shift along detector rows.

numpy would make a dozen passes over every value (each a temporary); these make one. The log
stays numpy's (vectorized: five times numba's scalar log). ``fastmath`` lets LLVM vectorize
and fuse multiply-adds; the compiled code is deterministic on a given machine.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_jit = njit(cache=True, nogil=True, fastmath=True, error_model="numpy", boundscheck=False)


@_jit
def counts_ratio(data, dark, flat, gain, floor, ratio, var):  # pragma: no cover
    """Per value of ``data`` (angles, rows, cols; integer counts): the signal ``I = data -
    dark`` clamped at ``floor``, ``ratio = flat / I`` and the Poisson variance of ``-ln I``,
    ``gain max(data, floor) / I^2``; returns the number of clamped values. ``dark`` and
    ``flat`` (the flats' mean less the dark, times the exposure ratio) are per pixel (rows,
    cols)."""
    clamped = 0
    n_a, n_r, n_c = data.shape
    for a in range(n_a):
        for r in range(n_r):
            for c in range(n_c):
                raw = np.float32(data[a, r, c])
                s = raw - dark[r, c]
                if s < floor:
                    clamped += 1
                    s = floor
                ratio[a, r, c] = flat[r, c] / s
                var[a, r, c] = gain * max(raw, floor) / (s * s)
    return clamped


@_jit
def debias(p, var, flat_rel_var):  # pragma: no cover - compiled
    """``p += (flat_rel_var - var) / 2`` and ``var += flat_rel_var`` in place: the
    second-order bias of the log of a Poisson count (``var``, per value) and of the flats'
    mean (``flat_rel_var``, per pixel), and the total variance."""
    half = np.float32(0.5)
    n_a, n_r, n_c = p.shape
    for a in range(n_a):
        for r in range(n_r):
            for c in range(n_c):
                f = flat_rel_var[r, c]
                v = var[a, r, c]
                p[a, r, c] += half * f - half * v
                var[a, r, c] = v + f


@_jit
def weighted_rows(block, w, out):  # pragma: no cover - compiled
    """``out[a, r] = sum_t w[t] block[a, r + t]`` over (outer, rows, inner) arrays: an
    ``len(w)``-tap kernel along the middle axis."""
    n_a, n_out, n_c = out.shape
    for a in range(n_a):
        for r in range(n_out):
            row = out[a, r]
            for c in range(n_c):
                row[c] = 0.0
            for t in range(w.size):
                wt = w[t]
                src = block[a, r + t]
                for c in range(n_c):
                    row[c] += wt * src[c]
