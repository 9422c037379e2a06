"""The scan file: what a beamline converter (or ``xtwin simulate``) writes, in Data Exchange.

Layout (see ``docs/file-formats.md``)::

    /exchange/data        (n_energy, n_angle, n_row, n_col) uint16 counts or float32
                          or (n_angle, n_row, n_col) for one energy per file
    /exchange/data_white  flats, (n_energy, n_flat, n_row, n_col) or (n_flat, n_row, n_col)
    /exchange/data_dark   darks, (n_dark, n_row, n_col)
    /exchange/theta       angles in degrees (absent for 2D XANES with one angle)
    /measurement/instrument/monochromator/energy   with attribute units = eV | keV
    /measurement/instrument/detector/pixel_size    with attribute units = m | mm | um | nm
    /provenance           free-form attributes
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io._h5 import attrs_dict, open_h5, require, write_h5

ENERGY_PATH = "/measurement/instrument/monochromator/energy"
PIXEL_PATH = "/measurement/instrument/detector/pixel_size"
GAIN_PATH = "/measurement/instrument/detector/counts_per_photon"
EXPOSURE_PATH = "/measurement/instrument/detector/exposure_time"
FLAT_EXPOSURE_PATH = "/measurement/instrument/detector/exposure_time_white"

_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "microns": 1e-6,
                 "nm": 1e-9}
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
        raise XtwinInputError(f"{source}: projections must be (n_energy, n_angle, n_row, n_col), "
                              f"got shape {d.shape}")
    n_e, n_a, n_r, n_c = d.shape
    if min(d.shape) < 1 or n_r < 1 or n_c < 2:
        raise XtwinInputError(f"{source}: projections have an empty axis: shape {d.shape}")
    if d.dtype.kind == "f" and not np.all(np.isfinite(d)):
        bad = int(np.count_nonzero(~np.isfinite(d)))
        raise XtwinInputError(f"{source}: {bad} projection values are NaN or infinite; "
                              "remove or interpolate bad frames before processing")
    if d.dtype.kind not in "fiu":
        raise XtwinInputError(f"{source}: projections have dtype {d.dtype}; expected integer "
                              "counts or float")
    if np.any(d < 0):
        raise XtwinInputError(f"{source}: projections contain negative values; give raw counts "
                              "or transmission, not -log data")
    if scan.flats is not None:
        if scan.flats.ndim != 4 or scan.flats.shape[0] != n_e or scan.flats.shape[2:] != (n_r, n_c):
            raise XtwinInputError(f"{source}: flats have shape {scan.flats.shape}; expected "
                                  f"({n_e}, n_flat, {n_r}, {n_c})")
        if not np.all(np.isfinite(scan.flats)):
            raise XtwinInputError(f"{source}: flat fields contain NaN or infinite values")
    if scan.darks is not None:
        if scan.darks.ndim != 3 or scan.darks.shape[1:] != (n_r, n_c):
            raise XtwinInputError(f"{source}: darks have shape {scan.darks.shape}; expected "
                                  f"(n_dark, {n_r}, {n_c})")
    if scan.theta_deg.shape != (n_a,):
        raise XtwinInputError(f"{source}: theta has {scan.theta_deg.shape} values for {n_a} "
                              "projection angles; give one angle (degrees) per projection")
    if scan.energy_eV.shape != (n_e,) or not np.all(np.isfinite(scan.energy_eV)):
        raise XtwinInputError(f"{source}: {scan.energy_eV.shape} energies for {n_e} energy "
                              "stacks; give one finite energy per stack")
    if len(np.unique(scan.energy_eV)) != n_e:
        raise XtwinInputError(f"{source}: energies repeat ({scan.energy_eV}); give distinct "
                              "energies")
    for name in ("exposure_s", "flat_exposure_s"):
        val = getattr(scan, name)
        if val is not None and (np.shape(val) != (n_e,) or not np.all(np.asarray(val) > 0)):
            raise XtwinInputError(f"{source}: {name} must hold one positive time per energy, "
                                  f"got {val}")
    if not (np.isfinite(scan.pixel_size_m) and 1e-10 < scan.pixel_size_m < 1e-2):
        raise XtwinInputError(f"{source}: pixel size {scan.pixel_size_m} m is not plausible; "
                              "check its units attribute")


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


def read_scan(path: str | os.PathLike) -> ScanData:
    """Read and validate one scan file (Data Exchange layout).

    Files with 3D ``/exchange/data`` hold one energy. A file with one projection and no
    ``/exchange/theta`` is a 2D XANES image (theta = [0]).

    Raises
    ------
    XtwinInputError
        Missing file, not HDF5, missing dataset, wrong shape, NaN projections, bad units.
    """
    path = Path(path)
    notes: list[str] = []
    with open_h5(path, "scan file") as f:
        data = require(f, "/exchange/data", what="scan file", ndim=(3, 4))
        one_energy = data.ndim == 3
        if one_energy:
            data = data[None]
        flats = darks = None
        if "/exchange/data_white" in f:
            flats = f["/exchange/data_white"][()]
            if flats.ndim == 3:
                flats = flats[None] if one_energy else np.broadcast_to(
                    flats, (data.shape[0],) + flats.shape).copy()
        if "/exchange/data_dark" in f:
            darks = f["/exchange/data_dark"][()]
            if darks.ndim == 4:
                darks = darks.reshape((-1,) + darks.shape[2:])
            if darks.ndim == 2:
                darks = darks[None]
        if "/exchange/theta" in f:
            theta = np.asarray(f["/exchange/theta"][()], dtype=float).ravel()
            if _unit_attr(f["/exchange/theta"]) in ("rad", "radian", "radians"):
                theta = np.degrees(theta)
        elif data.shape[1] == 1:
            theta = np.zeros(1)
        else:
            raise XtwinInputError(f"scan file {path} has {data.shape[1]} projections but no "
                                  "/exchange/theta; add the rotation angles in degrees")
        if ENERGY_PATH not in f:
            raise XtwinInputError(f"scan file {path} has no dataset {ENERGY_PATH}; add the "
                                  "monochromator energies (attribute units = eV or keV)")
        e_ds = f[ENERGY_PATH]
        energy = np.atleast_1d(np.asarray(e_ds[()], dtype=float)).ravel()
        e_units = _unit_attr(e_ds)
        if e_units is None:
            key = "kev" if np.nanmax(energy) < 100 else "ev"
            unit = "keV" if key == "kev" else "eV"
            notes.append(f"energy has no units attribute; assumed {unit}")
        else:
            key = e_units.strip().lower()
            if key not in _ENERGY_UNITS:
                raise XtwinInputError(f"scan file {path}: unknown energy unit {e_units!r}; "
                                      "use eV or keV")
        energy = energy * _ENERGY_UNITS[key]
        if PIXEL_PATH in f:
            p_ds = f[PIXEL_PATH]
            p_units = _unit_attr(p_ds)
            pixel = _length_m(np.ravel(p_ds[()])[0], p_units, f"scan file {path}")
            if p_units is None:
                notes.append("pixel_size has no units attribute; assumed metres")
        else:
            pixel = ASSUMED_PIXEL_SIZE_M
            notes.append(f"no {PIXEL_PATH}; assumed {pixel:g} m (scales mu only; "
                         "lithiation is unaffected)")
        gain = float(f[GAIN_PATH][()]) if GAIN_PATH in f else 1.0
        exposure = [np.broadcast_to(np.asarray(f[pth][()], dtype=float).ravel(),
                                    (data.shape[0],)).copy() if pth in f else None
                    for pth in (EXPOSURE_PATH, FLAT_EXPOSURE_PATH)]
        meta = attrs_dict(f["/measurement/sample"]) if "/measurement/sample" in f else {}
        prov = attrs_dict(f["/provenance"]) if "/provenance" in f else {}
    try:
        scan = ScanData(data=data, flats=flats, darks=darks, theta_deg=theta, energy_eV=energy,
                        pixel_size_m=pixel, counts_per_photon=gain, exposure_s=exposure[0],
                        flat_exposure_s=exposure[1], metadata=meta, provenance=prov,
                        notes=tuple(notes))
    except XtwinInputError as exc:
        raise XtwinInputError(f"scan file {path}: {exc}") from None
    return scan


def series_order(paths: list[str | os.PathLike]) -> list[int] | None:
    """If ``paths`` are an operando series (several files, each with several energies), their
    order in time (by ``/measurement/sample`` attribute ``time_s``, else as given); else None.
    """
    import h5py

    if len(paths) < 2:
        return None
    times = []
    for p in paths:
        if not (Path(p).is_file() and h5py.is_hdf5(p)):
            return None
        with h5py.File(p, "r") as f:
            ds = f.get("/exchange/data")
            if ds is None or ds.ndim != 4 or ds.shape[0] < 2:
                return None
            t = f["/measurement/sample"].attrs.get("time_s") if "/measurement/sample" in f \
                else None
            times.append(float(t) if t is not None else float(len(times)))
    return sorted(range(len(paths)), key=lambda i: times[i])


def read_scans(paths: list[str | os.PathLike]) -> ScanData:
    """Read one scan, or merge single-energy files of one acquisition into one scan.

    Raises
    ------
    XtwinInputError
        If several files hold several energies each (an operando series: see
        :func:`series_order`) or their geometry differs.
    """
    scans = [read_scan(p) for p in paths]
    if len(scans) == 1:
        return scans[0]
    if any(s.data.shape[0] != 1 for s in scans):
        raise XtwinInputError(
            "several scan files were given and at least one holds several energies: that is an "
            "operando series; process one time point per call (one multi-energy file, or one "
            "file per energy of the same acquisition)")
    ref = scans[0]
    for p, s in zip(paths, scans):
        if s.data.shape[1:] != ref.data.shape[1:] or not np.allclose(s.theta_deg, ref.theta_deg):
            raise XtwinInputError(f"{p}: its projections or angles differ from {paths[0]}; "
                                  "all energies of one acquisition must share the geometry")
    order = np.argsort([s.energy_eV[0] for s in scans])
    scans = [scans[i] for i in order]
    flats = None
    if all(s.flats is not None for s in scans):
        n_flat = min(s.flats.shape[1] for s in scans)
        flats = np.concatenate([s.flats[:, :n_flat] for s in scans])
    darks = np.concatenate([s.darks for s in scans if s.darks is not None]) if any(
        s.darks is not None for s in scans) else None
    def cat(name: str) -> np.ndarray | None:
        vals = [getattr(s, name) for s in scans]
        return None if any(v is None for v in vals) else np.concatenate(vals)

    return ScanData(
        data=np.concatenate([s.data for s in scans]), flats=flats, darks=darks,
        exposure_s=cat("exposure_s"), flat_exposure_s=cat("flat_exposure_s"),
        theta_deg=ref.theta_deg, energy_eV=np.concatenate([s.energy_eV for s in scans]),
        pixel_size_m=ref.pixel_size_m, counts_per_photon=ref.counts_per_photon,
        metadata=ref.metadata, provenance={"merged_from": [str(p) for p in paths]},
        notes=tuple(n for s in scans for n in s.notes))


def write_scan(path: str | os.PathLike, scan: ScanData) -> None:
    """Write ``scan`` to ``path`` in the Data Exchange layout (atomically, deterministically)."""
    datasets: dict[str, Any] = {
        "/exchange/data": scan.data,
        "/exchange/theta": scan.theta_deg.astype(np.float64),
        ENERGY_PATH: scan.energy_eV.astype(np.float64),
        PIXEL_PATH: np.float64(scan.pixel_size_m),
        GAIN_PATH: np.float64(scan.counts_per_photon),
    }
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
        ENERGY_PATH: {"units": "eV"},
        PIXEL_PATH: {"units": "m"},
        **({EXPOSURE_PATH: {"units": "s"}} if scan.exposure_s is not None else {}),
        **({FLAT_EXPOSURE_PATH: {"units": "s"}} if scan.flat_exposure_s is not None else {}),
        "/measurement/sample": dict(scan.metadata),
        "/provenance": dict(scan.provenance),
        "/": {"implements": "exchange:measurement:provenance", "writer": "xtwin"},
    }
    write_h5(path, datasets, attrs)
