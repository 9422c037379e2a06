"""The twin, end to end: scenario -> microstructure -> PyBaMM -> Li field -> projections -> files.

Inverse crime avoided: the object lives on a grid ``oversample`` times finer than the
reconstruction grid, is projected there (ASTRA strip projector, area-weighted), and the
transmitted intensity (not the absorbance) is averaged over each detector pixel; detector blur,
flat-field non-uniformity, Poisson noise on projections and flats, and Gaussian dark/read
noise follow.

One scan and one truth per snapshot of the operando protocol; the microstructure, the PyBaMM
solve and the reference spectra are shared by all snapshots.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from xtwin import __version__
from xtwin._files import refuse_existing, write_text_atomic
from xtwin._provenance import package_versions
from xtwin.analysis.microstructure import block_mean
from xtwin.forward.electrochem import ElectrochemResult, Geometry, solve
from xtwin.forward.lifield import (
    activity_region_field,
    map_lithiation,
    particle_activity,
    slab_conservation,
    wetted_distance,
)
from xtwin.forward.microstructure import (
    PHASE_ACTIVE,
    PHASE_CBD,
    PHASE_CLOSED_PORE,
    PHASE_OUTSIDE,
    PHASE_PORE,
    Microstructure,
    coarsen,
    generate,
    sample_mask,
)
from xtwin.forward.scenario import GridSpec, Scenario
from xtwin.io.scan import ScanData, write_scan
from xtwin.io.truth import TruthData, write_truth
from xtwin.physics import materials
from xtwin.physics.attenuation import mu_per_m, mu_rho_cm2_g, wavelength_m
from xtwin.physics.spectra import Spectrum, write_spectrum
from xtwin.physics.xanes import XanesModel, chemistry_model
from xtwin.shifts import shift_image_stack, shift_rows

SHARED_FILES = ("scenario.toml", "reference_lithiated.csv", "reference_delithiated.csv")


def output_names(scenario: Scenario) -> list[str]:
    """Files ``simulate`` writes: scan.h5/truth.h5, or scan_tNNN.h5/truth_tNNN.h5 per snapshot."""
    n = len(scenario.electrochemistry.snapshot_times_s)
    a = scenario.acquisition
    extra = ["quick_xanes.h5"] if a.quick_xanes_energies_eV else []
    if a.calibration_series_lithiation:
        extra.append("calibration_series.csv")
        extra += [_series_name(w) for w in a.calibration_series_lithiation]
    if n == 1:
        return ["scan.h5", "truth.h5", *SHARED_FILES, *extra]
    return (
        [f"scan_t{k:03d}.h5" for k in range(n)]
        + [f"truth_t{k:03d}.h5" for k in range(n)]
        + list(SHARED_FILES)
        + extra
        + ["truth_rates.csv"]
    )


def _series_name(w: float) -> str:
    return f"calibration/standard_w{w:.3f}.csv"


@dataclass(frozen=True)
class TwinResult:
    """Everything the twin made: one scan and one truth per snapshot."""

    scans: list[ScanData]
    truths: list[TruthData]
    reference_lithiated: Spectrum
    reference_delithiated: Spectrum
    quick_xanes: ScanData | None = None
    calibration_series: tuple[tuple[float, Spectrum], ...] = ()

    @property
    def scan(self) -> ScanData:
        """The first (or only) scan."""
        return self.scans[0]

    @property
    def truth(self) -> TruthData:
        """The first (or only) truth."""
        return self.truths[0]


def geometry_of(ms: Microstructure, scenario: Scenario) -> Geometry:
    """What PyBaMM is told about the cathode: the generated microstructure's numbers."""
    m = scenario.microstructure
    inside = sample_mask(ms.phases.shape, m)
    n_in = int(inside.sum())
    porosity = float(np.count_nonzero(ms.phases == PHASE_PORE) / n_in)
    return Geometry(
        thickness_m=m.electrode_thickness_m,
        porosity=porosity,
        active_fraction=ms.achieved["active"],
        median_radius_m=m.particle_d50_m / 2.0,
        size_log_sigma=m.particle_size_log_sigma,
    )


