"""``xtwin analyze`` and ``xtwin report``: tables, figures and a self-contained HTML page.

:func:`load_map` reads a Li-map file or a twin's truth file into the analysis input;
:func:`analyze_file` writes CSV tables, labels, figures and a text summary;
:func:`write_html` makes one HTML page with the figures embedded (base64 PNG), so it can be
mailed or archived alone. Every figure has labelled axes with units, colour bars with labels
and a title that says what is shown.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xtwin.analysis.lithiation import Analysis, MapInput, analyze_map
from xtwin.errors import XtwinInputError

if TYPE_CHECKING:
    from xtwin.io.limap import LiMap


def load_map(
    path: str | os.PathLike, depth_offset_m: float = 0.0, labels: np.ndarray | None = None
) -> tuple[MapInput, str]:
    """A Li-map or truth file as analysis input, and its kind (``limap`` or ``truth``).

    Depths are measured from the top of the imaged window plus ``depth_offset_m`` (the
    window's depth in the electrode, when known). ``labels`` (a Li map's grid) gives the
    particles instead of the SNOW segmentation (a twin's truth labels)."""
    from xtwin.io import open_h5

    with open_h5(path, "Li-map or truth file") as f:
        is_truth = "/truth/lithiation" in f
        is_limap = "/li/lithiation" in f
        is_mu = "/recon/mu" in f and not is_limap
    if is_mu:
        raise XtwinInputError(
            f"{path} is a single-energy map (attenuation only): it has no lithiation to "
            "analyze; process a scan with three or more energies, or view it with xtwin report"
        )
    if is_limap:
        from xtwin.io.limap import read_limap

        lm = read_limap(path)
        if lm.mode == "edge-jump":
            raise XtwinInputError(
                f"{path} is an edge-jump map (two energies): it has no lithiation to analyze"
            )
        depth0 = depth_offset_m
        active = lm.mask & np.isfinite(lm.lithiation)
        if labels is not None and labels.shape != lm.lithiation.shape:
            raise XtwinInputError(
                f"particle labels of shape {labels.shape} do not match the map's "
                f"{lm.lithiation.shape}"
            )
        return (
            MapInput(
                lm.lithiation,
                lm.sigma,
                active,
                lm.pixel_size_m,
                labels=None if labels is None else np.where(active, labels, 0).astype(np.int32),
                depth_offset_m=depth0,
                source=str(path),
                systematic=lm.systematic,
            ),
            "limap",
        )
    if is_truth:
        from xtwin.io.truth import PHASE_ACTIVE, read_truth

        tr = read_truth(path)
        active = (tr.phases == PHASE_ACTIVE) & np.isfinite(tr.lithiation)
        return (
            MapInput(
                tr.lithiation,
                np.zeros_like(tr.lithiation),
                active,
                tr.pixel_size_m,
                labels=tr.labels,
                inside=tr.phases != 255,
                depth_offset_m=depth_offset_m,
                source=str(path),
            ),
            "truth",
        )
    raise XtwinInputError(f"{path} is neither a Li-map file (/li) nor a truth file (/truth)")


HOT_SPOT_FIELDS = ("n_voxels", "mean_deviation", "particle", "depth_um", "y_px", "x_px")


def _profile_rows(prof: dict[str, np.ndarray], key: str) -> list[dict[str, Any]]:
    return [
        {key: float(c), "mean_w": float(m), "se": float(s), "n_voxels": int(n)}
        for c, m, s, n in zip(prof["center"], prof["mean"], prof["se"], prof["n"])
    ]


def analyze_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    depth_offset_m: float = 0.0,
    labels: np.ndarray | None = None,
    **kwargs: Any,
) -> dict[str, Path]:
    """Analyze a Li-map (or truth) file and write the results into ``out_dir`` (``labels``:
    particles given, e.g. a twin's truth labels, instead of the SNOW segmentation).

    Files: ``particles.csv``, ``depth_profile.csv``, ``wetted_profile.csv``,
    ``internal_pore_profile.csv``, ``hot_spots.csv``, ``labels.h5`` (particle labels and the
    hot-spot mask), ``summary.json``, ``summary.txt``, and the figures ``slices.png``,
    ``profiles.png``, ``particles.png``; for XANES stacks (four or more energies) also the
    spectral clusters (:func:`xtwin.analysis.spectral.write_spectral`).

    Returns
    -------
    dict
        Name -> path of each file written.
    """
    from xtwin._files import ensure_writable_dir, write_csv_atomic, write_text_atomic
    from xtwin.io import write_h5

    out = ensure_writable_dir(out_dir)
    m, kind = load_map(path, depth_offset_m, labels)
    if kind == "truth":
        kwargs.setdefault("fdr", 0.0)  # the truth has no noise: magnitude alone
    a = analyze_map(m, **kwargs)
    files = {}
    files["particles.csv"] = out / "particles.csv"
    write_csv_atomic(files["particles.csv"], a.particles, ("id",))
    files["depth_profile.csv"] = out / "depth_profile.csv"
    write_csv_atomic(
        files["depth_profile.csv"],
        [
            {"depth_um": float(d), "mean_w": float(mw), "se": float(se), "systematic": float(sy)}
            for d, mw, se, sy in zip(
                a.depth["depth_um"], a.depth["mean_w"], a.depth["se"], a.depth["systematic"]
            )
        ],
    )
    files["wetted_profile.csv"] = out / "wetted_profile.csv"
    write_csv_atomic(files["wetted_profile.csv"], _profile_rows(a.wetted, "distance_um"))
    files["internal_pore_profile.csv"] = out / "internal_pore_profile.csv"
    write_csv_atomic(files["internal_pore_profile.csv"], _profile_rows(a.internal, "distance_um"))
    files["hot_spots.csv"] = out / "hot_spots.csv"
    write_csv_atomic(files["hot_spots.csv"], a.hot_spots, HOT_SPOT_FIELDS)
    files["labels.h5"] = out / "labels.h5"
    write_h5(
        files["labels.h5"],
        {"/particles/labels": a.labels.astype(np.int32), "/hot_spots/mask": a.hot.astype(np.uint8)},
        {
            "/particles": {
                "source": str(path),
                "method": "labels" if m.labels is not None else "snow_partitioning",
            }
        },
    )
    particles_from = (
        "the truth's labels"
        if labels is not None
        else "the file's labels"
        if m.labels is not None
        else "SNOW segmentation of the Ni mask"
    )
    summary = {"source": str(path), "kind": kind, "particles_from": particles_from, **a.summary}
    files["summary.json"] = out / "summary.json"
    write_text_atomic(files["summary.json"], json.dumps(summary, indent=2) + "\n")
    files["summary.txt"] = out / "summary.txt"
    write_text_atomic(files["summary.txt"], summary_text(summary) + "\n")
    files.update(write_figures(m, a, out))
    if kind == "limap" and _mode(path) == "multi-energy":  # XANES stacks: spectral clusters
        from xtwin.analysis.spectral import write_spectral

        try:
            files.update(write_spectral(path, out))
        except XtwinInputError:  # too few Ni voxels to cluster: the rest of the analysis stands
            pass
    return files


