"""What every block needs, decided once before the blocks run (picklable: blocks may run on
dask workers, which reopen the scan)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtwin.io.source import ScanSource
from xtwin.retrieve.voxels import VoxelRules


@dataclass(frozen=True)
class BlockContext:
    """The scan, the registration, the geometry and the retrieval rules of every block.

    Attributes
    ----------
    source : ScanSource
    rules : VoxelRules
        Calibration, Ni-mask reference and thresholds, alternative calibrations.
    shifts : ndarray, shape (n_energy, 2)
        Detector shifts (rows, cols) per energy, px.
    center_offset_px : float
        Rotation axis minus detector centre.
    method : str
        Reconstruction backend.
    exposure_ratio : ndarray
        Projection over flat exposure per energy.
    lost_rows : ndarray of bool
        Detector rows not seen at every energy (no lithiation there).
    threads : int
    scales : ndarray, optional
        Magnification per energy.
    lost_cols : ndarray of bool, optional
        Detector columns not seen at every energy (2D: no lithiation there).
    projection_offsets : ndarray, optional
        (n_energy, n_angle, 2) run-out (rows, cols) undone per projection.
    remove_rings : bool
    """

    source: ScanSource
    rules: VoxelRules
    shifts: np.ndarray
    center_offset_px: float
    method: str
    exposure_ratio: np.ndarray
    lost_rows: np.ndarray
    threads: int = 1
    scales: np.ndarray | None = None
    lost_cols: np.ndarray | None = None
    projection_offsets: np.ndarray | None = None
    remove_rings: bool = False

    def transform(self, energy: int) -> tuple[float, float, float]:
        """Energy ``energy``'s registration: detector shift (rows, cols; px) and scale."""
        dy, dx = (float(x) for x in self.shifts[energy])
        return dy, dx, 1.0 if self.scales is None else float(self.scales[energy])

    def reconstruction_shift(self, energy: int) -> float:
        """The part of ``energy``'s column shift (px) that its reconstruction undoes (a phase
        ramp in the filter, at no cost) instead of the reader: all of it for tomography
        without a magnification change (the reader resamples the columns for a scale
        anyway), none in 2D."""
        _, dx, sc = self.transform(energy)
        return dx if self.source.header.is_tomography and sc == 1.0 else 0.0

    def reconstruction_shifts(self) -> np.ndarray | None:
        """:meth:`reconstruction_shift` of every energy (None where all are zero)."""
        shifts = np.array([self.reconstruction_shift(e) for e in range(self.shifts.shape[0])])
        return shifts if shifts.any() else None

    def read_transform(self, energy: int) -> tuple[float, float, float]:
        """:meth:`transform` less the column shift the reconstruction undoes: what the reader
        applies."""
        dy, dx, sc = self.transform(energy)
        return dy, dx - self.reconstruction_shift(energy), sc

    @property
    def mu_per_pixel(self) -> bool:
        """The attenuation is given per pixel: a single-energy scan without a pixel size
        (with lithiation the pixel size assumed only scales mu, which the ratio ignores)."""
        return self.rules.calibration.mode == "attenuation" and bool(
            self.source.header.pixel_size_assumed
        )

    @property
    def mu_length_m(self) -> float:
        """The length mu is given per: the pixel size, or 1 (mu in 1/pixel)."""
        return 1.0 if self.mu_per_pixel else float(self.source.header.pixel_size_m)

    @property
    def extras(self) -> tuple[str, ...]:
        """The per-voxel outputs beyond the standard ones."""
        return self.rules.extras

    def slice_pool(self, threads: int | None = None):
        """Threads with one reconstruction backend each, for this scan's geometry (None for
        2D XANES)."""
        h = self.source.header
        if not h.is_tomography:
            return None
        from xtwin.recon.volume import SlicePool

        return SlicePool(
            self.method,
            h.shape[3],
            h.theta_deg,
            self.center_offset_px,
            self.threads if threads is None else threads,
        )
