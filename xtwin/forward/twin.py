"""The twin, end to end: scenario -> microstructure -> Li field -> projections -> files.

Inverse crime avoided: the object lives on a grid ``oversample`` times finer than the
reconstruction grid, is projected there (ASTRA strip projector, area-weighted), and the
transmitted intensity (not the absorbance) is averaged over each detector pixel; detector blur,
flat-field non-uniformity, Poisson noise on projections and flats, and Gaussian dark/read
noise follow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from xtwin import __version__
from xtwin._files import write_text_atomic
from xtwin.errors import XtwinInputError
from xtwin.forward.electrochem import LithiationProfile, solve
from xtwin.forward.microstructure import (
    PHASE_ACTIVE,
    PHASE_CBD,
    PHASE_CLOSED_PORE,
    PHASE_OUTSIDE,
    PHASE_PORE,
    Microstructure,
    block_mean,
    coarsen,
    generate,
)
from xtwin.forward.scenario import Scenario
from xtwin.io.scan import ScanData, write_scan
from xtwin.io.truth import TruthData, write_truth
from xtwin.physics import materials
from xtwin.physics.attenuation import mu_per_m
from xtwin.physics.spectra import Spectrum, write_spectrum
from xtwin.physics.xanes import XanesModel

OUTPUT_FILES = ("scan.h5", "truth.h5", "scenario.toml", "reference_lithiated.csv",
                "reference_delithiated.csv")


@dataclass(frozen=True)
class TwinResult:
    """Everything the twin made for one time point."""

    scan: ScanData
    truth: TruthData
    reference_lithiated: Spectrum
    reference_delithiated: Spectrum


def lithiation_field(ms: Microstructure, profile: LithiationProfile
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fill every active voxel with PyBaMM's w(r/R) at its particle's depth.

    Each particle's voxel mean is then shifted to PyBaMM's volume average at its depth, so Li
    is conserved per particle whatever the voxelization does to the radial weighting.
    Internal pores, CBD and electrolyte are NaN.
    """
    n = len(ms.radii_m)
    depth = ms.particles["depth_m"]
    am = ms.phases == PHASE_ACTIVE
    lab = ms.labels[am]
    w = np.full(ms.labels.shape, np.nan, dtype=np.float64)
    w_am = profile.at(np.concatenate([[0.0], depth])[lab], ms.radial[am])
    target = profile.mean_at(depth)
    idx = np.arange(1, n + 1)
    if n:
        means = np.asarray(ndimage.mean(w_am, labels=lab, index=idx))
        means = np.where(np.isfinite(means), means, target)
        w_am += np.concatenate([[0.0], target - means])[lab]
    w[am] = w_am
    table = dict(ms.particles)
    table["mean_lithiation"] = (np.asarray(ndimage.mean(w_am, labels=lab, index=idx))
                                if n else np.zeros(0))
    table["pybamm_lithiation"] = target
    return w, table


