"""Reconstruct a whole (in-memory) absorbance stack, slice by slice, in parallel threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from xtwin.recon.fbp import SliceReconstructor, check_tomography, make_reconstructor


@dataclass(frozen=True)
class Volume:
    """Reconstructed linear attenuation per energy, axes (energy, z, y, x); slice z = row z."""

    mu_per_m: np.ndarray
    mu_sigma_per_m: np.ndarray
    energy_eV: np.ndarray
    pixel_size_m: float
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mu_per_m.shape != self.mu_sigma_per_m.shape or self.mu_per_m.ndim != 4:
            raise ValueError("mu and its sigma must share one (energy, z, y, x) shape")
        if self.mu_per_m.shape[0] != np.size(self.energy_eV):
            raise ValueError("one energy per mu volume")


class SlicePool:
    """Reconstruct blocks of slices on threads, one backend instance per thread.

    Results do not depend on the number of threads: each slice is computed alone.
    """

    def __init__(
        self,
        method: str,
        n_col: int,
        theta_deg: np.ndarray,
        center_offset_px: float,
        workers: int | None = None,
    ) -> None:
        self.args = (method, n_col, np.asarray(theta_deg), float(center_offset_px))
        self.workers = max(1, min(workers or os.cpu_count() or 1, 16))
        self._local = threading.local()
        self._made: list[SliceReconstructor] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.workers)

    def reconstructor(self) -> SliceReconstructor:
        """This thread's backend (made on first use; call it from the pool's threads or from
        threads of your own, one backend per thread)."""
        rec = getattr(self._local, "rec", None)
        if rec is None:
            rec = self._local.rec = make_reconstructor(*self.args)
            with self._lock:
                self._made.append(rec)
        return rec

    def run(
        self,
        p: np.ndarray,
        v: np.ndarray,
        pixel_size_m: float,
        progress: Callable[[int], None] | None = None,
        out: tuple[np.ndarray, np.ndarray] | None = None,
        shifts_px: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``p``, ``v``: (n_energy, n_angle, n_rows, n_col) -> mu, sigma (n_energy, n_rows,
        n_col, n_col) in 1/m, float32 (in ``out`` when given); ``shifts_px`` (n_energy,):
        each energy's detector shift along the rows, undone in the reconstruction."""
        n_e, _, n_r, n_c = p.shape
        if out is None:
            mu = np.empty((n_e, n_r, n_c, n_c), dtype=np.float32)
            sig = np.empty_like(mu)
        else:
            mu, sig = out
        inv_px = np.float32(1.0 / pixel_size_m)

        def one(r: int) -> int:
            rec = self.reconstructor()
            # the row's sinograms as strided views (the backends copy what they need), the
            # results scaled straight into place
            m, var = rec.fbp_with_variance(p[:, :, r, :], v[:, :, r, :], shifts_px)
            np.multiply(m, inv_px, out=mu[:, r])
            np.multiply(np.sqrt(var, out=var), inv_px, out=sig[:, r])
            return r

        for _ in self._pool.map(one, range(n_r)):
            if progress is not None:
                progress(1)
        return mu, sig

    def map(self, fn, items):
        """Run ``fn`` over ``items`` on the pool's threads, results in order."""
        return self._pool.map(fn, items)

    def close(self) -> None:
        """Stop the threads and free the backends."""
        self._pool.shutdown()
        for rec in self._made:
            rec.close()

    def __enter__(self) -> SlicePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reconstruct(
    absorbance,
    *,
    center_offset_px: float = 0.0,
    method: str = "fourier",
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> Volume:
    """Reconstruct every energy of an in-memory absorbance stack (slice z = detector row z).

    Parameters
    ----------
    absorbance : Absorbance
        ``-ln(I/I0)`` and its variance, (energy, angle, row, col).
    center_offset_px : float
        Rotation axis minus detector centre ((n_col - 1) / 2), in pixels.
    method : str
        Backend (:data:`xtwin.recon.fbp.METHODS`).
    progress : callable, optional
        Called with the number of slices finished since the last call.
    workers : int, optional
        Threads (default: the CPU count). The result does not depend on it.

    Returns
    -------
    Volume
        mu (1/m) and its standard uncertainty, (energy, z, y, x) float32.
    """
    check_tomography(absorbance.theta_deg)
    n_c = absorbance.absorbance.shape[3]
    with SlicePool(method, n_c, absorbance.theta_deg, center_offset_px, workers) as pool:
        mu, sig = pool.run(
            absorbance.absorbance, absorbance.variance, absorbance.pixel_size_m, progress
        )
    return Volume(mu, sig, absorbance.energy_eV, absorbance.pixel_size_m, absorbance.notes)


def field_of_view_disc(n_col: int, center_offset_px: float) -> np.ndarray:
    """(n_col, n_col) voxels of the reconstruction grid (centred on the rotation axis) that
    stay on the detector at every angle: within ``(n_col - 1) / 2 - |offset|`` (+ half a
    pixel) of the axis. Outside it a sample wider than the field of view (interior
    tomography), or the corners of a box, are seen at some angles only."""
    c = (n_col - 1) / 2.0
    yy, xx = np.mgrid[:n_col, :n_col]
    r = c - abs(float(center_offset_px)) + 0.5
    return (yy - c) ** 2 + (xx - c) ** 2 <= r * r
