"""What drives the particles' rates in an operando series, and where the reaction persists.

* **Rate drivers** (:func:`rate_drivers`): per particle of the first time point, its contact
  with neighbouring particles (the fraction of its surface voxels that touch another
  particle rather than pore or carbon-binder), its mean distance to the nearest non-active
  voxel (pore or carbon-binder: the edge jump cannot tell those two apart, both are Ni-free)
  and the fraction of its volume that is internal pore; each, with the diameter and the
  depth, tested against the rate by Spearman's rank correlation (p-value of the exact
  permutation distribution's normal approximation, scipy).
* **Persistent hot spots** (:func:`hot_spots`): the voxel rate of each interval between time
  points (registered maps, particle cores) beyond the mean of its particle at its depth
  below the particle's surface (quarter-voxel shells); the hot voxels are the 5 % that react
  fastest in the direction of the mean trend. Hot spots persist
  when the hot voxels of two intervals that share no map (so no noise in common) overlap
  more than a shuffle of each particle's voxel rates within that particle and the same
  depth below its surface gives: that null keeps what particle-level activity and a front
  moving in from the whole surface explain, and removes any preferred place.
* **Internal pores** (:func:`internal_pore_lead`): whether voxels next to a particle's
  internal pores (non-active voxels the particle encloses) react faster than voxels at the
  same distance from the particle's outer surface.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The hottest fraction of voxels per interval.
HOT_FRACTION = 0.05

#: Shuffles of the persistence null (seeded).
SHUFFLES = 200


def _answer(p: float, n: int, alpha: float = 0.05) -> str:
    if n < 6 or not np.isfinite(p):
        return "cannot tell"
    return "yes" if p < alpha else "no"


def _filled_particles(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The particles with their holes filled (their union), and the number of hole voxels
    (internal pores) each particle encloses, indexed by label."""
    from scipy import ndimage

    filled = np.zeros(labels.shape, bool)
    holes = np.zeros(int(labels.max()) + 1)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        own = labels[sl] == i
        full = ndimage.binary_fill_holes(own)
        filled[sl] |= full
        holes[i] = float(np.sum(full & ~own))
    return filled, holes


def particle_features(labels: np.ndarray, pix_um: float) -> dict[int, dict[str, float]]:
    """Contact fraction, mean distance to the nearest non-active voxel (um) and internal
    pore fraction of every particle of ``labels`` (0: not a particle)."""
    from scipy import ndimage

    inside = labels > 0
    n = int(labels.max()) + 1
    if n <= 1:
        return {}
    # surface voxels: a face neighbour outside the particle; touching: that neighbour is
    # another particle
    surface = np.zeros(labels.shape, bool)
    touching = np.zeros(labels.shape, bool)
    for ax in range(labels.ndim):
        for step in (1, -1):
            nb = np.roll(labels, step, axis=ax)
            edge = [slice(None)] * labels.ndim
            edge[ax] = slice(0, 1) if step == 1 else slice(-1, None)
            nb[tuple(edge)] = 0
            differs = inside & (nb != labels)
            surface |= differs
            touching |= differs & (nb > 0)
    n_surf = np.bincount(labels[surface], minlength=n)
    n_touch = np.bincount(labels[touching], minlength=n)
    dist = ndimage.distance_transform_edt(inside)
    d_sum = np.bincount(labels[inside], weights=dist[inside], minlength=n)
    n_vox = np.bincount(labels[inside], minlength=n)
    holes = _filled_particles(labels)[1]
    out = {}
    for i in range(1, n):
        if n_vox[i] == 0:
            continue
        out[i] = {
            "contact_fraction": float(n_touch[i] / max(n_surf[i], 1)),
            "pore_distance_um": float(d_sum[i] / n_vox[i] * pix_um),
            "internal_pore_fraction": float(holes[i] / (holes[i] + n_vox[i])),
        }
    return out


