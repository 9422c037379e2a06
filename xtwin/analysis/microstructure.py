"""Microstructure metrics for any labelled volume, generated or reconstructed (porespy).

Phase codes follow the truth file: 0 electrolyte, 1 active, 2 carbon-binder, 3 closed internal
pore, 255 outside the sample (excluded from every fraction). A reconstructed Li map gives a
two-phase volume (1 where Ni was found, 0 elsewhere inside the sample).

- phase fractions and their profiles across the electrode depth (axis 0):
  ``porespy.metrics.porosity_profile`` per phase, with outside voxels excluded;
- particle size distribution: from the particle labels when known, otherwise from a
  ``porespy.filters.snow_partitioning`` of the active phase (watershed on the distance map);
  diameters are those of the volume-equivalent sphere;
- specific surface area of the active phase: marching-cubes mesh (scikit-image) of the
  lightly smoothed (sigma 0.7 voxel) phase, per sample volume;
- tortuosity of the electrolyte along the thickness: ``porespy.simulations.tortuosity_fd``
  (finite differences, OpenPNM + PyAMG) on a copy block-averaged to at most ``tortuosity_max``
  voxels per side (stated in the result), compared with Bruggeman's eps^-0.5. For a pillar it
  runs in the largest square prism inside the pillar, so the air around it does not count.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import numpy as np

PHASE_NAMES = {0: "pore", 1: "active", 2: "cbd", 3: "closed_pore"}
OUTSIDE = 255


@contextlib.contextmanager
def _quiet_porespy():
    """porespy prints progress to stdout; keep stdout clean for --json."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def phase_fractions(phases: np.ndarray) -> dict[str, float]:
    """Volume fraction of each phase inside the sample (outside voxels excluded)."""
    inside = phases != OUTSIDE
    n = max(int(inside.sum()), 1)
    counts = np.bincount(phases[inside].ravel(), minlength=4)
    return {
        name: float(counts[code] / n) for code, name in PHASE_NAMES.items() if code < counts.size
    }


def depth_profiles(phases: np.ndarray, voxel_m: float) -> dict[str, list[float]]:
    """Fraction of each phase per slice along axis 0 (electrode depth), outside excluded."""
    import porespy as ps

    out: dict[str, list[float]] = {}
    for code, name in PHASE_NAMES.items():
        im = np.where(phases == OUTSIDE, 2, (phases == code).astype(np.uint8))
        with _quiet_porespy():
            prof = ps.metrics.porosity_profile(im, axis=0, voxel_size=voxel_m)
        out[name] = np.round(np.nan_to_num(prof.porosity), 5).tolist()
        out.setdefault("depth_m", (np.asarray(prof.position)).tolist())
    return out


def particle_size_distribution(
    active: np.ndarray, voxel_m: float, labels: np.ndarray | None = None
) -> dict[str, Any]:
    """Equivalent-sphere diameters of particles (labels if given, else SNOW partitioning)."""
    import porespy as ps
    from scipy import ndimage

    method = "labels"
    if labels is None:
        method = "snow_partitioning"
        # a one-voxel closing fills cracks, which would otherwise split particles
        solid = ndimage.binary_closing(active, iterations=1) | active
        with _quiet_porespy():
            snow = ps.filters.snow_partitioning(solid, r_max=4, sigma=0.4)
        labels = np.where(active, snow.regions, 0)
    vols = np.bincount(labels.ravel())[1:]
    vols = vols[vols > 0].astype(float)
    if vols.size == 0:
        return {"method": method, "n": 0}
    d = 2.0 * np.cbrt(3.0 * vols / (4.0 * np.pi)) * voxel_m
    order = np.argsort(d)
    cum_v = np.cumsum(vols[order]) / vols.sum()
    return {
        "method": method,
        "n": int(d.size),
        "d10_m": float(np.percentile(d, 10)),
        "d50_m": float(np.percentile(d, 50)),
        "d90_m": float(np.percentile(d, 90)),
        "d50_volume_weighted_m": float(d[order][np.searchsorted(cum_v, 0.5)]),
    }


