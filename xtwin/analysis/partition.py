"""Particles of a binary mask by the SNOW algorithm (Gostick, Phys. Rev. E 96, 023307, 2017),
written on scipy and scikit-image so that the processing-only install (without porespy, which
pulls VTK) splits particles the same way.

The steps, as published: (1) the Euclidean distance transform of the mask, blurred with a
Gaussian; (2) its local maxima within a ball of radius ``r_max``; (3) maxima on saddles or
ridges removed (a maximum is kept when growing it over equal-or-higher distance values ends on
itself); (4) of two maxima closer to each other than to the mask's boundary, the one nearer
the boundary removed; (5) a marker-based watershed of the (unblurred) distance transform.
``tests/test_analysis.py`` checks the partition against porespy's
``filters.snow_partitioning`` where porespy is installed.
"""

from __future__ import annotations

import numpy as np

#: Iterations of the saddle test before a maximum is given up.
SADDLE_ITERATIONS = 20


def _ball(r: float, ndim: int) -> np.ndarray:
    """Voxels strictly closer than ``r`` to the centre."""
    rad = int(np.ceil(r))
    grid = np.indices((2 * rad + 1,) * ndim) - rad
    return np.sum(grid**2, axis=0) < r * r


def _label(mask: np.ndarray, full: bool) -> tuple[np.ndarray, int]:
    """Connected components: full (26 in 3D) or face (6) connectivity."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim if full else 1)
    labels, n = ndimage.label(mask, structure=structure)
    return labels, int(n)


def _local_maxima(dt_blurred: np.ndarray, mask: np.ndarray, r_max: float) -> np.ndarray:
    """Voxels of the mask equal to the maximum of their ball (outside counts as high, so
    that no maximum sits on the boundary)."""
    from scipy import ndimage

    lifted = dt_blurred + 2.0 * (~mask)
    top = ndimage.maximum_filter(lifted, footprint=_ball(r_max, mask.ndim))
    return (dt_blurred == top) & mask


def _true_maxima(peaks: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """The peak clusters (face-connected) that are maxima of ``dt``, not saddles or ridges:
    a cluster is grown to the voxels equal to the highest ``dt`` of its neighbourhood until it
    stops changing (a maximum) or leaves itself (a saddle)."""
    from scipy import ndimage

    labels, n = _label(peaks, full=False)
    keep = np.zeros_like(peaks)
    box = np.ones((3,) * dt.ndim, dtype=bool)
    pad = SADDLE_ITERATIONS
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        win = tuple(
            slice(max(s.start - pad, 0), min(s.stop + pad, m)) for s, m in zip(sl, dt.shape)
        )
        cur = labels[win] == k
        d = dt[win]
        inside = d > 0
        for _ in range(SADDLE_ITERATIONS):
            grown = ndimage.binary_dilation(cur, structure=box)
            top = d[grown].max()
            nxt = grown & (d == top) & inside
            if np.array_equal(nxt, cur):
                keep[win] |= cur
                break
            if not np.any(nxt & cur):
                break  # a saddle: the neighbourhood rises away from it
            cur = nxt
    return keep & peaks


def _drop_crowded(peaks: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Of each peak and its nearest neighbour closer than the peak's distance to the boundary,
    the one nearer the boundary is dropped (ties broken by order, reproducibly)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    labels, n = _label(peaks, full=True)
    if n < 2:
        return peaks
    centres = ndimage.center_of_mass(peaks, labels=labels, index=np.arange(1, n + 1))
    ijk = np.vstack(centres).astype(int)
    depth = dt[tuple(ijk.T)] + np.arange(n) * 1e-6
    dist, idx = cKDTree(ijk).query(ijk, k=2)
    near, d_near = idx[:, 1], dist[:, 1]
    hits = np.flatnonzero(d_near <= depth)
    drop = np.unique(np.where(depth[hits] < depth[near[hits]], hits, near[hits])).astype(int)
    lookup = np.zeros(n + 1, dtype=bool)
    lookup[drop + 1] = True
    return peaks & ~lookup[labels]


def snow_partition(mask: np.ndarray, r_max: float = 4, sigma: float = 0.4) -> np.ndarray:
    """Split a binary mask into regions, one per particle (SNOW).

    Parameters
    ----------
    mask : ndarray of bool
        The phase to split (2D or 3D).
    r_max : float
        Radius (voxels) of the ball within which a distance maximum must be the highest.
    sigma : float
        Standard deviation (voxels) of the Gaussian blur of the distance transform before the
        maxima are found (0: none).

    Returns
    -------
    ndarray of int32
        Region labels 1..n inside the mask, 0 outside.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    dt = ndimage.distance_transform_edt(mask)
    blurred = ndimage.gaussian_filter(dt, sigma=sigma) * mask if sigma > 0 else dt.copy()
    peaks = _local_maxima(blurred, mask, r_max)
    peaks = _true_maxima(peaks, dt)
    peaks = _drop_crowded(peaks, dt)
    markers, _ = _label(peaks, full=True)
    regions = watershed(-dt, markers=markers)
    return (regions * mask).astype(np.int32)
