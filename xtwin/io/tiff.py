"""TIFF stacks with a small TOML or JSON sidecar -> the scan-file contract; Li maps -> TIFF.

The sidecar names the files and says what TIFF cannot (paths relative to the sidecar)::

    # scan.toml
    energies_eV = [8324.0, 8347.0, 8354.0]
    pixel_size_nm = 31.2              # or pixel_size_um / pixel_size_m
    angles_deg = {start = 0.0, stop = 180.0, count = 721}   # a list, or omit for 2D XANES
    data = ["sample_8324.tif", "sample_8347.tif", "sample_8354.tif"]   # one stack per energy
    flats = ["ref_8324.tif", "ref_8347.tif", "ref_8354.tif"]           # one stack per energy
    darks = "dark.tif"                # optional
    exposure_s = 1.0                  # optional: one value or one per energy
    flat_exposure_s = 1.0             # optional
    counts_per_photon = 1.0           # optional
    sample = "NMC532 cathode"         # optional, with time_s for operando series

A data stack holds one page per angle (a 3D TIFF of n_angle x rows x cols); a single ``data``
file may instead hold every energy, energy-major (n_energy x n_angle pages). Integer counts
stay counts; float pages are taken as transmission (then flats may be left out).

A folder of one image per projection, as many beamlines export it::

    # folder.toml (energies_eV left out: a single-energy scan)
    data = "proj_*.tif"              # a glob of one-image files, sorted by the number in the name
    flats = "flat.tif"                # single images (float32 beside uint16 projections is fine)
    darks = "dark.tif"
    angles_deg = "angles.txt"         # a text file: one angle per line (the first number)
    angles_lines = [3, 183]           # 1-based, inclusive: the lines of the projections
    pixel_size_um = 0.65              # optional: without it mu is given per pixel

``data``, ``flats`` and ``darks`` may each be a glob or a list (one entry per energy for
``data`` and ``flats``); a glob's files are ordered by the last number in their names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io.scan import ScanData

_KNOWN = {
    "energies_eV",
    "pixel_size_nm",
    "pixel_size_um",
    "pixel_size_m",
    "angles_deg",
    "data",
    "flats",
    "darks",
    "exposure_s",
    "flat_exposure_s",
    "counts_per_photon",
    "sample",
    "time_s",
    "angles_lines",
}

_GLOB_CHARS = set("*?[")


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML or JSON sidecar, refusing unknown keys (a typo must not pass silently)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise XtwinInputError(f"{path}: cannot read the sidecar ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            meta = json.loads(text)
        else:
            import tomllib

            meta = tomllib.loads(text)
    except ValueError as exc:
        raise XtwinInputError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from None
    if not isinstance(meta, dict):
        raise XtwinInputError(f"{path}: the sidecar must be a table of keys")
    unknown = sorted(set(meta) - _KNOWN)
    if unknown:
        raise XtwinInputError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
        )
    if "data" not in meta:
        raise XtwinInputError(f"{path}: the sidecar needs 'data'")
    for key in ("data", "flats", "darks"):
        val = meta.get(key)
        if val is None:
            continue
        items = val if isinstance(val, list) else [val]
        if not items or not all(isinstance(x, str) and x for x in items):
            raise XtwinInputError(
                f"{path}: {key!r} must be a file name or a list of file names, got {val!r}"
            )
    e = meta.get("energies_eV", [])
    if not isinstance(e, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in e
    ):
        raise XtwinInputError(f"{path}: 'energies_eV' must be a list of numbers (eV), got {e!r}")
    for key in ("pixel_size_nm", "pixel_size_um", "pixel_size_m", "counts_per_photon", "time_s"):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise XtwinInputError(f"{path}: {key!r} must be a number, got {v!r}")
    return meta


def _natural_key(path: Path) -> tuple:
    """Order files by the last number in their names (proj_2 before proj_10)."""
    import re

    nums = re.findall(r"\d+", path.stem)
    return (int(nums[-1]) if nums else -1, path.name)


def _expand(base: Path, name: str, what: str) -> list[Path]:
    """A file name, or a glob's files ordered by the number in their names.

    Raises
    ------
    XtwinInputError
        A glob that matches nothing.
    """
    if not (_GLOB_CHARS & set(name)):
        return [base / name]
    found = sorted((p for p in base.glob(name) if p.is_file()), key=_natural_key)
    if not found:
        raise XtwinInputError(f"{what} pattern {name!r} matches no file in {base}")
    return found


def _stack_of(base: Path, name: str, what: str) -> np.ndarray:
    """One TIFF stack, or the one-image files of a glob stacked in name order."""
    paths = _expand(base, name, what)
    if len(paths) == 1:
        return _stack(paths[0], what)
    pages = [_stack(p, what) for p in paths]
    shapes = {pg.shape[1:] for pg in pages}
    if len(shapes) != 1:
        raise XtwinInputError(
            f"{what} files {name!r} hold images of different sizes ({sorted(shapes)})"
        )
    dtypes = {pg.dtype for pg in pages}
    if len(dtypes) != 1:
        raise XtwinInputError(f"{what} files {name!r} mix pixel types ({sorted(map(str, dtypes))})")
    return np.concatenate(pages)


def _angles_from_text(path: Path, lines: Any, src: Path) -> np.ndarray:
    """Angles (degrees) from a text file: the first number of each chosen line.

    Raises
    ------
    XtwinInputError
        A missing file, a line range outside it, or a chosen line without a number.
    """
    import re

    if not path.is_file():
        raise XtwinInputError(f"{src}: angles file {path} does not exist; check angles_deg")
    text = path.read_text(errors="replace").splitlines()
    if lines is not None:
        if (
            not isinstance(lines, list)
            or len(lines) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in lines)
            or not 1 <= lines[0] <= lines[1] <= len(text)
        ):
            raise XtwinInputError(
                f"{src}: angles_lines must be [first, last] (1-based, inclusive) within the "
                f"{len(text)} lines of {path.name}, got {lines!r}"
            )
        chosen = list(enumerate(text[lines[0] - 1 : lines[1]], start=lines[0]))
    else:
        chosen = [(k, t) for k, t in enumerate(text, start=1) if t.strip()]
    number = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
    out = []
    for k, line in chosen:
        m = number.search(line)
        if m is None:
            raise XtwinInputError(
                f"{src}: line {k} of {path.name} ({line.strip()[:40]!r}) holds no angle; choose "
                "the projections' lines with angles_lines = [first, last]"
            )
        out.append(float(m.group()))
    return np.asarray(out)


def _stack(path: Path, what: str) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise XtwinInputError(f"{what} file {path} does not exist; check the sidecar's paths")
    try:
        arr = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 (tifffile raises many types for damaged files)
        raise XtwinInputError(
            f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); it is damaged or truncated"
        ) from None
    if arr.size == 0:
        raise XtwinInputError(
            f"{path}: not a readable TIFF (no image data); it is damaged or truncated"
        )
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise XtwinInputError(f"{path}: a {what} TIFF must be pages x rows x cols, got {arr.shape}")
    return arr


def _per_energy(value: Any, n_e: int, name: str, src: Path) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size not in (1, n_e) or not np.all(arr > 0):
        raise XtwinInputError(f"{src}: {name} must be one positive value or one per energy")
    return np.broadcast_to(arr, (n_e,)).copy()


def tiff_to_scan(sidecar: str | os.PathLike) -> ScanData:
    """Build a scan from TIFF stacks described by a sidecar (see the module docstring).

    Raises
    ------
    XtwinInputError
        A missing or damaged file, a missing key, a value of the wrong type, inconsistent
        shapes or counts.
    """
    try:
        return _tiff_to_scan(Path(sidecar))
    except (TypeError, ValueError) as exc:
        raise XtwinInputError(
            f"{sidecar}: a sidecar value has the wrong type or shape ({exc}); see the format "
            "in docs/file-formats.md"
        ) from None


def _tiff_to_scan(src: Path) -> ScanData:
    meta = read_sidecar(src)
    base = src.parent
    notes: list[str] = []
    energies = np.asarray(meta.get("energies_eV", []), dtype=float).ravel()
    if energies.size == 0:  # a single-energy scan of unrecorded energy
        energies = np.full(1, np.nan)
        notes.append("no energies_eV: a single-energy scan (attenuation only)")
    n_e = energies.size
    if not (np.all(np.isfinite(energies)) or n_e == 1):
        raise XtwinInputError(f"{src}: energies_eV must be a list of energies in eV")
    names = meta["data"] if isinstance(meta["data"], list) else [meta["data"]]
    stacks = [_stack_of(base, n, "data") for n in names]
    if len(stacks) == 1 and n_e > 1:
        whole = stacks[0]
        if whole.shape[0] % n_e:
            raise XtwinInputError(
                f"{src}: one data file with {whole.shape[0]} pages cannot hold {n_e} energies "
                "with the same number of angles"
            )
        stacks = list(whole.reshape((n_e, -1) + whole.shape[1:]))
    if len(stacks) != n_e:
        raise XtwinInputError(f"{src}: {len(stacks)} data files for {n_e} energies")
    if len({s.shape for s in stacks}) != 1:
        raise XtwinInputError(
            f"{src}: the data stacks differ in shape ({sorted({s.shape for s in stacks})})"
        )
    data = np.stack(stacks)
    n_a = data.shape[1]
    angles = meta.get("angles_deg")
    if angles is None:
        if n_a != 1:
            raise XtwinInputError(
                f"{src}: {n_a} pages per energy but no angles_deg; give the rotation angles"
            )
        theta = np.zeros(1)
    elif isinstance(angles, dict):
        try:
            theta = np.linspace(
                float(angles["start"]),
                float(angles["stop"]),
                int(angles["count"]),
                endpoint=bool(angles.get("endpoint", False)),
            )
        except (KeyError, TypeError, ValueError):
            raise XtwinInputError(
                f"{src}: angles_deg as a table needs start, stop and count (degrees)"
            ) from None
    elif isinstance(angles, str):
        theta = _angles_from_text(base / angles, meta.get("angles_lines"), src)
    else:
        theta = np.asarray(angles, dtype=float).ravel()
    if theta.size != n_a:
        raise XtwinInputError(f"{src}: {theta.size} angles for {n_a} pages per energy")
    flats = None
    if meta.get("flats") is not None:
        fnames = meta["flats"] if isinstance(meta["flats"], list) else [meta["flats"]]
        fl = [_stack_of(base, n, "flat") for n in fnames]
        if len(fl) == 1 and n_e > 1:
            fl = fl * n_e
        elif len(fl) > 1 and n_e == 1:  # several flat files of the one energy
            fl = [np.concatenate([f.astype(np.float32) for f in fl])]
        if len(fl) != n_e:
            raise XtwinInputError(f"{src}: {len(fl)} flat files for {n_e} energies")
        n_flat = min(f.shape[0] for f in fl)
        if any(f.shape[1:] != data.shape[2:] for f in fl):
            raise XtwinInputError(f"{src}: flats and data differ in image size")
        flats = np.stack([f[:n_flat] for f in fl])
    elif data.dtype.kind in "iu":
        raise XtwinInputError(f"{src}: integer counts need flat fields; add 'flats' to the sidecar")
    darks = None
    if meta.get("darks") is not None:
        dnames = meta["darks"] if isinstance(meta["darks"], list) else [meta["darks"]]
        darks = np.concatenate([_stack_of(base, n, "dark") for n in dnames])
        if flats is not None and darks.dtype != flats.dtype:
            darks = darks.astype(np.float32)
    pixel = None
    for key, scale in (("pixel_size_m", 1.0), ("pixel_size_um", 1e-6), ("pixel_size_nm", 1e-9)):
        if key in meta:
            pixel = float(meta[key]) * scale
    assumed = pixel is None
    if pixel is None:
        from xtwin.io.scan import ASSUMED_PIXEL_SIZE_M

        pixel = ASSUMED_PIXEL_SIZE_M
        notes.append(
            "no pixel size in the sidecar: mu is given per pixel"
            if n_e == 1
            else f"no pixel size in the sidecar: assumed {pixel:g} m (scales mu only)"
        )
    if not (1e-10 < pixel < 1e-2):
        raise XtwinInputError(
            f"{src}: pixel size {pixel:g} m is not plausible; give it at the sample "
            "(pixel_size_nm, _um or _m)"
        )
    sample_meta: dict[str, Any] = {k: meta[k] for k in ("sample", "time_s") if k in meta}
    return ScanData(
        data=data,
        flats=flats,
        darks=darks,
        theta_deg=theta,
        energy_eV=energies,
        pixel_size_m=pixel,
        counts_per_photon=float(meta.get("counts_per_photon", 1.0)),
        exposure_s=_per_energy(meta.get("exposure_s"), n_e, "exposure_s", src),
        flat_exposure_s=_per_energy(meta.get("flat_exposure_s"), n_e, "flat_exposure_s", src),
        metadata={"source": "TIFF", **sample_meta},
        provenance={
            "converted_from": [str(src)] + [str(base / n) for n in names],
            "reader": "xtwin.io.tiff",
            "notes": list(notes),
        },
        notes=tuple(notes),
        pixel_size_assumed=assumed,
    )


def export_tiff(limap_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write a Li map's volumes as float32 TIFF stacks for Avizo, Dragonfly and ImageJ.

    One file per quantity (lithiation, its sigma, the edge jump, the Ni mask, mu per energy,
    and the ``/edge`` maps), ImageJ hyperstacks with the pixel size in the resolution tags
    (micrometres) and ``spacing`` for the slice distance. Each file is written atomically.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import h5py
    import tifffile

    from xtwin._files import atomic_path, ensure_writable_dir
    from xtwin.io._h5 import open_h5

    out = ensure_writable_dir(out_dir)
    written: list[Path] = []
    with open_h5(limap_path, "Li-map file") as f:
        if "/recon/mu" not in f:
            raise XtwinInputError(
                f"{limap_path} is not a map file written by xtwin process (no /recon/mu)"
            )
        pixel_um = float(f["/recon/pixel_size_m"][()]) * 1e6
        unit = "um"
        if str(f["/recon/mu"].attrs.get("units", "")) == "1/pixel":  # no pixel size known
            pixel_um, unit = 1.0, "pixel"
        energies = np.atleast_1d(f["/recon/energy_eV"][()])
        items: list[tuple[str, Any]] = []
        if "/li/lithiation" in f:  # a single-energy map has the attenuation only
            items += [
                ("lithiation", f["/li/lithiation"]),
                ("lithiation_sigma", f["/li/sigma"]),
                ("ni_mask", f["/li/mask"]),
                ("edge_jump_per_m", f["/li/edge_jump_per_m"]),
            ]
        if "/edge" in f:
            for name, ds in f["/edge"].items():
                if isinstance(ds, h5py.Dataset) and name not in ("jump_per_m", "jump_sigma_per_m"):
                    items.append((f"edge_{name}", ds))
        for k, e in enumerate(energies):
            tag = f"{e:.1f}eV" if np.isfinite(e) else "energy_unknown"
            items.append((f"mu_{tag}", (f["/recon/mu"], k)))
            items.append((f"mu_sigma_{tag}", (f["/recon/mu_sigma"], k)))
        for name, ds in items:
            arr = ds[0][ds[1]] if isinstance(ds, tuple) else ds[()]
            arr = np.asarray(arr, dtype=np.float32)
            path = out / f"{name}.tif"
            with atomic_path(path) as tmp:
                tifffile.imwrite(
                    tmp,
                    arr,
                    imagej=True,
                    resolution=(1.0 / pixel_um, 1.0 / pixel_um),
                    metadata={"spacing": pixel_um, "unit": unit, "axes": "ZYX"[-arr.ndim :]},
                )
            written.append(path)
    return written
