"""The scan file: what a beamline converter (or ``xtwin simulate``) writes, in Data Exchange.

Layout (see ``docs/file-formats.md``)::

    /exchange/data        (n_energy, n_angle, n_row, n_col) uint16 counts or float32
                          or (n_angle, n_row, n_col) for one energy per file
    /exchange/data_white  flats, (n_energy, n_flat, n_row, n_col) or (n_flat, n_row, n_col)
    /exchange/data_dark   darks, (n_dark, n_row, n_col)
    /exchange/theta       angles in degrees (absent for 2D XANES with one angle)
    /measurement/instrument/monochromator/energy   with attribute units = eV | keV
    /measurement/instrument/detector/pixel_size    with attribute units = m | mm | um | nm
    /process/acquisition/start_date    optional ISO 8601 start of the acquisition
    /provenance           free-form attributes
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io._h5 import attrs_dict, open_h5, read_guarded, write_h5

ENERGY_PATH = "/measurement/instrument/monochromator/energy"
PIXEL_PATH = "/measurement/instrument/detector/pixel_size"
GAIN_PATH = "/measurement/instrument/detector/counts_per_photon"
EXPOSURE_PATH = "/measurement/instrument/detector/exposure_time"
FLAT_EXPOSURE_PATH = "/measurement/instrument/detector/exposure_time_white"
SHIFTS_PATH = "/measurement/instrument/alignment/projection_shifts_px"
START_PATH = "/process/acquisition/start_date"

_LENGTH_UNITS = {
    "m": 1.0,
    "mm": 1e-3,
    "um": 1e-6,
    "µm": 1e-6,
    "micron": 1e-6,
    "microns": 1e-6,
    "nm": 1e-9,
}
_ENERGY_UNITS = {"ev": 1.0, "kev": 1000.0}

#: Pixel size assumed when a file does not give one (only scales mu; lithiation is a ratio).
ASSUMED_PIXEL_SIZE_M = 1e-6


@dataclass(frozen=True)
class ScanData:
    """One multi-energy acquisition at one time point.

    Attributes
    ----------
    data : ndarray, shape (n_energy, n_angle, n_row, n_col)
        Projections, counts (integer) or float.
    flats : ndarray, shape (n_energy, n_flat, n_row, n_col) or None
        Flat fields (sample out of the beam).
    darks : ndarray, shape (n_dark, n_row, n_col) or None
        Dark fields (beam off).
    theta_deg : ndarray, shape (n_angle,)
        Rotation angles in degrees.
    energy_eV : ndarray, shape (n_energy,)
        Nominal monochromator energies.
    pixel_size_m : float
        Pixel size at the sample.
    counts_per_photon : float
        Detector gain; Poisson statistics apply to ``counts / counts_per_photon``.
    exposure_s, flat_exposure_s : ndarray (n_energy,) or None
        Exposure time of each projection and of each flat frame, per energy; when both are
        given the flats are scaled by their ratio (Xradia references are often shorter).
    metadata : dict
        Sample and time metadata (``sample``, ``time_s``, ...).
    provenance : dict
        Free-form provenance.
    notes : tuple of str
        Assumptions the reader had to make (missing units, missing pixel size, ...).
    pixel_size_assumed : bool
        The file recorded no pixel size (``pixel_size_m`` is :data:`ASSUMED_PIXEL_SIZE_M`).
    projection_shifts_px : ndarray (n_energy, n_angle, 2) or None
        Alignment shifts (rows, cols; px) that the acquisition software recorded for each
        projection (Xradia ``Alignment/Y-Shifts``, ``X-Shifts``): the shift that aligns it.

    A scan with one energy may leave it unknown (``energy_eV = [nan]``): it is reconstructed
    as attenuation only.
    """

    data: np.ndarray
    flats: np.ndarray | None
    darks: np.ndarray | None
    theta_deg: np.ndarray
    energy_eV: np.ndarray
    pixel_size_m: float
    counts_per_photon: float = 1.0
    exposure_s: np.ndarray | None = None
    flat_exposure_s: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    pixel_size_assumed: bool = False
    projection_shifts_px: np.ndarray | None = None

    def __post_init__(self) -> None:
        validate_scan(self)

    @property
    def is_tomography(self) -> bool:
        """True when there are several rotation angles (False for 2D XANES)."""
        return self.data.shape[1] > 1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n_energy, n_angle, n_row, n_col)."""
        return tuple(self.data.shape)  # type: ignore[return-value]


