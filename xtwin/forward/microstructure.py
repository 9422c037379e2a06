"""A first electrode microstructure: polydisperse NMC particles in a cylindrical pillar.

The pillar axis is z (the rotation axis, = detector rows) and also the electrode thickness
direction: z = 0 is at ``depth_offset_m`` from the separator. Particles are placed by random
sequential addition of log-normal spheres (touching allowed, no interpenetration) until the
active-material fraction inside the pillar reaches its target (a particle that would
overshoot it by more than 0.004 is not placed, so smaller ones finish the packing); we
keep our own record of what we place (porespy's generators return only images). The
carbon-binder domain fills the pore voxels closest to particles, modulated by a smooth
random field, up to its target fraction.

Everything is built on the fine simulation grid (``oversample`` x the reconstruction grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from xtwin.forward.scenario import GridSpec, MicrostructureSpec
from xtwin.io.truth import PHASE_ACTIVE, PHASE_CBD, PHASE_PORE

#: Phase code of voxels outside the pillar (air); written as pore in the truth file.
PHASE_OUTSIDE = 255


@dataclass(frozen=True)
class Microstructure:
    """Fine-grid phases, particle labels and the particle record.

    Attributes
    ----------
    phases : ndarray (z, y, x) uint8
        0 pore (electrolyte), 1 active, 2 carbon-binder, 255 outside the pillar.
    labels : ndarray (z, y, x) int32
        Particle id (1..n), 0 elsewhere.
    radial : ndarray (z, y, x) float32
        Normalized radius r / R within each particle (0 centre, 1 surface).
    centres_m : ndarray (n, 3)
        (z, y, x) centres in metres from the grid origin.
    radii_m : ndarray (n,)
    voxel_m : float
        Fine voxel size.
    achieved : dict
        Achieved volume fractions inside the pillar.
    """

    phases: np.ndarray
    labels: np.ndarray
    radial: np.ndarray
    centres_m: np.ndarray
    radii_m: np.ndarray
    voxel_m: float
    achieved: dict[str, float]


def generate(grid: GridSpec, spec: MicrostructureSpec, rng: np.random.Generator
             ) -> Microstructure:
    """Generate the pillar microstructure on the fine grid (deterministic for a given rng)."""
    os_ = grid.oversample
    nz, n = grid.n_rows * os_, grid.n_pixels * os_
    vox = grid.pixel_size_m / os_
    c = (n - 1) / 2.0
    pillar_r = spec.pillar_diameter_fraction * n / 2.0
    yy, xx = np.mgrid[:n, :n]
    in_pillar_2d = (yy - c) ** 2 + (xx - c) ** 2 <= pillar_r**2
    pillar_vol = in_pillar_2d.sum() * nz
    target = spec.active_fraction * pillar_vol

    centres: list[np.ndarray] = []
    radii: list[float] = []
    labels = np.zeros((nz, n, n), dtype=np.int32)
    radial = np.zeros((nz, n, n), dtype=np.float32)
    placed = 0
    attempts = 0
    mu_log = np.log(spec.particle_radius_m / vox)
    while placed < target and attempts < 20000:
        attempts += 1
        r = max(np.exp(mu_log + spec.radius_log_sigma * rng.standard_normal()),
                spec.min_radius_m / vox)
        rho = pillar_r * np.sqrt(rng.uniform())
        phi = rng.uniform(0, 2 * np.pi)
        p = np.array([rng.uniform(-0.3 * r, nz - 1 + 0.3 * r), c + rho * np.sin(phi),
                      c + rho * np.cos(phi)])
        if centres:
            d = np.linalg.norm(np.asarray(centres) - p, axis=1)
            if np.any(d < 0.98 * (np.asarray(radii) + r)):
                continue
        pid = len(centres) + 1
        lo = np.maximum(np.floor(p - r).astype(int), 0)
        hi = np.minimum(np.ceil(p + r).astype(int) + 1, (nz, n, n))
        if np.any(hi <= lo):
            continue
        zz, y2, x2 = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        dist = np.sqrt((zz - p[0]) ** 2 + (y2 - p[1]) ** 2 + (x2 - p[2]) ** 2)
        inside = (dist <= r) & in_pillar_2d[y2, x2] & (labels[lo[0]:hi[0], lo[1]:hi[1],
                                                              lo[2]:hi[2]] == 0)
        n_new = int(inside.sum())
        if n_new == 0 or placed + n_new > target + 0.004 * pillar_vol:
            continue
        sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        labels[sub][inside] = pid
        radial[sub][inside] = (dist[inside] / r).astype(np.float32)
        centres.append(p)
        radii.append(r)
        placed += n_new

    phases = np.full((nz, n, n), PHASE_OUTSIDE, dtype=np.uint8)
    phases[:, in_pillar_2d] = PHASE_PORE
    phases[labels > 0] = PHASE_ACTIVE
    n_cbd = int(round(spec.cbd_fraction * pillar_vol))
    if n_cbd > 0:
        pore = phases == PHASE_PORE
        dist = ndimage.distance_transform_edt(labels == 0)
        field = ndimage.gaussian_filter(rng.standard_normal(labels.shape), 2.0 * os_)
        field /= field.std() + 1e-12
        score = -dist / (0.5 * os_) + 0.8 * field
        cand = np.flatnonzero(pore)
        n_cbd = min(n_cbd, cand.size)
        pick = cand[np.argpartition(-score.ravel()[cand], n_cbd - 1)[:n_cbd]]
        phases.ravel()[pick] = PHASE_CBD
    inside = phases != PHASE_OUTSIDE
    total = inside.sum()
    achieved = {
        "active": float((phases == PHASE_ACTIVE).sum() / total),
        "cbd": float((phases == PHASE_CBD).sum() / total),
        "pore": float((phases == PHASE_PORE).sum() / total),
    }
    return Microstructure(phases, labels, radial, np.asarray(centres).reshape(-1, 3) * vox,
                          np.asarray(radii) * vox, vox, achieved)