def _mode(path: str | os.PathLike) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        return str(f["/edge"].attrs.get("mode", "")) if "/edge" in f else ""


def summary_text(s: dict[str, Any]) -> str:
    """The summary as sentences with numbers."""
    how = f" ({s['particles_from']})" if "particles_from" in s else ""
    lines = [f"{s.get('kind', 'map')} {s.get('source', '')}: {s['n_particles']} particles{how}"]
    if "depth_trend_per_10um" in s:
        lines.append(
            f"Depth: mean particle lithiation changes by {s['depth_trend_per_10um']:+.4f} "
            f"+- {s['depth_trend_se_per_10um']:.4f} per 10 um of depth; "
            + (
                "uniform across the depth within 2 standard errors."
                if s["uniform_across_depth"]
                else "not uniform across the depth (more than 2 standard errors)."
            )
        )
    if "most_delithiated_particles" in s:
        lines.append(
            f"Most active (least lithiated) particles: {s['most_delithiated_particles']}; least "
            f"active: {s['most_lithiated_particles']}."
        )
    if "surface_minus_core_mean" in s:
        lines.append(
            f"Surface minus core lithiation: {s['surface_minus_core_mean']:+.4f} +- "
            f"{s['surface_minus_core_se']:.4f} (mean over particles)."
        )
    lines.append(f"Surface hot spots: {s['surface_hot_spots']} ({s['hot_spot_rule']}).")
    lines.append(
        "Heterogeneity beyond noise: between particles "
        f"{s['heterogeneity_between_particles_rel']:.4f} (relative), within particles "
        f"{s['heterogeneity_within_particles']:.4f}."
    )
    if "internal_pore_near_minus_far" in s:
        lines.append(
            "Near internal pores minus farther from them: "
            f"{s['internal_pore_near_minus_far']:+.4f} (lithiation proceeding from internal "
            "pores would make this differ from the surface-minus-core trend)."
        )
    else:
        lines.append("No internal pores resolved at this pixel size.")
    return "\n".join(lines)


