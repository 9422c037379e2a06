"""An operando series of Li maps: the time points registered to the first, the particles
followed through time, and each particle's rate.

* **Registration** of each time point to the first on the Ni edge jump ``J`` (it does not
  depend on the lithiation): rotation about the rotation axis and 3D shift with their
  uncertainties (:mod:`xtwin.analysis.registration`).
* **Particles** are those of the first time point (SNOW, as ``xtwin analyze``); each later
  map is brought into the first one's frame and segmented again, and its particles matched to
  the first's by overlap: a first-time particle covered by two or more later ones (each over
  a quarter of it) has split, a later particle covering two or more has merged them, a
  particle with less than half its voxels measured later has left the field of view.
  They are reported, never silently dropped.
* **w(t)** of a particle: the mean of the registered w over the same voxels at every time
  point (those of its voxels that every time point measured, two voxels in from the edge of
  each field of view, with a w after the motion's interpolation), with
  ``sqrt(sum sigma^2) / n``; the **rate** is the weighted
  least-squares slope of w against time (per hour), with its standard error.
* What drives the rates, persistent hot spots and lithiation from internal pores:
  :mod:`xtwin.analysis.kinetics`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.analysis.kinetics import (
    hot_spots,
    internal_pore_lead,
    own_cores,
    particle_features,
    rate_drivers,
)
from xtwin.analysis.registration import Motion, apply_motion, register
from xtwin.errors import XtwinInputError


@dataclass(frozen=True)
class TimePoint:
    """One Li map of the series."""

    path: str
    time_s: float
    lithiation: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    jump: np.ndarray
    pixel_size_m: float
    energy_eV: np.ndarray


@dataclass
class SeriesAnalysis:
    """What :func:`analyze_series` finds."""

    times_s: np.ndarray
    motions: list[Motion]
    particles_time: list[dict[str, Any]]
    rates: list[dict[str, Any]]
    matching: list[dict[str, Any]]
    labels: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)
    depth_time: list[dict[str, Any]] = field(default_factory=list)
    surface_time: list[dict[str, Any]] = field(default_factory=list)
    pixel_size_m: float = 0.0


def _times_of(path: str) -> tuple[float | None, float | None]:
    """(time_s, start_date as POSIX seconds) from a Li map's provenance: the scan's
    metadata, which ``process`` carries (either may be None)."""
    import datetime as dt

    import h5py

    with h5py.File(path, "r") as f:
        meta = f["/provenance"].attrs.get("input_metadata") if "/provenance" in f else None
    if isinstance(meta, bytes):
        meta = meta.decode()
    try:
        m = json.loads(meta) if isinstance(meta, str) else {}
    except ValueError:
        m = {}
    if not isinstance(m, dict):
        m = {}
    rel = m.get("time_s")
    start = m.get("start_date") or m.get("acquired")  # Data Exchange; Xradia's ImageInfo/Date
    posix = None
    if isinstance(start, str) and start:
        try:
            when = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            posix = when.timestamp()
        except ValueError:
            posix = None
    return (float(rel) if rel is not None else None), posix


def series_times(paths: list[str]) -> list[float] | None:
    """Each map's time in seconds: the scans' ``time_s`` where all have one, else their start
    dates relative to the first; None when neither is complete."""
    pairs = [_times_of(p) for p in paths]
    if all(r is not None for r, _ in pairs):
        return [float(r) for r, _ in pairs]  # type: ignore[arg-type]
    if all(a is not None for _, a in pairs):
        t0 = float(pairs[0][1])  # type: ignore[arg-type]
        return [float(a) - t0 for _, a in pairs]  # type: ignore[arg-type]
    return None


def load_series(
    paths: list[str | os.PathLike], times_s: list[float] | None = None
) -> list[TimePoint]:
    """The Li maps of a series with their times (from each map's provenance, the scan's
    ``time_s``, or ``times_s``).

    Raises
    ------
    XtwinInputError
        One map only, maps of other shapes, pixel sizes or energies, maps without lithiation,
        times missing or not increasing.
    """
    from xtwin.io.limap import read_limap

    if len(paths) < 2:
        raise XtwinInputError(
            "an operando series needs two or more Li maps (one per time point); give them all"
        )
    if times_s is not None and len(times_s) != len(paths):
        raise XtwinInputError(f"--times-s gives {len(times_s)} times for {len(paths)} maps")
    if times_s is None:
        times_s = series_times([str(p) for p in paths])
        if times_s is None:
            raise XtwinInputError(
                "some maps record no acquisition time (the scan's time_s or "
                "/process/acquisition/start_date, carried in /provenance input_metadata); give "
                "the times with --times-s T0,T1,... (seconds)"
            )
    out = []
    for k, p in enumerate(paths):
        lm = read_limap(p)
        if not lm.has_lithiation or lm.mode == "edge-jump":
            raise XtwinInputError(
                f"{p} holds no lithiation ({lm.mode} map): a series analysis needs three or more "
                "energies per time point"
            )
        if not lm.is_tomography:
            raise XtwinInputError(f"{p} is a 2D map: the series analysis follows 3D particles")
        t = times_s[k]
        out.append(
            TimePoint(
                str(p),
                float(t),
                lm.lithiation,
                lm.sigma,
                lm.mask,
                lm.edge_jump_per_m,
                lm.pixel_size_m,
                np.asarray(lm.energy_eV),
            )
        )
    ref = out[0]
    for tp in out[1:]:
        problems = []
        if tp.lithiation.shape != ref.lithiation.shape:
            problems.append(f"shape {tp.lithiation.shape} vs {ref.lithiation.shape}")
        if not np.isclose(tp.pixel_size_m, ref.pixel_size_m, rtol=1e-3):
            problems.append(f"pixel size {tp.pixel_size_m:g} vs {ref.pixel_size_m:g} m")
        if tp.energy_eV.shape != ref.energy_eV.shape or not np.allclose(
            tp.energy_eV, ref.energy_eV, atol=0.5
        ):
            problems.append(f"energies {tp.energy_eV.tolist()} vs {ref.energy_eV.tolist()} eV")
        if problems:
            raise XtwinInputError(
                f"{tp.path} is not of the same series as {ref.path}: {'; '.join(problems)}; "
                "analyze maps of one sample, energies and pixel size together"
            )
    times = np.array([tp.time_s for tp in out])
    if np.any(np.diff(times) <= 0):
        raise XtwinInputError(
            f"the times {times.tolist()} s do not increase; give the maps in time order (or "
            "their times with --times-s)"
        )
    return out


# -- registration ---------------------------------------------------------------------------


# -- particles through time -----------------------------------------------------------------


def _match(ref_labels: np.ndarray, labels: np.ndarray, measured: np.ndarray) -> dict[str, Any]:
    """Matching of a later time point's particles to the first's (module docstring)."""
    ids = np.unique(ref_labels)
    ids = ids[ids > 0]
    both = (ref_labels > 0) & (labels > 0)
    pairs, counts = np.unique(np.c_[ref_labels[both], labels[both]], axis=0, return_counts=True)
    size = np.bincount(ref_labels.ravel(), minlength=int(ref_labels.max()) + 1)
    later_size = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    seen = np.bincount(ref_labels[measured].ravel(), minlength=size.size)
    split: list[int] = []
    matched: list[int] = []
    left: list[int] = []
    merged_into: dict[int, list[int]] = {}
    for i in ids:
        if seen[i] < 0.5 * size[i]:
            left.append(int(i))
            continue
        rows = pairs[:, 0] == i
        big = [
            (int(g), int(c)) for (_, g), c in zip(pairs[rows], counts[rows]) if c > 0.25 * size[i]
        ]
        if len(big) >= 2:
            split.append(int(i))
        if big:
            matched.append(int(i))
            g = max(big, key=lambda x: x[1])[0]
            merged_into.setdefault(g, []).append(int(i))
    merged = {g: v for g, v in merged_into.items() if len(v) >= 2 and later_size[g] > 0}
    return {
        "n_first": int(ids.size),
        "matched": len(matched),
        "split": split,
        "merged": [sorted(v) for v in merged.values()],
        "left": left,
    }


def _poses(points: list[TimePoint], labels: np.ndarray) -> tuple[list, list, np.ndarray]:
    """Each time point's pose (registration to the first), its particles matched to the
    first's, and the voxels of the first's frame that every time point measured, two voxels
    in from the edge of each field of view (the reconstruction's edge, and the interpolation
    of the motion)."""
    from scipy import ndimage

    from xtwin.analysis.lithiation import segment_particles

    ref = points[0]
    common = ndimage.binary_erosion(np.isfinite(ref.jump), iterations=2)
    common &= np.isfinite(ref.lithiation)
    motions: list[Motion] = [Motion(np.zeros(3), 0.0, np.zeros(3), 0.0)]
    n = int(np.count_nonzero(np.unique(labels)))
    matching = [{"n_first": n, "matched": n, "split": [], "merged": [], "left": []}]
    for tp in points[1:]:
        motion = register(ref.jump, tp.jump)
        # measured: where the later map saw the sample (its edge jump is finite there)
        seen = np.isfinite(tp.jump).astype(np.float32)
        measured = apply_motion(seen, motion, order=1) > 0.5
        mask_k = apply_motion(tp.mask.astype(np.float32), motion, order=1) > 0.5
        matching.append(_match(labels, segment_particles(mask_k & measured), measured))
        common &= ndimage.binary_erosion(measured, iterations=2)
        # w after the motion's interpolation is finite only where no NaN was in reach
        valid = np.isfinite(tp.lithiation).astype(np.float32)
        common &= apply_motion(valid, motion, order=1) > 0.99
        motions.append(motion)
    return motions, matching, common


def analyze_series(points: list[TimePoint]) -> SeriesAnalysis:
    """Register, follow and rate the particles of a series (module docstring)."""
    from scipy import ndimage

    from xtwin.analysis.lithiation import segment_particles

    ref = points[0]
    pix_um = ref.pixel_size_m * 1e6
    active0 = ref.mask & np.isfinite(ref.lithiation)
    labels = segment_particles(active0)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    centroids = ndimage.center_of_mass(labels > 0, labels, ids) if ids.size else []
    sizes = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    motions, matching, common = _poses(points, labels)
    # w(t) of a particle over the same voxels at every time point: those of its voxels with
    # a w at every time point (a particle half out of the field later keeps its other half;
    # the voxels next to the pores that the motion's interpolation mixed drop out)
    core = np.where(common, labels, 0)
    rows: list[dict[str, Any]] = []
    series_w = np.full((len(points), ids.size), np.nan)
    series_s = np.full((len(points), ids.size), np.nan)
    depth = ndimage.distance_transform_edt(labels > 0)  # from each particle's surface
    shell, deep = _shell_and_deep(depth)
    depth_rows: list[dict[str, Any]] = []
    surface_rows: list[dict[str, Any]] = []
    kept: dict[int, np.ndarray] = {}  # registered w of the first two and last two time points
    for k, tp in enumerate(points):
        w, s = tp.lithiation, tp.sigma
        if k:
            w, s = apply_motion(w, motions[k]), apply_motion(s, motions[k])
        if k < 2 or k >= len(points) - 2:
            kept[k] = np.where(common, w, np.nan).astype(np.float32)
        matching[k] = {"time_s": tp.time_s, **motions[k].as_dict(), **matching[k]}
        surface_rows.append(_surface_minus_core(w, labels, shell, deep, tp.time_s))
        ok = (core > 0) & np.isfinite(w)
        n = np.bincount(core[ok], minlength=sizes.size)
        sw = np.bincount(core[ok], weights=w[ok], minlength=sizes.size)
        ss = np.bincount(core[ok], weights=np.square(np.nan_to_num(s[ok])), minlength=sizes.size)
        gone = {int(v) for v in matching[k]["left"]}
        for j, pid in enumerate(ids):
            if n[pid] == 0 or int(pid) in gone:
                continue
            series_w[k, j] = sw[pid] / n[pid]
            series_s[k, j] = np.sqrt(ss[pid]) / n[pid]
            cz, cy, cx = centroids[j]
            rows.append(
                {
                    "particle": int(pid),
                    "time_s": tp.time_s,
                    "w": round(float(series_w[k, j]), 6),
                    "w_sigma": round(float(series_s[k, j]), 6),
                    "z_um": round(cz * pix_um, 4),
                    "y_um": round(cy * pix_um, 4),
                    "x_um": round(cx * pix_um, 4),
                }
            )
    times_h = np.array([tp.time_s for tp in points]) / 3600.0
    features = particle_features(labels, pix_um)
    rates = []
    for j, pid in enumerate(ids):
        ok = np.isfinite(series_w[:, j]) & (series_s[:, j] > 0)
        if ok.sum() < 2:
            continue
        slope, se = _weighted_slope(times_h[ok], series_w[ok, j], 1.0 / series_s[ok, j] ** 2)
        rates.append(
            {
                "particle": int(pid),
                "rate_per_h": round(slope, 6),
                "rate_sigma_per_h": round(se, 6),
                "diameter_um": round(float((6 * sizes[pid] / np.pi) ** (1 / 3) * pix_um), 4),
                "depth_um": round(float(centroids[j][0] * pix_um), 4),
                **{k: round(v, 4) for k, v in features.get(int(pid), {}).items()},
            }
        )
    depth_z = np.array([c[0] for c in centroids]) if ids.size else np.zeros(0)
    for k, tp in enumerate(points):
        depth_rows += _depth_profile(
            series_w[k], series_s[k], depth_z, tp.time_s, pix_um, labels.shape[0]
        )
    summary = _summary(points, motions, matching, rates)
    summary.update(_clustering(rates, centroids, ids, pix_um))
    summary.update(_mechanism(surface_rows))
    summary.update(_depth_trend(depth_rows))
    summary["rate_drivers"] = rate_drivers(rates, features) if features else {}
    last = len(points) - 1
    if last >= 2:
        first_iv = (kept[0], kept[1], float(times_h[1] - times_h[0]))
        last_iv = (kept[last - 1], kept[last], float(times_h[last] - times_h[last - 1]))
        summary.update(hot_spots(first_iv, last_iv, own_cores(labels), depth))
    summary.update(internal_pore_lead(kept[0], kept[last], labels, times_h))
    return SeriesAnalysis(
        np.array([tp.time_s for tp in points]),
        motions,
        rows,
        rates,
        matching,
        labels,
        summary,
        depth_rows,
        surface_rows,
        ref.pixel_size_m,
    )


#: Depth bins of the depth profile over time.
DEPTH_BINS = 8

#: Permutations of the clustering test (seeded: the same maps give the same p-value).
PERMUTATIONS = 999


def _shell_and_deep(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Particle voxels within one voxel of their particle's boundary, and those deeper than
    two (``depth``: each voxel's distance from the nearest non-particle voxel)."""
    inside = depth > 0
    return inside & (depth <= 1.5), inside & (depth > 2.5)