def validate_scan(scan: ScanData, source: str = "scan") -> None:
    """Check shapes, finiteness and units; raise :class:`XtwinInputError` naming the problem."""
    d = scan.data
    if d.ndim != 4:
        raise XtwinInputError(
            f"{source}: projections must be (n_energy, n_angle, n_row, n_col), got shape {d.shape}"
        )
    n_e, n_a, n_r, n_c = d.shape
    if min(d.shape) < 1 or n_r < 1 or n_c < 2:
        raise XtwinInputError(f"{source}: projections have an empty axis: shape {d.shape}")
    if d.dtype.kind == "f" and not np.all(np.isfinite(d)):
        bad = int(np.count_nonzero(~np.isfinite(d)))
        raise XtwinInputError(
            f"{source}: {bad} projection values are NaN or infinite; "
            "remove or interpolate bad frames before processing"
        )
    if d.dtype.kind not in "fiu":
        raise XtwinInputError(
            f"{source}: projections have dtype {d.dtype}; expected integer counts or float"
        )
    if np.any(d < 0):
        raise XtwinInputError(
            f"{source}: projections contain negative values; give raw counts "
            "or transmission, not -log data"
        )
    if scan.flats is not None:
        if scan.flats.ndim != 4 or scan.flats.shape[0] != n_e or scan.flats.shape[2:] != (n_r, n_c):
            raise XtwinInputError(
                f"{source}: flats have shape {scan.flats.shape}; expected "
                f"({n_e}, n_flat, {n_r}, {n_c})"
            )
        if not np.all(np.isfinite(scan.flats)):
            raise XtwinInputError(f"{source}: flat fields contain NaN or infinite values")
    if scan.darks is not None:
        if scan.darks.ndim != 3 or scan.darks.shape[1:] != (n_r, n_c):
            raise XtwinInputError(
                f"{source}: darks have shape {scan.darks.shape}; expected (n_dark, {n_r}, {n_c})"
            )
    if scan.theta_deg.shape != (n_a,):
        raise XtwinInputError(
            f"{source}: theta has {scan.theta_deg.shape} values for {n_a} "
            "projection angles; give one angle (degrees) per projection"
        )
    unknown = n_e == 1 and scan.energy_eV.shape == (1,) and np.isnan(scan.energy_eV[0])
    if scan.energy_eV.shape != (n_e,) or not (unknown or np.all(np.isfinite(scan.energy_eV))):
        raise XtwinInputError(
            f"{source}: {scan.energy_eV.shape} energies for {n_e} energy "
            "stacks; give one finite energy per stack"
        )
    if len(np.unique(scan.energy_eV)) != n_e:
        raise XtwinInputError(
            f"{source}: energies repeat ({scan.energy_eV}); give distinct energies"
        )
    for name in ("exposure_s", "flat_exposure_s"):
        val = getattr(scan, name)
        if val is not None and (np.shape(val) != (n_e,) or not np.all(np.asarray(val) > 0)):
            raise XtwinInputError(
                f"{source}: {name} must hold one positive time per energy, got {val}"
            )
    if not (np.isfinite(scan.pixel_size_m) and 1e-10 < scan.pixel_size_m < 1e-2):
        raise XtwinInputError(
            f"{source}: pixel size {scan.pixel_size_m} m is not plausible; "
            "check its units attribute"
        )
    sh = scan.projection_shifts_px
    if sh is not None and (np.shape(sh) != (n_e, n_a, 2) or not np.all(np.isfinite(sh))):
        raise XtwinInputError(
            f"{source}: projection shifts have shape {np.shape(sh)}; expected finite "
            f"({n_e}, {n_a}, 2) (rows, cols per projection)"
        )


def _length_m(value: float, units: str | None, what: str) -> float:
    if units is None:
        return float(value)
    key = units.strip().lower()
    if key not in _LENGTH_UNITS:
        raise XtwinInputError(f"{what}: unknown length unit {units!r}; use m, mm, um or nm")
    return float(value) * _LENGTH_UNITS[key]


def _unit_attr(ds) -> str | None:
    u = ds.attrs.get("units", ds.attrs.get("unit"))
    if isinstance(u, bytes):
        u = u.decode()
    if isinstance(u, np.ndarray):
        u = u.item() if u.size == 1 else None
        if isinstance(u, bytes):
            u = u.decode()
    return u


