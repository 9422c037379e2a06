"""Where blocks go: arrays in memory, or ``OUT.h5.partial`` (disk check, resume, fsync),
behind one protocol that the executor sees."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from xtwin._files import apply_umask
from xtwin.errors import XtwinInputError
from xtwin.io import attr_value
from xtwin.io.direct import ALIGN, RawWriter
from xtwin.io.limap import regular_sample
from xtwin.io.source import ScanSource
from xtwin.pipeline._block import BlockResult
from xtwin.retrieve.voxels import EXTRA_UNITS, extra_fields

#: The solution's fields as the Li-map file names them.
_LI = ("lithiation", "sigma", "edge_jump_per_m", "edge_jump_sigma_per_m")


def extra_path(name: str) -> str:
    """Where an extra output lives in the Li-map file (without the leading slash)."""
    return "li/systematic" if name == "systematic" else "edge/" + name


def map_shapes(
    source: ScanSource, n_rows: int, extras: tuple[str, ...], mode: str = "three-energy"
) -> dict[str, tuple[int, ...]]:
    """Every output's shape for ``n_rows`` detector rows (the attenuation only for one
    energy)."""
    n_e, _, _, n_c = source.header.shape
    img = (n_rows, n_c, n_c) if source.header.is_tomography else (n_rows, n_c)
    mu = {"mu": (n_e,) + img, "mu_sigma": (n_e,) + img}
    if mode == "attenuation":
        return mu
    return {
        **mu,
        "lithiation": img,
        "sigma": img,
        "edge_jump_per_m": img,
        "edge_jump_sigma_per_m": img,
        **{extra_path(k): img for k in extras},
    }


def _maps(res: BlockResult) -> dict[str, np.ndarray]:
    s = res.solution
    if s is None:
        return {}
    out = dict(zip(_LI, (s.lithiation, s.sigma, s.edge_jump, s.edge_jump_sigma)))
    return out | {extra_path(k): v for k, v in res.extra.items()}


class Sink(Protocol):
    """Where the executor puts finished blocks."""

    done: np.ndarray  #: rows (relative to the first row processed) already finished

    def write(self, r0: int, res: BlockResult) -> None:
        """Store ``res`` at output row ``r0``."""


class ArraySink:
    """Blocks into arrays (in-memory processing)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.arrays = {k: np.full(s, np.nan, dtype=np.float32) for k, s in shapes.items()}
        self.mask = np.zeros(shapes["mu"][1:], dtype=bool)
        self.done = np.zeros(shapes["mu"][1], dtype=bool)
        self.resumed = 0

    def write(self, r0: int, res: BlockResult) -> None:
        """Copy the block's arrays into place."""
        r1 = r0 + res.hi - res.lo
        a = self.arrays
        a["mu"][:, r0:r1], a["mu_sigma"][:, r0:r1] = res.mu, res.mu_sigma
        for name, val in _maps(res).items():
            a[name][r0:r1] = val
        self.mask[r0:r1] = res.mask
        self.done[r0:r1] = True


