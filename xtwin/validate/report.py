"""The demo's small report: slices of true vs recovered lithiation, an error histogram."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xtwin._files import write_text_atomic
from xtwin.analysis.report import HtmlTable, html_table
from xtwin.io.limap import LiMap
from xtwin.io.truth import TruthData


def write_report(
    limap: LiMap, truth: TruthData, metrics: dict[str, Any], out_dir: str | os.PathLike
) -> dict[str, Path]:
    """Write ``slices.png``, ``error_histogram.png`` and ``metrics.json`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    out = Path(out_dir)
    rec, tru = limap.lithiation, truth.lithiation
    z = int(np.argmax(np.isfinite(tru).sum(axis=(1, 2)))) if tru.ndim == 3 else None
    t2 = tru[z] if z is not None else tru
    r2 = rec[z] if z is not None else rec
    s2 = limap.sigma[z] if z is not None else limap.sigma
    lo, hi = np.nanpercentile(np.concatenate([t2[np.isfinite(t2)], r2[np.isfinite(r2)]]), [1, 99])
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
    extent_um = np.array([0, t2.shape[1], t2.shape[0], 0]) * limap.pixel_size_m * 1e6
    for ax, img, title, kw in (
        (axes[0], t2, "true lithiation w", {"vmin": lo, "vmax": hi, "cmap": "viridis"}),
        (axes[1], r2, "recovered w", {"vmin": lo, "vmax": hi, "cmap": "viridis"}),
        (axes[2], r2 - t2, "recovered - true", {"vmin": -0.3, "vmax": 0.3, "cmap": "RdBu_r"}),
        (axes[3], s2, "sigma(w)", {"vmin": 0, "vmax": np.nanpercentile(s2, 95), "cmap": "magma"}),
    ):
        im = ax.imshow(img, extent=extent_um, **kw)
        ax.set_title(title + (f" (slice z={z})" if z is not None else ""))
        ax.set_xlabel("x (um)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    axes[0].set_ylabel("y (um)")
    paths = {
        "slices": out / "slices.png",
        "histogram": out / "error_histogram.png",
        "metrics": out / "metrics.json",
    }
    save_png(fig, paths["slices"], dpi=100)

    both = np.isfinite(rec) & np.isfinite(tru)
    err = (rec - tru)[both]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax[0].hist(err, bins=80, color="0.3")
    ax[0].axvline(0, color="r")
    v, p = metrics["voxel"], metrics["particle"]
    ax[0].set_title(f"voxel error: RMSE {v['rmse']:.3f}, bias {v['bias']:+.3f}")
    ax[0].set_xlabel("recovered - true lithiation")
    tab = p["table"]
    ax[1].scatter(
        [t["true"] for t in tab],
        [t["recovered"] for t in tab],
        s=[max(4, t["n_voxels"] / 50) for t in tab],
    )
    lims = [min(t["true"] for t in tab) - 0.02, max(t["true"] for t in tab) + 0.02]
    ax[1].plot(lims, lims, "k--", lw=1)
    ax[1].set_title(f"per particle: MAE {p['mae']:.4f}, max {p['max_abs_error']:.4f}")
    ax[1].set_xlabel("true mean w")
    ax[1].set_ylabel("recovered mean w")
    save_png(fig, paths["histogram"], dpi=100)
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2) + "\n")
    return paths


def report_with_truth(
    limap: str | os.PathLike, out_dir: str | os.PathLike, truth: str | os.PathLike | None
) -> dict[str, Path]:
    """:func:`xtwin.analysis.report.report` for a Li map, with a section comparing it to the
    twin's truth when ``truth`` is given (metrics, slices, error histogram)."""
    from xtwin.analysis.report import report
    from xtwin.io.limap import read_limap
    from xtwin.io.truth import read_truth
    from xtwin.validate.metrics import compare

    if truth is None:
        return report(limap, out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm, tr = read_limap(limap), read_truth(truth)
    metrics = compare(lm, tr).to_dict()
    rep = write_report(lm, tr, metrics, out)
    labels = tr.labels if tr.labels.shape == lm.lithiation.shape else None
    table = truth_table(metrics, _own_segmentation(lm, labels))
    section = ("Against the truth", table, [Path(rep["slices"]), Path(rep["histogram"])])
    return report(limap, out, [section], labels=labels)


def _own_segmentation(lm: LiMap, truth_labels: np.ndarray | None) -> tuple[int, int] | None:
    """(particles the map's own SNOW segmentation finds, truth particles that share a segment
    with a larger one): why the map-only count can differ from the truth's."""
    if truth_labels is None:
        return None
    from xtwin.analysis.lithiation import segment_particles

    seg = segment_particles(lm.mask & np.isfinite(lm.lithiation))
    n_seg = int(len(np.unique(seg)) - 1)
    inside = (truth_labels > 0) & (seg > 0)
    pairs, counts = np.unique(np.c_[truth_labels[inside], seg[inside]], axis=0, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (t, g), c in zip(pairs.tolist(), counts.tolist()):
        if c > best.get(t, (0, 0))[1]:
            best[t] = (g, c)
    owners: dict[int, list[int]] = {}
    for t, (g, _) in best.items():
        owners.setdefault(g, []).append(t)
    merged = sum(len(ts) - 1 for ts in owners.values() if len(ts) > 1)
    return n_seg, merged


def truth_table(metrics: dict, own: tuple[int, int] | None = None) -> HtmlTable:
    """The comparison's numbers as a table, with units and sensible significant figures;
    ``own``: what the map's own segmentation finds (count, truth particles merged)."""
    v, p = metrics["voxel"], metrics["particle"]
    rows = [
        ["particles compared (the truth's labels)", f"{p['n']}", ""],
        ["per-particle mean absolute error of w", f"{p['mae']:.4f}", "lithiation fraction"],
        ["per-particle largest error of w", f"{p['max_abs_error']:.4f}", "lithiation fraction"],
        ["per-particle bias of w", f"{p['bias']:+.4f}", "lithiation fraction"],
        ["per-particle RMSE of w", f"{p['rmse']:.4f}", "lithiation fraction"],
        ["voxels compared (inside active material)", f"{v['n']}", ""],
        ["voxel coverage (active voxels with a w)", f"{100 * v['coverage']:.2f}", "%"],
        ["voxel RMSE of w", f"{v['rmse']:.3f}", "lithiation fraction"],
        ["voxel bias of w", f"{v['bias']:+.4f}", "lithiation fraction"],
        ["voxel mean absolute error of w", f"{v['mae']:.3f}", "lithiation fraction"],
        ["std of (error / predicted sigma)", f"{v['z_score_std']:.3f}", "1 = sigma is right"],
    ]
    if own is not None:
        rows.insert(
            1,
            [
                "particles the map's own segmentation finds (SNOW, without the truth)",
                f"{own[0]}",
                f"{own[1]} truth particle(s) merged into a larger neighbour" if own[1] else "",
            ],
        )
    if "false_positive_fraction" in metrics:
        rows.append(
            [
                "Ni mask false positives (outside active material)",
                f"{100 * metrics['false_positive_fraction']:.2f}",
                "% of the recovered voxels",
            ]
        )
    return html_table(["quantity", "value", "unit"], rows, "Recovered map against the twin's truth")
