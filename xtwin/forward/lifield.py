"""Map PyBaMM's lithiation onto every voxel of every particle.

The approximation (docs/electrochemistry.md):

- **depth and size select PyBaMM's solution**: a particle takes PyBaMM's c(r/R; R, x) at the
  depth x of its centre and at its size R in the particle-size distribution; with activity
  heterogeneity, at its *effective* size ``R / a`` (a particle better wired than average,
  ``a > 1``, reacts like a smaller one).
- **shape by diffusion distance from the wetted surface**: inside the particle, each voxel's
  distance to the nearest electrolyte-wetted voxel (electrolyte, carbon-binder with its wet
  nanopores, and internal cracks connected to the electrolyte; not neighbouring particles,
  closed pores or air) orders the voxels from surface to core. Voxels are mapped to the
  sphere's radius by equal volume: the voxel at volume-quantile F of that distance within its
  particle takes PyBaMM's value at r/R = (1 - F)^(1/3), the radius below which a sphere holds
  the same volume fraction. The sphere's radial profile is thereby re-parameterized on the
  particle's real geometry, and the particle's voxel mean equals PyBaMM's volume average up
  to discretization (an exact per-particle shift removes the rest). Connected internal cracks
  are wetted surface, so lithiation proceeds from inside such particles.
- **hot spots**: with ``hotspot_strength`` s, voxels near carbon-binder contacts (weight
  h = exp(-d_CBD / hotspot_length_m)) react ahead of the rest of their particle by
  ``s * progress * (h / mean_particle(h) - 1)``, where progress is the particle's change of w
  since the start, made zero-sum in every z-plane of every particle (Li moves toward CBD
  contacts within the plane, never across depth).

Conservation (tested): every particle's voxel mean equals its PyBaMM value (to 1e-6 before
float32 storage), whatever the options redistribute inside it; each depth slab holds the Li
PyBaMM assigns to the particle volume in that slab.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from xtwin.forward.electrochem import ElectrochemResult
from xtwin.forward.microstructure import PHASE_ACTIVE, PHASE_CBD, PHASE_PORE, Microstructure
from xtwin.forward.scenario import ElectrochemistrySpec


def wetted_distance(ms: Microstructure) -> np.ndarray:
    """Distance (voxels) of every voxel to the nearest electrolyte-wetted voxel."""
    import edt

    wet = (ms.phases == PHASE_PORE) | (ms.phases == PHASE_CBD)
    if not wet.any():
        return np.full(ms.phases.shape, np.inf, dtype=np.float32)
    return edt.edt(~wet, black_border=False)


def particle_activity(
    ms: Microstructure,
    spec: ElectrochemistrySpec,
    rng: np.random.Generator,
    region: np.ndarray | None = None,
) -> np.ndarray:
    """Activity a_i of each particle: log-normal spread (mean 1) times a CBD-coverage term,
    times ``exp(strength z_i - strength^2 / 2)`` (within 0.2-5) for the activity regions'
    field ``z_i`` at the particle's centre (``region``, unit variance:
    :func:`activity_region_field`)."""
    n = len(ms.radii_m)
    s = spec.activity_spread
    a = np.exp(s * rng.standard_normal(n) - 0.5 * s * s)
    cov = ms.particles["cbd_coverage"]
    if n and spec.activity_cbd_weight:
        a = a * np.clip(1.0 + spec.activity_cbd_weight * (cov - cov.mean()), 0.2, None)
    g = spec.activity_region_strength
    if n and g and region is not None:
        # kept within 1/5-5: beyond, PyBaMM's size distribution fails to converge at 2C
        a = a * np.clip(np.exp(g * region - 0.5 * g * g), 0.2, 5.0)
    return a


def activity_region_field(
    points_m: np.ndarray, length_m: float, rng: np.random.Generator, n_modes: int = 512
) -> np.ndarray:
    """A stationary Gaussian random field of unit variance and Gaussian correlation
    ``exp(-d^2 / (2 length^2))`` at ``points_m`` ((n, 3), metres): random Fourier features
    (Rahimi & Recht 2007), ``sqrt(2 / M) sum_m cos(k_m . x + phi_m)`` with ``k_m`` normal of
    standard deviation ``1 / length``; the field is defined everywhere, so the truth can be
    evaluated on any grid with the same generator state."""
    k = rng.standard_normal((n_modes, 3)) / length_m
    phi = rng.uniform(0.0, 2 * np.pi, n_modes)
    pts = np.asarray(points_m, dtype=float).reshape(-1, 3)
    return np.sqrt(2.0 / n_modes) * np.cos(pts @ k.T + phi).sum(axis=1)


def _group_quantiles(lab: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Volume quantile (rank + 0.5) / count of ``key`` within each label group."""
    order = np.lexsort((key, lab))
    lab_sorted = lab[order]
    _, start, count = np.unique(lab_sorted, return_index=True, return_counts=True)
    group_start = np.repeat(start, count)
    group_count = np.repeat(count, count)
    q = np.empty(lab.size, dtype=np.float64)
    q[order] = (np.arange(lab.size) - group_start + 0.5) / group_count
    return q