@dataclass(frozen=True)
class ScanHeader:
    """Everything about a scan but its pixel values.

    Attributes
    ----------
    shape : tuple of int
        ``(n_energy, n_angle, n_row, n_col)``.
    dtype : numpy.dtype
        Projection dtype (integer counts or float transmission).
    theta_deg, energy_eV : ndarray
        Angles (degrees) and energies (eV, ascending).
    pixel_size_m : float
        Pixel size at the sample.
    counts_per_photon : float
        Detector gain.
    exposure_s, flat_exposure_s : ndarray or None
        Per-energy exposure of projections and flats.
    n_flat, n_dark : int
        Flat frames per energy and dark frames (0 when absent).
    metadata, provenance : dict
        From the file.
    notes : tuple of str
        Assumptions the reader made.
    paths : tuple of str
        Files read (empty for in-memory data).
    pixel_size_assumed : bool
        The file recorded no pixel size.
    projection_shifts_px : ndarray or None
        Recorded per-projection alignment shifts (n_energy, n_angle, 2), energies ascending.
    """

    shape: tuple[int, int, int, int]
    dtype: np.dtype
    theta_deg: np.ndarray
    energy_eV: np.ndarray
    pixel_size_m: float
    counts_per_photon: float = 1.0
    exposure_s: np.ndarray | None = None
    flat_exposure_s: np.ndarray | None = None
    n_flat: int = 0
    n_dark: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    pixel_size_assumed: bool = False
    projection_shifts_px: np.ndarray | None = None

    @property
    def energy_known(self) -> bool:
        """False for a single-energy scan whose energy was not recorded."""
        return bool(np.all(np.isfinite(self.energy_eV)))

    @property
    def is_tomography(self) -> bool:
        """True when there are several rotation angles (False for 2D XANES)."""
        return self.shape[1] > 1

    @property
    def is_counts(self) -> bool:
        """True for integer detector counts."""
        return np.dtype(self.dtype).kind in "iu"

    @property
    def nbytes(self) -> int:
        """Size of the projections in memory."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class ScanPart:
    """Where one energy's pixels live: an HDF5 file (or arrays) and an index in it."""

    path: str | None
    index: int | None  # energy index in 4D data, None for 3D data
    flat_index: int | None  # energy index in 4D flats, None for 3D flats


def read_header(path: str | os.PathLike):
    """Read and validate the header of one scan file (no pixel data).

    Returns
    -------
    (ScanHeader, list of ScanPart)
        The header and where each energy's pixels are.

    Raises
    ------
    XtwinInputError
        Missing file, not HDF5, damaged file, missing dataset, wrong shape, bad units.
    """
    path = Path(path)

    def parse(p: Path):
        with open_h5(p, "scan file") as f:
            return _parse_header(f, p)

    return read_guarded(
        path,
        "scan file",
        parse,
        "it is damaged or not a Data Exchange scan file: copy it again from the original or "
        "check docs/file-formats.md",
    )


