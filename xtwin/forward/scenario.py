"""Typed, validated twin scenarios read from TOML (see ``synthetic/*.toml``)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xtwin.errors import XtwinInputError


@dataclass(frozen=True)
class GridSpec:
    """Reconstruction grid: ``n_pixels`` detector columns (= x, y), ``n_rows`` rows (= z).

    ``projector``: how the twin integrates the fine grid along the rays: ``"strip"`` (ASTRA's
    area-weighted strip projector, exact for voxels; the default) or ``"fourier"`` (a
    band-limited projection through a type-2 NUFFT, 15-35x faster at 512-1024 columns, for
    beamline-size scenarios).

    ``field_of_view_fraction`` below 1 makes the sample wider than the detector (interior
    tomography): the microstructure is built ``1 / field_of_view_fraction`` times wider (the
    pillar or box with it), projected whole, and the detector sees only its central
    ``n_pixels`` columns, so material outside the field of view crosses every projection. The
    truth is the central ``n_pixels`` x ``n_pixels`` region, the reconstruction grid.
    """

    n_pixels: int = 64
    n_rows: int = 40
    pixel_size_m: float = 0.4e-6
    oversample: int = 2
    projector: str = "strip"
    field_of_view_fraction: float = 1.0


@dataclass(frozen=True)
class MicrostructureSpec:
    """Electrode microstructure targets and morphology (see :mod:`xtwin.forward.microstructure`).

    Defaults: active fraction 0.445 and electrode thickness 67 um from PyBaMM ``Mohtat2020``
    (its porosity 0.30 leaves 0.255 for the carbon-binder domain including its nanopores);
    D50 7 um (Mohtat2020 R_p = 3.5 um); 3 % internal porosity of secondary particles, half of
    it connected to the surface (typical of polycrystalline NMC, see docs/microstructure.md).
    """

    sample: str = "pillar"
    pillar_diameter_fraction: float = 0.9
    electrode_thickness_m: float = 67e-6
    depth_offset_m: float = 20e-6
    active_fraction: float = 0.445
    cbd_fraction: float = 0.255
    particle_d50_m: float = 7e-6
    particle_size_log_sigma: float = 0.2
    min_particle_diameter_m: float = 3e-6
    max_overlap: float = 0.15
    internal_porosity: float = 0.03
    internal_connected_fraction: float = 0.5
    grain_size_m: float = 1e-6
    cbd_nanoporosity: float = 0.5
    cbd_bridge_radius_m: float = 0.6e-6
    cbd_surface_coverage: float = 0.5

    @property
    def pore_fraction(self) -> float:
        """Target pore fraction: 1 - active - cbd (macropores and internal pores)."""
        return 1.0 - self.active_fraction - self.cbd_fraction


@dataclass(frozen=True)
class ElectrochemistrySpec:
    """The operando protocol and how PyBaMM's solution is mapped onto the particles.

    ``protocol`` is a list of PyBaMM experiment steps ("Charge at 1C for 1200 seconds",
    "Rest for 10 minutes", "Discharge at C/2 until 3.0 V", ...), run from ``initial_soc``
    (0 = fully discharged). ``snapshot_times_s`` are the times (from the start) at which the
    twin images the cell: one scan and one truth per snapshot.

    Heterogeneity (see docs/electrochemistry.md): ``activity_spread`` (log-normal sigma of a
    particle's electrochemical activity, e.g. electronic wiring) and ``activity_cbd_weight``
    (how much a particle's CBD coverage raises it) act through the particle's effective size
    in PyBaMM's size distribution; ``activity_region_strength`` (standard deviation of the
    log activity) and ``activity_region_length_m`` (correlation length) add regions of higher
    activity: a seeded Gaussian random field over the sample, the same for every particle
    near the same place (the truth records each particle's value); ``volume_change`` is the
    fraction of its volume a particle loses from w = 1 to w = 0 (breathing; NMC532 about
    0.02, between NMC111's 0.012 and NMC811's 0.051 over 3.0-4.3 V, Kondrakov et al., J. Phys.
    Chem. C 121, 3286 (2017)), applied to every scan of the series about each particle's
    centre; ``hotspot_strength`` and ``hotspot_length_m`` make the
    reaction preferred near CBD contacts inside each particle (zero-sum per particle).

    Ni chemistry (:mod:`xtwin.physics.xanes`): ``ni_chemistry = "two-state"`` makes the Ni
    K-edge a linear mix of two end members (the retrieval's own assumption); ``"three-state"``
    oxidizes Ni2+ -> Ni3+ -> Ni4+ sequentially (:class:`~xtwin.physics.xanes.ThreeStateChemistry`),
    so intermediate spectra leave the straight line. ``end_members = "measured-nmc622"``
    anchors the spectra at w = 1 and w = 0 to measured NMC622 spectra (pristine and 4.3 V,
    Advanced Photon Source, packaged with xtwin) instead of the parametric shapes.
    """

    parameter_set: str = "Mohtat2020"
    protocol: tuple[str, ...] = ("Charge at 1C for 1200 seconds",)
    snapshot_times_s: tuple[float, ...] = (1200.0,)
    initial_soc: float = 0.0
    particle_size_distribution: bool = True
    couple_geometry: bool = True
    electrolyte_molarity_mol_l: float = 1.2
    activity_spread: float = 0.0
    activity_cbd_weight: float = 0.0
    hotspot_strength: float = 0.0
    hotspot_length_m: float = 0.5e-6
    activity_region_strength: float = 0.0
    activity_region_length_m: float = 1e-5
    volume_change: float = 0.0
    ni_chemistry: str = "two-state"
    end_members: str = "parametric"


@dataclass(frozen=True)
class AcquisitionSpec:
    """Parallel-beam TXM acquisition at several energies.

    The reference standards are measured through the same monochromator as the scan unless
    ``standards_offset_from_scan_eV`` (their energy calibration minus the scan's) or
    ``standards_bandwidth_rel`` (their dE/E; 0 = the scan's) say otherwise: an energy
    calibration error of the retrieval is a difference between the two.

    The standards are pellets measured in transmission: ``standards_thickness_um`` of dense
    NMC-equivalent (edge step about 1 at 5 um), ``standards_background_mg_cm2`` of boron
    nitride matrix and ``standards_tape_um`` of Kapton tape (a smooth background of their own),
    and ``standards_leakage``, the fraction of the beam that misses the absorber (harmonics,
    pinholes), which flattens a thick standard's edge and white line (the thickness effect).

    ``magnification_per_eV``: a zone plate's focal length is proportional to E, so the image
    scale changes with energy, ``s(E) = 1 + k (E - E_first)`` about the optical axis (of order
    1e-4 per eV: 0.3 % over 30 eV, 4 % over a 400 eV stack; 0 switches it off).

    ``runout_px`` and ``jitter_px``: rms displacements of each projection on the detector, in
    both directions, from the rotation stage's run-out (smooth in the angle, the same at every
    energy) and from jitter (independent per projection); distinct from ``energy_drift_px``.
    Where projections move vertically the twin builds the sample taller than the detector (the
    electrode goes on above and below it), so material really enters and leaves the field.

    ``ring_strength``: rms of a fixed per-pixel gain error of the projections relative to the
    flats (a drifted scintillator or detector response; it makes ring artefacts), and
    ``dead_pixel_fraction``: pixels that read only the dark level.

    ``window_kapton_um`` and ``electrolyte_layer_um``: the operando cell in the beam, Kapton
    windows (total thickness) and a liquid layer outside the sample, uniform at every angle
    (flats are taken with the cell out of the beam); they cost photons, not accuracy.

    ``flat_drift``: change of the incident beam over each energy's scan, linear in time, while
    the flats are taken before the scan: its intensity (storage-ring decay, monochromator heat
    load) and its illumination pattern (a condenser that moves), each energy by its own amount
    (0.5-1.5 x ``flat_drift``) and pattern, so that by the end of a scan its flats are off by
    up to 3 x ``flat_drift`` depending on the pixel (0.02: up to 6 %).

    ``defocus_um``: distance of the imaged plane from the objective's focal plane (the sample's
    depth within the zone plate's depth of field). Non-zero, the exit wave (attenuation and
    the phase from each phase's refractive-index decrement delta) is Fresnel-propagated by
    that distance on the fine grid: edges carry the bright/dark fringes of real TXM images
    (fringe width about sqrt(lambda z): 55 nm at 20 um and 8.3 keV). 0: a pure absorption image.

    ``photons_per_pixel`` is the flat-field level per projection, the same at every energy
    unless ``photon_split`` gives relative weights per energy (scaled to a mean of 1, so the
    total photon budget stays ``n_energies * photons_per_pixel``; what ``xtwin plan`` writes).

    ``exposure_s`` is the time per projection (with overheads); the energies are scanned one
    after the other, so an acquisition lasts ``n_energies * n_angles * exposure_s`` during
    which the Li keeps moving (0: the field is frozen during the scan).

    ``sample_motion_px`` (z, y, x) and ``sample_rotation_deg``: the sample's displacement and
    turn about the rotation axis from one time point of an operando series to the next (the
    cell re-centred on its stage, thermal drift): time point k is moved by k times them. The
    truth stays in the sample's frame (the first time point's).

    ``quick_xanes_energies_eV``: a quick 2D XANES of the sample at 0 degrees (8 or more
    energies across the edge), taken through the same monochromator (the same
    ``energy_offset_eV``) just before the scan and written as ``quick_xanes.h5``: what
    ``xtwin process --energy-calibration`` fits the standards' energy offset on.
    ``calibration_series_lithiation``: standards of the same chemistry at these lithiations
    (three or more), measured like the end members and listed in ``calibration_series.csv``
    (for ``--calibration-series``).
    """

    energies_eV: tuple[float, ...] = (8320.0, 8347.0, 8400.0)
    n_angles: int = 121
    photons_per_pixel: float = 20000.0
    photon_split: tuple[float, ...] = ()
    n_flats: int = 10
    n_darks: int = 5
    dark_counts: float = 100.0
    read_noise_counts: float = 3.0
    bandwidth_rel: float = 1.3e-4
    energy_offset_eV: float = 0.0
    standards_offset_from_scan_eV: float = 0.0
    standards_bandwidth_rel: float = 0.0
    standards_thickness_um: float = 5.0
    standards_background_mg_cm2: float = 0.0
    standards_tape_um: float = 0.0
    standards_leakage: float = 0.0
    magnification_per_eV: float = 0.0
    runout_px: float = 0.0
    jitter_px: float = 0.0
    ring_strength: float = 0.0
    dead_pixel_fraction: float = 0.0
    window_kapton_um: float = 0.0
    electrolyte_layer_um: float = 0.0
    defocus_um: float = 0.0
    flat_drift: float = 0.0
    detector_blur_px: float = 0.5
    flat_nonuniformity: float = 0.1
    rotation_axis_offset_px: float = 0.0
    energy_drift_px: float = 0.0
    exposure_s: float = 0.0
    quick_xanes_energies_eV: tuple[float, ...] = ()
    calibration_series_lithiation: tuple[float, ...] = ()
    sample_motion_px: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sample_rotation_deg: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A named twin scenario."""

    name: str = "default"
    description: str = ""
    seed: int = 0
    grid: GridSpec = field(default_factory=GridSpec)
    microstructure: MicrostructureSpec = field(default_factory=MicrostructureSpec)
    electrochemistry: ElectrochemistrySpec = field(default_factory=ElectrochemistrySpec)
    acquisition: AcquisitionSpec = field(default_factory=AcquisitionSpec)

    def replace_seed(self, seed: int) -> Scenario:
        """The same scenario with another seed."""
        return dataclasses.replace(self, seed=int(seed))

    def to_toml(self) -> str:
        """Serialize back to TOML (what ``simulate`` writes beside its output)."""
        lines = [
            f"name = {_toml_str(self.name)}",
            f"description = {_toml_str(self.description)}",
            f"seed = {self.seed}",
        ]
        for sec in ("grid", "microstructure", "electrochemistry", "acquisition"):
            lines.append(f"\n[{sec}]")
            for f in fields(getattr(self, sec)):
                lines.append(f"{f.name} = {_toml_value(getattr(getattr(self, sec), f.name))}")
        return "\n".join(lines) + "\n"


_TOML_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_str(s: str) -> str:
    """A TOML basic string holding ``s`` exactly (quotes, backslashes, control characters)."""
    out = []
    for ch in s:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


_SECTIONS = {
    "grid": GridSpec,
    "microstructure": MicrostructureSpec,
    "electrochemistry": ElectrochemistrySpec,
    "acquisition": AcquisitionSpec,
}


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(table) - set(known)
    if unknown:
        raise XtwinInputError(
            f"{where}: unknown key(s) {sorted(unknown)}; known keys are {sorted(known)}"
        )
    kwargs = {}
    defaults = cls()
    for key, val in table.items():
        default = getattr(defaults, key)
        try:
            if isinstance(default, tuple):
                if not isinstance(val, list):
                    raise TypeError
                kind = type(default[0]) if default else float
                if kind is str:
                    if not all(isinstance(x, str) for x in val):
                        raise TypeError
                    val = tuple(val)
                else:
                    val = tuple(float(x) for x in val)
            elif isinstance(default, bool):
                if not isinstance(val, bool):
                    raise TypeError
            elif isinstance(default, int):
                if isinstance(val, bool) or not isinstance(val, int):
                    raise TypeError
            elif isinstance(default, float):
                if isinstance(val, bool) or not isinstance(val, int | float):
                    raise TypeError
                val = float(val)
            elif isinstance(default, str) and not isinstance(val, str):
                raise TypeError
        except (TypeError, ValueError):
            raise XtwinInputError(
                f"{where}.{key} = {val!r} has the wrong type; expected "
                f"{type(default).__name__} like {default!r}"
            ) from None
        kwargs[key] = val
    return cls(**kwargs)


def scenario_from_dict(doc: dict[str, Any], where: str = "scenario") -> Scenario:
    """Build and validate a :class:`Scenario` from a parsed TOML document."""
    top = {k: v for k, v in doc.items() if k not in _SECTIONS}
    unknown = set(top) - {"name", "description", "seed"}
    if unknown:
        raise XtwinInputError(
            f"{where}: unknown key(s) {sorted(unknown)}; known top-level keys "
            f"are name, description, seed and the sections {sorted(_SECTIONS)}"
        )
    parts = {}
    for sec, cls in _SECTIONS.items():
        table = doc.get(sec, {})
        if not isinstance(table, dict):
            raise XtwinInputError(f"{where}: [{sec}] must be a table")
        parts[sec] = _build(cls, table, f"{where} [{sec}]")
    seed = top.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise XtwinInputError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    sc = Scenario(
        name=str(top.get("name", "scenario")),
        description=str(top.get("description", "")),
        seed=seed,
        **parts,
    )
    validate_scenario(sc, where)
    return sc


def validate_scenario(sc: Scenario, where: str = "scenario") -> None:
    """Check physical ranges; raise an error that names the key and the fix."""
    g, m, e, a = sc.grid, sc.microstructure, sc.electrochemistry, sc.acquisition
    checks = [
        (16 <= g.n_pixels <= 2048, "grid.n_pixels must be within 16-2048"),
        (1 <= g.n_rows <= 2048, "grid.n_rows must be within 1-2048"),
        (1e-9 <= g.pixel_size_m <= 1e-4, "grid.pixel_size_m must be within 1 nm-100 um (metres)"),
        (1 <= g.oversample <= 4, "grid.oversample must be 1-4 (2 avoids the inverse crime)"),
        (g.projector in ("strip", "fourier"), "grid.projector must be strip or fourier"),
        (
            0.3 <= g.field_of_view_fraction <= 1.0,
            "grid.field_of_view_fraction must be within 0.3-1 (1: the sample fits the detector)",
        ),
        (m.sample in ("pillar", "box"), "microstructure.sample must be pillar or box"),
        (
            0.2 <= m.pillar_diameter_fraction <= 0.95,
            "microstructure.pillar_diameter_fraction must be within 0.2-0.95 (the pillar must stay "
            "inside the field of view)",
        ),
        (0 < m.active_fraction <= 0.65, "microstructure.active_fraction must be within 0-0.65"),
        (0 <= m.cbd_fraction < 0.5, "microstructure.cbd_fraction must be within 0-0.5"),
        (
            m.pore_fraction >= 0.1,
            "microstructure.active_fraction + cbd_fraction must leave at least 0.1 for pores",
        ),
        (
            0 < m.min_particle_diameter_m <= m.particle_d50_m,
            "microstructure.min_particle_diameter_m must be positive and below particle_d50_m",
        ),
        (
            m.particle_d50_m >= 4 * g.pixel_size_m,
            "microstructure.particle_d50_m must span at least 4 pixels",
        ),
        (0 <= m.max_overlap <= 0.4, "microstructure.max_overlap must be within 0-0.4"),
        (0 <= m.internal_porosity <= 0.3, "microstructure.internal_porosity must be within 0-0.3"),
        (
            0 <= m.internal_connected_fraction <= 1,
            "microstructure.internal_connected_fraction must be within 0-1",
        ),
        (0 <= m.cbd_surface_coverage < 1, "microstructure.cbd_surface_coverage must be within 0-1"),
        (
            0 <= m.depth_offset_m
            and m.depth_offset_m + g.n_rows * g.pixel_size_m <= m.electrode_thickness_m * 1.0001,
            "the imaged window (depth_offset_m + n_rows * pixel_size_m) must lie inside "
            "electrode_thickness_m",
        ),
        (len(e.protocol) >= 1, "electrochemistry.protocol needs at least one PyBaMM step"),
        (
            len(e.snapshot_times_s) >= 1 and all(t >= 0 for t in e.snapshot_times_s),
            "electrochemistry.snapshot_times_s needs one or more times >= 0 (seconds)",
        ),
        (
            list(e.snapshot_times_s) == sorted(e.snapshot_times_s),
            "electrochemistry.snapshot_times_s must be in increasing order",
        ),
        (0 <= e.initial_soc <= 1, "electrochemistry.initial_soc must be within 0-1"),
        (0 <= e.activity_spread <= 1, "electrochemistry.activity_spread must be within 0-1"),
        (0 <= e.hotspot_strength <= 1, "electrochemistry.hotspot_strength must be within 0-1"),
        (e.hotspot_length_m > 0, "electrochemistry.hotspot_length_m must be positive"),
        (
            0 <= e.activity_region_strength <= 2,
            "electrochemistry.activity_region_strength must be within 0-2",
        ),
        (
            e.activity_region_length_m > 0,
            "electrochemistry.activity_region_length_m must be positive",
        ),
        (0 <= e.volume_change < 0.2, "electrochemistry.volume_change must be within 0-0.2"),
        (
            e.ni_chemistry in ("two-state", "three-state"),
            "electrochemistry.ni_chemistry must be two-state or three-state",
        ),
        (
            e.end_members in ("parametric", "measured-nmc622"),
            "electrochemistry.end_members must be parametric or measured-nmc622",
        ),
        (len(a.energies_eV) >= 3, "acquisition.energies_eV needs at least three energies"),
        (
            all(1000 < x < 100000 for x in a.energies_eV),
            "acquisition.energies_eV must be in eV (e.g. 8347, not 8.347)",
        ),
        (8 <= a.n_angles <= 4000, "acquisition.n_angles must be within 8-4000"),
        (
            1 <= a.photons_per_pixel <= 6e4,
            "acquisition.photons_per_pixel must be within 1-60000 (uint16 detector)",
        ),
        (
            not a.photon_split
            or (len(a.photon_split) == len(a.energies_eV) and min(a.photon_split) > 0),
            "acquisition.photon_split needs one positive weight per energy (or leave it out)",
        ),
        (
            max(photons_per_energy(a)) <= 6e4,
            "acquisition.photons_per_pixel x photon_split exceeds 60000 at some energy (uint16 "
            "detector); lower photons_per_pixel",
        ),
        (a.n_flats >= 1, "acquisition.n_flats must be at least 1"),
        (a.n_darks >= 0, "acquisition.n_darks must be >= 0"),
        (0 <= a.bandwidth_rel < 1e-2, "acquisition.bandwidth_rel (dE/E) must be within 0-0.01"),
        (
            0 <= a.standards_bandwidth_rel < 1e-2,
            "acquisition.standards_bandwidth_rel must be within 0-0.01 (0: the scan's)",
        ),
        (
            0 <= a.runout_px < g.n_pixels / 8 and 0 <= a.jitter_px < g.n_pixels / 8,
            "acquisition.runout_px and jitter_px must be >= 0 and below an eighth of the detector",
        ),
        (
            len(a.sample_motion_px) == 3
            and all(abs(v) < g.n_pixels / 8 for v in a.sample_motion_px)
            and abs(a.sample_rotation_deg) <= 5,
            "acquisition.sample_motion_px needs three shifts (z, y, x) below an eighth of the "
            "detector, and sample_rotation_deg must be within -5 to 5 degrees per time point",
        ),
        (
            0 <= a.ring_strength < 0.2 and 0 <= a.dead_pixel_fraction < 0.05,
            "acquisition.ring_strength must be within 0-0.2 and dead_pixel_fraction within 0-0.05",
        ),
        (
            0 <= a.window_kapton_um <= 500 and 0 <= a.electrolyte_layer_um <= 500,
            "acquisition.window_kapton_um and electrolyte_layer_um must be within 0-500 um",
        ),
        (abs(a.flat_drift) < 0.5, "acquisition.flat_drift must be within -0.5 to 0.5"),
        (
            0 < a.standards_thickness_um <= 100
            and 0 <= a.standards_background_mg_cm2 <= 500
            and 0 <= a.standards_tape_um <= 500
            and 0 <= a.standards_leakage < 0.2,
            "acquisition.standards_thickness_um must be within 0-100, "
            "standards_background_mg_cm2 0-500, standards_tape_um 0-500, standards_leakage 0-0.2",
        ),
        (
            abs(a.defocus_um) <= 1000,
            "acquisition.defocus_um must be within +-1000 um (a TXM depth of field is tens of um)",
        ),
        (
            abs(a.magnification_per_eV) < 1e-3,
            "acquisition.magnification_per_eV must be below 1e-3 per eV (0.1 %/eV)",
        ),
        (
            abs(a.standards_offset_from_scan_eV) <= 20,
            "acquisition.standards_offset_from_scan_eV must be within +-20 eV",
        ),
        (a.detector_blur_px >= 0, "acquisition.detector_blur_px must be >= 0"),
        (
            len(a.quick_xanes_energies_eV) in (0,) or len(a.quick_xanes_energies_eV) >= 8,
            "acquisition.quick_xanes_energies_eV needs 8 or more energies across the edge (or "
            "none)",
        ),
        (
            not a.calibration_series_lithiation
            or (
                len(set(a.calibration_series_lithiation))
                == len(a.calibration_series_lithiation)
                >= 3
                and all(0 <= w <= 1 for w in a.calibration_series_lithiation)
            ),
            "acquisition.calibration_series_lithiation needs three or more distinct values in "
            "[0, 1] (or none)",
        ),
        (a.exposure_s >= 0, "acquisition.exposure_s must be >= 0 (seconds per projection)"),
        (
            0 <= a.energy_drift_px < g.n_pixels / 8,
            "acquisition.energy_drift_px must be >= 0 and below an eighth of the detector",
        ),
        (
            abs(a.rotation_axis_offset_px) < g.n_pixels / 4,
            "acquisition.rotation_axis_offset_px must stay within a quarter of the detector",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise XtwinInputError(f"{where}: {msg}")


def photons_per_energy(a: AcquisitionSpec) -> tuple[float, ...]:
    """Flat-field photons per pixel per projection at each energy."""
    n = len(a.energies_eV)
    if not a.photon_split or len(a.photon_split) != n:
        return (a.photons_per_pixel,) * n
    mean = sum(a.photon_split) / n
    return tuple(a.photons_per_pixel * w / mean for w in a.photon_split)


def load_scenario(path: str | os.PathLike) -> Scenario:
    """Read a scenario TOML file.

    Raises
    ------
    XtwinInputError
        Missing file, TOML syntax error, unknown key, wrong type or unphysical value.
    """
    path = Path(path)
    if not path.is_file():
        raise XtwinInputError(f"scenario {path} does not exist; see synthetic/ for examples")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise XtwinInputError(
            f"scenario {path} is not valid TOML ({exc}); fix the syntax or "
            "start from synthetic/default.toml"
        ) from None
    return scenario_from_dict(doc, str(path))


def default_scenario() -> Scenario:
    """The demo's scenario (the packaged copy of ``synthetic/default.toml``)."""
    from importlib.resources import files

    text = files("xtwin").joinpath("data/default.toml").read_text()
    return scenario_from_dict(tomllib.loads(text), "default scenario")
