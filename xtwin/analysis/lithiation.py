"""Science out of a Li map: particles, profiles, active regions, surface hot spots.

What ``xtwin analyze`` computes, for a recovered Li map and for a twin's truth alike (the
truth is analysed with zero sigma and its own labels). Axis 0 of the volume is the detector
row, which for an electrode pillar imaged side-on is the depth into the electrode.

* **Particles**: the Ni mask is split into particles by SNOW partitioning (a
  marker-based watershed of the distance map) unless labels are given. Per particle: volume,
  volume-equivalent diameter, depth of the centroid, mean w, its standard error
  ``sqrt(sum sigma^2) / n`` (independent voxels: conservative, since ramp-filtered noise
  averages faster), the spread of w inside, and the surface-minus-core difference (voxels
  within one voxel of the particle's boundary against those deeper than two).
* **Depth profile**: mean w per slice over the interior active voxels (one voxel in from the
  surface: surface voxels carry partial-volume bias and are studied separately), with a 95 %
  band from the voxel sigmas, the mean systematic spread of the slice (``/li/systematic``)
  beside it, and a linear trend with its standard error across the particles.
* **Distance profiles**: mean w against the distance from the electrolyte-wetted surface (the
  boundary with the connected non-active space) and, separately, from internal pores (non-
  active components enclosed by active material).
* **Surface hot spots**: within each particle, the deviation of w from the median of the
  particle's surface voxels (so a core-shell profile is not a hot spot, a patch of the surface
  is), smoothed by a Gaussian of ``smooth_px`` inside the particle (normalized convolution) with
  its sigma from the voxel sigmas; surface voxels whose deviation exceeds ``min_deviation``
  and is significant at a false-discovery rate ``fdr`` (Benjamini-Hochberg over all surface
  voxels, two-sided) are hot; connected groups of at least ``min_voxels`` are hot spots.
* **Heterogeneity**: the spread of particle means beyond their noise, relative to the mean
  (between particles), and the spread of w inside particles beyond the voxel noise (within).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MapInput:
    """What the analysis needs from a Li map or a truth."""

    lithiation: np.ndarray
    sigma: np.ndarray
    active: np.ndarray
    pixel_size_m: float
    labels: np.ndarray | None = None
    inside: np.ndarray | None = None
    depth_offset_m: float = 0.0
    source: str = ""
    systematic: np.ndarray | None = None


@dataclass
class Analysis:
    """The results of :func:`analyze_map` (arrays and tables)."""

    particles: list[dict[str, Any]]
    depth: dict[str, np.ndarray]
    wetted: dict[str, np.ndarray]
    internal: dict[str, np.ndarray]
    hot_spots: list[dict[str, Any]]
    heterogeneity: dict[str, float]
    labels: np.ndarray
    hot: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)


def segment_particles(active: np.ndarray) -> np.ndarray:
    """Particle labels of a binary active-material mask (SNOW partitioning,
    :func:`xtwin.analysis.partition.snow_partition`)."""
    from scipy import ndimage

    from xtwin.analysis.partition import snow_partition

    if not active.any():
        return np.zeros(active.shape, dtype=np.int32)
    solid = ndimage.binary_closing(active, iterations=1) | active
    labels = np.where(active, snow_partition(solid, r_max=4, sigma=0.4), 0).astype(np.int32)
    # drop fragments smaller than a sphere of 2 voxels' radius
    counts = np.bincount(labels.ravel())
    small = np.flatnonzero(counts < 34)
    labels[np.isin(labels, small[small > 0])] = 0
    return labels


def _pores(
    active: np.ndarray, labels: np.ndarray, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(wetted, internal): non-active space connected to the sample's open porosity, and
    non-active components enclosed by active material (internal pores, closed cracks)."""
    from scipy import ndimage

    space = inside & ~active
    comp, n = ndimage.label(space)
    internal = np.zeros_like(active)
    if n:
        # the particles around each component: dilate it by one voxel
        ids = np.arange(1, n + 1)
        sizes = ndimage.sum(np.ones_like(comp), comp, ids)
        big = sizes.max() if sizes.size else 0
        objs = ndimage.find_objects(comp)
        for k, size in zip(ids, sizes):
            if size == big or size > 2000:
                continue
            sl = objs[k - 1]
            sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            blob = comp[sl] == k
            ring = ndimage.binary_dilation(blob) & ~blob
            # enclosed: every neighbour is active material inside the sample
            if ring.any() and active[sl][ring].all() and inside[sl][ring].all():
                internal[sl] |= blob
    wetted = space & ~internal
    return wetted, internal