class H5Sink:
    """Blocks into ``OUT.h5.partial``: contiguous datasets allocated up front, finished rows
    recorded after their data, so a killed run leaves a consistent, resumable file.

    The maps' bytes are written at their datasets' offsets past the page cache
    (:class:`xtwin.io.direct.RawWriter`; HDF5 writes the metadata, the mask and the rows done),
    where the system has ``pwrite`` and HDF5 gives the offsets, else through HDF5.
    """

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], key: str) -> None:
        import h5py

        self.path = path
        f = _reopen(path, shapes, key) if path.exists() else None
        if f is None and path.exists():
            path.unlink()  # made for other inputs or options, or damaged: start again
        _check_space(path, shapes, resuming=f is not None)
        if f is None:
            # large datasets on block boundaries: their rows go to the disk without staging
            f = h5py.File(
                path,
                "w",
                track_order=False,
                alignment_threshold=16 * ALIGN,
                alignment_interval=ALIGN,
            )
            for name, shape in _paths(shapes):
                _create(f, name, shape, np.float32)
            if "lithiation" in shapes:
                _create(f, "/li/mask", shapes["lithiation"], np.uint8)
            _create(f, "/pipeline/rows_done", (shapes["mu"][1],), np.uint8)
            f.attrs["resume_key"] = key
            f.flush()
        self.f = f
        self.done = np.asarray(f["/pipeline/rows_done"][()], dtype=bool)
        self.resumed = int(self.done.sum())
        self._where = _byte_layout(f, [name for name, _ in _paths(shapes)])
        self._raw = RawWriter(path) if self._where else None

    def write(self, r0: int, res: BlockResult) -> None:
        """Write the block, put it on the disk, then mark its rows done.

        Raises
        ------
        XtwinInputError
            The disk is full (the rows written so far stay resumable).
        """
        try:
            self._write(r0, res)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space left" in str(exc).lower():
                raise XtwinInputError(
                    f"the disk holding {self.path} is full ({exc}); free space and run the "
                    "same command again: it resumes from the rows already written"
                ) from None
            raise

    def _write(self, r0: int, res: BlockResult) -> None:
        f = self.f
        n = res.hi - res.lo
        per_energy = {"/recon/mu": res.mu, "/recon/mu_sigma": res.mu_sigma}
        per_map = {_h5_path(name): val for name, val in _maps(res).items()}
        if self._raw is not None:
            self._write_raw(r0, per_energy, per_map)
            per_energy, per_map = {}, {}
        energy_ds = [(f[name], val) for name, val in per_energy.items()]
        map_ds = [(f[name], val) for name, val in per_map.items()]
        # slice by slice: h5py holds one lock for every file, so one long write would stall
        # the reading of the next block from the scan file for its whole duration
        mask = np.asarray(res.mask, dtype=bool)
        ds_mask = f["/li/mask"] if res.solution is not None else None
        for k in range(n):
            for ds, val in energy_ds:
                for e in range(val.shape[0]):
                    ds[e, r0 + k] = val[e, k]
            for ds, val in map_ds:
                ds[r0 + k] = val[k]
            if ds_mask is not None:
                ds_mask[r0 + k] = mask[k].view(np.uint8)
        f.flush()
        _to_disk(f)
        f["/pipeline/rows_done"][r0 : r0 + n] = 1  # last: rows count once their data are in
        f.flush()
        self.done[r0 : r0 + n] = True

    def _write_raw(
        self, r0: int, per_energy: dict[str, np.ndarray], per_map: dict[str, np.ndarray]
    ) -> None:
        """The block's rows of every map at their byte offsets (rows ``r0...`` of each
        energy are one run of bytes in the file)."""
        assert self._raw is not None
        for name, val in per_energy.items():
            base, n_rows, row_bytes = self._where[name]
            for e in range(val.shape[0]):
                at = base + (e * n_rows + r0) * row_bytes
                self._raw.write(at, np.ascontiguousarray(val[e], np.float32))
        for name, val in per_map.items():
            base, _, row_bytes = self._where[name]
            self._raw.write(base + r0 * row_bytes, np.ascontiguousarray(val, np.float32))

    def finish(
        self,
        out: Path,
        energy_eV: np.ndarray,
        pixel_size_m: float,
        provenance: dict[str, Any],
        mode: str = "three-energy",
        mu_units: str = "1/m",
    ) -> None:
        """Units, links and provenance; the partial file renamed to ``out``."""
        f = self.f
        f["/recon/energy_eV"] = np.asarray(energy_eV, dtype=np.float64)
        f["/recon/pixel_size_m"] = np.float64(pixel_size_m)
        f["/recon/mu"].attrs["units"] = mu_units
        f["/recon/mu_sigma"].attrs["units"] = mu_units
        f["/recon"].attrs["mode"] = mode
        if mode != "attenuation":
            self._finish_li(mode, provenance)
        g = f.require_group("/provenance")
        for k, v in provenance.items():
            g.attrs[k] = attr_value(v)
        del f["/pipeline"]
        del f.attrs["resume_key"]
        self._close_raw()
        f.close()
        apply_umask(self.path)
        os.replace(self.path, out)

    def _finish_li(self, mode: str, provenance: dict[str, Any]) -> None:
        """The lithiation's units, the edge group's links and the systematic's summary."""
        import h5py

        f = self.f
        f["/li/lithiation"].attrs["units"] = "lithiation fraction"
        f["/li/edge_jump_per_m"].attrs["units"] = "1/m (optical density for 2D XANES)"
        edge = f.require_group("/edge")
        edge.attrs["mode"] = mode
        edge["jump_per_m"] = h5py.SoftLink("/li/edge_jump_per_m")
        edge["jump_sigma_per_m"] = h5py.SoftLink("/li/edge_jump_sigma_per_m")
        for name in extra_fields(mode, "/li/systematic" in f):
            f["/" + extra_path(name)].attrs["units"] = EXTRA_UNITS[name]
        if "/li/systematic" in f:
            ds = f["/li/systematic"]
            conv = provenance.get("normalization_conventions", {})
            ds.attrs["conventions"] = json.dumps(conv.get("used", []))
            sub = regular_sample(ds)  # a few slices read back, not the whole map
            ds.attrs["map_median"] = (
                float(np.nanmedian(sub)) if np.isfinite(sub).any() else float("nan")
            )

    def close(self) -> None:
        """Close the file (after an error too, without masking it)."""
        try:
            self._close_raw()
            self.f.close()
        except Exception:  # noqa: BLE001 (closing after an error must not mask it)
            pass

    def _close_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None