def _pixel_centres(img: np.ndarray, pix_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, Y, values) for ``contour`` on an ``imshow`` with extent (0, W, H, 0) in um."""
    ny, nx = img.shape
    x = (np.arange(nx) + 0.5) * pix_um
    y = (np.arange(ny) + 0.5) * pix_um
    return x, y, img.astype(float)


def write_figures(m: MapInput, a: Analysis, out: Path) -> dict[str, Path]:
    """Slices at three depths, the profiles and the particle scatter (PNG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    files = {}
    w = np.where(m.active, m.lithiation, np.nan)
    pix_um = m.pixel_size_m * 1e6
    zs = np.flatnonzero(np.isfinite(w).sum(axis=(1, 2)) > 0)
    picks = zs[np.linspace(0, zs.size - 1, 3).astype(int)] if zs.size else np.array([0])
    finite = w[np.isfinite(w)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks), 4.4), constrained_layout=True)
    axes = np.atleast_1d(axes)
    ext = [0, w.shape[2] * pix_um, w.shape[1] * pix_um, 0]
    for ax, z in zip(axes, picks):
        im = ax.imshow(w[z], vmin=lo, vmax=hi, cmap="viridis", extent=ext)
        if a.hot[z].any():
            ax.contour(
                *_pixel_centres(a.hot[z], pix_um), levels=[0.5], colors="red", linewidths=0.8
            )
        depth = (z + 0.5) * pix_um + m.depth_offset_m * 1e6
        ax.set_title(f"lithiation w at depth {depth:.1f} um")
        ax.set_xlabel("x (um)")
        ax.set_ylabel("y (um)")
    fig.colorbar(im, ax=axes, label="lithiation fraction w", shrink=0.85)
    fig.suptitle("Lithiation slices (red: surface hot spots)")
    files["slices.png"] = out / "slices.png"
    save_png(fig, files["slices.png"], dpi=110)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    d = a.depth
    ax1.plot(d["depth_um"], d["mean_w"], color="C0", label="mean over active voxels")
    ax1.fill_between(
        d["depth_um"],
        d["mean_w"] - 1.96 * d["se"],
        d["mean_w"] + 1.96 * d["se"],
        color="C0",
        alpha=0.3,
        label="95 % band (voxel sigmas)",
    )
    if np.any(d["systematic"] > 0):
        full = np.hypot(1.96 * d["se"], d["systematic"])
        ax1.fill_between(
            d["depth_um"],
            d["mean_w"] - full,
            d["mean_w"] + full,
            color="C0",
            alpha=0.12,
            label="with the normalization spread",
        )
    ax1.set_xlabel("depth into the electrode (um)")
    ax1.set_ylabel("lithiation fraction w")
    ax1.set_title("Lithiation across the electrode depth (interior voxels)")
    ax1.legend()
    for prof, name, c in (
        (a.wetted, "from the electrolyte-wetted surface", "C1"),
        (a.internal, "from internal pores", "C2"),
    ):
        if np.size(prof["center"]) and np.isfinite(prof["mean"]).any():
            ax2.errorbar(
                prof["center"],
                prof["mean"],
                yerr=1.96 * prof["se"],
                marker="o",
                ms=3,
                color=c,
                label=name,
            )
    ax2.set_xlabel("distance (um)")
    ax2.set_ylabel("lithiation fraction w")
    ax2.set_title("Lithiation against distance from pores")
    ax2.legend()
    files["profiles.png"] = out / "profiles.png"
    save_png(fig, files["profiles.png"], dpi=110)

    fig, ax = plt.subplots(figsize=(6, 4.4), constrained_layout=True)
    if a.particles:
        dep = [p["depth_um"] for p in a.particles]
        mw = [p["mean_w"] for p in a.particles]
        se = [1.96 * p["sigma_mean_w"] for p in a.particles]
        dia = np.array([p["diameter_um"] for p in a.particles])
        sc = ax.scatter(dep, mw, c=dia, cmap="plasma", s=30, zorder=3)
        ax.errorbar(dep, mw, yerr=se, fmt="none", ecolor="grey", zorder=2)
        fig.colorbar(sc, ax=ax, label="equivalent diameter (um)")
    ax.set_xlabel("particle depth (um)")
    ax.set_ylabel("particle mean lithiation w")
    ax.set_title("Particles: mean lithiation (95 % error bars)")
    files["particles.png"] = out / "particles.png"
    save_png(fig, files["particles.png"], dpi=110)
    return files