def _parse_header(f, path: Path):
    notes: list[str] = []
    if "/exchange/data" not in f:
        raise XtwinInputError(
            f"scan file {path} has no dataset /exchange/data; "
            "see docs/file-formats.md for the layout it must follow"
        )
    ds = f["/exchange/data"]
    if ds.ndim not in (3, 4):
        raise XtwinInputError(
            f"scan file {path}: /exchange/data has shape {ds.shape} "
            f"({ds.ndim}-D); expected 3 or 4 dimensions"
        )
    if ds.dtype.kind not in "fiu":
        raise XtwinInputError(
            f"scan file {path}: projections have dtype {ds.dtype}; expected integer counts or float"
        )
    one_energy = ds.ndim == 3
    shape = ((1,) + ds.shape) if one_energy else tuple(ds.shape)
    n_e, n_a, n_r, n_c = shape
    if min(shape) < 1 or n_c < 2:
        raise XtwinInputError(f"scan file {path}: projections have an empty axis: shape {shape}")
    n_flat = 0
    flat_4d = False
    if "/exchange/data_white" in f:
        fl = f["/exchange/data_white"]
        flat_4d = fl.ndim == 4
        ok = (fl.ndim == 3 and fl.shape[1:] == (n_r, n_c)) or (
            fl.ndim == 4 and fl.shape[0] == n_e and fl.shape[2:] == (n_r, n_c)
        )
        if not ok or fl.shape[-3] < 1:
            raise XtwinInputError(
                f"scan file {path}: flats have shape {fl.shape}; expected "
                f"({n_e}, n_flat, {n_r}, {n_c}) or (n_flat, {n_r}, {n_c})"
            )
        n_flat = fl.shape[-3]
    n_dark = 0
    if "/exchange/data_dark" in f:
        dk = f["/exchange/data_dark"]
        if dk.ndim not in (3, 4) or dk.shape[-2:] != (n_r, n_c):
            raise XtwinInputError(
                f"scan file {path}: darks have shape {dk.shape}; expected (n_dark, {n_r}, {n_c})"
            )
        n_dark = int(np.prod(dk.shape[:-2]))
    if "/exchange/theta" in f:
        theta = np.asarray(f["/exchange/theta"][()], dtype=float).ravel()
        if _unit_attr(f["/exchange/theta"]) in ("rad", "radian", "radians"):
            theta = np.degrees(theta)
    elif n_a == 1:
        theta = np.zeros(1)
    else:
        raise XtwinInputError(
            f"scan file {path} has {n_a} projections but no "
            "/exchange/theta; add the rotation angles in degrees"
        )
    if theta.shape != (n_a,) or not np.all(np.isfinite(theta)):
        raise XtwinInputError(
            f"scan file {path}: theta has {theta.shape} values for {n_a} "
            "projection angles; give one finite angle (degrees) per "
            "projection"
        )
    if ENERGY_PATH not in f and n_e == 1:
        energy = np.full(1, np.nan)
        notes.append(
            f"no {ENERGY_PATH}: a single-energy scan of unknown energy, reconstructed as "
            "attenuation only (no lithiation)"
        )
    elif ENERGY_PATH not in f:
        raise XtwinInputError(
            f"scan file {path} has {n_e} energy stacks but no dataset {ENERGY_PATH}; add the "
            "monochromator energies (attribute units = eV or keV), one per stack"
        )
    else:
        energy = _read_energies(f[ENERGY_PATH], n_e, path, notes)
    assumed = False
    if PIXEL_PATH in f:
        p_ds = f[PIXEL_PATH]
        p_units = _unit_attr(p_ds)
        pixel = _length_m(np.ravel(p_ds[()])[0], p_units, f"scan file {path}")
        if p_units is None:
            notes.append("pixel_size has no units attribute; assumed metres")
    else:
        pixel, assumed = ASSUMED_PIXEL_SIZE_M, True
        notes.append(
            f"no {PIXEL_PATH}: mu is given in 1/pixel"
            if n_e == 1
            else f"no {PIXEL_PATH}; assumed {pixel:g} m (scales mu only; lithiation is unaffected)"
        )
    if not (np.isfinite(pixel) and 1e-10 < pixel < 1e-2):
        raise XtwinInputError(
            f"scan file {path}: pixel size {pixel} m is not plausible; check its units attribute"
        )
    gain = float(np.ravel(f[GAIN_PATH][()])[0]) if GAIN_PATH in f else 1.0
    if not (np.isfinite(gain) and gain > 0):
        raise XtwinInputError(f"scan file {path}: counts per photon {gain} must be positive")
    exposure: list[np.ndarray | None] = []
    for pth in (EXPOSURE_PATH, FLAT_EXPOSURE_PATH):
        if pth not in f:
            exposure.append(None)
            continue
        val = np.asarray(f[pth][()], dtype=float).ravel()
        if val.size not in (1, n_e) or not np.all(val > 0):
            raise XtwinInputError(
                f"scan file {path}: {pth} must hold one positive time per energy, got {val}"
            )
        exposure.append(np.broadcast_to(val, (n_e,)).copy())
    meta = attrs_dict(f["/measurement/sample"]) if "/measurement/sample" in f else {}
    if START_PATH in f and "start_date" not in meta:  # Data Exchange: ISO 8601
        raw = f[START_PATH][()]
        raw = raw.item() if isinstance(raw, np.ndarray) and raw.size == 1 else raw
        meta["start_date"] = raw.decode() if isinstance(raw, bytes) else str(raw)
    prov = attrs_dict(f["/provenance"]) if "/provenance" in f else {}
    order = np.argsort(energy)
    shifts = None
    if SHIFTS_PATH in f:
        shifts = np.asarray(f[SHIFTS_PATH][()], dtype=float).reshape(-1, n_a, 2)
        if shifts.shape != (n_e, n_a, 2) or not np.all(np.isfinite(shifts)):
            raise XtwinInputError(
                f"scan file {path}: {SHIFTS_PATH} has shape {shifts.shape}; expected finite "
                f"({n_e}, {n_a}, 2)"
            )
        shifts = shifts[order]
    header = ScanHeader(
        shape=shape,
        dtype=ds.dtype,
        theta_deg=theta,
        energy_eV=energy[order],
        pixel_size_m=pixel,
        counts_per_photon=gain,
        exposure_s=None if exposure[0] is None else exposure[0][order],
        flat_exposure_s=None if exposure[1] is None else exposure[1][order],
        n_flat=n_flat,
        n_dark=n_dark,
        metadata=meta,
        provenance=prov,
        notes=tuple(notes),
        paths=(str(path),),
        pixel_size_assumed=assumed,
        projection_shifts_px=shifts,
    )
    parts = [
        ScanPart(str(path), None if one_energy else int(e), (int(e) if flat_4d else None))
        for e in order
    ]
    return header, parts


