"""Lazy access to scan data: the header is read and validated up front, pixels by blocks.

:class:`ScanSource` is what the streaming pipeline reads from. It opens one Data Exchange
file with all energies, several files with one energy each (merged, sorted by energy), or an
in-memory :class:`~xtwin.io.scan.ScanData`, and hands out blocks of detector rows of one
energy's projections, flats and darks. Nothing but the header and the requested block is ever
in memory, so a scan larger than the machine's memory can be processed.

Energies are always presented in ascending order, whatever the file order.
Pixel values are checked as they are read (NaN, negative counts) and reported as
:class:`~xtwin.errors.XtwinInputError` naming the file; a damaged HDF5 file is reported the same
way, never as an h5py traceback.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io._h5 import read_guarded
from xtwin.io.scan import ENERGY_PATH, ScanData, ScanHeader, ScanPart, read_header


class ScanSource:
    """Block access to the pixels of a scan.

    Parameters
    ----------
    header : ScanHeader
        Validated header.
    parts : list of ScanPart
        One per energy, in ascending energy order.
    arrays : ScanData, optional
        In-memory data (then ``parts`` index into it).

    Notes
    -----
    Thread-safe (HDF5 access is serialized) and picklable (open files are not pickled), so
    blocks may be read from worker threads and from dask workers.
    """

    def __init__(self, header: ScanHeader, parts: list[ScanPart], arrays=None) -> None:
        self.header = header
        self._parts = parts
        self._arrays = arrays
        self._files: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close open files."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> ScanSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------
    def _file(self, path: str):
        import h5py

        f = self._files.get(path)
        if f is None:
            # no chunk cache: blocks of rows cut across every chunk of a file chunked by
            # projection, so a cache never serves a second read, and with it HDF5 copies each
            # whole chunk (the whole file per block) to hand out a few rows
            f = self._files[path] = h5py.File(path, "r", rdcc_nbytes=0)
        return f

    def _read(self, path: str | None, name: str, key: tuple) -> np.ndarray:
        if path is None:
            return np.asarray(getattr(self._arrays, name)[key])
        with self._lock:
            try:
                ds = self._file(path)[_DATASETS[name]]
                return np.asarray(ds[key])
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise XtwinInputError(
                    f"scan file {path}: reading {_DATASETS[name]} failed ({exc}); the file is "
                    "damaged or truncated: copy it again from the original"
                ) from None

    @staticmethod
    def _clip_rows(lo: int, hi: int, n_r: int) -> tuple[int, int, tuple[int, int]]:
        a, b = max(lo, 0), min(hi, n_r)
        if a >= b:  # the whole window lies outside: replicate the nearest row
            if hi <= 0:
                return 0, 1, (hi - lo - 1, 0)
            return n_r - 1, n_r, (0, hi - lo - 1)
        return a, b, (a - lo, hi - b)

    def projections(
        self, energy: int, lo: int, hi: int, angles: np.ndarray | slice | None = None
    ) -> np.ndarray:
        """Projections of one energy, detector rows ``[lo, hi)`` (rows outside the detector
        repeat the nearest edge row), ``(n_angle_selected, hi - lo, n_col)``."""
        part = self._parts[energy]
        n_r = self.header.shape[2]
        a, b, pad = self._clip_rows(lo, hi, n_r)
        sel = slice(None) if angles is None else angles

        def read(sel) -> np.ndarray:
            if part.index is None:
                return self._read(part.path, "data", (sel, slice(a, b)))
            return self._read(part.path, "data", (part.index, sel, slice(a, b)))

        if part.path is not None and not isinstance(sel, slice):
            # a list of angles as runs of consecutive ones: h5py reads a list (a union of
            # hyperslabs) about 30 times slower than the same projections one slice each
            idx = np.asarray(sel, dtype=np.int64).ravel() % self.header.shape[1]
            cut = np.flatnonzero(np.diff(idx) != 1) + 1
            runs = np.split(idx, cut) if idx.size else [idx]
            block = np.concatenate(
                [read(slice(int(r[0]), int(r[-1]) + 1)) if r.size else read(r) for r in runs]
            )
        else:
            block = read(sel)
        self._check(block, part.path, "projections")
        return _edge_pad_rows(block, pad, axis=1)

    def flats(self, energy: int, lo: int, hi: int) -> np.ndarray | None:
        """Flat fields of one energy, rows ``[lo, hi)``, ``(n_flat, hi - lo, n_col)``."""
        if self.header.n_flat == 0:
            return None
        part = self._parts[energy]
        a, b, pad = self._clip_rows(lo, hi, self.header.shape[2])
        if part.flat_index is None:
            block = self._read(part.path, "flats", (slice(None), slice(a, b)))
        else:
            block = self._read(part.path, "flats", (part.flat_index, slice(None), slice(a, b)))
        if not np.all(np.isfinite(block)):
            raise XtwinInputError(
                f"{part.path or 'scan'}: flat fields contain NaN or infinite values"
            )
        return _edge_pad_rows(block[: self.header.n_flat], pad, axis=1)

    def dark_mean(self, lo: int, hi: int) -> np.ndarray | None:
        """Mean dark field over every dark frame of every file, rows ``[lo, hi)``."""
        if self.header.n_dark == 0:
            return None
        a, b, pad = self._clip_rows(lo, hi, self.header.shape[2])
        paths = sorted({p.path for p in self._parts}, key=lambda p: (p is None, p or ""))
        total = np.zeros((b - a, self.header.shape[3]))
        count = 0
        for path in paths:
            if path is not None and not self._has(path, "darks"):
                continue
            block = self._read(path, "darks", (Ellipsis, slice(a, b), slice(None)))
            block = block.reshape((-1,) + block.shape[-2:]).astype(np.float64)
            total += block.sum(axis=0)
            count += block.shape[0]
        mean = (total / max(count, 1)).astype(np.float32)
        return _edge_pad_rows(mean, pad, axis=0)

    def _has(self, path: str, name: str) -> bool:
        with self._lock:
            return _DATASETS[name] in self._file(path)

    def _check(self, block: np.ndarray, path: str | None, what: str) -> None:
        where = path or "scan"
        if block.dtype.kind == "f" and not np.all(np.isfinite(block)):
            bad = int(np.count_nonzero(~np.isfinite(block)))
            raise XtwinInputError(
                f"{where}: {bad} {what} values are NaN or infinite; remove or "
                "interpolate bad frames before processing"
            )
        if block.dtype.kind in "if" and np.any(block < 0):
            raise XtwinInputError(
                f"{where}: {what} contain negative values; give raw counts or "
                "transmission, not -log data"
            )

    def read_all(self):
        """The whole scan as a :class:`~xtwin.io.scan.ScanData` (for small scans)."""
        h = self.header
        n_e, n_a, n_r, n_c = h.shape
        data = np.stack([self.projections(e, 0, n_r) for e in range(n_e)])
        flats = (
            np.stack([self.flats(e, 0, n_r) for e in range(n_e)])  # type: ignore[misc]
            if h.n_flat
            else None
        )
        darks = self._all_darks() if h.n_dark else None
        return ScanData(
            data=data,
            flats=flats,
            darks=darks,
            theta_deg=h.theta_deg,
            energy_eV=h.energy_eV,
            pixel_size_m=h.pixel_size_m,
            counts_per_photon=h.counts_per_photon,
            exposure_s=h.exposure_s,
            flat_exposure_s=h.flat_exposure_s,
            metadata=h.metadata,
            provenance=h.provenance,
            notes=h.notes,
            pixel_size_assumed=h.pixel_size_assumed,
            projection_shifts_px=h.projection_shifts_px,
        )

    def _all_darks(self) -> np.ndarray:
        paths = sorted({p.path for p in self._parts}, key=lambda p: (p is None, p or ""))
        blocks = []
        for path in paths:
            if path is not None and not self._has(path, "darks"):
                continue
            b = self._read(path, "darks", (Ellipsis,))
            blocks.append(b.reshape((-1,) + b.shape[-2:]))
        return np.concatenate(blocks)


_DATASETS = {
    "data": "/exchange/data",
    "flats": "/exchange/data_white",
    "darks": "/exchange/data_dark",
}


def _edge_pad_rows(block: np.ndarray, pad: tuple[int, int], *, axis: int) -> np.ndarray:
    if pad == (0, 0):
        return block
    width = [(0, 0)] * block.ndim
    width[axis] = pad
    return np.pad(block, width, mode="edge")


def source_from_scan(scan) -> ScanSource:
    """Wrap an in-memory :class:`~xtwin.io.scan.ScanData` (energies sorted ascending)."""
    order = np.argsort(scan.energy_eV)
    sorted_scan = scan
    if np.any(order != np.arange(order.size)):

        def pick(a):
            return None if a is None else np.asarray(a)[order]

        sorted_scan = ScanData(
            data=scan.data[order],
            flats=pick(scan.flats),
            darks=scan.darks,
            theta_deg=scan.theta_deg,
            energy_eV=scan.energy_eV[order],
            pixel_size_m=scan.pixel_size_m,
            counts_per_photon=scan.counts_per_photon,
            exposure_s=pick(scan.exposure_s),
            flat_exposure_s=pick(scan.flat_exposure_s),
            metadata=scan.metadata,
            provenance=scan.provenance,
            notes=scan.notes,
            pixel_size_assumed=scan.pixel_size_assumed,
            projection_shifts_px=pick(scan.projection_shifts_px),
        )
    s = sorted_scan
    header = ScanHeader(
        shape=tuple(s.data.shape),
        dtype=s.data.dtype,
        theta_deg=s.theta_deg,  # type: ignore[arg-type]
        energy_eV=s.energy_eV,
        pixel_size_m=s.pixel_size_m,
        counts_per_photon=s.counts_per_photon,
        exposure_s=s.exposure_s,
        flat_exposure_s=s.flat_exposure_s,
        n_flat=0 if s.flats is None else s.flats.shape[1],
        n_dark=0 if s.darks is None else s.darks.shape[0],
        metadata=s.metadata,
        provenance=s.provenance,
        notes=s.notes,
        pixel_size_assumed=s.pixel_size_assumed,
        projection_shifts_px=s.projection_shifts_px,
    )
    parts = [ScanPart(None, e, e) for e in range(s.data.shape[0])]
    return ScanSource(header, parts, arrays=s)


def open_scan(paths: str | os.PathLike | list[str | os.PathLike]) -> ScanSource:
    """Open one scan file, or the single-energy files of one acquisition, lazily.

    Parameters
    ----------
    paths : path-like or list of path-like
        One Data Exchange file, or one file per energy.

    Returns
    -------
    ScanSource
        With a validated header; pixel values are checked as blocks are read.

    Raises
    ------
    XtwinInputError
        Missing, foreign or damaged files, missing datasets, inconsistent shapes or units,
        several multi-energy files (an operando series: process one time point per call).
    """
    plist = [Path(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    if not plist:
        raise XtwinInputError("no scan file given")
    infos = [read_header(p) for p in plist]
    if len(infos) == 1:
        h, parts = infos[0]
        return ScanSource(h, parts)
    if any(h.shape[0] != 1 for h, _ in infos):
        raise XtwinInputError(
            "several scan files were given and at least one holds several energies: that is an "
            "operando series; process one time point per call (one multi-energy file, or one "
            "file per energy of the same acquisition)"
        )
    ref = infos[0][0]
    for p, (h, _) in zip(plist, infos):
        if h.shape[1:] != ref.shape[1:] or not np.allclose(h.theta_deg, ref.theta_deg):
            raise XtwinInputError(
                f"{p}: its projections or angles differ from {plist[0]}; "
                "all energies of one acquisition must share the geometry"
            )
        if h.dtype != ref.dtype:
            raise XtwinInputError(
                f"{p}: projections of dtype {h.dtype}, but {plist[0]} has "
                f"{ref.dtype}; convert all energies the same way"
            )
        if (h.n_flat == 0) != (ref.n_flat == 0):
            raise XtwinInputError(
                f"{p}: some energies have flat fields and others not; give flats for every energy"
            )
        if not np.isclose(h.pixel_size_m, ref.pixel_size_m, rtol=0.05):
            raise XtwinInputError(
                f"{p}: pixel size {h.pixel_size_m:g} m differs from "
                f"{ref.pixel_size_m:g} m of {plist[0]} by more than 5 %"
            )
    energies = np.array([h.energy_eV[0] for h, _ in infos])
    if not np.all(np.isfinite(energies)):
        raise XtwinInputError(
            "several single-energy files were given and some record no energy: give each "
            f"file its {ENERGY_PATH} (one acquisition, one file per energy), or process "
            "files of one unknown energy as a series (all without an energy)"
        )
    if len(np.unique(energies)) != len(energies):
        raise XtwinInputError(
            f"the files repeat an energy ({energies.tolist()} eV); give one "
            "file per distinct energy"
        )
    order = np.argsort(energies)

    def cat(name: str) -> np.ndarray | None:
        vals = [getattr(infos[i][0], name) for i in order]
        return None if any(v is None for v in vals) else np.concatenate(vals)

    header = ScanHeader(
        shape=(len(plist),) + ref.shape[1:],
        dtype=ref.dtype,
        theta_deg=ref.theta_deg,
        energy_eV=energies[order],
        pixel_size_m=ref.pixel_size_m,
        counts_per_photon=ref.counts_per_photon,
        exposure_s=cat("exposure_s"),
        flat_exposure_s=cat("flat_exposure_s"),
        n_flat=min(h.n_flat for h, _ in infos),
        n_dark=sum(h.n_dark for h, _ in infos),
        metadata=ref.metadata,
        provenance={"merged_from": [str(p) for p in plist]},
        notes=tuple(n for i in order for n in infos[i][0].notes),
        pixel_size_assumed=ref.pixel_size_assumed,
        projection_shifts_px=cat("projection_shifts_px"),
        paths=tuple(str(plist[i]) for i in order),
    )
    parts = [infos[i][1][0] for i in order]
    return ScanSource(header, parts)


def read_scan(path: str | os.PathLike) -> ScanData:
    """Read and validate one scan file (Data Exchange layout) into memory.

    Files with 3D ``/exchange/data`` hold one energy. A file with one projection and no
    ``/exchange/theta`` is a 2D XANES image (theta = [0]). Energies come sorted ascending.
    For scans larger than memory use :func:`xtwin.io.source.open_scan`.

    Raises
    ------
    XtwinInputError
        Missing file, not HDF5, missing dataset, wrong shape, NaN projections, bad units.
    """

    def read(p: str | os.PathLike) -> ScanData:
        with open_scan(p) as src:
            return src.read_all()

    return read_guarded(path, "scan file", read, "it is damaged or truncated")


def series_order(paths: list[str | os.PathLike]) -> list[int] | None:
    """If ``paths`` are an operando series, their order in time (by ``/measurement/sample``
    attribute ``time_s``, else as given); else None.

    A series is several files each with several energies, or several single-energy files
    whose energy is the same (within 0.5 eV) or not recorded: single-energy scans repeated
    in time. Single-energy files of distinct energies are one acquisition, not a series.
    """
    import h5py

    if len(paths) < 2:
        return None
    times: list[float] = []
    singles: list[float] = []
    for p in paths:
        if not (Path(p).is_file() and h5py.is_hdf5(p)):
            return None
        try:
            with h5py.File(p, "r") as f:
                ds = f.get("/exchange/data")
                if ds is None or ds.ndim not in (3, 4):
                    return None
                one = ds.ndim == 3 or ds.shape[0] == 1
                if one:
                    e = f.get(ENERGY_PATH)
                    e_val = np.ravel(e[()]) if isinstance(e, h5py.Dataset) else np.zeros(0)
                    singles.append(float(e_val[0]) if e_val.size == 1 else float("nan"))
                t = (
                    f["/measurement/sample"].attrs.get("time_s")
                    if "/measurement/sample" in f
                    else None
                )
        except (OSError, RuntimeError) as exc:
            raise XtwinInputError(
                f"scan file {p} could not be read ({exc}); it is damaged: "
                "copy it again from the original"
            ) from None
        times.append(float(t) if t is not None else float(len(times)))
    if singles and len(singles) != len(paths):
        return None  # mixed: open_scan names the problem
    if singles:
        e = np.asarray(singles)
        same = np.all(np.isnan(e)) or (
            np.all(np.isfinite(e)) and float(np.ptp(e)) <= 0.5 * (1e-3 if e.max() < 100 else 1)
        )
        if not same:
            return None  # one acquisition, one file per energy
    return sorted(range(len(paths)), key=lambda i: times[i])


def read_scans(paths: list[str | os.PathLike]) -> ScanData:
    """Read one scan, or merge single-energy files of one acquisition into one scan.

    Raises
    ------
    XtwinInputError
        If several files hold several energies each (an operando series: see
        :func:`series_order`) or their geometry differs.
    """
    with open_scan(list(paths)) as src:
        return src.read_all()