def _shift_to_means(w: np.ndarray, lab: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """Add a per-particle constant so each particle's mean equals ``target`` (ids 1..n)."""
    sums = np.bincount(lab, weights=w, minlength=n + 1)
    cnt = np.bincount(lab, minlength=n + 1)
    mean = np.divide(sums, cnt, out=np.zeros(n + 1), where=cnt > 0)
    shift = np.concatenate([[0.0], target]) - mean
    return w + shift[lab]


def map_lithiation(
    ms: Microstructure,
    echem: ElectrochemResult,
    k: int,
    spec: ElectrochemistrySpec,
    activity: np.ndarray,
    dist_wet: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Lithiation of every active voxel at snapshot ``k`` and the per-particle table.

    Returns
    -------
    w : ndarray (z, y, x) float64
        NaN outside the active phase.
    table : dict
        ``id, depth_m, radius_m, effective_radius_m, activity, mean_lithiation,
        pybamm_lithiation`` and the microstructure record's columns.
    """
    n = len(ms.radii_m)
    am = ms.phases == PHASE_ACTIVE
    lab = ms.labels[am]
    dist_wet = wetted_distance(ms) if dist_wet is None else dist_wet
    d = dist_wet[am].astype(np.float64)
    depth = ms.particles["depth_m"]
    r_eff = ms.radii_m / activity
    target = echem.particle_average(k, depth, r_eff) if n else np.zeros(0)
    r_norm = np.cbrt(1.0 - _group_quantiles(lab, d))
    ext = np.concatenate([[0.0], depth]), np.concatenate([[1.0], r_eff])
    w = echem.profile(k, ext[0][lab], ext[1][lab], r_norm)
    if spec.hotspot_strength > 0 and n:
        import edt

        d_cbd = edt.edt(ms.phases != PHASE_CBD, black_border=False)[am]
        h = np.exp(-d_cbd * ms.voxel_m / spec.hotspot_length_m)
        h_mean = np.bincount(lab, weights=h, minlength=n + 1) / np.maximum(
            np.bincount(lab, minlength=n + 1), 1
        )
        progress = np.concatenate([[0.0], target - echem.initial_lithiation])
        rel = h / np.maximum(h_mean[lab], 1e-12) - 1.0
        # zero-sum in every (particle, z-plane): the hot spots move Li within the plane
        # toward CBD contacts, never across depth, so depth slabs keep PyBaMM's Li
        z = np.nonzero(am)[0]
        key = lab.astype(np.int64) * ms.phases.shape[0] + z
        _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
        rel -= (np.bincount(inv, weights=rel) / cnt)[inv]
        w = w + spec.hotspot_strength * progress[lab] * rel
    for _ in range(3):  # keep 0 <= w <= 1 while holding each particle's mean
        w = _shift_to_means(np.clip(w, 0.0, 1.0), lab, target, n)
    out = np.full(ms.phases.shape, np.nan)
    out[am] = w
    idx = np.arange(1, n + 1)
    table = dict(ms.particles)
    table.update(
        {
            "effective_radius_m": r_eff,
            "activity": activity,
            "pybamm_lithiation": target,
            "mean_lithiation": np.asarray(ndimage.mean(w, labels=lab, index=idx))
            if n
            else np.zeros(0),
        }
    )
    return out, table


def slab_conservation(
    w: np.ndarray,
    ms: Microstructure,
    table: dict[str, np.ndarray],
    echem: ElectrochemResult,
    k: int,
    *,
    n_slabs: int | None = None,
    depth_offset_m: float = 0.0,
) -> dict[str, Any]:
    """Li per depth slab: the 3D field against PyBaMM's particles and PyBaMM's continuum.

    ``pybamm_particles`` is what PyBaMM's spherical particles would hold in the slab: every
    active voxel takes PyBaMM's c(r/R) at its geometric radius in its particle's nominal
    sphere (particle depth and effective size as in the field), each particle shifted to its
    PyBaMM mean. The field differs from it only by how the real particle shape (contacts,
    cracks, cuts) reorders Li inside particles. ``pybamm_continuum`` is PyBaMM's
    size-distribution average at the slab's depth (it also differs by which particle sizes the
    slab happens to hold). By default the slabs are as thick as PyBaMM's own cathode mesh
    cells (thickness / n_x, 3.35 um for Mohtat2020). Errors are relative, in Li concentration
    (stoichiometry), the quantity PyBaMM conserves.
    """
    am = ms.phases == PHASE_ACTIVE
    nz = w.shape[0]
    n = len(ms.radii_m)
    if n_slabs is None:
        dx = echem.geometry.thickness_m / echem.depth_m.size
        n_slabs = max(1, int(round(nz * ms.voxel_m / dx)))
    lab_all = ms.labels[am]
    depth = np.concatenate([[0.0], table["depth_m"]])
    r_eff = np.concatenate([[1.0], table["effective_radius_m"]])
    sphere = echem.profile(k, depth[lab_all], r_eff[lab_all], np.clip(ms.radial[am], 0.0, 1.0))
    sphere = _shift_to_means(sphere, lab_all, table["pybamm_lithiation"], n)
    ref = np.full(w.shape, np.nan)
    ref[am] = sphere
    to_theta = echem.theta_0 - echem.theta_100
    edges = np.linspace(0, nz, n_slabs + 1).astype(int)
    out: dict[str, Any] = {
        "depth_m": [],
        "field": [],
        "pybamm_particles": [],
        "pybamm_continuum": [],
    }
    for a, b in zip(edges[:-1], edges[1:]):
        sl = am[a:b]
        if not sl.any():
            continue
        zc = depth_offset_m + 0.5 * (a + b) * ms.voxel_m
        out["depth_m"].append(zc)
        out["field"].append(float(np.mean(w[a:b][sl])))
        out["pybamm_particles"].append(float(np.mean(ref[a:b][sl])))
        out["pybamm_continuum"].append(float(echem.psd_average_at(k, np.array([zc]))[0]))

    def rel(x: list[float], y: list[float]) -> float:
        tx = echem.theta_100 + np.asarray(x) * to_theta
        ty = echem.theta_100 + np.asarray(y) * to_theta
        return float(np.max(np.abs(tx - ty) / ty)) if tx.size else 0.0

    out["max_relative_error"] = rel(out["field"], out["pybamm_particles"])
    out["max_relative_error_continuum"] = rel(out["field"], out["pybamm_continuum"])
    return out
