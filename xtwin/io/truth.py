"""The truth file, written by the twin only: what the pipeline must recover.

Layout::

    /truth/lithiation        (z, y, x) float32 on the reconstruction grid, NaN outside NMC
    /truth/labels            (z, y, x) int32 particle id (0 = none)
    /truth/phases            (z, y, x) uint8: 0 pore/electrolyte, 1 active, 2 carbon-binder,
                             3 closed internal pore (void), 255 outside the sample (air)
    /truth/fine/{lithiation,labels,phases}   the same on the fine simulation grid
    /truth/particles/{id,depth_m,radius_m,mean_lithiation,pybamm_lithiation,centre_m,...}
    /truth/pybamm/{time_s,voltage_V,current_A,depth_m,radius_m,...}
    /truth attrs: pixel_size_m, fine_pixel_size_m, snapshot_time_s, scenario (TOML), seed,
                  slab_conservation, versions, ... (docs/file-formats.md)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io._h5 import attrs_dict, open_h5, read_guarded, require, write_h5

PHASE_PORE, PHASE_ACTIVE, PHASE_CBD, PHASE_CLOSED_PORE = 0, 1, 2, 3
PARTICLE_COLUMNS = ("id", "depth_m", "radius_m", "mean_lithiation", "pybamm_lithiation")


@dataclass(frozen=True)
class TruthData:
    """Ground truth of one simulated time point.

    Attributes
    ----------
    lithiation, labels, phases : ndarray, (z, y, x)
        On the reconstruction grid (voxel ``pixel_size_m``).
    fine_lithiation, fine_labels, fine_phases : ndarray
        On the fine simulation grid (voxel ``fine_pixel_size_m``).
    particles : dict[str, ndarray]
        Per-particle columns, at least :data:`PARTICLE_COLUMNS` and ``centre_m`` (n, 3).
    pybamm : dict[str, ndarray]
        ``time_s``, ``voltage_V``, ``current_A`` of the electrochemical solution.
    attrs : dict
        ``pixel_size_m``, ``fine_pixel_size_m``, ``snapshot_time_s``, ``scenario``, ``seed``,
        ``versions``.
    """

    lithiation: np.ndarray
    labels: np.ndarray
    phases: np.ndarray
    fine_lithiation: np.ndarray
    fine_labels: np.ndarray
    fine_phases: np.ndarray
    particles: dict[str, np.ndarray]
    pybamm: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def pixel_size_m(self) -> float:
        """Voxel size of the reconstruction grid."""
        return float(self.attrs["pixel_size_m"])


def write_truth(path: str | os.PathLike, truth: TruthData) -> None:
    """Write a truth file atomically and deterministically."""
    ds: dict[str, Any] = {
        "/truth/lithiation": truth.lithiation.astype(np.float32),
        "/truth/labels": truth.labels.astype(np.int32),
        "/truth/phases": truth.phases.astype(np.uint8),
        "/truth/fine/lithiation": truth.fine_lithiation.astype(np.float32),
        "/truth/fine/labels": truth.fine_labels.astype(np.int32),
        "/truth/fine/phases": truth.fine_phases.astype(np.uint8),
    }
    for key, col in truth.particles.items():
        ds[f"/truth/particles/{key}"] = np.asarray(col)
    for key, col in truth.pybamm.items():
        ds[f"/truth/pybamm/{key}"] = np.asarray(col)
    write_h5(path, ds, {"/truth": dict(truth.attrs)})


def read_truth(path: str | os.PathLike) -> TruthData:
    """Read and validate a truth file.

    Raises
    ------
    XtwinInputError
        Missing, foreign, damaged or inconsistent files (the message names the file).
    """
    return read_guarded(
        path,
        "truth file",
        _read_truth,
        "it is damaged or not a truth file written by xtwin simulate",
    )


def _read_truth(path: str | os.PathLike) -> TruthData:
    with open_h5(path, "truth file") as f:
        what = "truth file"
        lith = require(f, "/truth/lithiation", what=what, ndim=(2, 3))
        labels = require(f, "/truth/labels", what=what, ndim=(2, 3))
        phases = require(f, "/truth/phases", what=what, ndim=(2, 3))
        if not (lith.shape == labels.shape == phases.shape):
            raise XtwinInputError(
                f"truth file {path}: lithiation, labels and phases differ in shape"
            )
        fine = {
            k: require(f, f"/truth/fine/{k}", what=what) for k in ("lithiation", "labels", "phases")
        }
        parts = (
            {k: f[f"/truth/particles/{k}"][()] for k in f["/truth/particles"]}
            if ("/truth/particles" in f)
            else {}
        )
        pyb = (
            {k: f[f"/truth/pybamm/{k}"][()] for k in f["/truth/pybamm"]}
            if ("/truth/pybamm" in f)
            else {}
        )
        attrs = attrs_dict(f["/truth"])
    if "pixel_size_m" not in attrs:
        raise XtwinInputError(f"truth file {path} has no pixel_size_m attribute on /truth")
    return TruthData(
        lith, labels, phases, fine["lithiation"], fine["labels"], fine["phases"], parts, pyb, attrs
    )