def to_reconstruction_grid(
    phases: np.ndarray, labels: np.ndarray, w: np.ndarray, f: int
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


def sample_grid(g: GridSpec, z_margin_rows: int = 0) -> GridSpec:
    """The grid the sample is built on: the reconstruction grid, or for interior tomography
    (``field_of_view_fraction`` < 1) one wider by its inverse (same parity, so the detector's
    columns sit centred on it), with ``z_margin_rows`` more rows above and below."""
    n = g.n_pixels
    if g.field_of_view_fraction < 1.0:
        n = int(round(g.n_pixels / g.field_of_view_fraction))
        n += (n - g.n_pixels) % 2
    return dataclasses.replace(g, n_pixels=n, n_rows=g.n_rows + 2 * z_margin_rows)


def _energy_drift(scenario: Scenario) -> np.ndarray:
    """(n_energy, 2) drift (rows, cols) of the image between energies, in detector pixels."""
    a = scenario.acquisition
    drift_rng = np.random.default_rng(np.random.SeedSequence(scenario.seed).spawn(5)[4])
    return a.energy_drift_px * drift_rng.standard_normal((len(a.energies_eV), 2))


def z_margin(scenario: Scenario) -> int:
    """Rows simulated beyond the detector's top and bottom: the largest vertical displacement
    of any projection (run-out, jitter, drift between energies) brings them onto the detector,
    and the sample goes on there (it is not the detector's edge rows repeated)."""
    a = scenario.acquisition
    if not (a.runout_px or a.jitter_px or a.energy_drift_px):
        return 0
    theta = np.linspace(0.0, 180.0, a.n_angles, endpoint=False)
    ro = _runout(scenario, theta, len(a.energies_eV))
    reach = float(np.abs(_energy_drift(scenario)[:, 0]).max())
    if ro is not None:
        reach += float(np.abs(ro[..., 0]).max())
    return int(np.ceil(reach)) + 2


def central(a: np.ndarray, *sizes: int) -> np.ndarray:
    """The central ``sizes`` of the last ``len(sizes)`` axes (what the detector sees of a
    sample built taller or wider than it)."""
    lead = (slice(None),) * (a.ndim - len(sizes))
    starts = [(a.shape[a.ndim - len(sizes) + i] - n) // 2 for i, n in enumerate(sizes)]
    return a[lead + tuple(slice(c, c + n) for c, n in zip(starts, sizes))]


def _runout(scenario: Scenario, theta_deg: np.ndarray, n_energy: int) -> np.ndarray | None:
    """(n_energy, n_angle, 2) detector displacements (rows, cols) of every projection: a
    smooth run-out of the rotation stage (harmonics 2-4 of the rotation, random amplitudes and
    phases, rms ``runout_px``, the same at every energy: the wobble repeats with the angle) plus
    an independent jitter (rms ``jitter_px``). The smooth part's constant and, horizontally, its
    projection on the rotation's first harmonic are left out: over a half turn they are the same
    as a shifted sample."""
    a = scenario.acquisition
    if not (a.runout_px or a.jitter_px):
        return None
    rng = np.random.default_rng(np.random.SeedSequence(scenario.seed).spawn(6)[5])
    th = np.radians(theta_deg)
    smooth = np.zeros((th.size, 2))
    # what a constant or a sinusoid at the rotation frequency does is indistinguishable from a
    # sample that sits elsewhere (the truth is defined about the rotation axis): projected out
    first = np.column_stack([np.ones_like(th), np.cos(th), np.sin(th)])
    for d in range(2):
        for h in (2, 3, 4):
            smooth[:, d] += rng.standard_normal() * np.sin(h * th + rng.uniform(0, 2 * np.pi))
        basis = first if d == 1 else first[:, :1]
        coef, *_ = np.linalg.lstsq(basis, smooth[:, d], rcond=None)
        smooth[:, d] -= basis @ coef
        rms = np.sqrt(np.mean(smooth[:, d] ** 2))
        smooth[:, d] *= a.runout_px / rms if rms > 0 else 0.0
    jitter = a.jitter_px * rng.standard_normal((n_energy, th.size, 2))
    return smooth[None] + jitter


def _moved(
    vol: np.ndarray,
    motion: tuple[float, tuple[float, ...]],
    oversample: int,
    cval: float = 0.0,
) -> np.ndarray:
    """A fine-grid volume turned about the rotation axis (the (y, x) centre) by ``motion[0]``
    degrees (positive turning +y towards +x) and shifted by ``motion[1]`` detector pixels
    (z, y, x), by linear interpolation; the space uncovered takes ``cval``."""
    angle, shift = motion
    out = vol
    if angle:
        out = ndimage.rotate(out, angle, axes=(2, 1), reshape=False, order=1, cval=cval)
    if any(shift):
        out = ndimage.shift(out, [v * oversample for v in shift], order=1, cval=cval)
    return out.astype(vol.dtype, copy=False)


def _resampled_field(field: np.ndarray, resample: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A field defined on part of the volume (NaN elsewhere) resampled linearly by
    ``resample``, normalized by its resampled finite mask (no NaN or zero bleeds in)."""
    finite = np.isfinite(field)
    num = resample(np.where(finite, field, 0.0))
    den = resample(finite.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan)


def _phase_fractions(ms: Microstructure) -> list[np.ndarray]:
    """Fractions of electrolyte, carbon-binder and active material per fine voxel (0 or 1
    as generated): what a sub-voxel motion of the sample resamples. Nearest-neighbour
    resampling of the phase codes would not move a particle by less than half a voxel: a
    0.5 degree turn of a 128-voxel slice would leave its inner 57 voxels where they are."""
    return [(ms.phases == c).astype(np.float32) for c in (PHASE_PORE, PHASE_CBD, PHASE_ACTIVE)]


def _breathed(
    ms: Microstructure, scale: np.ndarray, fractions: list[np.ndarray], fields: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Phase ``fractions`` and Li ``fields`` with every particle scaled by ``scale[id - 1]``
    about its centre (a particle's volume follows its lithiation): a backward displacement
    field, exact on the particles' voxels and smoothly extended around them, applied by
    linear interpolation (the fields normalized by their finite mask, so no NaN or zero
    bleeds into the active phase)."""
    lab = ms.labels
    inside = lab > 0
    centre = np.concatenate([[[0.0, 0.0, 0.0]], ms.centres_m / ms.voxel_m - 0.5])
    factor = np.concatenate([[0.0], 1.0 / np.asarray(scale, dtype=float) - 1.0])
    grid = np.indices(lab.shape, dtype=np.float32)
    weight = ndimage.gaussian_filter(inside.astype(np.float32), 2.0)
    coords = np.empty_like(grid)
    for ax in range(3):
        d = ((grid[ax] - centre[lab, ax]) * factor[lab]).astype(np.float32)  # 0 off particles
        smooth = ndimage.gaussian_filter(d, 2.0) / np.maximum(weight, 0.05)
        coords[ax] = grid[ax] + np.where(inside, d, smooth * np.minimum(weight / 0.05, 1.0))
    del grid

    def warp(v: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(v, coords, order=1, mode="nearest")

    out_f = [warp(f).astype(np.float32) for f in fractions]
    return out_f, [_resampled_field(v, warp) for v in fields]


def breathing_scale(mean_w: np.ndarray, volume_change: float) -> np.ndarray:
    """Linear scale of each particle relative to the generated (lithiated) microstructure:
    its volume is ``1 - volume_change (1 - w)`` of the lithiated one."""
    w = np.clip(np.nan_to_num(np.asarray(mean_w, dtype=float), nan=1.0), 0.0, 1.0)
    return np.cbrt(1.0 - volume_change * (1.0 - w))


def _magnify(images: np.ndarray, scale: float) -> np.ndarray:
    """Images (..., rows, cols) magnified by ``scale`` about their centre (cubic spline): a
    feature at distance d from the centre moves to ``scale * d``."""
    c = (np.asarray(images.shape[-2:], dtype=float) - 1) / 2.0
    out = np.empty_like(images)
    flat_in = images.reshape((-1,) + images.shape[-2:])
    flat_out = out.reshape(flat_in.shape)
    for k in range(flat_in.shape[0]):
        flat_out[k] = ndimage.affine_transform(
            flat_in[k],
            np.array([1 / scale, 1 / scale]),
            offset=c - c / scale,
            order=3,
            mode="nearest",
        )
    return out


def fresnel_intensity(
    absorbance: np.ndarray,
    phase: np.ndarray,
    pixel_m: float,
    distance_m: float,
    wavelength_m: float,
) -> np.ndarray:
    """Intensity of the exit wave ``exp(-absorbance / 2 + i phase)`` (..., rows, cols)
    propagated ``distance_m`` (Fresnel, paraxial: ``H = exp(-i pi lambda z f^2)``), with the
    images edge-padded by half their size so the borders do not wrap."""
    from scipy import fft

    rows, cols = absorbance.shape[-2:]
    pr, pc = rows // 2 + 8, cols // 2 + 8
    nr = fft.next_fast_len(rows + 2 * pr)
    nc = fft.next_fast_len(cols + 2 * pc)
    fy = fft.fftfreq(nr, d=pixel_m)[:, None]
    fx = fft.fftfreq(nc, d=pixel_m)[None, :]
    kernel = np.exp(-1j * np.pi * wavelength_m * distance_m * (fx**2 + fy**2)).astype(np.complex64)
    out = np.empty(absorbance.shape, dtype=np.float64)
    lead = absorbance.shape[:-2]
    a2 = absorbance.reshape((-1, rows, cols))
    p2 = phase.reshape((-1, rows, cols))
    o2 = out.reshape((-1, rows, cols))
    pad = [(0, 0), (pr, nr - rows - pr), (pc, nc - cols - pc)]
    for k0 in range(0, a2.shape[0], 16):
        sl = slice(k0, k0 + 16)
        psi = np.exp(-0.5 * a2[sl] + 1j * p2[sl]).astype(np.complex64)
        psi = np.pad(psi, pad, mode="edge")
        field = fft.ifft2(fft.fft2(psi, axes=(-2, -1)) * kernel, axes=(-2, -1))
        o2[sl] = np.abs(field[:, pr : pr + rows, pc : pc + cols]) ** 2
    return out.reshape(lead + (rows, cols))


class _Projector:
    """Line integrals of fine-grid slices: ASTRA's strip (area-weighted) projector, or the
    band-limited Fourier projector of :mod:`xtwin.recon.fourier` (type-2 NUFFT), batched."""

    def __init__(self, kind: str, n: int, theta_deg: np.ndarray, threads: int) -> None:
        self.kind, self.threads = kind, max(1, threads)
        if kind == "strip":
            import astra

            vg = astra.create_vol_geom(n, n)
            pg = astra.create_proj_geom("parallel", 1.0, n, np.radians(theta_deg))
            self.astra, self.pid = astra, astra.create_projector("strip", pg, vg)
        else:
            from xtwin.recon.fourier import FourierFBP

            self.geom = FourierFBP(n, theta_deg)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(batch, n, n) slices -> (batch, n_angle, n) sinograms, float32."""
        if self.kind == "strip":
            out = []
            for im in images:
                sid, sino = self.astra.create_sino(np.ascontiguousarray(im), self.pid)
                self.astra.data2d.delete(sid)
                out.append(sino)
            return np.asarray(out, dtype=np.float32)
        parts = np.array_split(np.arange(images.shape[0]), self.threads)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.threads) as ex:
            res = list(ex.map(lambda k: self.geom.project(images[k]), [p for p in parts if p.size]))
        return np.concatenate(res).astype(np.float32, copy=False)

    def close(self) -> None:
        if self.kind == "strip":
            self.astra.projector.delete(self.pid)


class _Acquisition:
    """Fine-grid projections with noise, for one microstructure and its materials."""

    def __init__(self, scenario: Scenario, ms: Microstructure) -> None:
        a, g = scenario.acquisition, scenario.grid
        self.scenario, self.ms = scenario, ms
        e_spec = scenario.electrochemistry
        self.xanes = XanesModel(
            bandwidth_rel=a.bandwidth_rel,
            energy_offset_eV=a.energy_offset_eV,
            chemistry=chemistry_model(e_spec.ni_chemistry, e_spec.end_members),
        )
        self.energies = np.asarray(a.energies_eV, dtype=float)
        true_e = self.energies + a.energy_offset_eV
        elyte = materials.electrolyte(scenario.electrochemistry.electrolyte_molarity_mol_l)
        cbd = materials.carbon_binder(
            nanoporosity=scenario.microstructure.cbd_nanoporosity, electrolyte_material=elyte
        )
        self.mu_elyte = mu_per_m(elyte, true_e)
        self.mu_cbd = mu_per_m(cbd, true_e)
        # the cell in the beam: windows and an electrolyte layer outside the sample, the same
        # at every angle (flats are taken with the cell out of the beam)
        self.cell_od = (
            mu_per_m(materials.kapton(), true_e) * a.window_kapton_um * 1e-6
            + self.mu_elyte * a.electrolyte_layer_um * 1e-6
        )
        # mu of the active material = a(E) + sum_k C_k(E) g_k(w): one g (w) for two end
        # members, three (w and the Ni3+ and Ni4+ fractions) for the three-state chemistry
        self.coef_a, self.coef_c = self.xanes.field_model(self.energies)
        if a.defocus_um:  # refractive-index decrements: electrolyte, carbon-binder, NMC
            from xtwin.physics.attenuation import delta

            # NMC at mid lithiation: delta changes by < 0.2 % over the window (Li has 3
            # electrons of ~60 per formula unit)
            x_mid = float(materials.x_from_lithiation(0.5))
            self.delta = np.stack(
                [delta(elyte, true_e), delta(cbd, true_e), delta(materials.nmc532(x_mid), true_e)]
            )
        self.theta = np.linspace(0.0, 180.0, a.n_angles, endpoint=False)
        n_rows, n_cols = g.n_rows, g.n_pixels
        yy, xx = np.mgrid[:n_rows, :n_cols]
        illum = 1.0 + a.flat_nonuniformity * np.cos(2 * np.pi * xx / n_cols * 0.7) * np.cos(
            2 * np.pi * yy / max(n_rows, 2) * 0.5
        )
        from xtwin.forward.scenario import photons_per_energy

        # (n_energy, rows, cols): the flat-field photons per pixel at each energy
        self.beam = np.asarray(photons_per_energy(a))[:, None, None] * illum
        self.pore = ms.phases == PHASE_PORE
        self.cbd = ms.phases == PHASE_CBD
        self.active = ms.phases == PHASE_ACTIVE
        self.drift_px = _energy_drift(scenario)
        self.runout_px = _runout(scenario, self.theta, len(self.energies))

    def pixel_response(self) -> np.ndarray | float:
        """Per-pixel response of the projections relative to their energy's flats: 1, or a
        gain error of rms ``ring_strength`` per detector pixel, fixed during an energy's scan
        and different at each energy (each energy has its own flats): rings that do not
        cancel in the retrieval."""
        a = self.scenario.acquisition
        if not a.ring_strength:
            return 1.0
        rng = np.random.default_rng(np.random.SeedSequence(self.scenario.seed).spawn(7)[6])
        shape = (len(self.energies), 1) + self.beam.shape[1:]
        return 1.0 + a.ring_strength * rng.standard_normal(shape)

    def dead_pixels(self) -> np.ndarray | None:
        """Dead detector pixels (``dead_pixel_fraction``), or None."""
        a = self.scenario.acquisition
        if not a.dead_pixel_fraction:
            return None
        rng = np.random.default_rng(np.random.SeedSequence(self.scenario.seed).spawn(8)[7])
        return rng.random(self.beam.shape[1:]) < a.dead_pixel_fraction

    def elapsed_fraction(self) -> np.ndarray:
        """(n_energy, n_angle) fraction of the acquisition elapsed at each projection's middle
        (energies one after the other)."""
        n_e, n_a = len(self.energies), self.scenario.acquisition.n_angles
        return (np.arange(n_e * n_a).reshape(n_e, n_a) + 0.5) / (n_e * n_a)

    def transmission(
        self,
        w_start: np.ndarray,
        tick,
        w_end: np.ndarray | None = None,
        motion: tuple[float, tuple[float, ...]] = (0.0, (0.0, 0.0, 0.0)),
        breathing: np.ndarray | None = None,
    ) -> np.ndarray:
        """Transmission per energy, angle and detector pixel.

        With ``w_end`` the Li field moves linearly from ``w_start`` to ``w_end`` during the
        acquisition: mu is linear in w and projection is linear in mu, so each angle's line
        integrals are the same mix of the two fields' line integrals. ``motion`` (rotation
        about the axis in degrees, shift (z, y, x) in detector pixels): the sample is moved
        so before it is projected; ``breathing``: each particle's linear scale about its
        centre (see :func:`breathing_scale`), applied first.
        """
        ms, g, a = self.ms, self.scenario.grid, self.scenario.acquisition
        os_ = g.oversample
        pore, cbd, active = self.pore, self.cbd, self.active
        moved = bool(motion[0] or any(motion[1]))
        if breathing is not None or moved:  # phase fractions, resampled linearly
            fracs = _phase_fractions(ms)
            fields = [w_start] + ([w_end] if w_end is not None else [])
            if breathing is not None:
                fracs, fields = _breathed(ms, breathing, fracs, fields)
            if moved:
                # the space uncovered: air around a pillar, electrolyte otherwise
                fill = [0.0 if np.any(ms.phases == PHASE_OUTSIDE) else 1.0, 0.0, 0.0]
                fracs = [_moved(f, motion, os_, c) for f, c in zip(fracs, fill)]
                fields = [_resampled_field(f, lambda v: _moved(v, motion, os_)) for f in fields]
            pore, cbd, active = fracs
            w_start, w_end = fields[0], (fields[1] if w_end is not None else None)
        nz, n = ms.phases.shape[0], ms.phases.shape[1]
        proj = _Projector(g.projector, n, self.theta, os.cpu_count() or 1)
        shift = a.rotation_axis_offset_px * os_  # the axis projects this far from the centre
        # mu is linear in the phases and in w, and projection is linear: each energy's and
        # field's attenuation is a combination of a few basis volumes (pores, carbon-binder,
        # active material, w in the active material at the acquisition's start and end). The
        # projector runs on whichever set is smaller: the bases (combined per energy after
        # projection: a stack of 30 energies costs what 3 do) or the combined volumes.
        fields = [w_start] + ([w_end] if w_end is not None else [])
        n_e, n_f = len(self.energies), len(fields)
        n_g = self.coef_c.shape[0]
        coef = np.zeros((n_e, n_f, 3 + n_g * n_f))
        coef[:, :, 0] = self.mu_elyte[:, None]
        coef[:, :, 1] = self.mu_cbd[:, None]
        coef[:, :, 2] = self.coef_a[:, None]
        for f in range(n_f):
            coef[:, f, 3 + f * n_g : 3 + (f + 1) * n_g] = self.coef_c.T
        # the phase needs each phase's own projection: the bases then
        combine = n_e * n_f < coef.shape[2] and not a.defocus_um
        mix = (np.eye(n_e * n_f).reshape(n_e, n_f, n_e * n_f) if combine else coef).astype(
            np.float32
        )
        pre = coef.reshape(n_e * n_f, -1).astype(np.float32) * np.float32(ms.voxel_m)
        frac = self.elapsed_fraction()
        sinos = np.empty((mix.shape[2], a.n_angles, nz, n), dtype=np.float32)
        vox = np.float32(ms.voxel_m)
        try:
            for z in range(nz):
                act = active[z]
                # boolean phases as generated, or fractions where the sample was resampled
                where = act if act.dtype == bool else act > 0
                gv = [
                    self.xanes.field_values(np.where(where, np.nan_to_num(f[z]), 0.0))
                    for f in fields
                ]
                part = [np.where(where, gk, 0.0) for gf in gv for gk in gf]
                if act.dtype != bool:
                    part = [act * gk for gk in part]
                imgs = np.stack([pore[z], cbd[z], act] + part).astype(np.float32)
                imgs = np.tensordot(pre, imgs, axes=1) if combine else imgs * vox
                sinos[:, :, z, :] = proj(imgs)
        finally:
            proj.close()
        tick("projections", 1)
        trans = np.empty((n_e, a.n_angles, g.n_rows, g.n_pixels))
        for ie in range(n_e):
            # the field moves linearly from start to end during the acquisition
            wt = [np.ones(a.n_angles)] if n_f == 1 else [1 - frac[ie], frac[ie]]
            sino = np.zeros((a.n_angles, nz, n), dtype=np.float32)
            for f in range(n_f):
                per_angle = wt[f].astype(np.float32)[:, None, None]
                for k in range(mix.shape[2]):
                    if mix[ie, f, k]:
                        sino += (mix[ie, f, k] * per_angle) * sinos[k]
            phase = None
            lam = wavelength_m(self.energies[ie] + a.energy_offset_eV).item()
            if a.defocus_um:  # phase = -k sum_phase delta x (path length through the phase)
                k_wave = 2 * np.pi / lam
                phase = np.zeros_like(sino)
                for b in range(3):
                    phase -= np.float32(k_wave * self.delta[b, ie]) * sinos[b]
            if shift:
                for z in range(nz):
                    sino[:, z, :] = shift_rows(sino[:, z, :], shift)
                    if phase is not None:
                        phase[:, z, :] = shift_rows(phase[:, z, :], shift)
            if phase is None:
                t_fine = np.exp(-sino, dtype=np.float64)
            else:
                t_fine = fresnel_intensity(sino, phase, ms.voxel_m, a.defocus_um * 1e-6, lam)
            del sino, phase
            scale = 1.0 + a.magnification_per_eV * (self.energies[ie] - self.energies[0])
            if scale != 1.0:  # the zone plate magnifies the image about the optical axis
                t_fine = _magnify(t_fine, scale)
            # the image moves on the detector (drift between energies, the stage's run-out and
            # jitter per projection) before the pixels integrate it: shifted on the fine grid
            dy0, dx0 = self.drift_px[ie]
            if self.runout_px is not None:
                for k, (dy, dx) in enumerate(self.runout_px[ie]):
                    t_fine[k] = shift_image_stack(t_fine[k], (dy + dy0) * os_, (dx + dx0) * os_)
            elif dy0 or dx0:
                t_fine = shift_image_stack(t_fine, dy0 * os_, dx0 * os_)
            t_fine = central(t_fine, g.n_rows * os_, g.n_pixels * os_)  # the detector's view
            trans[ie] = t_fine.reshape(a.n_angles, g.n_rows, os_, g.n_pixels, os_).mean(axis=(2, 4))
            del t_fine
            tick("transmission", 1)
        if a.detector_blur_px > 0:  # energy by energy: one energy's temporaries at a time
            for ie in range(n_e):
                trans[ie] = ndimage.gaussian_filter(
                    trans[ie], (0, a.detector_blur_px, a.detector_blur_px), mode="nearest"
                )
        if np.any(self.cell_od):
            trans *= np.exp(-self.cell_od)[:, None, None, None]
        # no upper clip: a bright Fresnel fringe exceeds the flat
        return np.maximum(trans, 0.0, out=trans)

    def counts(
        self, trans: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        a = self.scenario.acquisition

        def dark_noise(shape: tuple[int, ...]) -> np.ndarray:
            return a.dark_counts + a.read_noise_counts * rng.standard_normal(shape)

        def to_u16(x: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(x), 0, 65535).astype(np.uint16)

        response = np.asarray(self.pixel_response(), dtype=float)
        if response.ndim == 0:
            response = np.full((len(self.energies), 1, 1, 1), float(response))
        n_e, n_a = trans.shape[:2]
        # drawn block by block of angles, in the order (and so with the values) of whole-array
        # draws: every Poisson count, then every read noise, then the dead pixels' readings;
        # counts kept exactly in float32 meanwhile (one float32 copy of the scan, not five
        # float64 ones)
        step = max(1, (1 << 24) // max(1, trans[0, 0].size))
        blocks = [(e, k, min(k + step, n_a)) for e in range(n_e) for k in range(0, n_a, step)]
        acc = np.empty(trans.shape, dtype=np.float32)
        # the beam drifts during each energy's scan (flats taken before it): its intensity and
        # its illumination pattern (a condenser that moves), by an amount and a pattern of its
        # own at each energy (0.5-1.5 x flat_drift, random phase), up to 2x that per pixel
        drift_rng = np.random.default_rng(np.random.SeedSequence(self.scenario.seed).spawn(9)[8])
        amp = a.flat_drift * np.asarray(drift_rng.uniform(0.5, 1.5, n_e))
        phase = np.asarray(drift_rng.uniform(0.0, 2 * np.pi, n_e))
        tau = (np.arange(n_a) + 0.5) / n_a
        n_r, n_c = self.beam.shape[1:]
        yy, xx = np.mgrid[:n_r, :n_c]
        pattern = 1.0 + np.cos(2 * np.pi * 1.3 * xx[None] / n_c + phase[:, None, None]) * np.cos(
            2 * np.pi * 0.8 * yy[None] / max(n_r, 2)
        )
        for e, k0, k1 in blocks:
            lam = self.beam[e][None] * trans[e, k0:k1] * response[e]
            if a.flat_drift:
                lam = lam * (1.0 + amp[e] * tau[k0:k1, None, None] * pattern[e][None])
            acc[e, k0:k1] = rng.poisson(lam)
        out = np.empty(trans.shape, dtype=np.uint16)
        for e, k0, k1 in blocks:
            out[e, k0:k1] = to_u16(acc[e, k0:k1] + dark_noise(acc[e, k0:k1].shape))
        del acc
        shape = (len(self.energies), a.n_flats) + self.beam.shape[1:]
        flats = rng.poisson(np.broadcast_to(self.beam[:, None], shape)) + dark_noise(shape)
        dead = self.dead_pixels()
        if dead is not None:  # a dead pixel reads the dark level, in flats and projections
            for e, k0, k1 in blocks:
                noise = to_u16(dark_noise(out[e, k0:k1].shape))
                out[e, k0:k1] = np.where(dead, noise, out[e, k0:k1])
            flats = np.where(dead, dark_noise(flats.shape), flats)
        darks = to_u16(dark_noise((a.n_darks,) + self.beam.shape[1:])) if a.n_darks else None
        return out, to_u16(flats), darks


def simulate(
    scenario: Scenario, *, progress: Callable[[str, int], None] | None = None
) -> TwinResult:
    """Run the twin for one scenario and seed (bit-identical for the same inputs)."""
    tick = progress or (lambda stage, n: None)
    ss = np.random.SeedSequence(scenario.seed)
    rng_ms, rng_acq, rng_ref, rng_li = (np.random.default_rng(s) for s in ss.spawn(4))
    g, e, a = scenario.grid, scenario.electrochemistry, scenario.acquisition
    # rows beyond the detector where projections move vertically: the electrode goes on there
    # (the rows above start shallower, so the detector's rows keep their depth)
    zm = z_margin(scenario)
    m_spec = dataclasses.replace(
        scenario.microstructure,
        depth_offset_m=scenario.microstructure.depth_offset_m - zm * g.pixel_size_m,
    )
    ms = generate(sample_grid(g, zm), m_spec, rng_ms)
    tick("microstructure", 1)
    duration = len(a.energies_eV) * a.n_angles * a.exposure_s
    # PyBaMM at each acquisition's start, middle and end (the middle is the truth's time)
    windows = [(t, t + 0.5 * duration, t + duration) for t in e.snapshot_times_s]
    times = sorted({t for w in windows for t in w})
    echem = solve(dataclasses.replace(e, snapshot_times_s=tuple(times)), geometry_of(ms, scenario))
    tick("electrochemistry", 1)
    region = None
    if e.activity_region_strength:  # a stream of its own: other scenarios' files unchanged
        region = activity_region_field(
            ms.centres_m, e.activity_region_length_m, np.random.default_rng([scenario.seed, 26])
        )
    activity = particle_activity(ms, e, rng_li, region)
    dist_wet = wetted_distance(ms)
    acq = _Acquisition(scenario, ms)
    scans, truths = [], []
    for k, (t0, t_mid, t1) in enumerate(windows):
        i0, i_mid, i1 = (times.index(t) for t in (t0, t_mid, t1))
        w_mid, table = map_lithiation(ms, echem, i_mid, e, activity, dist_wet)
        w_start = map_lithiation(ms, echem, i0, e, activity, dist_wet)[0] if duration else w_mid
        w_end = map_lithiation(ms, echem, i1, e, activity, dist_wet)[0] if duration else None
        tick("lithiation", 1)
        table["activity_region"] = np.zeros(len(ms.radii_m)) if region is None else region
        breathing = None
        if e.volume_change:
            breathing = breathing_scale(table["mean_lithiation"], e.volume_change)
        motion = (
            k * a.sample_rotation_deg,
            tuple(k * float(v) for v in a.sample_motion_px),
        )
        proj, flats, darks = acq.counts(
            acq.transmission(w_start, tick, w_end, motion=motion, breathing=breathing), rng_acq
        )
        tick("noise", 1)
        scans.append(
            ScanData(
                data=proj,
                flats=flats,
                darks=darks,
                theta_deg=acq.theta,
                energy_eV=acq.energies,
                pixel_size_m=g.pixel_size_m,
                counts_per_photon=1.0,
                exposure_s=np.full(len(acq.energies), a.exposure_s) if a.exposure_s else None,
                flat_exposure_s=np.full(len(acq.energies), a.exposure_s) if a.exposure_s else None,
                metadata={
                    "sample": "synthetic NMC532 electrode",
                    "time_s": t0,
                    # an ISO 8601 start, as Data Exchange records it (a fixed epoch: the files
                    # stay bit-identical for the same scenario and seed)
                    "start_date": _start_date(t0),
                    "acquisition_duration_s": duration,
                    "snapshot": k,
                    "scenario": scenario.name,
                    "seed": scenario.seed,
                },
                provenance={
                    "writer": "xtwin simulate",
                    "xtwin_version": __version__,
                    "seed": scenario.seed,
                    "scenario": scenario.name,
                },
            )
        )
        truths.append(
            _truth(
                scenario,
                ms,
                echem,
                i_mid,
                w_mid,
                table,
                acq.drift_px,
                window_s=(t0, t1),
                snapshot=k,
                depth_offset_m=m_spec.depth_offset_m,
            )
        )
    a = scenario.acquisition
    standards = XanesModel(
        chemistry=chemistry_model(e.ni_chemistry, e.end_members),
        bandwidth_rel=a.standards_bandwidth_rel or a.bandwidth_rel,
        energy_offset_eV=a.energy_offset_eV + a.standards_offset_from_scan_eV,
    )
    pellet: dict[str, float] = {
        "thickness_m": a.standards_thickness_um * 1e-6,
        "background_mg_cm2": a.standards_background_mg_cm2,
        "tape_m": a.standards_tape_um * 1e-6,
        "leakage": a.standards_leakage,
    }
    ref_l, ref_d = reference_spectra(standards, rng_ref, **pellet)  # type: ignore[arg-type]
    series: tuple[tuple[float, Spectrum], ...] = ()
    if a.calibration_series_lithiation:  # its own stream: the other files stay the same
        rng_series = np.random.default_rng(ss.spawn(10)[9])
        ws = tuple(float(w) for w in a.calibration_series_lithiation)
        series = tuple(
            zip(ws, reference_spectra(standards, rng_series, lithiations=ws, **pellet))  # type: ignore[arg-type]
        )
    quick = None
    if a.quick_xanes_energies_eV:
        w0 = map_lithiation(ms, echem, times.index(windows[0][0]), e, activity, dist_wet)[0]
        quick = _quick_xanes(scenario, ms, w0, np.random.default_rng(ss.spawn(9)[8]))
    tick("files", 1)
    return TwinResult(scans, truths, ref_l, ref_d, quick, series)


#: The twin's clock starts here (the scans' start dates are this plus their time_s).
TWIN_EPOCH = "2026-01-01T00:00:00+00:00"


def _start_date(t_s: float) -> str:
    import datetime as dt

    start = dt.datetime.fromisoformat(TWIN_EPOCH) + dt.timedelta(seconds=float(t_s))
    return start.isoformat()


def _quick_xanes(
    scenario: Scenario, ms: Microstructure, w: np.ndarray, rng: np.random.Generator
) -> ScanData:
    """A quick 2D XANES at 0 degrees through the scan's monochromator, at the Li field ``w``
    (the start of the first acquisition), without the stage's run-out."""
    a = scenario.acquisition
    quick_acq = dataclasses.replace(
        a,
        energies_eV=tuple(a.quick_xanes_energies_eV),
        n_angles=1,
        photon_split=(),
        runout_px=0.0,
        jitter_px=0.0,
        energy_drift_px=0.0,
    )
    acq = _Acquisition(dataclasses.replace(scenario, acquisition=quick_acq), ms)
    proj, flats, darks = acq.counts(acq.transmission(w, lambda *_: None), rng)
    return ScanData(
        data=proj,
        flats=flats,
        darks=darks,
        theta_deg=acq.theta,
        energy_eV=acq.energies,
        pixel_size_m=scenario.grid.pixel_size_m,
        counts_per_photon=1.0,
        metadata={"sample": "synthetic NMC532 electrode", "kind": "quick 2D XANES"},
        provenance={"writer": "xtwin simulate", "seed": scenario.seed},
    )


def _truth(
    scenario: Scenario,
    ms: Microstructure,
    echem: ElectrochemResult,
    k: int,
    w_fine: np.ndarray,
    table: dict[str, np.ndarray],
    drift_px: np.ndarray,
    window_s: tuple[float, float],
    snapshot: int,
    depth_offset_m: float,
) -> TruthData:
    """The truth of one acquisition: the field at PyBaMM time index ``k`` (its middle), on
    the detector's view of the sample (whose first fine row lies at ``depth_offset_m``)."""
    g = scenario.grid
    snap = echem.snapshots[k]
    slabs = slab_conservation(w_fine, ms, table, echem, k, depth_offset_m=depth_offset_m)
    # the truth on the field of view: the detector's rows and (interior tomography) columns
    view = (g.n_rows * g.oversample, g.n_pixels * g.oversample, g.n_pixels * g.oversample)
    phases, labels = central(ms.phases, *view), central(ms.labels, *view)
    w_fine = central(w_fine, *view)
    phases_c, labels_c, w_c = to_reconstruction_grid(phases, labels, w_fine, g.oversample)
    am = phases == PHASE_ACTIVE
    return TruthData(
        lithiation=w_c,
        labels=labels_c,
        phases=phases_c,
        fine_lithiation=w_fine.astype(np.float32),
        fine_labels=np.where(am, labels, 0),
        fine_phases=phases,
        particles=table,
        pybamm={
            "time_s": echem.time_s,
            "voltage_V": echem.voltage_V,
            "current_A": echem.current_A,
            "depth_m": echem.depth_m,
            "radius_m": echem.radius_m,
            "volume_weights": echem.volume_weights,
            "volume_average_lithiation": snap.volume_average,
            "psd_average_lithiation": snap.psd_average,
        },
        attrs={
            "pixel_size_m": g.pixel_size_m,
            "fine_pixel_size_m": ms.voxel_m,
            "snapshot_time_s": snap.time_s,
            "snapshot_index": snapshot,
            "scenario": scenario.to_toml(),
            "seed": scenario.seed,
            "achieved_fractions": ms.achieved,
            "versions": package_versions(
                "numpy", "scipy", "pybamm", "xraylib", "astra-toolbox", "porespy"
            ),
            "pybamm_parameter_set": echem.parameter_set,
            "theta_0": echem.theta_0,
            "theta_100": echem.theta_100,
            "geometry": vars(echem.geometry),
            "slab_conservation": slabs,
            "energy_drift_px": drift_px.tolist(),
            "acquisition_window_s": list(window_s),
            "phase_codes": {
                "pore": PHASE_PORE,
                "active": PHASE_ACTIVE,
                "cbd": PHASE_CBD,
                "closed_internal_pore": PHASE_CLOSED_PORE,
                "outside": PHASE_OUTSIDE,
            },
        },
    )


def reference_spectra(
    xanes: XanesModel,
    rng: np.random.Generator,
    *,
    thickness_m: float = 5e-6,
    noise: float = 2e-4,
    background_mg_cm2: float = 0.0,
    tape_m: float = 0.0,
    leakage: float = 0.0,
    lithiations: tuple[float, ...] = (1.0, 0.0),
) -> tuple[Spectrum, ...]:
    """Transmission spectra of end-member standards, as a beamline would record them.

    Absorbance of ``thickness_m`` of dense NMC532 at w = 1 and 0 on a typical XANES grid (5 eV
    steps pre-edge, 0.25 eV across the edge, 2-5 eV after, to 8850 eV), through the
    monochromator (bandwidth and calibration offset) of ``xanes``, with Gaussian noise of
    ``noise`` absorbance units. A real standard is a pellet: ``background_mg_cm2`` of boron
    nitride matrix and ``tape_m`` of Kapton tape add a smooth background of their own, and
    ``leakage`` (harmonics, pinholes: a fraction of the beam that misses the absorber) gives
    ``-ln((1 - f) exp(-mu t) + f)``, which flattens a thick standard's edge and white line.
    One spectrum per value of ``lithiations`` (default: the end members, w = 1 and 0).
    """
    e = np.unique(
        np.concatenate(
            [
                np.arange(8200.0, 8320.0, 5.0),
                np.arange(8320.0, 8380.0, 0.25),
                np.arange(8380.0, 8450.0, 2.0),
                np.arange(8450.0, 8851.0, 5.0),
            ]
        )
    )
    e_true = e + xanes.energy_offset_eV
    holder = background_mg_cm2 * 1e-3 * mu_rho_cm2_g(
        materials.material_from_formula("boron nitride", "BN", 2.1), e_true
    ) + tape_m * mu_per_m(materials.kapton(), e_true)
    out = []
    for w in lithiations:
        od = xanes.nmc532_mu_per_m(e, w) * thickness_m + holder
        if leakage:
            od = -np.log((1.0 - leakage) * np.exp(-od) + leakage)
        out.append(
            Spectrum(e, od + noise * rng.standard_normal(e.size), f"synthetic standard w={w:g}")
        )
    return tuple(out)


def write_outputs(
    result: TwinResult, scenario: Scenario, out_dir: str | os.PathLike, *, force: bool = False
) -> dict[str, Path]:
    """Write scans, truths, scenario and reference spectra into ``out_dir``.

    Refuses to overwrite existing outputs unless ``force``; each file is written atomically.
    """
    out = Path(out_dir)
    names = output_names(scenario)
    paths = {name: out / name for name in names}
    refuse_existing(out, names, force=force)
    out.mkdir(parents=True, exist_ok=True)
    scan_names = [n for n in names if n.startswith("scan")]
    truth_names = [n for n in names if n.startswith("truth")]
    for name, scan in zip(scan_names, result.scans):
        write_scan(paths[name], scan)
    for name, truth in zip(truth_names, result.truths):
        write_truth(paths[name], truth)
    write_text_atomic(paths["scenario.toml"], scenario.to_toml())
    hdr = (
        "synthetic reference spectrum of a dense NMC532 standard written by xtwin simulate\n"
        "absorbance = -ln(I/I0), raw (not normalized)"
    )
    write_spectrum(
        paths["reference_lithiated.csv"],
        result.reference_lithiated,
        header=hdr + "\nend member: lithiated (discharged), w = 1",
    )
    write_spectrum(
        paths["reference_delithiated.csv"],
        result.reference_delithiated,
        header=hdr + "\nend member: delithiated (charged), w = 0",
    )
    if result.quick_xanes is not None:
        write_scan(paths["quick_xanes.h5"], result.quick_xanes)
    if result.calibration_series:
        (out / "calibration").mkdir(exist_ok=True)
        rows = ["lithiation,path"]
        for w, spec in result.calibration_series:
            name = _series_name(w)
            write_spectrum(paths[name], spec, header=hdr + f"\ncalibration standard, w = {w:g}")
            rows.append(f"{w:g},{name}")
        write_text_atomic(paths["calibration_series.csv"], "\n".join(rows) + "\n")
    if "truth_rates.csv" in paths:
        write_truth_rates(paths["truth_rates.csv"], result.truths, scenario)
    return paths


def write_truth_rates(path: Path, truths: list[TruthData], scenario: Scenario) -> None:
    """An operando series' truth per particle: w at each time point (the volume mean of its
    voxel field, at the middle of each acquisition) and the least-squares rate per hour, with
    its diameter and depth, its activity (the effective-size factor of the electrochemistry)
    and the activity regions' field at its centre (0 without regions), and w at each time
    point (columns ``w_t000``, ...)."""
    from xtwin._files import write_csv_atomic

    times = np.array([float(t.attrs["snapshot_time_s"]) for t in truths]) / 3600.0
    ids = np.asarray(truths[0].particles["id"]).astype(int)
    w = np.stack([np.asarray(t.particles["mean_lithiation"], dtype=float) for t in truths])
    radius = np.asarray(truths[0].particles["equivalent_radius_m"], dtype=float)
    depth = np.asarray(truths[0].particles["depth_m"], dtype=float)
    n = ids.size
    activity = np.asarray(truths[0].particles.get("activity", np.ones(n)), dtype=float)
    region = np.asarray(truths[0].particles.get("activity_region", np.zeros(n)), dtype=float)
    tm = times - times.mean()
    rows = []
    for j, pid in enumerate(ids):
        rate = float(np.sum(tm * (w[:, j] - w[:, j].mean())) / np.sum(tm**2))
        rows.append(
            {
                "particle": int(pid),
                "rate_per_h": round(rate, 6),
                "diameter_um": round(2e6 * float(radius[j]), 4),
                "depth_um": round(1e6 * float(depth[j]), 4),
                "activity": round(float(activity[j]), 5),
                "activity_region": round(float(region[j]), 5),
                **{f"w_t{k:03d}": round(float(w[k, j]), 6) for k in range(len(truths))},
            }
        )
    fields = (
        "particle",
        "rate_per_h",
        "diameter_um",
        "depth_um",
        "activity",
        "activity_region",
    ) + tuple(f"w_t{k:03d}" for k in range(len(truths)))
    write_csv_atomic(path, rows, fields)


def simulate_to(
    scenario: Scenario,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Path]:
    """Run the twin and write its files (what ``xtwin simulate`` does).

    Parameters
    ----------
    scenario : Scenario
        The scenario (with its seed).
    out_dir : path-like
        Output directory; its writability is checked before the simulation starts.
    force : bool
        Overwrite existing outputs.
    progress : callable, optional
        Called with (stage, steps done).

    Returns
    -------
    dict
        File name -> path of every file written.
    """
    refuse_existing(out_dir, output_names(scenario), force=force)
    return write_outputs(simulate(scenario, progress=progress), scenario, out_dir, force=force)
