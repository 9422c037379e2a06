"""The Li-map file: what the pipeline writes.

Layout::

    /li/lithiation     (z, y, x) float32 for tomography, (y, x) for 2D XANES; NaN where no Ni
    /li/sigma          its per-voxel standard uncertainty (same shape)
    /li/mask           uint8, 1 where Ni was found (edge jump significant)
    /li/edge_jump_per_m   the fitted Ni edge jump J (1/m; optical density for 2D)
    /li/edge_jump_sigma_per_m   its standard uncertainty
    /li/systematic     half the range of w over the reference-normalization conventions
                       (:mod:`xtwin.retrieve.conventions`), beside the noise /li/sigma
    /edge              attribute ``mode``: ``edge-jump`` (2 energies: lithiation all NaN),
                       ``three-energy`` or ``multi-energy`` (4 or more); links ``jump_per_m``
                       and ``jump_sigma_per_m`` to the edge jump; by mode
                       ``od_ratio`` (2 energies) or ``fit_chi2``, ``edge_position_eV``,
                       ``edge_position_sigma_eV``, ``white_line_eV``, ``white_line_sigma_eV``
                       (4 or more)
    /recon/mu          (n_energy, z, y, x) float32 linear attenuation (1/m); for 2D XANES the
                       optical density -ln(I/I0) per energy, (n_energy, y, x)
    /recon/mu_sigma    its per-voxel standard uncertainty
    /recon/energy_eV, /recon/pixel_size_m
                       (group attribute ``mode``; a single-energy scan's file, mode
                       ``attenuation``, holds only /recon: mu in 1/m, or in 1/pixel when
                       the scan recorded no pixel size (the ``units`` attribute says which),
                       energy NaN when not recorded)
    /provenance        attributes: input file hashes, options, versions, reader notes

Slice k of the volume is detector row k.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io._h5 import attrs_dict, open_h5, read_guarded, require, write_h5


@dataclass(frozen=True)
class LiMap:
    """Recovered lithiation with its uncertainty and the reconstruction it came from."""

    lithiation: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    edge_jump_per_m: np.ndarray
    mu_per_m: np.ndarray
    mu_sigma_per_m: np.ndarray
    energy_eV: np.ndarray
    pixel_size_m: float
    provenance: dict[str, Any] = field(default_factory=dict)
    edge_jump_sigma_per_m: np.ndarray | None = None
    edge: dict[str, np.ndarray] = field(default_factory=dict)
    mode: str = "three-energy"
    systematic: np.ndarray | None = None
    mu_units: str = "1/m"

    def __post_init__(self) -> None:
        shape = self.lithiation.shape
        for name, val in self.edge.items():
            if val.shape != shape:
                raise XtwinInputError(f"/edge/{name} has shape {val.shape}, lithiation {shape}")
        if self.lithiation.ndim not in (2, 3):
            raise XtwinInputError(f"lithiation must be (z, y, x) or (y, x), got {shape}")
        for name in ("sigma", "mask", "edge_jump_per_m"):
            if getattr(self, name).shape != shape:
                raise XtwinInputError(
                    f"{name} has shape {getattr(self, name).shape}, lithiation {shape}"
                )
        if self.mu_per_m.shape != (np.size(self.energy_eV),) + shape or (
            self.mu_sigma_per_m.shape != self.mu_per_m.shape
        ):
            raise XtwinInputError(
                f"mu has shape {self.mu_per_m.shape}; expected "
                f"({np.size(self.energy_eV)},) + {shape}"
            )
        if not (np.isfinite(self.pixel_size_m) and self.pixel_size_m > 0):
            raise XtwinInputError(f"pixel size {self.pixel_size_m} m is not positive")

    @property
    def is_tomography(self) -> bool:
        """True for a 3D (z, y, x) map, False for a 2D XANES (y, x) map."""
        return self.lithiation.ndim == 3

    @property
    def has_lithiation(self) -> bool:
        """False for a single-energy (attenuation-only) map."""
        return self.mode != "attenuation"


def write_limap(path: str | os.PathLike, limap: LiMap) -> None:
    """Write a Li-map file atomically and deterministically."""
    if not limap.has_lithiation:
        write_h5(
            path,
            {
                "/recon/mu": limap.mu_per_m.astype(np.float32),
                "/recon/mu_sigma": limap.mu_sigma_per_m.astype(np.float32),
                "/recon/energy_eV": np.asarray(limap.energy_eV, dtype=np.float64),
                "/recon/pixel_size_m": np.float64(limap.pixel_size_m),
            },
            {
                "/provenance": dict(limap.provenance),
                "/recon": {"mode": limap.mode},
                "/recon/mu": {"units": limap.mu_units},
                "/recon/mu_sigma": {"units": limap.mu_units},
            },
        )
        return
    write_h5(
        path,
        {
            "/li/lithiation": limap.lithiation.astype(np.float32),
            "/li/sigma": limap.sigma.astype(np.float32),
            "/li/mask": limap.mask.astype(np.uint8),
            "/li/edge_jump_per_m": limap.edge_jump_per_m.astype(np.float32),
            "/recon/mu": limap.mu_per_m.astype(np.float32),
            "/recon/mu_sigma": limap.mu_sigma_per_m.astype(np.float32),
            "/recon/energy_eV": np.asarray(limap.energy_eV, dtype=np.float64),
            "/recon/pixel_size_m": np.float64(limap.pixel_size_m),
            **(
                {"/li/edge_jump_sigma_per_m": limap.edge_jump_sigma_per_m.astype(np.float32)}
                if limap.edge_jump_sigma_per_m is not None
                else {}
            ),
            **{"/edge/" + k: v.astype(np.float32) for k, v in limap.edge.items()},
            **(
                {"/li/systematic": limap.systematic.astype(np.float32)}
                if limap.systematic is not None
                else {}
            ),
        },
        {
            "/provenance": dict(limap.provenance),
            **({"/edge": {"mode": limap.mode}} if limap.edge else {}),
            "/recon": {"mode": limap.mode},
            "/li/lithiation": {"units": "lithiation fraction"},
            "/recon/mu": {"units": limap.mu_units},
        },
    )


def read_limap(path: str | os.PathLike) -> LiMap:
    """Read and validate a Li-map file (damaged or foreign files: :class:`XtwinInputError`)."""
    return read_guarded(
        path,
        "Li-map file",
        _read_limap,
        "it is damaged or not a Li-map file: process the scan again",
    )


def is_attenuation_map(f) -> bool:
    """Whether an open HDF5 file is a single-energy map (``/recon/mu``, no lithiation)."""
    return "/li/lithiation" not in f and "/recon/mu" in f


def _read_attenuation(f, what: str) -> LiMap:
    mu = require(f, "/recon/mu", what=what, ndim=(3, 4))
    nan = np.full(mu.shape[1:], np.nan, dtype=np.float32)
    return LiMap(
        lithiation=nan,
        sigma=nan,
        mask=np.zeros(nan.shape, dtype=bool),
        edge_jump_per_m=nan,
        mu_per_m=mu,
        mu_sigma_per_m=require(f, "/recon/mu_sigma", what=what),
        energy_eV=np.atleast_1d(require(f, "/recon/energy_eV", what=what)),
        pixel_size_m=float(require(f, "/recon/pixel_size_m", what=what)),
        provenance=attrs_dict(f["/provenance"]) if "/provenance" in f else {},
        mode="attenuation",
        mu_units=str(f["/recon/mu"].attrs.get("units", "1/m")),
    )


def _read_limap(path: str | os.PathLike) -> LiMap:
    with open_h5(path, "Li-map file") as f:
        what = "Li-map file"
        if is_attenuation_map(f):
            return _read_attenuation(f, what)
        lith = require(f, "/li/lithiation", what=what, ndim=(2, 3))
        out = LiMap(
            lithiation=lith,
            sigma=require(f, "/li/sigma", what=what),
            mask=require(f, "/li/mask", what=what).astype(bool),
            edge_jump_per_m=require(f, "/li/edge_jump_per_m", what=what),
            mu_per_m=require(f, "/recon/mu", what=what),
            mu_sigma_per_m=require(f, "/recon/mu_sigma", what=what),
            energy_eV=require(f, "/recon/energy_eV", what=what),
            pixel_size_m=float(require(f, "/recon/pixel_size_m", what=what)),
            provenance=attrs_dict(f["/provenance"]) if "/provenance" in f else {},
            edge_jump_sigma_per_m=(
                f["/li/edge_jump_sigma_per_m"][()] if "/li/edge_jump_sigma_per_m" in f else None
            ),
            edge={
                k: v[()]
                for k, v in (f["/edge"].items() if "/edge" in f else ())
                if k not in ("jump_per_m", "jump_sigma_per_m")
            },
            systematic=f["/li/systematic"][()] if "/li/systematic" in f else None,
            mode=str(f["/edge"].attrs.get("mode", "three-energy"))
            if "/edge" in f
            else "three-energy",
        )
    return out


def regular_sample(ds, n: float = 2e6) -> np.ndarray:
    """About ``n`` values of an HDF5 dataset (or array), every step-th along each axis, read
    one slice of the first axis at a time (a few slices, not the whole dataset)."""
    step = max(1, int(np.ceil((ds.size / n) ** (1 / ds.ndim))))
    inner = (slice(None, None, step),) * (ds.ndim - 1)
    return np.concatenate([np.ravel(ds[z][inner]) for z in range(0, ds.shape[0], step)])


def read_limap_summary(path: str | os.PathLike, *, block: int = 16) -> tuple[int, float, float]:
    """(voxels with Ni, median lithiation, median sigma) of a Li-map file, read in blocks.

    The medians are taken over a regular subsample of about 2 million voxels (every
    step-th voxel along each axis: a few slices are read, not the whole maps), so any map
    size is summarized in bounded memory and time; the count reads the whole mask.
    """
    with open_h5(path, "Li-map file") as f:
        lith, sig, mask = f["/li/lithiation"], f["/li/sigma"], f["/li/mask"]
        count = 0
        for a in range(0, lith.shape[0], block):
            count += int(np.count_nonzero(mask[a : a + block]))
        lv, sv = regular_sample(lith), regular_sample(sig)
    med = float(np.nanmedian(lv)) if np.isfinite(lv).any() else float("nan")
    med_s = float(np.nanmedian(sv)) if np.isfinite(sv).any() else float("nan")
    return count, med, med_s


def read_mu_summary(path: str | os.PathLike) -> tuple[float, float, str]:
    """(median mu, median sigma of mu, units) of a map's ``/recon/mu`` over a regular
    subsample inside the reconstructed values (finite), read in bounded memory."""
    with open_h5(path, "Li-map file") as f:
        mu, sig = f["/recon/mu"], f["/recon/mu_sigma"]
        units = str(mu.attrs.get("units", "1/m"))
        mv, sv = regular_sample(mu), regular_sample(sig)
    ok = np.isfinite(mv)
    if not ok.any():
        return float("nan"), float("nan"), units
    return float(np.median(mv[ok])), float(np.nanmedian(sv)), units
