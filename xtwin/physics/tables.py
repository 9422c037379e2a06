"""Tables and plots of the physics for people planning an experiment (``xtwin physics``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics import materials
from xtwin.physics.attenuation import _as_energy_eV, mu_en_rho_cm2_g, mu_rho_cm2_g
from xtwin.physics.dose import nmc532_mu_en_rho_cm2_g, nmc532_mu_rho_cm2_g
from xtwin.physics.xanes import XanesModel


def cell_materials() -> list[materials.Material]:
    """The non-resonant materials of an operando cell, in the order they are reported."""
    elyte = materials.electrolyte()
    return [
        elyte,
        materials.carbon_binder(electrolyte_material=elyte),
        materials.kapton(),
        materials.glassy_carbon(),
        materials.aluminium(),
    ]


def _record(
    name: str, e: float, w: float | None, mu_rho: float, rho: float, mu_en: float
) -> dict[str, Any]:
    mu_per_um = mu_rho * rho * 1e-4
    return {
        "material": name,
        "energy_eV": float(e),
        "lithiation": w,
        "mu_rho_cm2_g": round(float(mu_rho), 4),
        "mu_per_um": round(float(mu_per_um), 6),
        "attenuation_length_um": round(float(1.0 / mu_per_um), 3),
        "mu_en_rho_cm2_g": round(float(mu_en), 4),
        "density_g_cm3": round(rho, 4),
    }


def attenuation_records(energies_eV: list[float], lithiations: list[float]) -> list[dict[str, Any]]:
    """One record per energy and material (NMC532 once per lithiation)."""
    e = _as_energy_eV(np.asarray(energies_eV, dtype=float))
    for w in lithiations:
        if not 0.0 <= w <= 1.0:
            raise XtwinInputError(f"--lithiation values must be within 0-1, got {w}")
    xanes = XanesModel()
    recs = []
    for w in lithiations:
        rho = materials.nmc532_density_g_cm3(float(materials.x_from_lithiation(w)))
        mr = nmc532_mu_rho_cm2_g(e, w, xanes)
        me = nmc532_mu_en_rho_cm2_g(e, w, xanes)
        recs += [_record("NMC532", ei, float(w), a, rho, b) for ei, a, b in zip(e, mr, me)]
    for mat in cell_materials():
        mr, me = mu_rho_cm2_g(mat, e), mu_en_rho_cm2_g(mat, e)
        recs += [
            _record(mat.name, ei, None, a, mat.density_g_cm3, b) for ei, a, b in zip(e, mr, me)
        ]
    return recs


def format_records(recs: list[dict[str, Any]]) -> str:
    """A fixed-width table of :func:`attenuation_records`."""
    head = (
        f"{'material':26s} {'E (eV)':>8s} {'w':>5s} {'mu/rho cm2/g':>13s} "
        f"{'mu 1/um':>9s} {'att. len um':>11s} {'mu_en/rho':>10s}"
    )
    rows = [head, "-" * len(head)]
    for r in recs:
        w = "" if r["lithiation"] is None else f"{r['lithiation']:.2f}"
        rows.append(
            f"{r['material'][:26]:26s} {r['energy_eV']:8.1f} {w:>5s} "
            f"{r['mu_rho_cm2_g']:13.2f} {r['mu_per_um']:9.5f} "
            f"{r['attenuation_length_um']:11.2f} {r['mu_en_rho_cm2_g']:10.2f}"
        )
    return "\n".join(rows)


def plot_end_members(energies_eV: list[float], out: str | os.PathLike) -> None:
    """Plot S_lith, S_delith and their difference over 8300-8450 eV, energies marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    chosen = _as_energy_eV(np.asarray(energies_eV, dtype=float))
    e = np.arange(8300.0, 8450.0, 0.1)
    s_l, s_d = XanesModel().end_members(e)
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.plot(e, s_l, label="lithiated (w = 1)")
    ax.plot(e, s_d, label="delithiated (w = 0)")
    ax.plot(e, s_l - s_d, "k:", label="difference")
    for x in chosen:
        ax.axvline(x, color="r", lw=0.8)
        ax.annotate(
            f"{x:.1f}",
            (x, ax.get_ylim()[1] * 0.95),
            rotation=90,
            ha="right",
            va="top",
            fontsize=8,
            color="r",
        )
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("normalized absorbance S(E)")
    ax.set_title("Ni K-edge end members of NMC532 (bandwidth 1.3e-4 included)")
    ax.legend()
    save_png(fig, out, dpi=100)


def dose_records(
    energies_eV: list[float],
    *,
    photons_per_pixel: float,
    n_projections: int,
    pixel_size_m: float,
    lithiation: float = 0.5,
    sample_thickness_m: float = 20e-6,
    active_fraction: float = 0.445,
    porosity: float = 0.30,
    window_thickness_m: float = 0.0,
) -> dict[str, Any]:
    """Dose to the active material and the electrolyte for a whole acquisition, and the
    transmission through the sample (and two Kapton windows) at each energy.

    The sample is an electrode of the given thickness whose active, electrolyte and
    carbon-binder fractions set its mean attenuation; the dose is at its entrance.
    """
    from xtwin.physics.dose import acquisition_dose, transmission

    e = _as_energy_eV(np.asarray(energies_eV, dtype=float))
    if not 0 <= lithiation <= 1:
        raise XtwinInputError(f"--lithiation must be within 0-1, got {lithiation}")
    if sample_thickness_m < 0 or window_thickness_m < 0:
        raise XtwinInputError("thicknesses must be >= 0")
    kw: dict[str, Any] = {
        "photons_per_pixel": photons_per_pixel,
        "n_projections": n_projections,
        "pixel_size_m": pixel_size_m,
    }
    elyte = materials.electrolyte()
    cbd = materials.carbon_binder(electrolyte_material=elyte)
    nmc = acquisition_dose(nmc532_mu_en_rho_cm2_g(e, lithiation), e, **kw)
    ely = acquisition_dose(mu_en_rho_cm2_g(elyte, e), e, **kw)
    xanes = XanesModel()
    mu_sample = (
        active_fraction * xanes.nmc532_mu_per_m(e, lithiation)
        + porosity * mu_rho_cm2_g(elyte, e) * elyte.density_g_cm3 * 100
        + (1 - active_fraction - porosity) * mu_rho_cm2_g(cbd, e) * cbd.density_g_cm3 * 100
    )
    t_sample = np.exp(-mu_sample * sample_thickness_m)
    t_window = transmission([(materials.kapton(), 2 * window_thickness_m)], e)
    return {
        "energy_eV": e.tolist(),
        "dose_Gy": {"NMC532": nmc.dose_Gy.tolist(), "electrolyte": ely.dose_Gy.tolist()},
        "total_dose_Gy": {"NMC532": nmc.total_Gy, "electrolyte": ely.total_Gy},
        "fluence_per_m2_per_energy": float(nmc.fluence_per_m2[0]),
        "transmission_sample": t_sample.tolist(),
        "transmission_windows": t_window.tolist(),
        "transmission_total": (t_sample * t_window).tolist(),
        "inputs": {
            "photons_per_pixel": photons_per_pixel,
            "n_projections": n_projections,
            "pixel_size_m": pixel_size_m,
            "lithiation": lithiation,
            "sample_thickness_m": sample_thickness_m,
            "active_fraction": active_fraction,
            "porosity": porosity,
            "kapton_window_thickness_m": window_thickness_m,
        },
    }