def _binned(values: np.ndarray, sig: np.ndarray, key: np.ndarray, edges: np.ndarray) -> dict:
    idx = np.digitize(key, edges) - 1
    n_b = edges.size - 1
    mean = np.full(n_b, np.nan)
    se = np.full(n_b, np.nan)
    count = np.zeros(n_b, dtype=int)
    for b in range(n_b):
        sel = idx == b
        if sel.sum() >= 5:
            mean[b] = values[sel].mean()
            se[b] = np.sqrt(np.sum(sig[sel] ** 2)) / sel.sum()
            count[b] = int(sel.sum())
    return {"center": 0.5 * (edges[:-1] + edges[1:]), "mean": mean, "se": se, "n": count}


def _bh(p: np.ndarray, q: float) -> np.ndarray:
    """Benjamini-Hochberg: which p-values are discoveries at false-discovery rate q."""
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p)
    thresh = q * np.arange(1, p.size + 1) / p.size
    passed = p[order] <= thresh
    k = np.flatnonzero(passed).max() + 1 if passed.any() else 0
    out = np.zeros(p.size, dtype=bool)
    out[order[:k]] = True
    return out


def analyze_map(
    m: MapInput,
    *,
    smooth_px: float = 1.0,
    min_deviation: float = 0.05,
    fdr: float = 0.05,
    min_voxels: int = 6,
) -> Analysis:
    """Particles, profiles, hot spots and heterogeneity of one map (module docstring).

    Parameters
    ----------
    m : MapInput
    smooth_px : float
        Gaussian sigma (voxels) of the local deviation used for hot spots.
    min_deviation : float
        Smallest absolute deviation of w from the surface median that a hot spot must have.
    fdr : float
        False-discovery rate of the hot-voxel test (0 disables the significance test, as for
        a truth).
    min_voxels : int
        Smallest hot spot.

    Returns
    -------
    Analysis
    """
    from scipy import ndimage, stats

    w = np.where(m.active, m.lithiation, np.nan).astype(np.float64)
    sig = np.where(m.active, np.nan_to_num(m.sigma, nan=0.0), 0.0).astype(np.float64)
    active = m.active & np.isfinite(w)
    labels = segment_particles(active) if m.labels is None else np.where(active, m.labels, 0)
    inside = m.inside if m.inside is not None else np.ones_like(active)
    pix_um = m.pixel_size_m * 1e6
    nz = active.shape[0]
    depth_um = (np.arange(nz) + 0.5) * pix_um + m.depth_offset_m * 1e6
    # distance from the wetted surface, and from internal pores (um)
    wetted, internal = _pores(active, labels, inside)
    d_wet = ndimage.distance_transform_edt(~wetted) * pix_um
    d_int = (
        ndimage.distance_transform_edt(~internal) * pix_um
        if internal.any()
        else np.full(active.shape, np.inf)
    )
    # per particle
    ids = np.unique(labels[labels > 0])
    particles = []
    for pid in ids:
        sel = labels == pid
        n = int(sel.sum())
        vals, s = w[sel], sig[sel]
        inner = ndimage.binary_erosion(sel, iterations=2)
        shell = sel & ~ndimage.binary_erosion(sel, iterations=1)
        zc = float(np.mean(np.nonzero(sel)[0]))
        particles.append(
            {
                "id": int(pid),
                "n_voxels": n,
                "volume_um3": n * pix_um**3,
                "diameter_um": 2 * (3 * n / (4 * np.pi)) ** (1 / 3) * pix_um,
                "depth_um": (zc + 0.5) * pix_um + m.depth_offset_m * 1e6,
                "mean_w": float(vals.mean()),
                "sigma_mean_w": float(np.sqrt(np.sum(s**2)) / n),
                "spread_w": float(vals.std()),
                "surface_minus_core": float(w[shell].mean() - w[inner].mean())
                if inner.sum() >= 5
                else float("nan"),
            }
        )
    # depth profile over interior voxels
    interior = ndimage.binary_erosion(active, iterations=1)
    prof_mean = np.full(nz, np.nan)
    prof_se = np.full(nz, np.nan)
    prof_sys = np.zeros(nz)
    for z in range(nz):
        sel = interior[z]
        if sel.sum() >= 5:
            prof_mean[z] = w[z][sel].mean()
            prof_se[z] = np.sqrt(np.sum(sig[z][sel] ** 2)) / sel.sum()
            if m.systematic is not None:
                prof_sys[z] = float(np.nanmean(m.systematic[z][sel]))
    depth = {"depth_um": depth_um, "mean_w": prof_mean, "se": prof_se, "systematic": prof_sys}
    if len(particles) >= 3:
        dz = np.array([p["depth_um"] for p in particles])
        mw = np.array([p["mean_w"] for p in particles])
        fit = stats.linregress(dz, mw)
        depth["slope_per_um"] = np.array(fit.slope)
        depth["slope_se"] = np.array(fit.stderr)
    # distance profiles
    edges = np.arange(
        0.0, max(4 * pix_um, float(np.nanmax(np.where(active, d_wet, 0))) + pix_um), pix_um
    )
    wet = _binned(w[active], sig[active], d_wet[active], edges)
    if internal.any():
        near = active & np.isfinite(d_int)
        intl = _binned(w[near], sig[near], d_int[near], edges)
    else:
        intl = {"center": np.zeros(0), "mean": np.zeros(0), "se": np.zeros(0), "n": np.zeros(0)}
    # hot spots: local deviation from the mean of the particle's own surface, inside the
    # particle (a core-shell profile is not a hot spot; a patch of the surface is)
    surface = (labels > 0) & (d_wet <= 1.5 * pix_um)
    pmean = np.zeros_like(w)
    for p in particles:
        sel = labels == p["id"]
        shell = sel & surface
        pmean[sel] = np.median(w[shell]) if shell.sum() >= 5 else p["mean_w"]
    inside_p = labels > 0
    g = ndimage.gaussian_filter(inside_p.astype(float), smooth_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = ndimage.gaussian_filter(np.where(inside_p, w - pmean, 0.0), smooth_px) / g
        # normalized convolution of independent voxels: var = sum k^2 s^2 / (sum k)^2, and
        # k^2 is a Gaussian of sigma s/sqrt(2) times 1 / (8 pi^1.5 s^3) (3D)
        c = 1.0 / (8.0 * np.pi**1.5 * smooth_px**3)
        k2 = ndimage.gaussian_filter(np.where(inside_p, sig**2, 0.0), smooth_px / np.sqrt(2))
        dev_sig = np.sqrt(c * k2) / np.maximum(g, 1e-9)
    cand = surface & (np.abs(dev) >= min_deviation)
    if fdr > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(dev[surface]) / dev_sig[surface]
        p = 2 * stats.norm.sf(np.nan_to_num(z, nan=0.0))
        sig_surface = np.zeros_like(surface)
        sig_surface[surface] = _bh(p, fdr)
        hot = cand & sig_surface
    else:
        hot = cand
    comp, n_hot = ndimage.label(hot)
    hot_spots = []
    for k in range(1, n_hot + 1):
        sel = comp == k
        if sel.sum() < min_voxels:
            hot[sel] = False
            continue
        zc, yc, xc = (float(np.mean(a)) for a in np.nonzero(sel))
        hot_spots.append(
            {
                "n_voxels": int(sel.sum()),
                "mean_deviation": float(dev[sel].mean()),
                "particle": int(np.bincount(labels[sel]).argmax()),
                "depth_um": (zc + 0.5) * pix_um + m.depth_offset_m * 1e6,
                "y_px": yc,
                "x_px": xc,
            }
        )
    # heterogeneity beyond noise
    if particles:
        mw = np.array([p["mean_w"] for p in particles])
        se = np.array([p["sigma_mean_w"] for p in particles])
        between = float(np.sqrt(max(mw.var() - np.mean(se**2), 0.0)) / max(abs(mw.mean()), 1e-9))
        spread = np.array([p["spread_w"] for p in particles])
        within = float(np.sqrt(max(np.mean(spread**2) - np.mean(sig[active] ** 2), 0.0)))
    else:
        between = within = float("nan")
    return Analysis(
        particles=particles,
        depth=depth,
        wetted=wet,
        internal=intl,
        hot_spots=hot_spots,
        heterogeneity={"between_particles_rel": between, "within_particles": within},
        labels=labels,
        hot=hot,
        summary=_summary(
            particles, depth, wet, intl, hot_spots, between, within, min_deviation, fdr
        ),
    )


def _summary(particles, depth, wet, intl, hot_spots, between, within, min_dev, fdr) -> dict:
    """Answers, with numbers, to the questions the source experiment asked of its maps."""
    out: dict[str, Any] = {"n_particles": len(particles)}
    if "slope_per_um" in depth:
        s, se = float(depth["slope_per_um"]), float(depth["slope_se"])
        out["depth_trend_per_10um"] = round(10 * s, 4)
        out["depth_trend_se_per_10um"] = round(10 * se, 4)
        out["uniform_across_depth"] = bool(abs(s) < 2 * se)
    if particles:
        mw = sorted(particles, key=lambda p: p["mean_w"])
        out["most_delithiated_particles"] = [p["id"] for p in mw[:3]]
        out["most_lithiated_particles"] = [p["id"] for p in mw[-3:]]
        smc = [p["surface_minus_core"] for p in particles if np.isfinite(p["surface_minus_core"])]
        if smc:
            out["surface_minus_core_mean"] = round(float(np.mean(smc)), 4)
            out["surface_minus_core_se"] = round(float(np.std(smc) / np.sqrt(len(smc))), 4)
    out["surface_hot_spots"] = len(hot_spots)
    out["hot_spot_rule"] = f"|deviation| >= {min_dev:g} and FDR {fdr:g} (surface voxels)"
    out["heterogeneity_between_particles_rel"] = round(between, 4)
    out["heterogeneity_within_particles"] = round(within, 4)
    if intl["mean"].size and np.isfinite(intl["mean"][:2]).any():
        near = np.nanmean(intl["mean"][:2])
        far = np.nanmean(intl["mean"][2:]) if intl["mean"].size > 2 else float("nan")
        out["internal_pore_near_minus_far"] = round(float(near - far), 4)
    return out


def match_particles(labels: np.ndarray, reference: np.ndarray) -> dict[int, int]:
    """For each particle of ``reference``, the particle of ``labels`` it overlaps most (and
    which overlaps it most in return: a one-to-one matching by mutual best overlap)."""
    both = (labels > 0) & (reference > 0)
    pairs, counts = np.unique(np.stack([reference[both], labels[both]]), axis=1, return_counts=True)
    best_for_ref: dict[int, tuple[int, int]] = {}
    best_for_lab: dict[int, tuple[int, int]] = {}
    for (r, lab), c in zip(pairs.T, counts):
        if c > best_for_ref.get(int(r), (0, 0))[1]:
            best_for_ref[int(r)] = (int(lab), int(c))
        if c > best_for_lab.get(int(lab), (0, 0))[1]:
            best_for_lab[int(lab)] = (int(r), int(c))
    return {r: lab for r, (lab, _) in best_for_ref.items() if best_for_lab[lab][0] == r}


def compare_analyses(recovered: Analysis, truth: Analysis) -> dict[str, Any]:
    """How well the analysis of a recovered map reproduces the analysis of the truth.

    Returns the fraction of depth slices whose true mean lies within the recovered 95 % band
    (widened by the slice's own truth-vs-noise-free segmentation difference is not counted),
    the Spearman rank correlation of matched particle means with the true spread and the
    mean particle sigma, the signs of the surface-minus-core differences, and hot-spot
    precision and recall (a recovered hot spot is true when it overlaps a true one).
    """
    from scipy import ndimage, stats

    out: dict[str, Any] = {}
    t_mean, r_mean, r_se = truth.depth["mean_w"], recovered.depth["mean_w"], recovered.depth["se"]
    ok = np.isfinite(t_mean) & np.isfinite(r_mean)
    out["depth_slices"] = int(ok.sum())
    band = 1.96 * r_se[ok]
    out["depth_within_band"] = float(np.mean(np.abs(r_mean[ok] - t_mean[ok]) <= band))
    sys_band = np.hypot(band, recovered.depth.get("systematic", np.zeros_like(r_se))[ok])
    out["depth_within_band_with_systematic"] = float(
        np.mean(np.abs(r_mean[ok] - t_mean[ok]) <= sys_band)
    )
    out["depth_max_abs_difference"] = float(np.max(np.abs(r_mean[ok] - t_mean[ok])))
    match = match_particles(recovered.labels, truth.labels)
    t_by = {p["id"]: p for p in truth.particles}
    r_by = {p["id"]: p for p in recovered.particles}
    pairs = [(t_by[t], r_by[r]) for t, r in match.items() if t in t_by and r in r_by]
    out["particles_matched"] = len(pairs)
    out["particles_true"] = len(truth.particles)
    if len(pairs) >= 3:
        tw = np.array([a["mean_w"] for a, _ in pairs])
        rw = np.array([b["mean_w"] for _, b in pairs])
        out["particle_rank_correlation"] = float(stats.spearmanr(tw, rw).statistic)
        out["particle_true_spread"] = float(tw.std())
        out["particle_mean_sigma"] = float(np.mean([b["sigma_mean_w"] for _, b in pairs]))
        out["particle_rmse"] = float(np.sqrt(np.mean((rw - tw) ** 2)))
    ts = truth.summary.get("surface_minus_core_mean")
    rs = recovered.summary.get("surface_minus_core_mean")
    if ts is not None and rs is not None:
        out["surface_minus_core_true"] = ts
        out["surface_minus_core_recovered"] = rs
        out["surface_minus_core_same_sign"] = bool(np.sign(ts) == np.sign(rs))
    t_comp, n_t = ndimage.label(truth.hot)
    r_comp, n_r = ndimage.label(recovered.hot)
    found = {int(k) for k in np.unique(t_comp[recovered.hot]) if k}
    true_pos = {int(k) for k in np.unique(r_comp[truth.hot]) if k}
    out["hot_spots_true"] = n_t
    out["hot_spots_recovered"] = n_r
    out["hot_spot_recall"] = len(found) / n_t if n_t else float("nan")
    out["hot_spot_precision"] = len(true_pos) / n_r if n_r else float("nan")
    return out