def specific_surface_area(
    active: np.ndarray, voxel_m: float, sample_voxels: int, *, step: int = 1
) -> float:
    """Surface area of the active phase per sample volume (1/m), marching cubes."""
    from scipy import ndimage
    from skimage import measure

    if not active.any() or active.all():
        return 0.0
    # a light Gaussian smoothing removes the voxel staircase (+9 % area on a digital sphere)
    padded = ndimage.gaussian_filter(np.pad(active.astype(np.float32), 2), 0.7)
    verts, faces, _, _ = measure.marching_cubes(padded, level=0.5, step_size=step)
    area = measure.mesh_surface_area(verts, faces) * voxel_m**2
    return float(area / (sample_voxels * voxel_m**3))


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over non-overlapping f x f x f blocks (a trailing partial block is dropped)."""
    s = tuple((n // f) * f for n in a.shape)
    a = a[: s[0], : s[1], : s[2]]
    return a.reshape(s[0] // f, f, s[1] // f, f, s[2] // f, f).mean(axis=(1, 3, 5))


def inscribed_box(inside: np.ndarray) -> tuple[slice, slice, slice]:
    """The largest centred (y, x) square whose every column is inside the sample, all z."""
    cols = inside.all(axis=0)
    ny, nx = cols.shape
    half = min(ny, nx) // 2
    cy, cx = ny // 2, nx // 2
    while half > 1 and not np.asarray(cols)[cy - half : cy + half, cx - half : cx + half].all():
        half -= 1
    return slice(None), slice(cy - half, cy + half), slice(cx - half, cx + half)


def tortuosity(pore: np.ndarray, *, axis: int = 0, max_size: int = 96) -> dict[str, Any]:
    """Tortuosity factor of ``pore`` along ``axis`` (finite differences, porespy).

    Crop to the sample first (see :func:`inscribed_box` for pillars).
    """
    import porespy as ps

    f = int(np.ceil(max(pore.shape) / max_size))
    im = block_mean(pore.astype(np.float32), f) >= 0.5 if f > 1 else pore.astype(bool)
    eps = float(im.mean())
    res = {"block_factor": f, "porosity": eps, "bruggeman": eps**-0.5 if eps > 0 else None}
    with _quiet_porespy():
        if not ps.metrics.is_percolating(im, axis=axis):  # type: ignore[attr-defined]
            return {**res, "tortuosity": None, "percolating": False}
        out = ps.simulations.tortuosity_fd(im, axis=axis)
    return {
        **res,
        "tortuosity": float(out.tortuosity),
        "percolating": True,
        "effective_porosity": float(out.effective_porosity),
    }


def microstructure_metrics(
    phases: np.ndarray,
    voxel_m: float,
    *,
    labels: np.ndarray | None = None,
    tortuosity_max: int = 96,
) -> dict[str, Any]:
    """All metrics of a phase volume (see module docstring)."""
    inside = phases != OUTSIDE
    active = phases == 1
    sample_voxels = int(inside.sum())
    step = 1 if phases.size <= 256**3 else 2
    return {
        "voxel_m": voxel_m,
        "shape": list(phases.shape),
        "fractions": phase_fractions(phases),
        "particle_size": particle_size_distribution(active, voxel_m, labels),
        "specific_surface_area_per_m": specific_surface_area(
            active, voxel_m, sample_voxels, step=step
        ),
        "tortuosity_electrolyte_thickness": tortuosity(
            (phases == 0)[inscribed_box(inside)], axis=0, max_size=tortuosity_max
        ),
        "depth_profiles": depth_profiles(phases, voxel_m),
    }


def metrics_of_file(path: str | os.PathLike, *, fine: bool = False) -> dict[str, Any]:
    """Microstructure metrics of the phase volume in any microstructure, truth or Li-map file
    (what ``xtwin metrics`` does).

    Parameters
    ----------
    path : path-like
        The file.
    fine : bool
        Use the fine simulation grid of a truth or microstructure file.

    Returns
    -------
    dict
        :func:`microstructure_metrics` with a ``source`` entry (path and file kind).
    """
    from xtwin.io.volumes import read_phase_volume

    vol = read_phase_volume(path, fine=fine)
    out = microstructure_metrics(vol.phases, vol.voxel_m, labels=vol.labels)
    out["source"] = {"path": str(path), "kind": vol.kind}
    return out
