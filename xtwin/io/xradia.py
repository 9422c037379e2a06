"""Xradia / Zeiss TXM files (.xrm single images, .txrm stacks) -> the scan-file contract.

Xradia files are OLE2 compound documents (read with ``olefile``). We read, per file:
``ImageInfo/ImageWidth``, ``ImageHeight``, ``DataType`` (5 = uint16, 10 = float32),
``NoOfImages``, ``PixelSize`` (um), ``Energy`` (eV, per image), ``Angles`` (degrees, per
image), ``ExpTimes`` (s, per image), ``Date`` (per image) and the images
``ImageData{k}/Image{i}`` (100 images per ``ImageData`` storage).

* Energies: real files sometimes store 0 (the SSRL 6-2c frames in ``shared/data`` do); then the
  energy is read from the file name (``..._08324.0_eV_...``, ``..._8353_0eV...``,
  ``..._8353.5eV``), and the reader says so.
* Kinds: flat-field references are recognized by the usual names (a ``ref``, ``bkg``, ``flat``
  or ``white`` token: ``*_ref_*``, ``ref_*``, ``bkg*``) or an explicit ``flats`` glob; dark
  frames by a ``dark`` token or a ``darks`` glob.
* Mosaics: a mosaic written as one stitched image (``MosiacRows`` x ``MosiacColumns`` tiles,
  ``NoOfImages`` = tiles, only ``Image1`` present; the spelling is Xradia's) is read as that
  one image; a mosaic whose tiles are stored separately is refused (stitch it first).
* Grouping (:func:`xrm_to_scans`): sample frames are grouped by their name with the energy,
  the repeat counter and the running number taken out, and by exposure. Frames of different
  groups (states of charge, time points, exposures) are never summed; each group becomes its
  own scan with its acquisition time.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io.detector import estimate_counts_per_photon
from xtwin.io.scan import ScanData

_DTYPES = {5: np.dtype("<u2"), 10: np.dtype("<f4")}
_ENERGY_IN_NAME = re.compile(r"(?:^|[_\-])0*(\d{4,5})(?:[._](\d+))?_?eV", re.IGNORECASE)
_FLAT_TOKEN = re.compile(r"(?:^|[_\-.])(ref|refs|bkg|flat|flats|white)(?=[_\-.]|\d|$)", re.I)
_DARK_TOKEN = re.compile(r"(?:^|[_\-.])(dark|darks)(?=[_\-.]|\d|$)", re.I)
_REPEAT_TOKEN = re.compile(r"[_\-]?\d+of\d+", re.I)
_DATE_FORMATS = ("%m/%d/%y %H:%M:%S.%f", "%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S")


def energy_from_name(name: str) -> float | None:
    """The energy (eV) a file name carries (``_08324.0_eV_``, ``_8353_0eV``), or None."""
    m = _ENERGY_IN_NAME.search(name)
    if not m:
        return None
    return float(m.group(1) + ("." + m.group(2) if m.group(2) else ""))


def frame_kind(path: str | os.PathLike, flats: str | None = None, darks: str | None = None) -> str:
    """``"flat"``, ``"dark"`` or ``"sample"`` from explicit globs or the naming conventions."""
    name = Path(path).name
    if flats and (fnmatch.fnmatch(name, flats) or fnmatch.fnmatch(str(path), flats)):
        return "flat"
    if darks and (fnmatch.fnmatch(name, darks) or fnmatch.fnmatch(str(path), darks)):
        return "dark"
    if flats is None and _FLAT_TOKEN.search(Path(name).stem):
        return "flat"
    if darks is None and _DARK_TOKEN.search(Path(name).stem):
        return "dark"
    return "sample"


def group_key(path: str | os.PathLike) -> str:
    """The name of a frame without what varies within one acquisition: the energy, the
    repeat counter (``001of003``), a trailing running number, and reference/dark tokens."""
    stem = Path(path).stem
    stem = _ENERGY_IN_NAME.sub("_", stem)
    stem = _REPEAT_TOKEN.sub("", stem)
    stem = _FLAT_TOKEN.sub("_", stem)
    stem = _DARK_TOKEN.sub("_", stem)
    tokens = [t for t in re.split(r"[_\-.]+", stem) if t]
    # running image numbers (000051) and a trailing counter vary frame to frame
    tokens = [t for t in tokens if not (t.isdigit() and len(t) == 6)]
    while tokens and tokens[-1].isdigit() and len(tokens[-1]) <= 4:
        tokens.pop()
    return "_".join(tokens) or "scan"


def _parse_dates(raw: bytes, n: int) -> np.ndarray:
    """Per-image acquisition times (POSIX seconds, NaN where unreadable)."""
    out = np.full(n, np.nan)
    if not raw:
        return out
    size = len(raw) // max(n, 1)
    for i in range(n):
        text = raw[i * size : (i + 1) * size].split(b"\x00")[0].decode("ascii", "replace")
        for fmt in _DATE_FORMATS:
            try:
                t = _dt.datetime.strptime(text.strip(), fmt)
            except ValueError:
                continue
            out[i] = t.replace(tzinfo=_dt.UTC).timestamp()
            break
    return out


@dataclass(frozen=True)
class XrmImages:
    """Images of one Xradia file with their per-image metadata."""

    images: np.ndarray  # (n, rows, cols)
    energy_eV: np.ndarray
    angle_deg: np.ndarray
    exposure_s: np.ndarray
    pixel_size_m: float
    kind: str
    notes: tuple[str, ...]
    path: str
    date_s: np.ndarray | None = None
    binning: int = 1
    #: the embedded flat-field reference (``ReferenceData/Image``), as frames of kind "flat"
    reference: XrmImages | None = None
    #: per-image alignment shifts the microscope software recorded (``Alignment/X-Shifts``,
    #: ``Y-Shifts``; pixels, (n, 2): rows, cols) and whether it had applied them
    shifts_px: np.ndarray | None = None
    shifts_applied: bool = False

    @property
    def is_reference(self) -> bool:
        """A flat-field reference frame."""
        return self.kind == "flat"


def _read(ole, name: str, fmt: str) -> tuple:
    if not ole.exists(name):
        return ()
    raw = ole.openstream(name).read()
    size = struct.calcsize(fmt)
    n = len(raw) // size
    return struct.unpack(f"<{n}{fmt}", raw[: n * size])


def read_xrm(
    path: str | os.PathLike, *, flats: str | None = None, darks: str | None = None
) -> XrmImages:
    """Read an .xrm or .txrm file.

    ``flats`` and ``darks`` are glob patterns that mark reference and dark frames (default:
    the naming conventions, see the module docstring).

    Raises
    ------
    XtwinInputError
        Not an OLE2 file, a damaged or truncated file, missing image size, unknown data
        type, no energy anywhere.
    """
    try:
        return _read_xrm(Path(path), frame_kind(path, flats, darks))
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


def _read_xrm(path: Path, kind: str) -> XrmImages:
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
        tiles = (
            (_read(ole, "ImageInfo/MosiacRows", "I") or (0,))[0],
            (_read(ole, "ImageInfo/MosiacColumns", "I") or (0,))[0],
        )
        if tiles[0] * tiles[1] > 1 and n_img == tiles[0] * tiles[1]:
            if ole.exists("ImageData1/Image2"):
                raise XtwinInputError(
                    f"{path}: a {tiles[0]} x {tiles[1]} mosaic with its tiles stored separately; "
                    "stitch it first (XMController or TXM-Wizard) and convert the stitched image"
                )
            notes.append(
                f"{path.name}: a {tiles[0]} x {tiles[1]} mosaic stored stitched as one "
                f"{shape[0]} x {shape[1]} image; read as that image"
            )
            n_img = 1
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
        dates = _parse_dates(
            ole.openstream("ImageInfo/Date").read() if ole.exists("ImageInfo/Date") else b"",
            n_img,
        )
        binning = int((_read(ole, "ImageInfo/HorizontalBin", "I") or (1,))[0]) or 1
        shifts, shifts_applied = _alignment_shifts(ole, n_img)
        embedded = _embedded_reference(ole, path, shape, binning, dtype)
    energy, filled = _fill_energies(energy, n_img)
    if filled:
        notes.append(
            f"{path.name}: ImageInfo/Energy recorded for {n_img - filled} of {n_img} images "
            "(Xradia writes it when it changes); each other image took the last energy "
            "recorded before it"
        )
    if energy.size < n_img or not np.all(energy > 0):
        from_name = energy_from_name(path.name)
        if from_name is None:
            if kind == "dark":
                from_name = 0.0  # darks need no energy
            else:
                raise XtwinInputError(
                    f"{path}: the file stores no energy and its name carries "
                    "none (like _08324.0_eV_); rename it or give a scan file"
                )
        energy = np.full(n_img, from_name)
        if kind != "dark":
            notes.append(f"{path.name}: energy 0 in the file; took {energy[0]:g} eV from its name")
    if pixel_um <= 0:
        raise XtwinInputError(
            f"{path}: ImageInfo/PixelSize is {pixel_um}; cannot place the data on a length scale"
        )
    angles = angles if angles.size == n_img else np.zeros(n_img)
    exposure = exposure if exposure.size == n_img and np.all(exposure > 0) else np.ones(n_img)
    reference = None
    if embedded is not None and kind == "sample":
        ref_img, ref_t = embedded
        e_ref = np.unique(energy)  # one reference serves every energy of the file
        reference = XrmImages(
            np.broadcast_to(ref_img, (e_ref.size,) + ref_img.shape),
            e_ref,
            np.zeros(e_ref.size),
            np.full(e_ref.size, ref_t if ref_t > 0 else float(exposure[0])),
            pixel_um * 1e-6,
            "flat",
            (),
            f"{path}#ReferenceData",
            np.full(e_ref.size, dates[0]),
            binning,
        )
    return XrmImages(
        np.stack(images),
        energy,
        angles,
        exposure,
        pixel_um * 1e-6,
        kind,
        tuple(notes),
        str(path),
        dates,
        binning,
        reference,
        shifts,
        shifts_applied,
    )


def _fill_energies(energy: np.ndarray, n_img: int) -> tuple[np.ndarray, int]:
    """Per-image energies where Xradia recorded only some (0 for the others: it writes the
    energy when it changes): each 0 after a recorded energy takes the last one recorded.
    Returns the energies and how many were filled."""
    if energy.size != n_img or n_img < 2 or not energy[0] > 0:
        return energy, 0
    out = energy.copy()
    filled = 0
    for i in range(1, n_img):
        if not out[i] > 0:
            out[i] = out[i - 1]
            filled += 1
    return out, filled


def _alignment_shifts(ole, n_img: int) -> tuple[np.ndarray | None, bool]:
    """``Alignment/Y-Shifts`` and ``X-Shifts`` (pixels, per image) as (n, 2) rows, cols, and
    whether the microscope software applied them (``ReferenceShiftsApplied`` or
    ``StageShiftsApplied``); None when absent or all zero."""
    xs = np.asarray(_read(ole, "Alignment/X-Shifts", "f")[:n_img], dtype=float)
    ys = np.asarray(_read(ole, "Alignment/Y-Shifts", "f")[:n_img], dtype=float)
    if xs.size != n_img or ys.size != n_img or not np.all(np.isfinite(xs + ys)):
        return None, False
    if not (np.any(xs) or np.any(ys)):
        return None, False
    applied = any(
        (_read(ole, f"Alignment/{k}", "I") or (0,))[0] == 1
        for k in ("ReferenceShiftsApplied", "StageShiftsApplied")
    )
    return np.c_[ys, xs], applied


def _embedded_reference(
    ole, path: Path, shape: tuple[int, int], binning: int, dtype: Any
) -> tuple[np.ndarray, float] | None:
    """``ReferenceData/Image`` at the images' binning (a finer-binned reference is summed
    into the images' pixels: counts add), with its exposure (``ReferenceData/ExpTime``).

    Raises
    ------
    XtwinInputError
        A coarser-binned reference, or one whose size does not match the images.
    """
    if not ole.exists("ReferenceData/Image"):
        return None
    ref_bin = int((_read(ole, "ReferenceData/Binning", "I") or (binning,))[0]) or binning
    code = (_read(ole, "ReferenceData/DataType", "I") or (0,))[0]
    dt = np.dtype(_DTYPES.get(code, dtype))  # type: ignore[call-overload]
    raw = ole.openstream("ReferenceData/Image").read()
    if ref_bin > binning or binning % ref_bin:
        raise XtwinInputError(
            f"{path}: the embedded reference is binned {ref_bin}, the images {binning}: a "
            "reference cannot be made finer; take it at the images' binning (or finer)"
        )
    k = binning // ref_bin
    ref_shape = (shape[0] * k, shape[1] * k)
    if len(raw) < ref_shape[0] * ref_shape[1] * dt.itemsize:
        raise XtwinInputError(
            f"{path}: ReferenceData/Image holds {len(raw)} bytes, fewer than a "
            f"{ref_shape[0]} x {ref_shape[1]} reference needs; the file is truncated"
        )
    img = np.frombuffer(raw[: ref_shape[0] * ref_shape[1] * dt.itemsize], dtype=dt)
    img = img.reshape(ref_shape).astype(np.float64)
    if k > 1:
        img = img.reshape(shape[0], k, shape[1], k).sum(axis=(1, 3))
    t = float((_read(ole, "ReferenceData/ExpTime", "f") or (0.0,))[0])
    return img, t


def xrm_to_scan(
    paths: list[str | os.PathLike], *, flats: str | None = None, darks: str | None = None
) -> ScanData:
    """One scan from Xradia files of one acquisition (see :func:`xrm_to_scans`).

    Raises
    ------
    XtwinInputError
        The files hold several acquisitions (states, time points or exposures): convert them
        with :func:`xrm_to_scans`, one scan each.
    """
    scans = xrm_to_scans(paths, flats=flats, darks=darks)
    if len(scans) > 1:
        raise XtwinInputError(
            f"the files hold {len(scans)} acquisitions ({', '.join(k for k, _ in scans)}); "
            "convert them into one scan each"
        )
    return scans[0][1]


def xrm_to_scans(
    paths: list[str | os.PathLike], *, flats: str | None = None, darks: str | None = None
) -> list[tuple[str, ScanData]]:
    """Scans from Xradia files: sample images, flat-field references and darks.

    Sample frames are grouped by name (:func:`group_key`) and, where frames of one name at
    the same energy and angle have different exposures, by exposure: each group is one
    acquisition (a state of charge, a time point) and becomes one scan. Within a group, frames
    at the same energy and angle are repeats and are summed (counts add, so the Poisson model
    holds; the exposure adds too); pairs of repeats measure the detector's counts per photon
    (:func:`xtwin.prep.estimate_counts_per_photon`). A reference whose name matches one group
    serves that group only; other references serve every group, each group taking at each
    energy the references nearest in time to its own frames. One angle gives a 2D XANES scan;
    several angles per energy a tomogram.

    Parameters
    ----------
    paths : list of path-like
        .xrm / .txrm files.
    flats, darks : str, optional
        Glob patterns of the flat-field and dark frames (default: the naming conventions).

    Returns
    -------
    list of (str, ScanData)
        Group name and scan, in order of acquisition time (name order where the files carry
        no date). The scan's metadata holds the group, the start time and ``time_s`` since
        the first group started.

    Raises
    ------
    XtwinInputError
        No sample images, an energy without references, or images of different sizes.
    """
    files = [read_xrm(p, flats=flats, darks=darks) for p in paths]
    samples = [f for f in files if f.kind == "sample"]
    if not samples:
        raise XtwinInputError(
            "no sample images among the files (all are flat-field references or darks); "
            "check the names or the --flats/--darks patterns"
        )
    shape = samples[0].images.shape[1:]
    files = [_at_binning(f, samples[0].binning, shape) for f in files]
    samples = [f for f in files if f.kind == "sample"]
    if any(f.images.shape[1:] != shape for f in files):
        sizes = sorted({(f.images.shape[1:], f.binning) for f in files})
        raise XtwinInputError(
            "the Xradia files hold images of different sizes (size, binning: "
            f"{sizes}); give references and darks of the samples' binning (or a finer one, "
            "which is summed to it)"
        )
    groups = _groups(samples)
    refs = [f for f in files if f.kind == "flat"]
    embedded_note = None
    if not refs:  # no separate references: those stored in the sample files
        refs = [f.reference for f in samples if f.reference is not None]
        if refs:
            embedded_note = (
                f"flat field: the reference embedded in {len(refs)} sample file(s) "
                "(ReferenceData/Image, with its own exposure), no separate reference files "
                "given"
            )
    dark_frames = [f for f in files if f.kind == "dark"]
    starts = {k: _start(fs) for k, fs in groups.items()}
    order = sorted(groups, key=lambda k: (np.isnan(starts[k]), starts[k], k))
    finite = [starts[k] for k in order if np.isfinite(starts[k])]
    t0 = min(finite) if finite else float("nan")
    out = []
    for key in order:
        own_refs = [r for r in refs if group_key(r.path) == key] or [
            r for r in refs if group_key(r.path) not in groups
        ]
        own_darks = [d for d in dark_frames if group_key(d.path) == key] or [
            d for d in dark_frames if group_key(d.path) not in groups
        ]
        t = starts[key]
        meta: dict = {"source": "Xradia", "files": len(groups[key]), "group": key}
        if np.isfinite(t):
            meta["time_s"] = float(t - t0)
            meta["acquired"] = _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat()
        scan = _one_scan(groups[key], own_refs, own_darks, meta, len(groups))
        if embedded_note:
            import dataclasses

            scan = dataclasses.replace(scan, notes=scan.notes + (embedded_note,))
            scan.provenance["notes"] = list(scan.notes)
        out.append((key, scan))
    return out


def _at_binning(f: XrmImages, binning: int, shape: tuple[int, ...]) -> XrmImages:
    """A reference or dark frame taken at a finer binning, summed to ``binning`` (counts add,
    so the Poisson model holds); other frames as they are."""
    import dataclasses

    if f.kind == "sample" or f.binning >= binning or binning % f.binning:
        return f
    k = binning // f.binning
    if f.images.shape[1:] != (shape[0] * k, shape[1] * k):
        return f
    binned = f.images.reshape(f.images.shape[0], shape[0], k, shape[1], k).sum(axis=(2, 4))
    note = f"{Path(f.path).name}: binned {f.binning}, summed {k} x {k} to the samples' {binning}"
    return dataclasses.replace(f, images=binned, binning=binning, notes=f.notes + (note,))


def _file_exposure(f: XrmImages) -> float:
    return round(float(np.median(f.exposure_s)), 6)


def _groups(samples: list[XrmImages]) -> dict[str, list[XrmImages]]:
    by_name: dict[str, list[XrmImages]] = {}
    for f in samples:
        by_name.setdefault(group_key(f.path), []).append(f)
    out: dict[str, list[XrmImages]] = {}
    for key, fs in by_name.items():
        slots: dict[tuple[float, float], set[float]] = {}
        for f in fs:
            for e, a in zip(f.energy_eV, f.angle_deg):
                slots.setdefault((round(e, 2), round(a, 2)), set()).add(_file_exposure(f))
        if any(len(v) > 1 for v in slots.values()):  # different exposures: never repeats
            for t in sorted({_file_exposure(f) for f in fs}):
                out[f"{key}_{t:g}s"] = [f for f in fs if _file_exposure(f) == t]
        else:
            out[key] = fs
    return out


def _start(fs: list[XrmImages]) -> float:
    d = np.concatenate([f.date_s if f.date_s is not None else [np.nan] for f in fs])
    return float(np.nanmin(d)) if np.isfinite(d).any() else float("nan")


def _nearest_in_time(refs: list[XrmImages], when: float) -> list[XrmImages]:
    """The references of the acquisition nearest in time (all when undated)."""
    dated = [(abs(_start([r]) - when), r) for r in refs if np.isfinite(_start([r]))]
    if not dated or not np.isfinite(when):
        return refs
    best = min(d for d, _ in dated)
    return [r for d, r in dated if d <= best + 600.0]  # one reference series: within 10 min


def _one_scan(
    samples: list[XrmImages],
    refs: list[XrmImages],
    darks: list[XrmImages],
    meta: dict,
    n_groups: int,
) -> ScanData:
    shape = samples[0].images.shape[1:]
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
    if np.any(expo == 0):
        ie, ia = np.argwhere(expo == 0)[0]
        raise XtwinInputError(
            f"group {meta['group']!r}: no image at {energies[ie]:g} eV and angle "
            f"{angles[ia]:g} deg; every energy needs the same angles"
        )
    flats_per_e: list[list[np.ndarray]] = [[] for _ in energies]
    flat_t: list[list[float]] = [[] for _ in energies]
    for ie, e in enumerate(energies):
        at_e = [r for r in refs if np.any(np.abs(r.energy_eV - e) <= 0.05)]
        when = _start([f for f in samples if np.any(np.abs(f.energy_eV - e) <= 0.05)])
        for r in _nearest_in_time(at_e, when) if n_groups > 1 else at_e:
            for img, re_, t in zip(r.images, r.energy_eV, r.exposure_s):
                if abs(re_ - e) <= 0.05:
                    flats_per_e[ie].append(img)
                    flat_t[ie].append(float(t))
    missing = [f"{e:g}" for e, fl in zip(energies, flats_per_e) if not fl]
    notes: list[str] = [n for f in samples + refs + darks for n in f.notes]
    stacks_only = all(Path(f.path).suffix.lower() == ".txrm" for f in samples)
    if len(missing) == energies.size and not refs and stacks_only:
        # a .txrm stack without any reference: converted as it is, said so (process asks
        # for the flats, a convert with --flats adds them)
        notes.append(
            "no flat-field references in or beside the .txrm: the scan file holds the "
            "projections only; convert again with the reference files (or --flats GLOB) "
            "before processing"
        )
    elif missing:
        raise XtwinInputError(
            f"group {meta['group']!r}: no flat-field references at {', '.join(missing)} eV; "
            "add the reference files of every energy (named *_ref_*, ref_*, bkg* or given "
            "with --flats GLOB)"
        )
    if not np.allclose(expo, expo[:, :1]):
        raise XtwinInputError("sample exposures differ between angles of one energy")
    for e, ts in zip(energies, flat_t):
        if ts and not np.allclose(ts, ts[0], rtol=1e-3):
            raise XtwinInputError(
                f"group {meta['group']!r}: the references at {e:g} eV have different "
                f"exposures ({sorted(set(ts))} s); keep one series per energy"
            )
    flats = None
    if not missing:
        n_flat = min(len(fl) for fl in flats_per_e)
        flats = np.stack([np.stack(fl[:n_flat]) for fl in flats_per_e])
        flats = flats.astype(np.uint16 if flats.max() <= np.iinfo(np.uint16).max else np.float32)
    dark_stack = None
    if darks:
        dark_imgs = [img for d in darks for img in d.images]
        dark_stack = np.stack(dark_imgs).astype(np.uint16)
        d_t = float(np.median([t for d in darks for t in d.exposure_s]))
        if not np.allclose(expo[:, 0], d_t, rtol=0.05):
            notes.append(
                f"dark frames taken at {d_t:g} s, projections at {np.unique(expo[:, 0])} s: "
                "darks used as measured (a dark level independent of exposure)"
            )
    if data.max() <= np.iinfo(np.uint16).max:
        data = data.astype(np.uint16)
    gain = float(np.median(gains)) if gains else 1.0
    notes.append(
        f"detector counts per photon {gain:.3f}, measured from {len(gains)} pairs of "
        "repeated frames"
        if gains
        else "no repeated frames: counts per photon assumed 1"
    )
    if n_groups > 1:
        notes.append(
            f"group {meta['group']!r}: {len(samples)} sample files of {n_groups} "
            "acquisitions (grouped by name and exposure; never summed across groups)"
        )
    shifts = _scan_shifts(samples, energies, angles)
    if shifts is not None:
        applied = any(f.shifts_applied for f in samples)
        notes.append(
            "Xradia alignment shifts (Alignment/X-Shifts, Y-Shifts) recorded, rms "
            f"{np.sqrt(np.mean(shifts[..., 0] ** 2)):.2f} rows, "
            f"{np.sqrt(np.mean(shifts[..., 1] ** 2)):.2f} cols"
            + (" (already applied by the microscope software)" if applied else "")
            + "; process starts its run-out estimate from them (--xradia-shifts use: applies "
            "them as they are)"
        )
        meta["xradia_shifts_applied"] = applied
    return ScanData(
        data=data,
        flats=flats,
        darks=dark_stack,
        theta_deg=angles,
        energy_eV=energies,
        pixel_size_m=samples[0].pixel_size_m,
        counts_per_photon=gain,
        exposure_s=expo[:, 0],
        flat_exposure_s=None if flats is None else np.array([ts[0] for ts in flat_t]),
        metadata=meta,
        provenance={
            "converted_from": [f.path for f in samples + refs + darks],
            "reader": "xtwin.io.xradia",
            "notes": list(notes),
        },
        notes=tuple(notes),
        projection_shifts_px=shifts,
    )


def _scan_shifts(
    samples: list[XrmImages], energies: np.ndarray, angles: np.ndarray
) -> np.ndarray | None:
    """The recorded alignment shifts as (n_energy, n_angle, 2) rows, cols (None when no
    file has any; repeats at one energy and angle are averaged)."""
    if not any(f.shifts_px is not None for f in samples):
        return None
    total = np.zeros((energies.size, angles.size, 2))
    count = np.zeros((energies.size, angles.size, 1))
    for f in samples:
        sh = f.shifts_px if f.shifts_px is not None else np.zeros((f.energy_eV.size, 2))
        for e, a, v in zip(f.energy_eV, f.angle_deg, sh):
            ie = int(np.searchsorted(energies, round(e, 3)))
            ia = int(np.searchsorted(angles, round(a, 3)))
            total[ie, ia] += v
            count[ie, ia] += 1
    return total / np.maximum(count, 1)


def scan_names(out: str | os.PathLike, keys: list[str]) -> list[Path]:
    """Output names for several acquisitions: ``OUT_t000_<group>.h5``, ... in time order."""
    out = Path(out)
    if len(keys) == 1:
        return [out]
    safe = [re.sub(r"[^A-Za-z0-9._+-]+", "-", k).strip("-")[:60] or "scan" for k in keys]
    return [
        out.with_name(f"{out.stem}_t{i:03d}_{s}{out.suffix or '.h5'}") for i, s in enumerate(safe)
    ]


def convert_xradia(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    force: bool = False,
    flats: str | None = None,
    darks: str | None = None,
) -> list[tuple[Path, ScanData]]:
    """Convert Xradia files to scan files (what ``xtwin convert`` does).

    Parameters
    ----------
    paths : list of path-like
        Sample images, flat-field references and darks (.xrm/.txrm).
    out : path-like
        Scan file to write (Data Exchange HDF5); with several acquisitions,
        ``OUT_t000_<group>.h5``, ``OUT_t001_<group>.h5``, ... in time order.
    force : bool
        Overwrite existing outputs.
    flats, darks : str, optional
        Glob patterns of the flat-field and dark frames.

    Returns
    -------
    list of (pathlib.Path, ScanData)
        The files written and their scans.
    """
    from xtwin._files import check_can_write
    from xtwin.io.scan import write_scan

    scans = xrm_to_scans(list(paths), flats=flats, darks=darks)
    names = scan_names(out, [k for k, _ in scans])
    for n in names:
        check_can_write(n, force=force)
    for n, (_, scan) in zip(names, scans):
        write_scan(n, scan)
    return [(n, scan) for n, (_, scan) in zip(names, scans)]
