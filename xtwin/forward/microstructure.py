"""Synthetic NMC532 electrode microstructures with a record of everything placed.

Geometry: axis 0 (z) is the electrode thickness direction, from the separator side (small z)
toward the current collector; z = 0 lies ``depth_offset_m`` from the separator. The sample is
either a box cut from the electrode or a cylindrical pillar (axis z) as milled for nano-CT,
with air around it so tomographic projections are not truncated.

What is placed, in order (all on one voxel grid, the twin's fine simulation grid):

1. **Secondary particles**: log-normal diameters (D50, log-sigma), centres by random sequential
   addition with a bounded overlap (``max_overlap``: calendering flattens contacts), until the
   solid active fraction meets its target (a particle that would overshoot by more than 0.002
   is not placed, so smaller ones finish); the last few voxels are matched by growing or
   shaving particle surfaces by a voxel. Where spheres overlap, each voxel goes to the
   particle with the smallest normalized distance |x - c| / r (a power-diagram-like split), so
   contacts are flat facets. Our own record keeps centres and radii (porespy's generators
   return only images).
2. **Internal porosity**: grain-boundary-like cracks = the thin band around the zero level set
   of a smooth Gaussian random field of correlation length ``grain_size_m`` inside particles,
   split into clusters. Clusters that reach the particle surface can be open (short of them,
   an interior cluster is opened by a straight radial crack to the surface); interior
   clusters, and surface clusters sealed by removing a 2-voxel rim (distance to the particle's
   own boundary from a multi-label distance transform, so contacts count too), are closed.
   Random clusters of each kind are taken until the volumes match ``internal_porosity`` and
   ``internal_connected_fraction``. Connectivity is then *measured*: a cluster is connected
   when it touches the electrolyte or the carbon-binder.
3. **Carbon-binder domain (CBD)**: bridges at contacts (the morphological closing of the
   particle phase with radius ``cbd_bridge_radius_m``, computed with distance transforms),
   partial surface coverage (patches of a thresholded smooth random field, as porespy's
   ``blobs`` makes them but faster, in a one-voxel shell, covering ``cbd_surface_coverage`` of
   the free surface), then the nearest remaining pore voxels: a ranked score, filled to the
   exact target. The CBD has nanoporosity ``cbd_nanoporosity``
   filled with electrolyte (a material property, not resolved).
4. **Electrolyte** fills the rest of the sample (macropores and connected cracks); closed
   cracks are empty.

Targets are volume fractions of the sample (box, or inside the pillar): active (solid NMC),
CBD, pore (everything else: macropores and internal pores). They are met within +-0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from xtwin.analysis.microstructure import block_mean
from xtwin.forward.scenario import GridSpec, MicrostructureSpec

#: Phase codes on the simulation grid.
PHASE_PORE, PHASE_ACTIVE, PHASE_CBD, PHASE_CLOSED_PORE, PHASE_OUTSIDE = 0, 1, 2, 3, 255
#: Connected internal pores are electrolyte (phase 0) but are kept apart in ``internal``.
INTERNAL_NONE, INTERNAL_CONNECTED, INTERNAL_CLOSED = 0, 1, 2
_RIM_VOX = 2.0


@dataclass(frozen=True)
class Microstructure:
    """Phases, particle labels and the particle record on one voxel grid.

    Attributes
    ----------
    phases : ndarray (z, y, x) uint8
        0 electrolyte, 1 active (solid NMC), 2 carbon-binder, 3 closed internal pore (void),
        255 outside the sample (air around a pillar).
    labels : ndarray (z, y, x) int32
        Particle id (1..n) on active voxels and on the particle's internal pores; 0 elsewhere.
    internal : ndarray (z, y, x) uint8
        0 not an internal pore, 1 connected to the electrolyte, 2 closed.
    radial : ndarray (z, y, x) float32
        |x - c| / r of the owning particle (0 centre, 1 nominal surface); 0 outside particles.
    centres_m : ndarray (n, 3)
        (z, y, x) centres in metres from the grid origin.
    radii_m : ndarray (n,)
        Nominal sphere radii.
    voxel_m : float
    achieved : dict[str, float]
        Volume fractions of the sample: active, cbd, pore, internal_pore, and
        internal_connected_fraction (of internal pore volume).
    particles : dict[str, ndarray]
        Per-particle record: id, centre_m, radius_m, equivalent_radius_m, depth_m,
        internal_pore_fraction, internal_connected_fraction, cbd_coverage.
    """

    phases: np.ndarray
    labels: np.ndarray
    internal: np.ndarray
    radial: np.ndarray
    centres_m: np.ndarray
    radii_m: np.ndarray
    voxel_m: float
    achieved: dict[str, float]
    particles: dict[str, np.ndarray]


def sample_mask(shape: tuple[int, int, int], spec: MicrostructureSpec) -> np.ndarray:
    """Boolean (z, y, x) mask of the sample: the whole box, or the pillar cylinder."""
    nz, ny, nx = shape
    if spec.sample == "box":
        return np.ones(shape, dtype=bool)
    yy, xx = np.ogrid[:ny, :nx]
    r = spec.pillar_diameter_fraction * min(ny, nx) / 2.0
    disc = (yy - (ny - 1) / 2.0) ** 2 + (xx - (nx - 1) / 2.0) ** 2 <= r**2
    return np.broadcast_to(disc, shape)


def _place_particles(
    shape,
    in_sample,
    target_env: float,
    spec: MicrostructureSpec,
    vox: float,
    rng: np.random.Generator,
):
    nz, ny, nx = shape
    labels = np.zeros(shape, dtype=np.int32)
    radial = np.full(shape, np.inf, dtype=np.float32)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    placed = 0
    tol = 0.002 * in_sample.sum()
    mu_log = np.log(spec.particle_d50_m / 2.0 / vox)
    r_min = spec.min_particle_diameter_m / 2.0 / vox
    keep = 1.0 - spec.max_overlap
    mean_vol = 4.0 / 3.0 * np.pi * np.exp(3 * mu_log)
    max_attempts = int(200 * target_env / mean_vol) + 2000
    attempts = 0
    while placed < target_env - tol and attempts < max_attempts:
        attempts += 1
        r = max(float(np.exp(mu_log + spec.particle_size_log_sigma * rng.standard_normal())), r_min)
        c = np.array(
            [
                rng.uniform(-0.3 * r, nz - 1 + 0.3 * r),
                rng.uniform(-0.3 * r, ny - 1 + 0.3 * r),
                rng.uniform(-0.3 * r, nx - 1 + 0.3 * r),
            ]
        )
        if spec.sample == "pillar":
            rp = spec.pillar_diameter_fraction * min(ny, nx) / 2.0
            if np.hypot(c[1] - (ny - 1) / 2.0, c[2] - (nx - 1) / 2.0) > rp:
                continue
        if centres:
            d = np.linalg.norm(np.asarray(centres) - c, axis=1)
            if np.any(d < keep * (np.asarray(radii) + r)):
                continue
        lo = np.maximum(np.floor(c - r).astype(int), 0)
        hi = np.minimum(np.ceil(c + r).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        sub = tuple(slice(a, b) for a, b in zip(lo, hi))
        z = (np.arange(lo[0], hi[0]) - c[0])[:, None, None]
        y = (np.arange(lo[1], hi[1]) - c[1])[None, :, None]
        x = (np.arange(lo[2], hi[2]) - c[2])[None, None, :]
        rn = (np.sqrt(z * z + y * y + x * x) / r).astype(np.float32)
        claim = (rn <= 1.0) & in_sample[sub] & (rn < radial[sub])
        n_new = int(np.count_nonzero(claim & (labels[sub] == 0)))
        if n_new == 0 or placed + n_new > target_env + tol:
            continue
        pid = len(centres) + 1
        labels[sub][claim] = pid
        radial[sub][claim] = rn[claim]
        centres.append(c)
        radii.append(r)
        placed += n_new
    radial[labels == 0] = 0.0
    return labels, radial, np.asarray(centres).reshape(-1, 3), np.asarray(radii)


def _adjust_active(labels, radial, internal, in_sample, centres, radii, target: int, rng):
    """Grow or shave particle surfaces by single voxels until the solid count equals ``target``.

    The random packing meets its target only to within one particle; this moves the boundary
    by at most a voxel or two. Growth takes free voxels next to particles (outermost shell
    first, random order within a shell) and gives each to the neighbouring particle; shaving
    removes the active voxels of largest normalized radius.
    """
    active = (labels > 0) & (internal == 0)
    delta = target - int(np.count_nonzero(active))
    if delta < 0:
        cand = np.flatnonzero(active.ravel())
        order = np.argsort(-radial.ravel()[cand], kind="stable")[:-delta]
        drop = cand[order]
        labels.ravel()[drop] = 0
        radial.ravel()[drop] = 0.0
        return
    for _ in range(50):
        if delta <= 0:
            break
        grown = ndimage.grey_dilation(labels, size=(3, 3, 3))
        shell = np.flatnonzero(((labels == 0) & (grown > 0) & in_sample).ravel())
        if shell.size == 0:
            break
        pick = shell[rng.permutation(shell.size)[:delta]]
        lab = grown.ravel()[pick]
        pos = np.stack(np.unravel_index(pick, labels.shape), axis=1)
        labels.ravel()[pick] = lab
        radial.ravel()[pick] = (
            np.linalg.norm(pos - centres[lab - 1], axis=1) / radii[lab - 1]
        ).astype(np.float32)
        delta -= pick.size


def _smooth_field(shape, sigma_vox: float, rng: np.random.Generator) -> np.ndarray:
    field = rng.standard_normal(shape, dtype=np.float32)
    ndimage.gaussian_filter(field, sigma_vox, output=field, mode="wrap")
    field /= field.std() + 1e-12
    return field


def _pick_until(vols: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a random subset of ``vols`` summing to about ``target``.

    Clusters are visited in random order and taken while the sum stays within half a
    cluster of the target, so one huge cluster cannot swamp a small target.
    """
    picked = []
    total = 0.0
    for i in rng.permutation(vols.size):
        if total + 0.5 * vols[i] <= target:
            picked.append(i)
            total += vols[i]
    return np.asarray(picked, dtype=int)


