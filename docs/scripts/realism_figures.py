"""Figures of docs/realism.md: the Ni chemistry's model bias and the Fresnel fringes.

    python docs/scripts/realism_figures.py [--out docs/figures]

Both are computed from the physics alone (no noise, no reconstruction), so they show the
effect itself; the validation campaigns (validation/realism.toml, validation/phase_contrast.toml,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k, v in chemistry_bias(out).items():
        print(f"{k}: max |bias| {v:.4f}")
    fresnel_fringes(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