def _byte_layout(f, names: list[str]) -> dict[str, tuple[int, int, int]]:
    """Each float map's (byte offset, rows, bytes per row) in the file, or ``{}`` when the
    maps cannot be written at offsets (no ``pwrite``, or a dataset without one)."""
    if not hasattr(os, "pwrite"):
        return {}
    out = {}
    for name in names:
        ds = f[name]
        offset = ds.id.get_offset()
        if offset is None or ds.dtype != np.dtype(np.float32):
            return {}
        lead = 2 if name.startswith("/recon/mu") else 1  # (energy, row, ...) or (row, ...)
        out[name] = (int(offset), ds.shape[lead - 1], int(np.prod(ds.shape[lead:])) * 4)
    return out


def _check_space(path: Path, shapes: dict[str, tuple[int, ...]], resuming: bool) -> None:
    """Refuse up front a Li map that the disk cannot hold (the datasets are allocated
    sparse, so a full disk would otherwise stop the run hours in).

    Raises
    ------
    XtwinInputError
        With the sizes.
    """
    total = sum(4 * int(np.prod(s)) for s in shapes.values())
    total += int(np.prod(shapes.get("lithiation", 0)))  # the mask
    on_disk = getattr(os.stat(path), "st_blocks", 0) * 512 if resuming else 0
    free = shutil.disk_usage(path.parent).free
    if total - on_disk > free:
        raise XtwinInputError(
            f"the Li map needs {total / 1e9:.1f} GB ({(total - on_disk) / 1e9:.1f} GB more "
            f"than {path.name} holds) but {path.parent} has {free / 1e9:.1f} GB free; free "
            "space, write the output elsewhere (-o), or process fewer rows (--rows)"
        )


def _reopen(path: Path, shapes: dict[str, tuple[int, ...]], key: str):
    """The partial file opened for resuming, or None when it does not match or is damaged.

    Raises
    ------
    XtwinInputError
        The file is locked by another running process.
    """
    import h5py

    try:
        f = h5py.File(path, "r+")
    except OSError as exc:
        if "lock" in str(exc).lower():
            raise XtwinInputError(
                f"{path} is being written by another running process (the file is "
                "locked); wait for it to finish, or stop it and run again to resume"
            ) from None
        return None
    try:
        if f.attrs.get("resume_key") == key and all(
            name in f and f[name].shape == s for name, s in _paths(shapes)
        ):
            return f
    except (OSError, RuntimeError):
        pass
    f.close()
    return None


def _h5_path(k: str) -> str:
    """The dataset of an output named as :func:`map_shapes` names it."""
    if "/" in k:
        return "/" + k
    return "/recon/" + k if k.startswith("mu") else "/li/" + k


def _paths(shapes: dict[str, tuple[int, ...]]) -> Iterator[tuple[str, tuple[int, ...]]]:
    for k, s in shapes.items():
        yield _h5_path(k), s


def _create(f, name: str, shape: tuple[int, ...], dtype) -> None:
    """A contiguous dataset allocated now and never filled (the blocks write every value)."""
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(shape)
    grp = f.require_group(name.rsplit("/", 1)[0])
    h5py.h5d.create(
        grp.id,
        name.rsplit("/", 1)[1].encode(),
        h5py.h5t.py_create(np.dtype(dtype)),
        space,
        dcpl=dcpl,
    )


def _to_disk(f) -> None:
    """The block's data onto the disk (so rows marked done survive a crash of the machine,
    too), and out of the page cache: a Li map is several times the memory of a machine, and
    evicting it again costs the kernel more CPU than writing it (2.7 s of system time per GB
    at 1024 x 512 x 721 x 3 on a 2-core VM)."""
    try:
        fd = f.id.get_vfd_handle()
    except (AttributeError, RuntimeError, ValueError):  # not a plain (sec2) file
        return
    if not isinstance(fd, int):
        return
    os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
