"""Figures of docs/realism.md: the Ni chemistry's model bias, the Fresnel fringes, and what
each of the other effects does to the twin's scan.

    python docs/scripts/realism_figures.py [--out docs/figures]

The first two are computed from the physics alone (no noise, no reconstruction); the effects
figure compares the twin's scan (default scenario, seed 7, 6e4 photons per pixel) with each
effect on and off, at the sizes of docs/realism.md. They show the effect itself; the
validation campaigns (validation/realism.toml, validation/phase_contrast.toml,
validation/error_budget.toml) show what it does through the whole pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
E3 = np.array([8320.0, 8347.0, 8400.0])


def chemistry_bias(out: Path) -> dict[str, float]:
    """Retrieved minus true w against true w, three-energy retrieval with the standards the
    twin writes for each chemistry (noise-free): the model bias of the linear assumption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.forward.twin import reference_spectra
    from xtwin.physics.spectra import normalize
    from xtwin.physics.xanes import XanesModel, chemistry_model
    from xtwin.plotting import save_png
    from xtwin.retrieve import calibrate
    from xtwin.retrieve.three_energy import solve

    w = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    worst = {}
    for chem, ends, style in (
        ("two-state", "parametric", "k-"),
        ("three-state", "parametric", "C0-"),
        ("two-state", "measured-nmc622", "C1--"),
        ("three-state", "measured-nmc622", "C3-"),
    ):
        model = XanesModel(chemistry=chemistry_model(chem, ends))
        ref_l, ref_d = reference_spectra(model, np.random.default_rng(0), noise=0.0)
        cal = calibrate(E3, normalize(ref_l), normalize(ref_d))
        mu = np.moveaxis(model.nmc532_mu_per_m(E3, w), -1, 0)
        got = solve(mu, np.full(mu.shape, 1e-6), cal).lithiation
        label = f"{chem}, {ends} end members"
        worst[label] = float(np.nanmax(np.abs(got - w)))
        ax.plot(w, got - w, style, label=f"{label} (max |bias| {worst[label]:.3f})")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("true lithiation fraction w")
    ax.set_ylabel("retrieved minus true w")
    ax.set_title("Model bias of the two-end-member retrieval\n(8320 / 8347 / 8400 eV, no noise)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, out / "chemistry_bias.png", dpi=110)
    return worst


def fresnel_fringes(out: Path) -> None:
    """Transmission across a particle edge at 8347 eV, in focus and out of focus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.forward import twin as T
    from xtwin.forward.microstructure import generate
    from xtwin.forward.scenario import load_scenario
    from xtwin.plotting import save_png

    sc = load_scenario(ROOT / "synthetic" / "phase_contrast.toml")
    sc = dataclasses.replace(
        sc,
        grid=dataclasses.replace(sc.grid, n_rows=8),
        acquisition=dataclasses.replace(sc.acquisition, n_angles=4),
    )
    ms = generate(sc.grid, sc.microstructure, np.random.default_rng(3))
    w = np.where(ms.phases == 1, 0.6, 0.0)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x_um = np.arange(sc.grid.n_pixels) * sc.grid.pixel_size_m * 1e6
    for d, style in ((0.0, "k-"), (20.0, "C0-"), (40.0, "C3-")):
        acq = dataclasses.replace(sc.acquisition, defocus_um=d)
        t = T._Acquisition(dataclasses.replace(sc, acquisition=acq), ms).transmission(
            w, lambda *a: None
        )
        ax.plot(x_um, t[1, 0, 4], style, label=f"defocus {d:g} um")
    ax.set_xlabel("detector position (um)")
    ax.set_ylabel("transmission I / I0")
    ax.set_title("Fresnel fringes at particle edges (60 nm pixels, 8347 eV, no noise)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, out / "phase_fringes.png", dpi=110)


#: (title, acquisition overrides, what is shown): the effects at the sizes of docs/realism.md.
EFFECTS = (
    ("zone-plate magnification 1 % (edge to post-edge)", {"magnification_per_eV": 1.89e-4}, "proj"),
    ("stage run-out 2 px + jitter 1 px", {"runout_px": 2.0, "jitter_px": 1.0}, "sino"),
    (
        "gain rings 1 % + dead pixels 0.2 %",
        {"ring_strength": 0.01, "dead_pixel_fraction": 0.002},
        "sino",
    ),
    ("flats drifting 2 % over each energy's scan", {"flat_drift": 0.02}, "late"),
    (
        "operando cell: 50 um Kapton + 20 um electrolyte",
        {"window_kapton_um": 50.0, "electrolyte_layer_um": 20.0},
        "profile",
    ),
    ("sample wider than the field (70 %)", None, "wide"),
)


def _absorbance(scan, energy: int) -> np.ndarray:
    """-ln((I - dark) / (flat - dark)) of every projection at one energy (mean flats)."""
    d = scan.darks.mean(axis=0) if scan.darks is not None else 0.0
    f = scan.flats[energy].mean(axis=0) - d
    i = scan.data[energy].astype(np.float64) - d
    return -np.log(np.clip(i, 1.0, None) / np.clip(f, 1.0, None))


def _image(fig, ax, img: np.ndarray, ylabel: str, title: str, difference: bool = False) -> None:
    """An absorbance image (grey) or a difference (diverging, symmetric) with its colour bar."""
    if difference:
        lim = float(np.percentile(np.abs(img), 99.5)) or 1.0
        im = ax.imshow(
            img, cmap="RdBu_r", aspect="auto", interpolation="nearest", vmin=-lim, vmax=lim
        )
    else:
        im = ax.imshow(img, cmap="gray", aspect="auto", interpolation="nearest")
    ax.set_xlabel("detector column (px)")
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, label="absorbance, on minus off" if difference else "absorbance")
    ax.set_title(title, fontsize=9)


def _profile(ax, curves: list, ylabel: str, title: str) -> None:
    """Row profiles ``(values, style, label or None)`` along the detector columns."""
    for y, style, label in curves:
        ax.plot(np.arange(y.size), y, style, label=label)
    ax.set_xlabel("detector column (px)")
    ax.set_ylabel(ylabel)
    if any(label for *_, label in curves):
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)


def effects(out: Path) -> None:
    """One row per effect: the twin's absorbance (a projection, a sinogram or a row profile)
    with the effect on, and on minus off, at the post-edge energy (8400 eV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.forward.scenario import load_scenario
    from xtwin.forward.twin import simulate
    from xtwin.plotting import save_png

    base = load_scenario(ROOT / "synthetic" / "default.toml")
    base = dataclasses.replace(
        base, acquisition=dataclasses.replace(base.acquisition, photons_per_pixel=6e4)
    )
    off = _absorbance(simulate(base).scan, 2)
    row = off.shape[1] // 2
    fig, axes = plt.subplots(len(EFFECTS), 2, figsize=(9.0, 3.0 * len(EFFECTS)))
    for (title, acq, kind), (ax_on, ax_d) in zip(EFFECTS, axes):
        if acq is None:
            sc = dataclasses.replace(
                base, grid=dataclasses.replace(base.grid, field_of_view_fraction=0.7)
            )
        else:
            sc = dataclasses.replace(base, acquisition=dataclasses.replace(base.acquisition, **acq))
        on = _absorbance(simulate(sc).scan, 2)
        if kind == "wide":  # another sample: its projection, and the profiles of both
            _image(
                fig, ax_on, on[0], "detector row (px)", f"{title}\nprojection at angle 0, effect on"
            )
            _profile(
                ax_d,
                [
                    (off[0, row], "k-", "sample inside the field"),
                    (on[0, row], "C3-", "sample 1 / 0.7 times wider"),
                ],
                "absorbance",
                f"row {row}: material at the edges of the field",
            )
            continue
        if kind == "profile":
            _profile(
                ax_on,
                [(off[0, row], "k-", "off"), (on[0, row], "C3-", "on")],
                "absorbance",
                f"{title}\nrow {row}, angle 0",
            )
            _profile(
                ax_d,
                [(on[0, row] - off[0, row], "C3-", None)],
                "absorbance, on minus off",
                "on minus off",
            )
            continue
        if kind == "sino":
            img_on, img_d = on[:, row, :], on[:, row, :] - off[:, row, :]
            ylabel, where = "projection (angle index)", f"sinogram of row {row}"
        elif kind == "late":  # the drift grows with time: the last 10 projections' mean
            img_on = on[-10:].mean(axis=0)
            img_d = img_on - off[-10:].mean(axis=0)
            ylabel, where = "detector row (px)", "mean of the last 10 projections"
        else:
            img_on, img_d = on[0], on[0] - off[0]
            ylabel, where = "detector row (px)", "projection at angle 0"
        _image(fig, ax_on, img_on, ylabel, f"{title}\n{where}, effect on")
        _image(fig, ax_d, img_d, ylabel, "on minus off", difference=True)
    fig.suptitle("The twin's realism effects at 8400 eV (default scenario, seed 7)", y=0.995)
    fig.tight_layout()
    save_png(fig, out / "effects.png", dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k, v in chemistry_bias(out).items():
        print(f"{k}: max |bias| {v:.4f}")
    fresnel_fringes(out)
    effects(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
