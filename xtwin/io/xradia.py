"""Xradia / Zeiss TXM files (.xrm single images, .txrm stacks) -> the scan-file contract.

Xradia files are OLE2 compound documents (read with ``olefile``). We read, per file:
``ImageInfo/ImageWidth``, ``ImageHeight``, ``DataType`` (5 = uint16, 10 = float32),
``NoOfImages``, ``PixelSize`` (um), ``Energy`` (eV, per image), ``Angles`` (degrees, per
image), ``ExpTimes`` (s, per image), and the images ``ImageData{k}/Image{i}`` (100 images per
``ImageData`` storage). Real files sometimes store 0 for the energy (the SSRL 6-2c frames in
``shared/data`` do): then the energy is read from the file name (``..._08324.0_eV_...``), and
the reader says so. Files with ``_ref_`` in their name are flat-field references, as the
beamline's acquisition scripts name them.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io.detector import estimate_counts_per_photon
from xtwin.io.scan import ScanData

_DTYPES = {5: np.dtype("<u2"), 10: np.dtype("<f4")}
_ENERGY_IN_NAME = re.compile(r"_(\d+(?:\.\d+)?)_?eV", re.IGNORECASE)


@dataclass(frozen=True)
class XrmImages:
    """Images of one Xradia file with their per-image metadata."""

    images: np.ndarray  # (n, rows, cols)
    energy_eV: np.ndarray
    angle_deg: np.ndarray
    exposure_s: np.ndarray
    pixel_size_m: float
    is_reference: bool
    notes: tuple[str, ...]
    path: str


def _read(ole, name: str, fmt: str) -> tuple:
    if not ole.exists(name):
        return ()
    raw = ole.openstream(name).read()
    size = struct.calcsize(fmt)
    n = len(raw) // size
    return struct.unpack(f"<{n}{fmt}", raw[: n * size])


def read_xrm(path: str | os.PathLike) -> XrmImages:
    """Read an .xrm or .txrm file.

    Raises
    ------
    XtwinInputError
        Not an OLE2 file, a damaged or truncated file, missing image size, unknown data
        type, no energy anywhere.
    """
    try:
        return _read_xrm(Path(path))
    except XtwinInputError:
        raise
    except (
        OSError,
        ValueError,
        struct.error,
        KeyError,
        IndexError,
        TypeError,
        MemoryError,
        OverflowError,
        ZeroDivisionError,
    ) as exc:
        raise XtwinInputError(
            f"{path}: not a readable Xradia file ({type(exc).__name__}: {exc}); it is damaged "
            "or truncated: copy it again from the original"
        ) from None


def _read_xrm(path: Path) -> XrmImages:
    import olefile

    if not path.is_file():
        raise XtwinInputError(f"{path} does not exist; check the path")
    if not olefile.isOleFile(str(path)):
        raise XtwinInputError(f"{path} is not an Xradia .xrm/.txrm file (not OLE2)")
    notes: list[str] = []
    with olefile.OleFileIO(str(path)) as ole:
        width = _read(ole, "ImageInfo/ImageWidth", "I")
        height = _read(ole, "ImageInfo/ImageHeight", "I")
        dtype_code = _read(ole, "ImageInfo/DataType", "I")
        if not width or not height:
            raise XtwinInputError(f"{path}: no ImageInfo/ImageWidth or ImageHeight")
        dtype = _DTYPES.get(dtype_code[0] if dtype_code else 5)
        if dtype is None:
            raise XtwinInputError(f"{path}: unknown Xradia data type {dtype_code[0]}")
        n_img = (_read(ole, "ImageInfo/NoOfImages", "I") or (1,))[0]
        shape = (height[0], width[0])
        images = []
        for i in range(1, n_img + 1):
            name = f"ImageData{(i - 1) // 100 + 1}/Image{i}"
            if not ole.exists(name):
                raise XtwinInputError(f"{path}: image {i} of {n_img} ({name}) is missing")
            raw = ole.openstream(name).read()
            dt = np.dtype(dtype)  # type: ignore[call-overload]
            if len(raw) < shape[0] * shape[1] * dt.itemsize:
                raise XtwinInputError(
                    f"{path}: image {i} holds {len(raw)} bytes, fewer than its "
                    f"{shape[0]} x {shape[1]} pixels need; the file is truncated"
                )
            images.append(
                np.frombuffer(raw[: shape[0] * shape[1] * dt.itemsize], dtype=dt).reshape(shape)
            )
        pixel_um = (_read(ole, "ImageInfo/PixelSize", "f") or (0.0,))[0]
        energy = np.asarray(_read(ole, "ImageInfo/Energy", "f")[:n_img], dtype=float)
        angles = np.asarray(_read(ole, "ImageInfo/Angles", "f")[:n_img], dtype=float)
        exposure = np.asarray(_read(ole, "ImageInfo/ExpTimes", "f")[:n_img], dtype=float)
    if energy.size < n_img or not np.all(energy > 0):
        m = _ENERGY_IN_NAME.search(path.name)
        if not m:
            raise XtwinInputError(
                f"{path}: the file stores no energy and its name carries "
                "none (like _08324.0_eV_); rename it or give a scan file"
            )
        energy = np.full(n_img, float(m.group(1)))
        notes.append(f"{path.name}: energy 0 in the file; took {energy[0]:g} eV from its name")
    if pixel_um <= 0:
        raise XtwinInputError(
            f"{path}: ImageInfo/PixelSize is {pixel_um}; cannot place the data on a length scale"
        )
    angles = angles if angles.size == n_img else np.zeros(n_img)
    exposure = exposure if exposure.size == n_img and np.all(exposure > 0) else np.ones(n_img)
    return XrmImages(
        np.stack(images),
        energy,
        angles,
        exposure,
        pixel_um * 1e-6,
        "_ref_" in path.name.lower(),
        tuple(notes),
        str(path),
    )


def xrm_to_scan(paths: list[str | os.PathLike]) -> ScanData:
    """Build one scan from Xradia files: sample images and ``_ref_`` flat-field references.

    Sample images at the same energy and angle are repeats and are summed (counts add, so the
    Poisson model holds; the exposure adds too); pairs of repeats measure the detector's
    counts per photon (:func:`xtwin.prep.estimate_counts_per_photon`), which the noise model
    then uses. All references at one energy are that
    energy's flats. One angle gives a 2D XANES scan; several angles per energy a tomogram.

    Raises
    ------
    XtwinInputError
        No sample images, an energy without references, or images of different sizes.
    """
    files = [read_xrm(p) for p in paths]
    samples = [f for f in files if not f.is_reference]
    refs = [f for f in files if f.is_reference]
    if not samples:
        raise XtwinInputError("no sample images among the files (all are _ref_ references)")
    shape = samples[0].images.shape[1:]
    if any(f.images.shape[1:] != shape for f in files):
        raise XtwinInputError("the Xradia files hold images of different sizes")
    energies = np.unique(np.round(np.concatenate([f.energy_eV for f in samples]), 3))
    angles = np.unique(np.round(np.concatenate([f.angle_deg for f in samples]), 3))
    data = np.zeros((energies.size, angles.size) + shape, dtype=np.uint32)
    expo = np.zeros((energies.size, angles.size))
    first: dict[tuple[int, int], np.ndarray] = {}
    gains: list[float] = []
    for f in samples:
        for img, e, a, t in zip(f.images, f.energy_eV, f.angle_deg, f.exposure_s):
            ie = int(np.searchsorted(energies, round(e, 3)))
            ia = int(np.searchsorted(angles, round(a, 3)))
            if (ie, ia) in first and len(gains) < 8:
                gains.append(estimate_counts_per_photon(first[(ie, ia)], img))
            first.setdefault((ie, ia), img)
            data[ie, ia] += img.astype(np.uint32)
            expo[ie, ia] += t
    flats_per_e: list[list[np.ndarray]] = [[] for _ in energies]
    flat_t = np.zeros(energies.size)
    for f in refs:
        for img, e, t in zip(f.images, f.energy_eV, f.exposure_s):
            ie = int(np.argmin(np.abs(energies - e)))
            if abs(energies[ie] - e) > 0.05:
                continue
            flats_per_e[ie].append(img)
            flat_t[ie] = t
    missing = [f"{e:g}" for e, fl in zip(energies, flats_per_e) if not fl]
    if missing:
        raise XtwinInputError(
            f"no _ref_ flat-field references at {', '.join(missing)} eV; "
            "add the reference files of every energy"
        )
    if not np.allclose(expo, expo[:, :1]):
        raise XtwinInputError("sample exposures differ between angles of one energy")
    n_flat = min(len(fl) for fl in flats_per_e)
    flats = np.stack([np.stack(fl[:n_flat]) for fl in flats_per_e]).astype(np.uint16)
    if data.max() <= np.iinfo(np.uint16).max:
        data = data.astype(np.uint16)
    notes = tuple(n for f in files for n in f.notes)
    gain = float(np.median(gains)) if gains else 1.0
    notes += (
        (
            f"detector counts per photon {gain:.3f}, measured from {len(gains)} pairs of "
            "repeated frames",
        )
        if gains
        else ("no repeated frames: counts per photon assumed 1",)
    )
    return ScanData(
        data=data,
        flats=flats,
        darks=None,
        theta_deg=angles,
        energy_eV=energies,
        pixel_size_m=samples[0].pixel_size_m,
        counts_per_photon=gain,
        exposure_s=expo[:, 0],
        flat_exposure_s=flat_t,
        metadata={"source": "Xradia", "files": len(files)},
        provenance={
            "converted_from": [str(p) for p in paths],
            "reader": "xtwin.io.xradia",
            "notes": list(notes),
        },
        notes=notes,
    )


def convert_xradia(
    paths: list[str | os.PathLike], out: str | os.PathLike, *, force: bool = False
) -> ScanData:
    """Convert Xradia files to a scan file (what ``xtwin convert`` does).

    Parameters
    ----------
    paths : list of path-like
        Sample images and ``_ref_`` flat-field references (.xrm/.txrm).
    out : path-like
        Scan file to write (Data Exchange HDF5).
    force : bool
        Overwrite an existing output.

    Returns
    -------
    ScanData
        The scan written.
    """
    from xtwin._files import check_can_write
    from xtwin.io.scan import write_scan

    check_can_write(out, force=force)
    scan = xrm_to_scan(list(paths))
    write_scan(out, scan)
    return scan
