"""NSLS-II FXI (18-ID) HDF5 exports -> the scan-file contract.

FXI's export scripts write flat HDF5 files:

* tomography (``fly_scan``, ``tomo_scan``; one file per energy): ``img_tomo`` (n_angle, rows,
  cols) uint16, ``img_bkg`` / ``img_dark`` (n, rows, cols), ``angle`` (degrees), ``X_eng``
  (keV), ``Pixel Size`` (a string such as ``"21.3nm"``, or a number in nm), ``scan_time``;
* 2D XANES (``xanes_scan``; one file, every energy): ``img_xanes`` (n_energy, rows, cols),
  already divided by the flat (float transmission), ``X_eng`` (keV, one per energy).

Several tomography files at different energies become one multi-energy scan; their angles
must agree (fly scans record slightly different angles per energy: within half a step they
are taken as the first file's, and the reader says so).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io.scan import ScanData


def is_fxi(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an FXI export (``img_tomo`` or ``img_xanes`` at the root)."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return "img_tomo" in f or "img_xanes" in f
    except OSError:
        return False


def _pixel_m(value, path: Path, notes: list[str]) -> float:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        m = re.match(r"\s*([0-9.eE+-]+)\s*(nm|um|µm|m)?\s*$", value)
        if not m:
            raise XtwinInputError(f"{path}: 'Pixel Size' {value!r} is not a length")
        scale = {"nm": 1e-9, "um": 1e-6, "µm": 1e-6, "m": 1.0, None: 1e-9}[m.group(2)]
        if m.group(2) is None:
            notes.append(f"{path.name}: 'Pixel Size' {value} has no unit; taken as nm")
        return float(m.group(1)) * scale
    notes.append(f"{path.name}: 'Pixel Size' {float(value):g} taken as nm")
    return float(value) * 1e-9


def fxi_to_scan(paths: list[str | os.PathLike]) -> ScanData:
    """Build one scan from FXI exports (one XANES file, or one tomography file per energy).

    Raises
    ------
    XtwinInputError
        Mixed kinds, angles that differ between energies, missing datasets, values of the
        wrong type or shape.
    """
    try:
        return _fxi_to_scan(paths)
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise XtwinInputError(
            f"{paths[0]}: not a readable FXI export ({type(exc).__name__}: {exc}); check "
            "img_tomo/img_xanes, img_bkg, angle, X_eng and 'Pixel Size'"
        ) from None


def _fxi_to_scan(paths: list[str | os.PathLike]) -> ScanData:
    from xtwin.io._h5 import open_h5

    notes: list[str] = []
    parts = []
    for p in map(Path, paths):
        with open_h5(p, "FXI file") as f:
            if "img_xanes" in f:
                names: tuple[str, ...] = ("img_xanes", "X_eng", "Pixel Size")
                parts.append(("xanes", p, {k: f[k][()] for k in names if k in f}))
            elif "img_tomo" in f:
                names = ("img_tomo", "img_bkg", "img_dark", "angle", "X_eng", "Pixel Size")
                parts.append(("tomo", p, {k: f[k][()] for k in names if k in f}))
            else:
                raise XtwinInputError(f"{p}: not an FXI export (no img_tomo or img_xanes)")
    kinds = {k for k, _, _ in parts}
    if len(kinds) > 1:
        raise XtwinInputError("FXI XANES and tomography files mixed; convert them separately")
    pixel = (
        _pixel_m(parts[0][2]["Pixel Size"], parts[0][1], notes)
        if "Pixel Size" in parts[0][2]
        else None
    )
    if pixel is None:
        raise XtwinInputError(
            f"{parts[0][1]}: no 'Pixel Size'; give the scan as TIFF with a sidecar instead"
        )
    if kinds == {"xanes"}:
        if len(parts) != 1:
            raise XtwinInputError("give one FXI XANES file at a time")
        _, p, d = parts[0]
        img = np.asarray(d["img_xanes"], dtype=np.float32)
        energy = np.atleast_1d(np.asarray(d["X_eng"], dtype=float)) * 1000.0
        if img.ndim != 3 or energy.size != img.shape[0]:
            raise XtwinInputError(f"{p}: img_xanes {img.shape} and X_eng {energy.size} disagree")
        notes.append("FXI img_xanes is already flat-field corrected: taken as transmission")
        return ScanData(
            data=img[:, None],
            flats=None,
            darks=None,
            theta_deg=np.zeros(1),
            energy_eV=energy,
            pixel_size_m=pixel,
            metadata={"source": "NSLS-II FXI"},
            provenance={"converted_from": [str(p)], "reader": "xtwin.io.fxi", "notes": notes},
            notes=tuple(notes),
        )
    order = sorted(range(len(parts)), key=lambda i: float(np.ravel(parts[i][2]["X_eng"])[0]))
    parts = [parts[i] for i in order]
    theta = np.asarray(parts[0][2]["angle"], dtype=float).ravel()
    step = float(np.median(np.abs(np.diff(theta)))) if theta.size > 1 else 1.0
    data: list[np.ndarray] = []
    flats: list[np.ndarray] = []
    darks: list[np.ndarray] = []
    energies: list[float] = []
    for _, p, d in parts:
        t = np.asarray(d["angle"], dtype=float).ravel()
        n = min(t.size, theta.size)
        if t.size != theta.size:
            notes.append(f"{p.name}: {t.size} angles vs {theta.size}; the first {n} kept")
        if np.max(np.abs(t[:n] - theta[:n])) > 0.5 * step:
            raise XtwinInputError(
                f"{p}: its angles differ from {parts[0][1].name}'s by up to "
                f"{np.max(np.abs(t[:n] - theta[:n])):.2f} deg (more than half a step); "
                "the energies must share the rotation angles"
            )
        theta = theta[:n]
        data = [x[:n] for x in data] + [np.asarray(d["img_tomo"])[:n]]
        if "img_bkg" not in d:
            raise XtwinInputError(f"{p}: no img_bkg flat fields")
        flats.append(np.asarray(d["img_bkg"]))
        if "img_dark" in d:
            darks.append(np.asarray(d["img_dark"]))
        energies.append(float(np.ravel(d["X_eng"])[0]) * 1000.0)
    if len(parts) > 1:
        notes.append(f"angles of the first energy used for all {len(parts)} energies")
    n_flat = min(f.shape[0] for f in flats)
    return ScanData(
        data=np.stack(data),
        flats=np.stack([f[:n_flat] for f in flats]),
        darks=np.concatenate(darks) if darks else None,
        theta_deg=theta,
        energy_eV=np.asarray(energies),
        pixel_size_m=pixel,
        metadata={"source": "NSLS-II FXI"},
        provenance={
            "converted_from": [str(p) for _, p, _ in parts],
            "reader": "xtwin.io.fxi",
            "notes": notes,
        },
        notes=tuple(notes),
    )