def rate_drivers(rates: list[dict[str, Any]], features: dict[int, dict[str, float]]) -> dict:
    """Spearman correlation of the rate with each particle property, its p-value, and a
    yes / no / cannot tell (fewer than 6 particles, or a constant property)."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    rows = [r for r in rates if r["particle"] in features]
    rate = np.array([r["rate_per_h"] for r in rows])
    props = {
        "diameter_um": [r["diameter_um"] for r in rows],
        "depth_um": [r["depth_um"] for r in rows],
        **{k: [features[r["particle"]][k] for r in rows] for k in next(iter(features.values()))},
    }
    for name, values in props.items():
        v = np.asarray(values, dtype=float)
        if rate.size < 3 or np.ptp(v) == 0 or np.ptp(rate) == 0:
            rho, p = float("nan"), float("nan")
        else:
            res = spearmanr(v, rate)
            rho, p = float(res.statistic), float(res.pvalue)
        out[name] = {
            "spearman": round(rho, 4),
            "p_value": round(p, 4),
            "particles": int(rate.size),
            "related": _answer(p, int(rate.size)),
        }
    return out


def own_cores(labels: np.ndarray) -> np.ndarray:
    """Labels kept only where all six face neighbours carry the same label: no voxel at a
    particle's boundary, where the motion's interpolation mixes it with its neighbours."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(labels.ndim, 1)
    same = ndimage.minimum_filter(
        labels, footprint=cross, mode="constant"
    ) == ndimage.maximum_filter(labels, footprint=cross, mode="constant")
    return np.where(same & (labels > 0), labels, 0)


#: One interval of a series: w at its start and end (first time point's frame) and hours.
Interval = tuple[np.ndarray, np.ndarray, float]


def _core_rate(interval: Interval, cores: np.ndarray) -> np.ndarray:
    """Voxel rate of an interval on the core voxels (unsmoothed: a mean over neighbours
    would mix a sharp front into the voxels beside it, a pattern that repeats in every
    interval)."""
    w0, w1, hours = interval
    inside = cores > 0
    return ((w1 - w0) / hours)[inside]