def _radial_channel(
    labels: np.ndarray, pid: int, start: np.ndarray, centre: np.ndarray
) -> np.ndarray:
    """Voxels of a straight crack from ``start`` outward (away from the particle centre)
    until it leaves particle ``pid``: flat indices."""
    d = start - centre
    norm = np.linalg.norm(d)
    d = d / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
    out = []
    p = start.astype(float)
    shape = np.asarray(labels.shape)
    for _ in range(int(2 * shape.max())):
        p = p + 0.5 * d
        q = np.rint(p).astype(int)
        if np.any(q < 0) or np.any(q >= shape) or labels[tuple(q)] != pid:
            break
        out.append(np.ravel_multi_index(tuple(q), labels.shape))
    return np.unique(np.asarray(out, dtype=np.int64))


def _carve_internal_pores(labels, centres, spec, vox: float, in_sample, rng):
    """Internal pores as crack clusters chosen to meet the porosity and connectivity targets.

    Candidate cracks (twice the target volume) are the thin band around the zero level set
    of a smooth random field inside particles, split into 6-connected clusters. Clusters that
    touch the electrolyte side of the particle surface are open; the rest, and surface
    clusters sealed by removing their 2-voxel rim, are closed. Open clusters are taken until
    ``internal_porosity * internal_connected_fraction`` of the particle volume is reached;
    when the surface clusters run short, interior clusters are opened by a straight radial
    crack to the surface. Closed clusters then fill the rest of ``internal_porosity``.
    """
    import edt

    internal = np.zeros(labels.shape, dtype=np.uint8)
    env = labels > 0
    n_env = int(np.count_nonzero(env))
    if spec.internal_porosity <= 0 or len(centres) == 0:
        return internal
    sigma = max(spec.grain_size_m / vox / 2.0, 1.0)
    field = np.abs(_smooth_field(labels.shape, sigma, rng))
    thr = np.quantile(field[env], min(2.0 * spec.internal_porosity, 0.6))
    cand = env & (field <= thr)
    del field
    own_dist = edt.edt(labels, black_border=True, parallel=1)
    lab, n_cl = ndimage.label(cand)
    vols = np.bincount(lab.ravel(), minlength=n_cl + 1).astype(float)
    touch = cand & ndimage.binary_dilation(in_sample & ~env)
    is_surface = np.zeros(n_cl + 1, dtype=bool)
    is_surface[np.unique(lab[touch])] = True
    is_surface[0] = False
    want_open = spec.internal_porosity * spec.internal_connected_fraction * n_env
    surf_ids = np.flatnonzero(is_surface)
    chosen = surf_ids[_pick_until(vols[surf_ids], want_open, rng)]
    use_open = np.zeros(n_cl + 1, dtype=bool)
    use_open[chosen] = True
    got = vols[chosen].sum()
    channels: list[np.ndarray] = []
    inner = rng.permutation(np.flatnonzero(~is_surface[1:]) + 1)
    objs = ndimage.find_objects(lab) if inner.size else []
    for cid in inner:  # open interior clusters by a radial crack, counting the crack too
        if got + 0.5 * vols[cid] > want_open:
            continue
        sl = objs[cid - 1]
        sub = np.argwhere(lab[sl] == cid)
        k = int(np.argmin(own_dist[sl][tuple(sub.T)]))
        start = sub[k] + np.array([s_.start for s_ in sl])
        pid = int(labels[tuple(start)])
        ch = _radial_channel(labels, pid, start, centres[pid - 1])
        ch = ch[~cand.ravel()[ch]]
        if got + vols[cid] + ch.size > want_open + 0.5 * vols[cid]:
            continue
        channels.append(ch)
        use_open[cid] = True
        got += vols[cid] + ch.size
    closed_cand = cand & ~use_open[lab] & ~(is_surface[lab] & (own_dist <= _RIM_VOX))
    closed_cand &= own_dist > _RIM_VOX  # no closed pore may touch another particle
    del own_dist
    internal[use_open[lab]] = INTERNAL_CONNECTED
    for ch in channels:
        internal.ravel()[ch] = INTERNAL_CONNECTED
    closed_cand &= ~ndimage.binary_dilation(internal == INTERNAL_CONNECTED)
    lab_c, n_c = ndimage.label(closed_cand)
    vols_c = np.bincount(lab_c.ravel(), minlength=n_c + 1).astype(float)
    want_closed = spec.internal_porosity * n_env - np.count_nonzero(internal)
    chosen_c = _pick_until(vols_c[1:], want_closed, rng) + 1
    use_c = np.zeros(n_c + 1, dtype=bool)
    use_c[chosen_c] = True
    internal[use_c[lab_c]] = INTERNAL_CLOSED
    return internal


