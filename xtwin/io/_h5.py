"""Deterministic, atomic HDF5 writing and validating reads shared by the file contracts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from xtwin._files import atomic_path
from xtwin.errors import XtwinInputError

T = TypeVar("T")


def _convert_hint(path: Path, what: str) -> str:
    """What to do with a file that is not HDF5: the convert command for beamline files."""
    suffix = path.suffix.lower()
    if suffix in (".xrm", ".txrm"):
        return (
            f"it is an Xradia file: convert it first, with its reference files, by `xtwin "
            f"convert {path} [REFERENCES ...] -o scan.h5`, and process scan.h5"
        )
    if suffix in (".tif", ".tiff", ".toml", ".json"):
        return (
            "TIFF data are converted first through a sidecar that describes them: `xtwin "
            "convert scan.toml -o scan.h5` (docs/file-formats.md), then process scan.h5"
        )
    return f"give a {what} written in HDF5 (see docs/file-formats.md)"


def open_h5(path: str | os.PathLike, what: str):
    """Open an HDF5 file for reading, with a clear error when it is missing or not HDF5."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise XtwinInputError(f"{what} {path} does not exist; check the path")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError:
        is_h5 = False
    if not is_h5:
        raise XtwinInputError(f"{what} {path} is not an HDF5 file; {_convert_hint(path, what)}")
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise XtwinInputError(
            f"{what} {path} could not be opened ({exc}); it is damaged or truncated: copy it "
            "again from the original"
        ) from None


_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)


def read_guarded(path: str | os.PathLike, what: str, reader: Callable[[Any], T], fix: str) -> T:
    """Run ``reader(path)`` so that any failure reaches the user as :class:`XtwinInputError`
    naming the file (damaged, truncated or foreign files included); ``fix`` says what to do."""
    try:
        return reader(path)
    except XtwinInputError as exc:
        msg = str(exc)
        raise XtwinInputError(msg if str(path) in msg else f"{what} {path}: {msg}") from None
    except _READ_ERRORS as exc:
        raise XtwinInputError(f"{what} {path} could not be read ({exc}); {fix}") from None


def require(f, name: str, *, what: str, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    """Read dataset ``name`` from ``f`` or raise an error naming it and the fix."""
    if name not in f:
        raise XtwinInputError(
            f"{what} {f.filename} has no dataset {name}; "
            "see docs/file-formats.md for the layout it must follow"
        )
    ds = f[name]
    if ndim is not None and ds.ndim not in ndim:
        raise XtwinInputError(
            f"{what} {f.filename}: {name} has shape {ds.shape} ({ds.ndim}-D); "
            f"expected {' or '.join(map(str, ndim))} dimensions"
        )
    try:
        return ds[()]
    except (OSError, RuntimeError, ValueError) as exc:
        raise XtwinInputError(
            f"{what} {f.filename}: reading {name} failed ({exc}); the file is damaged or "
            "truncated: copy it again from the original"
        ) from None


def write_h5(
    path: str | os.PathLike,
    datasets: Mapping[str, Any],
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write ``datasets`` (path -> array) and ``attrs`` (path -> {name: value}) atomically.

    Times are not tracked, so the same content gives bit-identical files. Large numeric
    arrays are chunked and gzip-compressed (level 4, deterministic).
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as f:
            for name, value in datasets.items():
                arr = np.asarray(value)
                kwargs: dict[str, Any] = {"track_times": False}
                if arr.dtype.kind in "fiub" and arr.size >= 4096:
                    kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
                if arr.dtype.kind == "U":
                    arr = arr.astype(h5py.string_dtype())
                f.create_dataset(name, data=arr, **kwargs)
            for name, items in (attrs or {}).items():
                obj = f.require_group(name) if name not in f else f[name]
                for key, val in items.items():
                    obj.attrs[key] = attr_value(val)


def attr_value(val: Any) -> Any:
    """A value as an HDF5 attribute holds it: containers as JSON, None as "null"."""
    if isinstance(val, dict | list | tuple) and not isinstance(val, np.ndarray):
        return json.dumps(val, sort_keys=True, default=str)
    if val is None:
        return "null"
    return val


def attrs_dict(obj) -> dict[str, Any]:
    """Attributes of an HDF5 object as plain Python values (JSON strings decoded)."""
    out: dict[str, Any] = {}
    for key, val in obj.attrs.items():
        if isinstance(val, bytes):
            val = val.decode()
        if isinstance(val, str):
            try:
                val = json.loads(val)
            except ValueError:
                pass
        elif isinstance(val, np.generic):
            val = val.item()
        out[key] = val
    return out
