"""Ring-artefact removal: stripes in the sinograms from detector pixels that the flat field
does not correct (gain drift between flats and projections, dead or hot pixels).

A pixel whose response differs by a constant factor between the flats and the projections adds
the same offset to its column of every sinogram row, which the back-projection turns into a
ring. Per detector row (so blocks of rows give the same result as the whole detector), the
column means over the angles minus their running median along the columns are the stripes;
those beyond the noise of a column mean are subtracted from every angle (the smoothing-filter
method [1]). The mean over the angles of real structure is smooth on the scale of a pixel on a
large detector; on a small one (tens of pixels across the sample) structure leaks into the
stripe estimate and the correction is partial. Columns whose stripe is far beyond the others
(hot or saturated pixels) are replaced by linear interpolation from their neighbours [2]; dead
pixels are filled at normalization (:mod:`xtwin.prep.normalize`).

References
----------
.. [1] M. Rivers, "Tutorial introduction to X-ray computed microtomography data processing,"
   (1998); C. Raven, "Numerical removal of ring artifacts in microtomography," Rev. Sci.
   Instrum. 69, 2978-2980 (1998).
.. [2] N. T. Vo, R. C. Atwood and M. Drakopoulos, "Superior techniques for eliminating ring
   artifacts in X-ray micro-tomography," Opt. Express 26, 28396-28412 (2018).
"""

from __future__ import annotations

import numpy as np

#: Half-width (columns) of the median filter that separates stripes from structure: a stripe
#: is one or two pixels wide, while the mean over the angles of a real structure spreads over
#: its distance from the rotation axis.
STRIPE_FILTER_HALF_WIDTH = 2

#: A column's stripe is removed when it exceeds this many noise sigmas of its column mean.
STRIPE_SIGMAS = 4.0

#: A column is defective when its stripe exceeds this many robust standard deviations of the
#: row's stripes and 0.05 in absorbance.
DEFECT_SIGMAS = 8.0


def stripes(p: np.ndarray) -> np.ndarray:
    """The stripe of every column of every row: ``(rows, n_col)`` from ``(n_angle, rows, n_col)``
    absorbance: the column means over the angles minus their running median along the
    columns."""
    from scipy import ndimage

    m = p.mean(axis=0, dtype=np.float64)
    k = 2 * STRIPE_FILTER_HALF_WIDTH + 1
    return m - ndimage.median_filter(m, size=(1, k), mode="nearest")


def remove_stripes(p: np.ndarray, var: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Absorbance ``(n_angle, rows, n_col)`` with the stripes removed (those beyond
    :data:`STRIPE_SIGMAS` noise sigmas of their column mean, given the variance ``var``; all
    when it is not given), and the number of defective columns interpolated (row by row)."""
    s = stripes(p)
    if var is not None:
        noise = np.sqrt(var.mean(axis=0, dtype=np.float64) / p.shape[0])
        s = np.where(np.abs(s) > STRIPE_SIGMAS * noise, s, 0.0)
    out = (p - s[None].astype(np.float32)).astype(np.float32)
    mad = np.median(np.abs(s - np.median(s, axis=1, keepdims=True)), axis=1, keepdims=True)
    bad = (np.abs(s) > DEFECT_SIGMAS * 1.4826 * mad + 1e-12) & (np.abs(s) > 0.05)
    n_bad = int(bad.sum())
    if n_bad:
        cols = np.arange(p.shape[2])
        for r in np.flatnonzero(bad.any(axis=1)):
            good = ~bad[r]
            if good.sum() < 2:
                continue
            for a in range(p.shape[0]):
                out[a, r, bad[r]] = np.interp(cols[bad[r]], cols[good], out[a, r, good])
    return out, n_bad


def stripe_fraction(p: np.ndarray, var: np.ndarray) -> float:
    """Fraction of columns whose stripe exceeds :data:`STRIPE_SIGMAS` noise sigmas: a few
    per cent by chance and structure, more with rings."""
    s = stripes(p)
    noise = np.sqrt(var.mean(axis=0, dtype=np.float64) / p.shape[0])
    return float(np.mean(np.abs(s) > STRIPE_SIGMAS * noise))