def _closing_residue(env: np.ndarray, dist_out: np.ndarray, radius_vox: float) -> np.ndarray:
    """Voxels a morphological closing of ``env`` with a ball would add (distance transforms).

    ``dist_out`` is the distance of every voxel outside ``env`` to ``env``.
    """
    import edt

    if radius_vox <= 0:
        return np.zeros_like(env)
    dil = dist_out <= radius_vox
    closed = dil & (edt.edt(dil, black_border=False) > radius_vox)
    return closed & ~env


def _top_k_mask(score: np.ndarray, where: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest ``score`` values inside ``where`` (ties by order)."""
    vals = score[where]
    if k <= 0:
        return np.zeros(score.shape, dtype=bool)
    if k >= vals.size:
        return where.copy()
    kth = np.partition(vals, vals.size - k)[vals.size - k]
    del vals
    out = where & (score > kth)
    short = k - int(np.count_nonzero(out))
    if short > 0:
        ties = np.flatnonzero((where & (score == kth)).ravel())[:short]
        out.ravel()[ties] = True
    return out


def _place_cbd(env, in_sample, spec, vox, target_vox: int, rng):
    """Carbon-binder: bridges at contacts, surface patches, then nearest pore voxels.

    The surface patches are a thresholded smooth random field (what porespy's ``blobs``
    does, 8-14x faster here and in float32; see benchmarks/microstructure.py).
    """
    import edt

    free = in_sample & ~env
    if target_vox <= 0:
        return np.zeros_like(env)
    dist = edt.edt(~env, black_border=False)
    bridge = _closing_residue(env, dist, spec.cbd_bridge_radius_m / vox)
    patches = _smooth_field(env.shape, max(0.5e-6 / vox, 1.0), rng)
    shell = free & (dist <= 1.5)
    if shell.any() and spec.cbd_surface_coverage > 0:
        thr = np.quantile(patches[shell], 1.0 - spec.cbd_surface_coverage)
        patch = shell & (patches >= thr)
    else:
        patch = np.zeros_like(shell)
    score = _smooth_field(env.shape, 1.5, rng)
    score *= 0.05
    dist /= 20.0
    score -= dist
    del dist, patches
    np.add(score, 3.0, out=score, where=bridge)
    np.add(score, 1.0, out=score, where=shell)
    np.add(score, 2.0, out=score, where=patch)
    del bridge, shell, patch
    return _top_k_mask(score, free, target_vox)


def generate(
    grid: GridSpec,
    spec: MicrostructureSpec,
    rng: np.random.Generator,
    *,
    oversample: int | None = None,
) -> Microstructure:
    """Generate a microstructure on the twin's fine grid (deterministic for a given rng).

    Parameters
    ----------
    grid : GridSpec
        Reconstruction grid; the microstructure lives on its ``oversample``-times finer grid.
    spec : MicrostructureSpec
        Targets and morphology.
    rng : numpy.random.Generator
        The only source of randomness.
    oversample : int, optional
        Override ``grid.oversample``.
    """
    f = grid.oversample if oversample is None else oversample
    shape = (grid.n_rows * f, grid.n_pixels * f, grid.n_pixels * f)
    vox = grid.pixel_size_m / f
    in_sample = sample_mask(shape, spec)
    n_sample = int(in_sample.sum())
    target_env = spec.active_fraction * n_sample / (1.0 - spec.internal_porosity)
    labels, radial, centres, radii = _place_particles(shape, in_sample, target_env, spec, vox, rng)
    internal = _carve_internal_pores(labels, centres, spec, vox, in_sample, rng)
    _adjust_active(
        labels,
        radial,
        internal,
        in_sample,
        centres,
        radii,
        int(round(spec.active_fraction * n_sample)),
        rng,
    )
    env = labels > 0
    phases = np.full(shape, PHASE_OUTSIDE, dtype=np.uint8)
    phases[in_sample] = PHASE_PORE
    phases[env] = PHASE_ACTIVE
    phases[internal > 0] = PHASE_CLOSED_PORE  # classified after the CBD is placed
    n_cbd = int(round(spec.cbd_fraction * n_sample))
    cbd = _place_cbd(env, in_sample, spec, vox, n_cbd, rng)
    phases[cbd] = PHASE_CBD
    internal = _classify_internal(phases, internal)
    phases[internal == INTERNAL_CONNECTED] = PHASE_PORE

    n = len(radii)
    idx = np.arange(1, n + 1)
    lab_int = labels[internal > 0]
    pore_vol = np.bincount(lab_int, minlength=n + 1)[1:].astype(float)
    con_vol = np.bincount(labels[internal == INTERNAL_CONNECTED], minlength=n + 1)[1:]
    env_vol = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)
    coverage = _cbd_coverage(labels, phases, n)
    depth = spec.depth_offset_m + (centres[:, 0] + 0.5) * vox if n else np.zeros(0)
    particles = {
        "id": idx.astype(np.int32),
        "centre_m": (centres + 0.5) * vox,
        "radius_m": radii * vox,
        "equivalent_radius_m": np.cbrt(3 * env_vol / (4 * np.pi)) * vox,
        "depth_m": depth,
        "internal_pore_fraction": np.divide(pore_vol, env_vol, out=np.zeros(n), where=env_vol > 0),
        "internal_connected_fraction": np.divide(
            con_vol, pore_vol, out=np.zeros(n), where=pore_vol > 0
        ),
        "cbd_coverage": coverage,
    }
    counts = np.bincount(phases[in_sample], minlength=256)
    n_int = int(np.count_nonzero(internal))
    achieved = {
        "active": counts[PHASE_ACTIVE] / n_sample,
        "cbd": counts[PHASE_CBD] / n_sample,
        "pore": (counts[PHASE_PORE] + counts[PHASE_CLOSED_PORE]) / n_sample,
        "internal_pore": n_int / n_sample,
        "internal_connected_fraction": (np.count_nonzero(internal == INTERNAL_CONNECTED) / n_int)
        if n_int
        else 0.0,
    }
    achieved = {k: float(v) for k, v in achieved.items()}
    return Microstructure(
        phases,
        labels,
        internal,
        radial,
        (centres + 0.5) * vox,
        radii * vox,
        vox,
        achieved,
        particles,
    )


def _classify_internal(phases: np.ndarray, internal: np.ndarray) -> np.ndarray:
    """Mark internal pore clusters touching electrolyte or CBD as connected (measured)."""
    pores = internal > 0
    if not pores.any():
        return internal
    lab, _ = ndimage.label(pores)
    wet = (phases == PHASE_PORE) | (phases == PHASE_CBD)
    touching = pores & ndimage.binary_dilation(wet)
    ids = np.unique(lab[touching])
    ids = ids[ids > 0]
    con = np.isin(lab, ids) & pores
    out = internal.copy()
    out[con] = INTERNAL_CONNECTED
    return out


def _cbd_coverage(labels: np.ndarray, phases: np.ndarray, n: int) -> np.ndarray:
    """Fraction of each particle's free surface voxels (those touching electrolyte or CBD)
    that touch CBD (6-neighbourhood)."""
    if n == 0:
        return np.zeros(0)
    active = phases == PHASE_ACTIVE
    wet = ndimage.binary_dilation(phases == PHASE_PORE)
    cbd = ndimage.binary_dilation(phases == PHASE_CBD)
    surf = active & (wet | cbd)
    tot = np.bincount(labels[surf], minlength=n + 1)[1:].astype(float)
    cov = np.bincount(labels[surf & cbd], minlength=n + 1)[1:]
    return np.divide(cov, tot, out=np.zeros(n), where=tot > 0)


def coarsen(
    phases: np.ndarray, labels: np.ndarray, f: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phases, particle labels and active fraction on the f-times coarser grid.

    A coarse voxel is active when at least half of its fine voxels are, and then takes the
    most frequent particle label among them; otherwise its phase is the most frequent of the
    others. Codes: 0 electrolyte, 1 active, 2 carbon-binder, 3 closed internal pore, 255
    outside the sample.
    """
    ph = np.where(phases == PHASE_OUTSIDE, 4, phases)
    frac = block_mean((ph == PHASE_ACTIVE).astype(np.float32), f)
    s = ph.shape
    blocks = ph.reshape(s[0] // f, f, s[1] // f, f, s[2] // f, f)
    counts = np.stack([(blocks == v).sum(axis=(1, 3, 5)) for v in range(5)])
    counts[PHASE_ACTIVE] = 0
    coarse_ph = counts.argmax(axis=0).astype(np.uint8)
    coarse_ph[coarse_ph == 4] = PHASE_OUTSIDE
    coarse_ph[frac >= 0.5] = PHASE_ACTIVE
    lab = np.where(ph == PHASE_ACTIVE, labels, 0)
    lb = lab.reshape(s[0] // f, f, s[1] // f, f, s[2] // f, f).transpose(0, 2, 4, 1, 3, 5)
    srt = np.sort(lb.reshape(lb.shape[:3] + (-1,)), axis=-1)
    best = np.zeros(srt.shape[:3], dtype=np.int32)
    best_count = np.zeros(srt.shape[:3], dtype=np.int32)
    for k in range(srt.shape[-1]):
        v = srt[..., k]
        cnt = (srt == v[..., None]).sum(axis=-1)
        better = (v > 0) & (cnt > best_count)
        best = np.where(better, v, best)
        best_count = np.where(better, cnt, best_count)
    return coarse_ph, np.where(frac >= 0.5, best, 0).astype(np.int32), frac


def write_microstructure(
    path,
    ms: Microstructure,
    *,
    oversample: int,
    scenario_toml: str,
    seed: int,
    target: dict[str, float],
) -> None:
    """Write the microstructure file: fine and coarse grids, the particle record, targets."""
    from xtwin.io import write_h5

    coarse_ph, coarse_lab, _ = coarsen(ms.phases, ms.labels, oversample)
    ds = {
        "/microstructure/fine/phases": ms.phases,
        "/microstructure/fine/labels": ms.labels,
        "/microstructure/fine/internal": ms.internal,
        "/microstructure/coarse/phases": coarse_ph,
        "/microstructure/coarse/labels": coarse_lab,
    }
    for key, col in ms.particles.items():
        ds[f"/microstructure/particles/{key}"] = np.asarray(col)
    attrs = {
        "/microstructure": {
            "fine_voxel_m": ms.voxel_m,
            "coarse_voxel_m": ms.voxel_m * oversample,
            "target": target,
            "achieved": ms.achieved,
            "scenario": scenario_toml,
            "seed": seed,
            "axes": "z (electrode depth, from the separator side), y, x",
            "phase_codes": {
                "pore": PHASE_PORE,
                "active": PHASE_ACTIVE,
                "cbd": PHASE_CBD,
                "closed_internal_pore": PHASE_CLOSED_PORE,
                "outside": PHASE_OUTSIDE,
            },
            "internal_codes": {
                "none": INTERNAL_NONE,
                "connected": INTERNAL_CONNECTED,
                "closed": INTERNAL_CLOSED,
            },
        }
    }
    write_h5(path, ds, attrs)