class HtmlTable(str):
    """A section's body given as an HTML table (:func:`html_table`), inserted as it is."""


def html_table(header: list[str], rows: list[list[str]], caption: str = "") -> HtmlTable:
    """An escaped HTML table (cells are text), with an optional caption."""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return HtmlTable(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def write_html(
    out: str | os.PathLike, title: str, sections: list[tuple[str, str, list[Path]]]
) -> Path:
    """A self-contained HTML page: per section a heading, a paragraph (escaped) and figures
    embedded as base64 PNG with alt text."""
    from xtwin._files import write_text_atomic

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "img{max-width:100%;display:block;margin:1em 0;}pre{background:#f4f4f4;padding:1em;"
        "white-space:pre-wrap;}table{border-collapse:collapse;margin:1em 0;}"
        "th,td{border:1px solid #ccc;padding:0.3em 0.8em;text-align:left;}"
        "caption{text-align:left;font-weight:bold;margin-bottom:0.3em;}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, text, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(text, HtmlTable):
            parts.append(str(text))
        elif text:
            parts.append(f"<pre>{html.escape(text)}</pre>")
        for fig in figures:
            data = base64.b64encode(Path(fig).read_bytes()).decode("ascii")
            parts.append(
                f'<img alt="{html.escape(Path(fig).stem)}" src="data:image/png;base64,{data}">'
            )
    parts.append("</body></html>")
    path = Path(out)
    write_text_atomic(path, "\n".join(parts) + "\n")
    return path


def edge_figure(lm: LiMap, name: str, out: Path) -> Path:
    """Optical density (or attenuation) per energy, the Ni edge jump with its mask outline,
    and the jump's signal-to-noise of the Li map ``lm`` (file ``name``): ``edge.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    two_d = not lm.is_tomography
    z = 0 if two_d else int(np.argmax(lm.mask.sum(axis=(1, 2))))

    def sl(a: np.ndarray) -> np.ndarray:
        return a if two_d else a[z]

    pix_um = lm.pixel_size_m * 1e6
    n = lm.mu_per_m.shape[0]
    show = [0, n - 1] if n > 1 else [0]
    ext = [0, sl(lm.mask).shape[1] * pix_um, sl(lm.mask).shape[0] * pix_um, 0]
    unit = "optical density" if two_d else "mu (1/m)"
    jump_unit = "edge jump (optical density)" if two_d else "edge jump J (1/m)"
    fig, axes = plt.subplots(
        1, len(show) + 2, figsize=(4.6 * (len(show) + 2), 4.2), constrained_layout=True
    )
    for ax, k in zip(axes, show):
        img = sl(lm.mu_per_m[k])
        lo, hi = np.nanpercentile(img, [1, 99])
        im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        fig.colorbar(im, ax=ax, label=unit, shrink=0.8)
        ax.set_title(f"{lm.energy_eV[k]:.1f} eV")
    j = sl(lm.edge_jump_per_m)
    lo, hi = np.nanpercentile(j, [1, 99.5])
    im = axes[-2].imshow(j, cmap="inferno", vmin=min(lo, 0), vmax=hi, extent=ext)
    axes[-2].contour(
        *_pixel_centres(sl(lm.mask), pix_um), levels=[0.5], colors="cyan", linewidths=0.6
    )
    fig.colorbar(im, ax=axes[-2], label=jump_unit, shrink=0.8)
    axes[-2].set_title("Ni edge jump (cyan outline: Ni mask)")
    if lm.edge_jump_sigma_per_m is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = sl(lm.edge_jump_per_m) / sl(lm.edge_jump_sigma_per_m)
        im = axes[-1].imshow(
            snr, cmap="viridis", vmin=0, vmax=np.nanpercentile(snr, 99), extent=ext
        )
        fig.colorbar(im, ax=axes[-1], label="J / sigma(J)", shrink=0.8)
        axes[-1].set_title("edge-jump signal-to-noise")
    for ax in axes:
        ax.set_xlabel("x (um)")
        ax.set_ylabel("y (um)")
    where = "2D XANES" if two_d else f"slice {z}"
    fig.suptitle(f"{name}: Ni edge jump ({lm.mode}, {where})")
    path = out / "edge.png"
    save_png(fig, path, dpi=100)
    return path


def report(
    limap: str | os.PathLike,
    out_dir: str | os.PathLike,
    extra_sections: list[tuple[str, str, list[Path]]] | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Path]:
    """Figures and a self-contained ``report.html`` for a Li map: what ``xtwin report``
    writes (:func:`xtwin.validate.report.report_with_truth` adds the comparison with a twin's
    truth). An edge-jump map (two energies) gets the edge-jump figure only."""
    from xtwin._files import ensure_writable_dir
    from xtwin.io.limap import read_limap

    out = ensure_writable_dir(out_dir)
    lm = read_limap(limap)
    if not lm.has_lithiation:
        return _attenuation_report(lm, Path(limap).name, out)
    edge = edge_figure(lm, Path(limap).name, out)
    if lm.mode == "edge-jump":
        notes = lm.provenance.get("notes", [])
        if isinstance(notes, str):
            notes = json.loads(notes)
        text = (
            f"{int(lm.mask.sum())} pixels with Ni; median edge jump "
            f"{float(np.nanmedian(lm.edge_jump_per_m[lm.mask])):.4g}\n" + "\n".join(notes)
        )
        page = write_html(
            out / "report.html", f"xtwin report: {Path(limap).name}", [("Edge jump", text, [edge])]
        )
        return {"edge.png": edge, "report.html": page}
    files = analyze_file(limap, out / "analysis", labels=labels)
    summary = json.loads(files["summary.json"].read_text())
    sections: list[tuple[str, str, list[Path]]] = [
        ("Summary", summary_text(summary), []),
        ("Slices", "", [files["slices.png"]]),
        ("Profiles", "", [files["profiles.png"]]),
        ("Particles", "", [files["particles.png"]]),
        ("Edge jump and mask", "", [edge]),
    ]
    sections += list(extra_sections or [])
    page = write_html(out / "report.html", f"xtwin report: {Path(limap).name}", sections)
    return {**files, "edge.png": edge, "report.html": page}


def _attenuation_report(lm: LiMap, name: str, out: Path) -> dict[str, Path]:
    """A single-energy map: the attenuation and its sigma, three orthogonal slices (one
    image for 2D), and what the file says."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    mu, sig = lm.mu_per_m[0], lm.mu_sigma_per_m[0]
    e = float(np.ravel(lm.energy_eV)[0])
    energy = f"{e:.1f} eV" if np.isfinite(e) else "energy not recorded"
    per_pixel = lm.mu_units == "1/pixel"
    pix_um = 1.0 if per_pixel else lm.pixel_size_m * 1e6
    length = "pixel" if per_pixel else "um"
    views = (
        [(mu[mu.shape[0] // 2], "z slice", ("x", "y"))]
        + [
            (mu[:, mu.shape[1] // 2], "y slice", ("x", "z")),
            (mu[:, :, mu.shape[2] // 2], "x slice", ("y", "z")),
        ]
        if mu.ndim == 3 and mu.shape[0] > 8
        else [
            (
                mu[mu.shape[0] // 2] if mu.ndim == 3 else mu,
                "slice" if mu.ndim == 3 else "image",
                ("x", "y"),
            )
        ]
    )
    finite = mu[np.isfinite(mu)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, len(views), figsize=(4.6 * len(views), 4.2), squeeze=False)
    for ax, (img, title, (xa, ya)) in zip(axes[0], views):
        extent = (0, img.shape[1] * pix_um, img.shape[0] * pix_um, 0)
        im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent)
        ax.set_title(title)
        ax.set_xlabel(f"{xa} ({length})")
        ax.set_ylabel(f"{ya} ({length})")
        fig.colorbar(im, ax=ax, shrink=0.8, label=f"mu ({lm.mu_units})")
    fig.suptitle(f"{name}: attenuation at {energy}")
    path = out / "attenuation.png"
    save_png(fig, path, dpi=100)
    notes = lm.provenance.get("notes", [])
    if isinstance(notes, str):
        notes = json.loads(notes)
    ok = np.isfinite(sig) & np.isfinite(mu)
    text = (
        f"single-energy reconstruction ({energy}): no lithiation from one energy\n"
        f"median mu {float(np.median(finite)) if finite.size else float('nan'):.4g} {lm.mu_units}, "
        f"median sigma {float(np.median(sig[ok])) if ok.any() else float('nan'):.2g} "
        f"{lm.mu_units}\n" + "\n".join(notes)
    )
    page = write_html(out / "report.html", f"xtwin report: {name}", [("Attenuation", text, [path])])
    return {"attenuation.png": path, "report.html": page}