def _read_energies(e_ds, n_e: int, path: Path, notes: list[str]) -> np.ndarray:
    """The monochromator energies in eV, one per stack, distinct.

    Raises
    ------
    XtwinInputError
        Unknown unit, wrong count, non-finite or repeated values.
    """
    energy = np.atleast_1d(np.asarray(e_ds[()], dtype=float)).ravel()
    e_units = _unit_attr(e_ds)
    if e_units is None:
        key = "kev" if energy.size and np.nanmax(energy) < 100 else "ev"
        unit = "keV" if key == "kev" else "eV"
        notes.append(f"energy has no units attribute; assumed {unit}")
    else:
        key = e_units.strip().lower()
        if key not in _ENERGY_UNITS:
            raise XtwinInputError(
                f"scan file {path}: unknown energy unit {e_units!r}; use eV or keV"
            )
    energy = energy * _ENERGY_UNITS[key]
    if energy.shape != (n_e,) or not np.all(np.isfinite(energy)):
        raise XtwinInputError(
            f"scan file {path}: {energy.shape} energies for {n_e} energy "
            "stacks; give one finite energy per stack"
        )
    if len(np.unique(energy)) != n_e:
        raise XtwinInputError(
            f"scan file {path}: energies repeat ({energy}); give distinct energies"
        )
    return energy


def write_scan(path: str | os.PathLike, scan: ScanData) -> None:
    """Write ``scan`` to ``path`` in the Data Exchange layout (atomically, deterministically)."""
    datasets: dict[str, Any] = {
        "/exchange/data": scan.data,
        "/exchange/theta": scan.theta_deg.astype(np.float64),
        GAIN_PATH: np.float64(scan.counts_per_photon),
    }
    if np.all(np.isfinite(scan.energy_eV)):  # a single energy may be unknown: none written
        datasets[ENERGY_PATH] = scan.energy_eV.astype(np.float64)
    if not scan.pixel_size_assumed:
        datasets[PIXEL_PATH] = np.float64(scan.pixel_size_m)
    if scan.projection_shifts_px is not None:
        datasets[SHIFTS_PATH] = np.asarray(scan.projection_shifts_px, dtype=np.float64)
    if scan.metadata.get("start_date"):
        datasets[START_PATH] = np.bytes_(str(scan.metadata["start_date"]))
    if scan.flats is not None:
        datasets["/exchange/data_white"] = scan.flats
    if scan.darks is not None:
        datasets["/exchange/data_dark"] = scan.darks
    if scan.exposure_s is not None:
        datasets[EXPOSURE_PATH] = np.asarray(scan.exposure_s, dtype=np.float64)
    if scan.flat_exposure_s is not None:
        datasets[FLAT_EXPOSURE_PATH] = np.asarray(scan.flat_exposure_s, dtype=np.float64)
    attrs = {
        "/exchange/theta": {"units": "degrees"},
        **({ENERGY_PATH: {"units": "eV"}} if ENERGY_PATH in datasets else {}),
        **({PIXEL_PATH: {"units": "m"}} if PIXEL_PATH in datasets else {}),
        **(
            {SHIFTS_PATH: {"units": "pixels", "axes": "energy:angle:(rows, cols)"}}
            if SHIFTS_PATH in datasets
            else {}
        ),
        **({EXPOSURE_PATH: {"units": "s"}} if scan.exposure_s is not None else {}),
        **({FLAT_EXPOSURE_PATH: {"units": "s"}} if scan.flat_exposure_s is not None else {}),
        "/measurement/sample": dict(scan.metadata),
        "/provenance": dict(scan.provenance),
        "/": {"implements": "exchange:measurement:provenance", "writer": "xtwin"},
    }
    write_h5(path, datasets, attrs)
