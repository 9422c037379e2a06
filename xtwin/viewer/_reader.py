"""napari reader for every file xtwin writes or reads: Li maps (three-energy, XANES stacks,
edge-jump and single-energy), truth files, scan files, and an operando series of Li maps as a
time axis. Layers are lazy (dask arrays over the HDF5 datasets: a map larger than memory opens
in seconds) and carry their physical scale (um) and units.

Only ``h5py``, ``numpy`` and ``dask`` are imported here: napari calls :func:`get_reader` for
every file it is asked to open, and a file that is not xtwin's gets ``None`` (napari then
tries its other readers).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, dict[str, Any], str]

#: Perceptual colormap of lithiation, with fixed limits (0 = delithiated, 1 = lithiated).
LITHIATION_COLORMAP = "viridis"

#: The files' kinds, as :func:`file_kind` names them.
KINDS = ("limap", "attenuation", "truth", "scan")


def file_kind(path: str | os.PathLike) -> str | None:
    """``limap``, ``attenuation``, ``truth``, ``scan``, or None (not an xtwin file)."""
    import h5py

    p = Path(path)
    if p.suffix.lower() not in (".h5", ".hdf5", ".hdf") or not p.is_file():
        return None
    try:
        if not h5py.is_hdf5(p):
            return None
        with h5py.File(p, "r") as f:
            if "/li/lithiation" in f:
                return "limap"
            if "/recon/mu" in f:
                return "attenuation"
            if "/truth/lithiation" in f:
                return "truth"
            if "/exchange/data" in f:
                return "scan"
    except (OSError, RuntimeError, ValueError):
        return None
    return None


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """napari's reader hook: a function that reads ``path`` (or a list: an operando series
    of Li maps as a time axis), or None when the file(s) are not xtwin's."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    kinds = [file_kind(p) for p in paths]
    if not paths or any(k is None for k in kinds):
        return None
    if len(paths) > 1 and not all(k == "limap" for k in kinds):
        return None  # several files: napari calls us once per file
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Every layer of an xtwin file (or of an operando series of Li maps)."""
    paths = [str(path)] if isinstance(path, str | os.PathLike) else [str(p) for p in path]
    if len(paths) > 1:
        return _series_layers(paths)
    kind = file_kind(paths[0])
    if kind == "limap":
        return _limap_layers(paths[0])
    if kind == "attenuation":
        return _mu_layers(paths[0], visible=True)
    if kind == "truth":
        return _truth_layers(paths[0])
    if kind == "scan":
        return _scan_layers(paths[0])
    raise ValueError(f"{paths[0]} is not a file xtwin reads")


def _lazy(path: str, name: str):
    """A dask array over an HDF5 dataset, one slice of the first axis per chunk (the file
    stays open while napari shows it)."""
    import dask.array as da
    import h5py

    ds = h5py.File(path, "r")[name]
    chunks = (1,) + ds.shape[1:] if ds.ndim >= 3 else ds.shape
    return da.from_array(ds, chunks=chunks, lock=True, fancy=False)


def _limits(path: str, name: str) -> tuple[float, float]:
    """Contrast limits from a regular sample of a few slices (never the whole dataset)."""
    import h5py

    from xtwin.io.limap import regular_sample

    with h5py.File(path, "r") as f:
        sub = regular_sample(f[name], 2e5)
    sub = sub[np.isfinite(sub)]
    if sub.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sub, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _pixel_um(path: str, key: str) -> float:
    import h5py

    with h5py.File(path, "r") as f:
        if key in f:
            return float(np.ravel(f[key][()])[0]) * 1e6
        if "/truth" in f and "pixel_size_m" in f["/truth"].attrs:
            return float(f["/truth"].attrs["pixel_size_m"]) * 1e6
    return 1.0


def _geometry(ndim: int, pix_um: float, per_pixel: bool = False) -> dict[str, Any]:
    """Scale, units and axis labels of a (z, y, x) or (y, x) volume."""
    unit = "pixel" if per_pixel else "um"
    labels = ("z", "y", "x")[-ndim:]
    return {
        "scale": (pix_um,) * ndim,
        "units": (unit,) * ndim,
        "axis_labels": labels,
    }


def _with_lead(geom: dict[str, Any], lead: str) -> dict[str, Any]:
    """The geometry with a leading non-spatial axis (energy, angle or time)."""
    return {
        "scale": (1.0,) + tuple(geom["scale"]),
        "units": ("pixel",) + tuple(geom["units"]),
        "axis_labels": (lead,) + tuple(geom["axis_labels"]),
    }


def _limap_layers(path: str) -> list[LayerData]:
    import h5py

    name = Path(path).stem
    with h5py.File(path, "r") as f:
        mode = str(f["/edge"].attrs.get("mode", "three-energy")) if "/edge" in f else ""
        ndim = f["/li/lithiation"].ndim
        edge_maps = [
            k
            for k, v in (f["/edge"].items() if "/edge" in f else ())
            if isinstance(v, h5py.Dataset) and k not in ("jump_per_m", "jump_sigma_per_m")
        ]
        has_sys = "/li/systematic" in f
        has_jump = "/li/edge_jump_per_m" in f
        has_mu = "/recon/mu" in f
    pix = _pixel_um(path, "/recon/pixel_size_m")
    geom = _geometry(ndim, pix)
    meta = {"xtwin_kind": "limap", "xtwin_path": path, "xtwin_mode": mode}
    layers: list[LayerData] = []
    edge_jump_only = mode == "edge-jump"
    if not edge_jump_only:
        layers.append(
            (
                _lazy(path, "/li/lithiation"),
                {
                    "name": f"{name}: lithiation w",
                    "colormap": LITHIATION_COLORMAP,
                    "contrast_limits": (0.0, 1.0),
                    "metadata": {**meta, "quantity": "lithiation", "unit": "lithiation fraction"},
                    **geom,
                },
                "image",
            )
        )
        layers.append(
            (
                _lazy(path, "/li/sigma"),
                {
                    "name": f"{name}: sigma of w",
                    "colormap": "magma",
                    "contrast_limits": _limits(path, "/li/sigma"),
                    "visible": False,
                    "metadata": {**meta, "quantity": "sigma", "unit": "lithiation fraction"},
                    **geom,
                },
                "image",
            )
        )
        if has_sys:
            layers.append(
                (
                    _lazy(path, "/li/systematic"),
                    {
                        "name": f"{name}: systematic of w",
                        "colormap": "magma",
                        "contrast_limits": _limits(path, "/li/systematic"),
                        "visible": False,
                        "metadata": {**meta, "quantity": "systematic"},
                        **geom,
                    },
                    "image",
                )
            )
    jump = (
        []
        if not has_jump
        else [
            (
                _lazy(path, "/li/edge_jump_per_m"),
                {
                    "name": f"{name}: Ni edge jump",
                    "colormap": "gray",
                    "contrast_limits": _limits(path, "/li/edge_jump_per_m"),
                    "visible": edge_jump_only,
                    "metadata": {**meta, "quantity": "edge_jump", "unit": "1/m"},
                    **geom,
                },
                "image",
            )
        ]
    )
    layers += jump
    for k in edge_maps:
        layers.append(
            (
                _lazy(path, "/edge/" + k),
                {
                    "name": f"{name}: {k}",
                    "colormap": "twilight_shifted" if k.endswith("_eV") else "magma",
                    "contrast_limits": _limits(path, "/edge/" + k),
                    "visible": False,
                    "metadata": {**meta, "quantity": k},
                    **geom,
                },
                "image",
            )
        )
    layers += _mu_layers(path, visible=False) if has_mu else []
    layers.append(
        (
            _lazy(path, "/li/mask"),
            {
                "name": f"{name}: Ni mask",
                "opacity": 0.3,
                "visible": False,
                "metadata": {**meta, "quantity": "mask"},
                **geom,
            },
            "labels",
        )
    )
    return layers


def _mu_layers(path: str, visible: bool) -> list[LayerData]:
    """``/recon/mu`` and its sigma, energy as a slider."""
    import h5py

    name = Path(path).stem
    with h5py.File(path, "r") as f:
        unit = str(f["/recon/mu"].attrs.get("units", "1/m"))
        energies = np.atleast_1d(f["/recon/energy_eV"][()]).tolist()
        ndim = f["/recon/mu"].ndim - 1
    per_pixel = unit == "1/pixel"
    geom = _with_lead(_geometry(ndim, _pixel_um(path, "/recon/pixel_size_m"), per_pixel), "energy")
    meta = {"xtwin_kind": "recon", "xtwin_path": path, "energy_eV": energies, "unit": unit}
    return [
        (
            _lazy(path, "/recon/mu"),
            {
                "name": f"{name}: mu ({unit})",
                "colormap": "gray",
                "contrast_limits": _limits(path, "/recon/mu"),
                "visible": visible,
                "metadata": {**meta, "quantity": "mu"},
                **geom,
            },
            "image",
        ),
        (
            _lazy(path, "/recon/mu_sigma"),
            {
                "name": f"{name}: sigma of mu ({unit})",
                "colormap": "magma",
                "contrast_limits": _limits(path, "/recon/mu_sigma"),
                "visible": False,
                "metadata": {**meta, "quantity": "mu_sigma"},
                **geom,
            },
            "image",
        ),
    ]


def _truth_layers(path: str) -> list[LayerData]:
    import h5py

    name = Path(path).stem
    with h5py.File(path, "r") as f:
        ndim = f["/truth/lithiation"].ndim
        pix = float(f["/truth"].attrs.get("pixel_size_m", 1e-6)) * 1e6
    geom = _geometry(ndim, pix)
    meta = {"xtwin_kind": "truth", "xtwin_path": path}
    return [
        (
            _lazy(path, "/truth/lithiation"),
            {
                "name": f"{name}: true w",
                "colormap": LITHIATION_COLORMAP,
                "contrast_limits": (0.0, 1.0),
                "metadata": {**meta, "quantity": "lithiation", "unit": "lithiation fraction"},
                **geom,
            },
            "image",
        ),
        (
            _lazy(path, "/truth/phases"),
            {
                "name": f"{name}: phases (1 active, 2 carbon-binder, 3 internal pore)",
                "opacity": 0.3,
                "visible": False,
                "metadata": {**meta, "quantity": "phases"},
                **geom,
            },
            "labels",
        ),
        (
            _lazy(path, "/truth/labels"),
            {
                "name": f"{name}: true particles",
                "opacity": 0.4,
                "visible": False,
                "metadata": {**meta, "quantity": "labels"},
                **geom,
            },
            "labels",
        ),
    ]


def _scan_layers(path: str) -> list[LayerData]:
    """Projections (energy and angle as sliders), flats and darks, raw counts."""
    import h5py

    from xtwin.io.scan import read_header

    h = read_header(path)[0]
    name = Path(path).stem
    pix = 1.0 if h.pixel_size_assumed else h.pixel_size_m * 1e6
    unit = "pixel" if h.pixel_size_assumed else "um"
    meta = {
        "xtwin_kind": "scan",
        "xtwin_path": path,
        "energy_eV": h.energy_eV.tolist(),
        "theta_deg": h.theta_deg.tolist(),
    }
    data = _lazy(path, "/exchange/data")
    if data.ndim == 3:
        data = data[None]
    geom = {
        "scale": (1.0, 1.0, pix, pix),
        "units": ("pixel", "pixel", unit, unit),
        "axis_labels": ("energy", "angle", "y", "x"),
    }
    layers: list[LayerData] = [
        (
            data,
            {
                "name": f"{name}: projections (counts)",
                "colormap": "gray",
                "contrast_limits": _limits(path, "/exchange/data"),
                "metadata": {**meta, "quantity": "projections"},
                **geom,
            },
            "image",
        )
    ]
    with h5py.File(path, "r") as f:
        extra = [k for k in ("/exchange/data_white", "/exchange/data_dark") if k in f]
    for key in extra:
        arr = _lazy(path, key)
        lead = arr.ndim - 2
        layers.append(
            (
                arr,
                {
                    "name": f"{name}: {'flats' if 'white' in key else 'darks'}",
                    "colormap": "gray",
                    "contrast_limits": _limits(path, key),
                    "visible": False,
                    "metadata": {**meta, "quantity": key.rsplit("/", 1)[1]},
                    "scale": (1.0,) * lead + (pix, pix),
                    "units": ("pixel",) * lead + (unit, unit),
                },
                "image",
            )
        )
    return layers


def _series_layers(paths: list[str]) -> list[LayerData]:
    """Li maps of an operando series as one time axis (in the files' time order)."""
    import dask.array as da
    import h5py

    from xtwin.analysis.series import series_times
    from xtwin.errors import XtwinInputError

    shapes = []
    for p in paths:
        with h5py.File(p, "r") as f:
            shapes.append(f["/li/lithiation"].shape)
    # the times xtwin analyze uses (the scans' time_s or start dates), else the order given
    times = series_times(paths) or [float(k) for k in range(len(paths))]
    if len(set(shapes)) != 1:
        raise XtwinInputError(
            f"the Li maps of a series must share one shape; got {sorted(set(shapes))}"
        )
    order = np.argsort(times, kind="stable")
    paths = [paths[i] for i in order]
    pix = _pixel_um(paths[0], "/recon/pixel_size_m")
    geom = _with_lead(_geometry(len(shapes[0]), pix), "time")
    meta = {
        "xtwin_kind": "series",
        "xtwin_paths": paths,
        "time_s": [times[i] for i in order],
    }

    def stack(name: str):
        return da.stack([_lazy(p, name) for p in paths])

    return [
        (
            stack("/li/lithiation"),
            {
                "name": "series: lithiation w",
                "colormap": LITHIATION_COLORMAP,
                "contrast_limits": (0.0, 1.0),
                "metadata": {**meta, "quantity": "lithiation"},
                **geom,
            },
            "image",
        ),
        (
            stack("/li/sigma"),
            {
                "name": "series: sigma of w",
                "colormap": "magma",
                "contrast_limits": _limits(paths[0], "/li/sigma"),
                "visible": False,
                "metadata": {**meta, "quantity": "sigma"},
                **geom,
            },
            "image",
        ),
        (
            stack("/li/mask"),
            {
                "name": "series: Ni mask",
                "opacity": 0.3,
                "visible": False,
                "metadata": {**meta, "quantity": "mask"},
                **geom,
            },
            "labels",
        ),
    ]