def hot_spots(
    first: Interval,
    last: Interval,
    cores: np.ndarray,
    depth: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Whether the fastest-reacting voxels stay the same across time (module docstring).

    Parameters
    ----------
    first, last : Interval
        Two intervals that share no map (their noise is independent): the series' first and
        last; w in the first time point's frame, NaN where not measured.
    cores : ndarray of int
        Particle cores (:func:`own_cores` of the first time point's labels).
    depth : ndarray, optional
        Each voxel's distance from its particle's surface (voxels): the shuffles then stay
        within shells of one voxel, so a front moving in from the surface (the same for the
        whole surface) is not taken for hot spots.
    seed : int
        Seed of the shuffles.
    """
    ra, rb = _core_rate(first, cores), _core_rate(last, cores)
    trend = np.sign(np.nanmean(np.concatenate([ra, rb]))) or 1.0
    a, b = trend * ra, trend * rb
    lab = cores[cores > 0].astype(np.int64)
    if depth is not None:  # groups: particle and depth (quarter-voxel shells)
        shell = np.floor(4 * depth[cores > 0]).astype(np.int64)
        lab = lab * (int(shell.max()) + 1) + shell
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 200:
        return {"hot_spots_persist": "cannot tell (too few voxels)"}
    a, b, lab = a[ok], b[ok], lab[ok]
    # each voxel's rate beyond its group's mean: what a place adds to its particle and depth
    _, inv = np.unique(lab, return_inverse=True)
    for v in (a, b):
        v -= (np.bincount(inv, weights=v) / np.bincount(inv))[inv]

    def overlap(x: np.ndarray, y: np.ndarray) -> float:
        hx = x >= np.quantile(x, 1 - HOT_FRACTION)
        hy = y >= np.quantile(y, 1 - HOT_FRACTION)
        return float(np.sum(hx & hy) / max(np.sum(hx), 1))

    observed = overlap(a, b)
    rng = np.random.default_rng(seed)
    order = np.argsort(lab, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(lab[order])) + 1)
    null = []
    for _ in range(SHUFFLES):
        shuffled = b.copy()
        for g in groups:
            shuffled[g] = b[rng.permutation(g)]
        null.append(overlap(a, shuffled))
    null_arr = np.array(null)
    p = float((1 + np.sum(null_arr >= observed)) / (SHUFFLES + 1))
    return {
        "hot_spot_overlap": round(observed, 4),
        "hot_spot_overlap_null": round(float(null_arr.mean()), 4),
        "hot_spot_overlap_chance": HOT_FRACTION,
        "hot_spot_p_value": round(p, 4),
        "hot_spots_persist": "yes" if p < 0.05 else "no",
    }


def internal_pore_lead(
    w_first: np.ndarray, w_last: np.ndarray, labels: np.ndarray, times_h: np.ndarray
) -> dict[str, Any]:
    """Mean voxel rate (first to last time point) next to a particle's internal pores minus
    that of its voxels away from them at the same distances from its outer surface (in whole
    voxels), per particle; the mean over particles with its standard error. Yes: a lead
    beyond the two-sided 5 % point of Student's t (particles - 1 degrees of freedom) times
    the standard error; no: within it, and that bound below a quarter of the mean rate (a
    lead that large would have been seen); otherwise cannot tell at this dose."""
    from scipy import ndimage
    from scipy.stats import t as student_t

    inside = labels > 0
    filled = _filled_particles(labels)[0]
    pores = filled & ~inside
    if not pores.any():
        return {"internal_pores": "cannot tell (no internal pores resolved)"}
    d_pore = ndimage.distance_transform_edt(~pores)
    d_out = np.rint(ndimage.distance_transform_edt(filled)).astype(np.int64)
    rate = (w_last - w_first) / (times_h[-1] - times_h[0])
    ok = inside & np.isfinite(rate)
    near = ok & (d_pore <= 1.5) & (d_out >= 3)
    far = ok & (d_pore > 3.5)
    n_bins = int(d_out.max()) + 1
    key = labels.astype(np.int64) * n_bins + d_out
    size = (int(labels.max()) + 1) * n_bins
    n_near = np.bincount(key[near], minlength=size)
    s_near = np.bincount(key[near], weights=rate[near], minlength=size)
    n_far = np.bincount(key[far], minlength=size)
    s_far = np.bincount(key[far], weights=rate[far], minlength=size)
    both = (n_near > 0) & (n_far > 0)
    diff_bin = np.zeros(size)
    diff_bin[both] = s_near[both] / n_near[both] - s_far[both] / n_far[both]
    weight = np.where(both, n_near, 0)
    pid = np.arange(size) // n_bins
    w_sum = np.bincount(pid, weights=weight)
    d_sum = np.bincount(pid, weights=weight * diff_bin)
    good = w_sum >= 3
    good[0] = False
    if good.sum() < 3:
        return {"internal_pores": "cannot tell (fewer than 3 particles with internal pores)"}
    d = d_sum[good] / w_sum[good]
    trend = np.sign(np.nanmean(rate[ok])) or 1.0
    lead = float(trend * d.mean())
    se = float(d.std(ddof=1) / np.sqrt(d.size))
    mean_rate = float(abs(np.nanmean(rate[ok])))
    bound = float(student_t.ppf(0.975, d.size - 1)) * se
    if lead > bound:
        answer = "yes"
    elif bound < 0.25 * mean_rate:
        answer = "no"
    else:
        answer = "cannot tell"
    return {
        "internal_pore_rate_lead_per_h": round(lead, 5),
        "internal_pore_rate_lead_se_per_h": round(se, 5),
        "internal_pore_particles": int(d.size),
        "internal_pores": answer,
    }