def to_reconstruction_grid(phases: np.ndarray, labels: np.ndarray, w: np.ndarray, f: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phases and labels (:func:`coarsen`) and w (mean over NMC) per coarse voxel.

    A coarse voxel is active if at least half of its fine voxels are; its w is the mean over
    its fine active voxels; NaN elsewhere.
    """
    coarse_ph, coarse_lab, frac = coarsen(phases, labels, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_c = block_mean(np.where(phases == PHASE_ACTIVE, w, 0.0), f) / frac
    w_c = np.where(frac >= 0.5, w_c, np.nan)
    return coarse_ph, coarse_lab, w_c.astype(np.float32)


def _projector(n: int, theta_deg: np.ndarray):
    import astra

    vg = astra.create_vol_geom(n, n)
    pg = astra.create_proj_geom("parallel", 1.0, n, np.radians(theta_deg))
    return astra, astra.create_projector("strip", pg, vg)


def simulate(scenario: Scenario, *, progress: Callable[[str, int], None] | None = None
             ) -> TwinResult:
    """Run the twin for one scenario and seed (bit-identical for the same inputs)."""
    tick = progress or (lambda stage, n: None)
    ss = np.random.SeedSequence(scenario.seed)
    rng_ms, rng_acq, rng_ref = (np.random.default_rng(s) for s in ss.spawn(3))
    g, a = scenario.grid, scenario.acquisition
    ms = generate(g, scenario.microstructure, rng_ms)
    tick("microstructure", 1)
    profile = solve(scenario.electrochemistry)
    tick("electrochemistry", 1)
    w_fine, table = lithiation_field(ms, profile)
    tick("lithiation", 1)

    xanes = XanesModel(bandwidth_rel=a.bandwidth_rel, energy_offset_eV=a.energy_offset_eV)
    energies = np.asarray(a.energies_eV, dtype=float)
    true_e = energies + a.energy_offset_eV
    elyte = materials.electrolyte(scenario.electrochemistry.electrolyte_molarity_mol_l)
    cbd = materials.carbon_binder(nanoporosity=scenario.microstructure.cbd_nanoporosity,
                                  electrolyte_material=elyte)
    mu_elyte = mu_per_m(elyte, true_e)
    mu_cbd = mu_per_m(cbd, true_e)
    coef_a, coef_c = xanes.linear_coefficients(energies)

    os_ = g.oversample
    nz, n = ms.phases.shape[0], ms.phases.shape[1]
    theta = np.linspace(0.0, 180.0, a.n_angles, endpoint=False)
    astra, pid = _projector(n, theta)
    n_rows, n_cols = g.n_rows, g.n_pixels
    trans = np.empty((len(energies), a.n_angles, n_rows, n_cols), dtype=np.float64)
    am = ms.phases == PHASE_ACTIVE
    w_am = np.nan_to_num(w_fine)
    try:
        for ie in range(len(energies)):
            mu = np.zeros(ms.phases.shape, dtype=np.float32)
            mu[ms.phases == PHASE_PORE] = mu_elyte[ie]
            mu[ms.phases == PHASE_CBD] = mu_cbd[ie]
            mu[am] = (coef_a[ie] + coef_c[ie] * w_am[am])  # closed pores, air stay 0
            mu *= ms.voxel_m  # per fine voxel
            t_fine = np.empty((a.n_angles, nz, n))
            for z in range(nz):
                sid, sino = astra.create_sino(np.ascontiguousarray(mu[z]), pid)
                astra.data2d.delete(sid)
                t_fine[:, z, :] = np.exp(-sino)
            trans[ie] = t_fine.reshape(a.n_angles, n_rows, os_, n_cols, os_).mean(axis=(2, 4))
            tick("projections", 1)
    finally:
        astra.projector.delete(pid)
    if a.detector_blur_px > 0:
        trans = ndimage.gaussian_filter(trans, (0, 0, a.detector_blur_px, a.detector_blur_px),
                                        mode="nearest")

    yy, xx = np.mgrid[:n_rows, :n_cols]
    illum = 1.0 + a.flat_nonuniformity * np.cos(2 * np.pi * xx / n_cols * 0.7) * np.cos(
        2 * np.pi * yy / max(n_rows, 2) * 0.5)
    beam = a.photons_per_pixel * illum
    def dark_noise(shape: tuple[int, ...]) -> np.ndarray:
        return a.dark_counts + a.read_noise_counts * rng_acq.standard_normal(shape)
    proj = rng_acq.poisson(beam * trans) + dark_noise(trans.shape)
    flats = rng_acq.poisson(np.broadcast_to(beam, (len(energies), a.n_flats, n_rows, n_cols)))
    flats = flats + dark_noise(flats.shape)
    darks = dark_noise((a.n_darks, n_rows, n_cols))

    def to_u16(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x), 0, 65535).astype(np.uint16)

    scan = ScanData(
        data=to_u16(proj), flats=to_u16(flats), darks=to_u16(darks) if a.n_darks else None,
        theta_deg=theta, energy_eV=energies, pixel_size_m=g.pixel_size_m,
        counts_per_photon=1.0,
        metadata={"sample": "synthetic NMC532 electrode pillar", "time_s":
                  float(scenario.electrochemistry.snapshot_time_s), "scenario": scenario.name},
        provenance={"writer": "xtwin simulate", "xtwin_version": __version__,
                    "seed": scenario.seed, "scenario": scenario.name})

    phases_c, labels_c, w_c = to_reconstruction_grid(ms.phases, ms.labels, w_fine, os_)
    truth = TruthData(
        lithiation=w_c, labels=labels_c, phases=phases_c,
        fine_lithiation=w_fine.astype(np.float32), fine_labels=np.where(am, ms.labels, 0),
        fine_phases=ms.phases,
        particles=table,
        pybamm={"time_s": profile.time_s, "voltage_V": profile.voltage_V,
                "current_A": profile.current_A, "depth_m": profile.depth_m,
                "volume_average_lithiation": profile.volume_average},
        attrs={"pixel_size_m": g.pixel_size_m, "fine_pixel_size_m": ms.voxel_m,
               "snapshot_time_s": scenario.electrochemistry.snapshot_time_s,
               "scenario": scenario.to_toml(), "seed": scenario.seed,
               "achieved_fractions": ms.achieved, "versions": _versions(),
               "phase_codes": {"pore": PHASE_PORE, "active": PHASE_ACTIVE, "cbd": PHASE_CBD,
                               "closed_internal_pore": PHASE_CLOSED_PORE,
                               "outside": PHASE_OUTSIDE}})
    ref_l, ref_d = reference_spectra(xanes, rng_ref)
    tick("files", 1)
    return TwinResult(scan, truth, ref_l, ref_d)


def reference_spectra(xanes: XanesModel, rng: np.random.Generator,
                      *, thickness_m: float = 5e-6, noise: float = 2e-4
                      ) -> tuple[Spectrum, Spectrum]:
    """Transmission spectra of dense end-member standards, as a beamline would record them.

    Absorbance ``mu(E, w) * thickness`` (w = 1 and 0) on a typical XANES grid (5 eV steps
    pre-edge, 0.25 eV across the edge, 2-5 eV after, to 8850 eV), through the same
    monochromator (bandwidth and calibration offset) as the scan, with Gaussian noise of
    ``noise`` absorbance units.
    """
    e = np.unique(np.concatenate([np.arange(8200.0, 8320.0, 5.0), np.arange(8320.0, 8380.0,
                  0.25), np.arange(8380.0, 8450.0, 2.0), np.arange(8450.0, 8851.0, 5.0)]))
    out = []
    for w in (1.0, 0.0):
        mu = xanes.nmc532_mu_per_m(e, w)
        out.append(Spectrum(e, mu * thickness_m + noise * rng.standard_normal(e.size),
                            f"synthetic standard w={w:g}"))
    return out[0], out[1]


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("numpy", "scipy", "pybamm", "xraylib", "astra-toolbox")}


def write_outputs(result: TwinResult, scenario: Scenario, out_dir: str | os.PathLike, *,
                  force: bool = False) -> dict[str, Path]:
    """Write scan, truth, scenario and reference spectra into ``out_dir``.

    Refuses to overwrite existing outputs unless ``force``; each file is written atomically.
    """
    out = Path(out_dir)
    paths = {name: out / name for name in OUTPUT_FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise XtwinInputError(f"{', '.join(existing)} already exist; choose another output "
                              "directory or pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    write_scan(paths["scan.h5"], result.scan)
    write_truth(paths["truth.h5"], result.truth)
    write_text_atomic(paths["scenario.toml"], scenario.to_toml())
    hdr = ("synthetic reference spectrum of a dense NMC532 standard written by xtwin simulate\n"
           "absorbance = -ln(I/I0), raw (not normalized)")
    write_spectrum(paths["reference_lithiated.csv"], result.reference_lithiated,
                   header=hdr + "\nend member: lithiated (discharged), w = 1")
    write_spectrum(paths["reference_delithiated.csv"], result.reference_delithiated,
                   header=hdr + "\nend member: delithiated (charged), w = 0")
    return paths