def _depth_profile(
    w: np.ndarray, s: np.ndarray, z: np.ndarray, time_s: float, pix_um: float, nz: int
) -> list[dict[str, Any]]:
    """Mean particle w in depth (z) bins of the particles' centroids, with its standard error
    over the particles (their spread counts, not only the noise; the noise alone where a bin
    holds one particle)."""
    edges = np.linspace(0, nz, DEPTH_BINS + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (z >= a) & (z < b) & np.isfinite(w)
        if not sel.any():
            continue
        vals = w[sel]
        se = (
            float(vals.std(ddof=1) / np.sqrt(vals.size))
            if vals.size > 1
            else float(np.nan_to_num(s[sel][0]))
        )
        out.append(
            {
                "time_s": time_s,
                "depth_um": round(0.5 * (a + b) * pix_um, 4),
                "mean_w": round(float(vals.mean()), 6),
                "se": round(max(se, float(np.sqrt(np.mean(np.nan_to_num(s[sel]) ** 2)))), 6),
                "particles": int(vals.size),
            }
        )
    return out


def _surface_minus_core(
    w: np.ndarray, labels: np.ndarray, shell: np.ndarray, deep: np.ndarray, time_s: float
) -> dict[str, Any]:
    """Mean over particles of (surface w - core w), with its standard error over particles."""
    ok = np.isfinite(w)
    n = int(labels.max()) + 1
    sh = shell & ok
    dp = deep & ok
    ns, nd = np.bincount(labels[sh], minlength=n), np.bincount(labels[dp], minlength=n)
    ws = np.bincount(labels[sh], weights=w[sh], minlength=n)
    wd = np.bincount(labels[dp], weights=w[dp], minlength=n)
    good = (ns > 5) & (nd > 5)
    good[0] = False
    diff = ws[good] / ns[good] - wd[good] / nd[good]
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
    return {
        "time_s": time_s,
        "surface_minus_core": round(float(diff.mean()), 6) if diff.size else float("nan"),
        "se": round(se, 6),
        "particles": int(diff.size),
    }


def _mechanism(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Shrinking core (the surface leads: surface minus core grows beyond its noise as w
    changes) or solid solution (surface and core alike at every time), from the maps."""
    d = np.array([r["surface_minus_core"] for r in rows])
    se = np.array([r["se"] for r in rows])
    if d.size < 2 or not np.all(np.isfinite(d)):
        return {"mechanism": "cannot tell"}
    change = d[1:] - d[0]
    z = np.abs(change) / np.sqrt(se[1:] ** 2 + se[0] ** 2)
    if np.max(z) > 3:
        mechanism = "shrinking core (the surface leads the core)"
    elif np.all(np.abs(d) < 3 * se + 0.01):
        mechanism = "solid solution (surface and core alike)"
    else:
        mechanism = "cannot tell"
    return {
        "mechanism": mechanism,
        "surface_minus_core_change": round(float(change[np.argmax(z)]), 6),
        "surface_minus_core_change_z": round(float(np.max(z)), 3),
    }


def _weighted_slope(x: np.ndarray, y: np.ndarray, wt: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares slope of ``y`` on ``x`` (weights ``1 / sigma^2``) and its
    standard error."""
    xm = np.sum(wt * x) / wt.sum()
    sxx = np.sum(wt * (x - xm) ** 2)
    slope = np.sum(wt * (x - xm) * (y - np.sum(wt * y) / wt.sum())) / sxx
    return float(slope), float(1.0 / np.sqrt(sxx))


def _depth_trend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether w stays uniform across the depth at every time point (a weighted slope of w on
    depth within 2 standard errors of 0)."""
    slopes = []
    for t in sorted({r["time_s"] for r in rows}):
        rr = [r for r in rows if r["time_s"] == t and r["se"] > 0]
        if len(rr) < 3:
            continue
        x = np.array([r["depth_um"] for r in rr])
        y = np.array([r["mean_w"] for r in rr])
        slope, se = _weighted_slope(x, y, 1 / np.array([r["se"] for r in rr]) ** 2)
        slopes.append((slope * 10.0, se * 10.0))
    if not slopes:
        return {}
    return {
        "depth_slope_per_10um": [round(a, 5) for a, _ in slopes],
        "depth_slope_se_per_10um": [round(b, 5) for _, b in slopes],
        "uniform_across_depth": bool(all(abs(a) < 2 * b for a, b in slopes)),
    }


def _clustering(rates, centroids, ids, pix_um: float) -> dict[str, Any]:
    """Moran's I of the particle rates beyond what size explains (residuals of rate on
    diameter), neighbours within twice the median diameter; a permutation p-value."""
    if len(rates) < 8:
        return {"clustering": "cannot tell (fewer than 8 particles)"}
    by = {int(p): np.asarray(c) * pix_um for p, c in zip(ids, centroids)}
    pid = [r["particle"] for r in rates]
    xyz = np.array([by[p] for p in pid])
    r = np.array([x["rate_per_h"] for x in rates])
    dia = np.array([x["diameter_um"] for x in rates])
    design = np.column_stack([np.ones_like(dia), dia])
    resid = r - design @ np.linalg.lstsq(design, r, rcond=None)[0]
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    wmat = ((dist > 0) & (dist < 2 * np.median(dia))).astype(float)
    if wmat.sum() == 0:
        return {"clustering": "cannot tell (no neighbours)"}

    def moran(v: np.ndarray) -> float:
        z = v - v.mean()
        return float(len(v) / wmat.sum() * (z @ wmat @ z) / (z @ z))

    i_obs = moran(resid)
    rng = np.random.default_rng(0)
    perm = np.array([moran(rng.permutation(resid)) for _ in range(PERMUTATIONS)])
    p = float((1 + np.sum(perm >= i_obs)) / (PERMUTATIONS + 1))
    return {
        "morans_i": round(i_obs, 5),
        "clustering_p_value": round(p, 4),
        "activity_clustered": bool(p < 0.05),
    }


def _summary(points, motions, matching, rates) -> dict[str, Any]:
    n_first = matching[0]["n_first"]
    followed = min((m["matched"] for m in matching), default=0)
    r = np.array([x["rate_per_h"] for x in rates]) if rates else np.zeros(0)
    rs = np.array([x["rate_sigma_per_h"] for x in rates]) if rates else np.zeros(0)
    spread = float(np.std(r, ddof=1)) if r.size > 1 else float("nan")
    noise = float(np.median(rs)) if rs.size else float("nan")  # a typical particle's
    moved = [
        bool(
            np.any(np.abs(m.sample_shift_px) > 2 * m.shift_sigma_px)
            or abs(m.rotation_deg) > 2 * m.rotation_sigma_deg
        )
        for m in motions[1:]
    ]
    return {
        "time_points": len(points),
        "particles_first": n_first,
        "particles_followed_through_all": int(followed),
        "splits": int(sum(len(m["split"]) for m in matching)),
        "merges": int(sum(len(m["merged"]) for m in matching)),
        "left_field_of_view": sorted({p for m in matching for p in m["left"]}),
        "sample_moved": moved,
        "mean_rate_per_h": float(np.mean(r)) if r.size else float("nan"),
        "rate_spread_per_h": spread,
        "rate_noise_per_h": noise,
        "rates_differ_beyond_noise": bool(spread > 2 * noise) if r.size > 1 else False,
    }


def summary_text(s: dict[str, Any]) -> str:
    """The series summary as sentences with numbers."""
    lines = [
        f"{s['time_points']} time points; {s['particles_first']} particles at the first, "
        f"{s['particles_followed_through_all']} followed through every time point "
        f"({s['splits']} splits, {s['merges']} merges, {len(s['left_field_of_view'])} left the "
        "field of view).",
        "Sample motion relative to the first time point (beyond 2 sigma): "
        + ", ".join("yes" if m else "no" for m in s["sample_moved"])
        + ".",
        f"Mean rate {s['mean_rate_per_h']:+.4f} per hour; spread between particles "
        f"{s['rate_spread_per_h']:.4f} per hour against a typical (median) rate sigma of "
        f"{s['rate_noise_per_h']:.4f}: particles "
        + (
            "differ in rate beyond the noise."
            if s["rates_differ_beyond_noise"]
            else "cannot be told apart at this dose."
        ),
    ]
    if "clustering_p_value" in s:
        lines.append(
            "Regions more active than others (rates clustered in space beyond what size "
            f"explains): Moran's I {s['morans_i']:+.3f}, permutation p = "
            f"{s['clustering_p_value']:.3f}: " + ("yes." if s["activity_clustered"] else "no.")
        )
    if "mechanism" in s:
        change = (
            f" (surface minus core changed by {s['surface_minus_core_change']:+.4f}, "
            f"{s['surface_minus_core_change_z']:.1f} sigma)"
            if "surface_minus_core_change" in s
            else ""
        )
        lines.append(f"Lithiation front: {s['mechanism']}{change}.")
    if "uniform_across_depth" in s:
        uniform = (
            "uniform within 2 standard errors at every time point"
            if s["uniform_across_depth"]
            else "not uniform at some time point"
        )
        slopes = ", ".join(f"{a:+.4f}" for a in s["depth_slope_per_10um"])
        lines.append(
            f"Li repartition across the electrode depth: {uniform} (slopes per 10 um: {slopes})."
        )
    lines += _kinetics_text(s)
    return "\n".join(lines)


#: Sentences for the rate drivers (property name: what it is).
_DRIVERS = {
    "diameter_um": "particle size",
    "depth_um": "electrode depth",
    "contact_fraction": "contact with neighbouring particles",
    "pore_distance_um": "distance to pore or carbon-binder",
    "internal_pore_fraction": "internal porosity",
}


def _kinetics_text(s: dict[str, Any]) -> list[str]:
    """The rate drivers, hot spots and internal pores as sentences."""
    lines = []
    for key, d in s.get("rate_drivers", {}).items():
        what = f"Rate against {_DRIVERS.get(key, key)}"
        if not np.isfinite(d["spearman"]):
            lines.append(f"{what}: cannot tell (it is the same for every particle).")
            continue
        lines.append(
            f"{what}: Spearman {d['spearman']:+.2f}, p = {d['p_value']:.3f} "
            f"({d['particles']} particles): {d['related']}."
        )
    if "hot_spot_overlap" in s:
        lines.append(
            "Hot spots that persist (the fastest 5 % of voxels in the first and the last "
            f"interval): overlap {s['hot_spot_overlap']:.3f} against "
            f"{s['hot_spot_overlap_null']:.3f} with each particle's voxels shuffled at their "
            f"depth, p = "
            f"{s['hot_spot_p_value']:.3f}: {s['hot_spots_persist']}."
        )
    elif "hot_spots_persist" in s:
        lines.append(f"Hot spots that persist: {s['hot_spots_persist']}.")
    if "internal_pore_rate_lead_per_h" in s:
        lines.append(
            "Lithiation from internal pores (rate next to them minus at the same depth in "
            f"the particle): {s['internal_pore_rate_lead_per_h']:+.4f} +- "
            f"{s['internal_pore_rate_lead_se_per_h']:.4f} per hour over "
            f"{s['internal_pore_particles']} particles: {s['internal_pores']}."
        )
    elif "internal_pores" in s:
        lines.append(f"Lithiation from internal pores: {s['internal_pores']}.")
    return lines


def analyze_series_files(
    paths: list[str | os.PathLike], out_dir: str | os.PathLike, times_s: list[float] | None = None
) -> dict[str, Path]:
    """``xtwin analyze T0.h5 T1.h5 ... -o DIR``: tables, figures and a summary of a series.

    Files: ``particles_time.csv`` (particle, time_s, w, w_sigma, z_um, y_um, x_um: centroid in
    the first time point's frame), ``rates.csv`` (particle, rate_per_h, rate_sigma_per_h,
    diameter_um, depth_um, contact_fraction, pore_distance_um, internal_pore_fraction: see
    :mod:`xtwin.analysis.kinetics`), ``registration.csv`` (per time point: shift, rotation, their
    sigmas, matched/split/merged/left), ``summary.json``, ``summary.txt``, ``w_of_t.png``,
    ``rate_vs_size.png``, ``rate_map.png`` (a slice with each particle painted with its rate).
    """
    return _analyze_and_write(paths, out_dir, times_s)[1]


def _analyze_and_write(
    paths: list[str | os.PathLike], out_dir: str | os.PathLike, times_s: list[float] | None
) -> tuple[SeriesAnalysis, dict[str, Path]]:
    """The analysis of :func:`analyze_series_files` and the files it wrote."""
    from xtwin._files import ensure_writable_dir, write_csv_atomic, write_text_atomic

    out = ensure_writable_dir(out_dir)
    points = load_series(list(paths), times_s)
    a = analyze_series(points)
    files = {
        "particles_time.csv": out / "particles_time.csv",
        "rates.csv": out / "rates.csv",
        "registration.csv": out / "registration.csv",
        "summary.json": out / "summary.json",
        "summary.txt": out / "summary.txt",
    }
    write_csv_atomic(
        files["particles_time.csv"],
        a.particles_time,
        ("particle", "time_s", "w", "w_sigma", "z_um", "y_um", "x_um"),
    )
    write_csv_atomic(
        files["rates.csv"],
        a.rates,
        (
            "particle",
            "rate_per_h",
            "rate_sigma_per_h",
            "diameter_um",
            "depth_um",
            "contact_fraction",
            "pore_distance_um",
            "internal_pore_fraction",
        ),
    )
    reg_rows = [
        {
            **{k: v for k, v in m.items() if k not in ("split", "merged", "left")},
            "split": len(m["split"]),
            "merged": len(m["merged"]),
            "left": len(m["left"]),
        }
        for m in a.matching
    ]
    write_csv_atomic(files["registration.csv"], reg_rows, tuple(reg_rows[0]))
    files["depth_time.csv"] = out / "depth_time.csv"
    write_csv_atomic(
        files["depth_time.csv"], a.depth_time, ("time_s", "depth_um", "mean_w", "se", "particles")
    )
    files["surface_core_time.csv"] = out / "surface_core_time.csv"
    write_csv_atomic(
        files["surface_core_time.csv"],
        a.surface_time,
        ("time_s", "surface_minus_core", "se", "particles"),
    )
    summary = {"maps": [p.path for p in points], **a.summary}
    write_text_atomic(files["summary.json"], json.dumps(summary, indent=2) + "\n")
    write_text_atomic(files["summary.txt"], summary_text(a.summary) + "\n")
    files.update(_figures(a, out))
    return a, files


def _figures(a: SeriesAnalysis, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    depth = {r["particle"]: r["depth_um"] for r in a.rates}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("viridis")
    dmax = max(depth.values(), default=1.0) or 1.0
    for pid in sorted({r["particle"] for r in a.particles_time}):
        pts = [r for r in a.particles_time if r["particle"] == pid]
        t = [r["time_s"] / 3600 for r in pts]
        ax.errorbar(
            t,
            [r["w"] for r in pts],
            yerr=[r["w_sigma"] for r in pts],
            color=cmap(depth.get(pid, 0) / dmax),
            lw=0.8,
            marker="o",
            ms=2.5,
        )
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, dmax))
    fig.colorbar(sm, ax=ax, label="particle depth (um)")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("particle mean lithiation w")
    ax.set_title("w(t) of every particle, coloured by depth")
    files = {"w_of_t.png": out / "w_of_t.png"}
    save_png(fig, files["w_of_t.png"], dpi=110)
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    ax.errorbar(
        [r["diameter_um"] for r in a.rates],
        [r["rate_per_h"] for r in a.rates],
        yerr=[r["rate_sigma_per_h"] for r in a.rates],
        fmt="o",
        ms=3,
        lw=0.8,
    )
    ax.set_xlabel("particle diameter (um)")
    ax.set_ylabel("rate dw/dt (1/h)")
    ax.set_title("Particle rate against size")
    files["rate_vs_size.png"] = out / "rate_vs_size.png"
    save_png(fig, files["rate_vs_size.png"], dpi=110)
    files["rate_map.png"] = out / "rate_map.png"
    _rate_map_figure(a, files["rate_map.png"])
    return files


def _rate_map_figure(a: SeriesAnalysis, path: Path) -> None:
    """The slice (z) of the first time point that cuts the most particle voxels, each
    particle painted with its rate."""
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    rate = np.full(int(a.labels.max()) + 1, np.nan)
    for r in a.rates:
        rate[r["particle"]] = r["rate_per_h"]
    z = int(np.argmax((a.labels > 0).sum(axis=(1, 2))))
    img = np.where(a.labels[z] > 0, rate[a.labels[z]], np.nan)
    ny, nx = img.shape
    um = a.pixel_size_m * 1e6 or 1.0
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    im = ax.imshow(img, cmap="magma", extent=(0, nx * um, ny * um, 0), interpolation="nearest")
    fig.colorbar(im, ax=ax, label="particle rate dw/dt (1/h)")
    ax.set_xlabel("x (um)" if a.pixel_size_m else "x (pixels)")
    ax.set_ylabel("y (um)" if a.pixel_size_m else "y (pixels)")
    ax.set_title(f"Particle rates, slice z = {z} of the first time point")
    save_png(fig, path, dpi=110)


def series_report(
    paths: list[str | os.PathLike], out_dir: str | os.PathLike, times_s: list[float] | None = None
) -> dict[str, Path]:
    """``xtwin report T0.h5 T1.h5 ... -o DIR``: the series analysis (in ``DIR/analysis``) and
    one self-contained ``report.html`` with its summary, the registration and particle tables
    and the time-resolved figures."""
    from xtwin._files import ensure_writable_dir
    from xtwin.analysis.report import html_table, write_html

    out = ensure_writable_dir(out_dir)
    a, files = _analyze_and_write(paths, out / "analysis", times_s)
    reg_table = html_table(
        [
            "time (s)",
            "dz (px)",
            "dy (px)",
            "dx (px)",
            "rotation (deg)",
            "tilt z-x, z-y (deg)",
            "scale",
            "followed",
            "split",
            "merged",
            "left the field",
        ],
        [
            [
                f"{r['time_s']:.0f}",
                f"{r['dz_px']:+.2f} +- {r['dz_sigma_px']:.2f}",
                f"{r['dy_px']:+.2f} +- {r['dy_sigma_px']:.2f}",
                f"{r['dx_px']:+.2f} +- {r['dx_sigma_px']:.2f}",
                f"{r['rotation_deg']:+.2f} +- {r['rotation_sigma_deg']:.2f}",
                f"{r['tilt_zx_deg']:+.2f} +- {r['tilt_zx_sigma_deg']:.2f}, "
                f"{r['tilt_zy_deg']:+.2f} +- {r['tilt_zy_sigma_deg']:.2f}"
                + (" (corrected)" if r["tilt_scale_applied"] else ""),
                f"{r['scale']:.4f} +- {r['scale_sigma']:.4f}",
                f"{r['matched']} of {r['n_first']}",
                str(len(r["split"])),
                str(len(r["merged"])),
                str(len(r["left"])),
            ]
            for r in a.matching
        ],
        "The sample's motion relative to the first time point (tilt and scale corrected where"
        " beyond 3 sigma), and the particles followed",
    )
    rates = sorted(a.rates, key=lambda r: r["rate_per_h"])
    rate_table = html_table(
        ["particle", "rate (1/h)", "diameter (um)", "depth (um)"],
        [
            [
                str(r["particle"]),
                f"{r['rate_per_h']:+.4f} +- {r['rate_sigma_per_h']:.4f}",
                f"{r['diameter_um']:.2f}",
                f"{r['depth_um']:.2f}",
            ]
            for r in rates
        ],
        "Particle rates dw/dt, fastest delithiation first",
    )
    page = write_html(
        out / "report.html",
        f"xtwin report: operando series of {len(paths)} time points",
        [
            ("Summary", summary_text(a.summary), []),
            ("Registration", reg_table, []),
            ("Particles through time", "", [files["w_of_t.png"], files["rate_vs_size.png"]]),
            ("Rates", rate_table, []),
        ],
    )
    return {**files, "report.html": page}
