"""Registration of the energies to each other: detector shifts, and a magnification change
with energy (zone-plate optics) where one is found and explained by its law."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin.prep.register import scales_from_projections, shifts_from_projections, warp_image

#: Registration shifts smaller than this (pixels) are below the estimate's precision: not applied.
MIN_SHIFT_PX = 0.02

#: A magnification change is applied when it moves the detector edge by at least this (px).
MIN_SCALE_EDGE_PX = 0.25


@dataclass(frozen=True)
class EnergyRegistration:
    """Per-energy detector shifts (rows, cols; px) and magnifications, as applied.

    Attributes
    ----------
    shifts : ndarray, shape (n_energy, 2)
    scales : ndarray, shape (n_energy,)
    energy_eV : ndarray
    estimated : bool
        Whether the shifts were estimated (False: not registered).
    magnification : dict
        The magnification estimate (law, per-energy estimates, consistency, applied).
    """

    shifts: np.ndarray
    scales: np.ndarray
    energy_eV: np.ndarray
    estimated: bool = False
    magnification: dict[str, Any] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """The registration said in the provenance's notes."""
        out = []
        m = self.magnification
        if m.get("applied"):
            out.append(
                "magnification changes with energy: law s(E) = 1 + k (E - "
                f"{m['reference_eV']:.1f} eV), k = {m['k_per_eV']:.3e} per eV; scales "
                + ", ".join(f"{e:.1f} eV: {s:.5f}" for e, s in zip(self.energy_eV, self.scales))
                + f" (independent estimates {m['per_energy']})"
            )
        if self.estimated:
            out.append(
                "energies registered; detector shifts (rows, cols) in px: "
                + "; ".join(
                    f"{e:.1f} eV: {dy:+.2f}, {dx:+.2f}"
                    for e, (dy, dx) in zip(self.energy_eV, self.shifts)
                )
            )
        return out

    def provenance(self) -> dict[str, list[float]]:
        """The shifts per energy, rounded to a thousandth of a pixel."""
        return {
            f"{e:.2f}": [round(float(x), 3) for x in sh]
            for e, sh in zip(self.energy_eV, self.shifts)
        }


def no_registration(energy_eV: np.ndarray) -> EnergyRegistration:
    """Every energy taken as it is."""
    n_e = np.size(energy_eV)
    return EnergyRegistration(np.zeros((n_e, 2)), np.ones(n_e), np.asarray(energy_eV))


def register_energies(
    sample: np.ndarray, energy_eV: np.ndarray, with_scale: bool
) -> EnergyRegistration:
    """Shifts (and, ``with_scale``, magnifications) of every energy against the reference,
    from the estimators' sample (n_energy, n_sample, n_row, n_col)."""
    shifts = shifts_from_projections(sample)
    scales = np.ones(sample.shape[0])
    info: dict[str, Any] = {}
    if with_scale:
        scales, shifts, info = _magnification(sample, energy_eV, shifts)
    # below the estimator's resolution (1/100 px, median of 16 angles): not applied
    shifts = np.where(np.abs(shifts) < MIN_SHIFT_PX, 0.0, shifts)
    return EnergyRegistration(shifts, scales, np.asarray(energy_eV), True, info)


def _magnification(
    sample: np.ndarray, energy_eV: np.ndarray, shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Magnification per energy (fitted law) and the shifts re-estimated under it; scales of
    which the largest moves the detector edge by less than MIN_SCALE_EDGE_PX, or that the
    law does not explain, are not applied."""
    n_e, _, n_r, n_c = sample.shape
    scales, info = scales_from_projections(sample, energy_eV)
    edge_px = float(np.abs(scales - 1).max() * max(n_r, n_c) / 2)
    info["edge_displacement_px"] = round(edge_px, 3)
    # the law must explain the independent estimates: one k, the same sign at every energy
    de = np.asarray(energy_eV, dtype=float) - info["reference_eV"]
    est = np.asarray(info["per_energy"])
    ks = (est - 1)[de != 0] / de[de != 0]
    consistent = bool(ks.size) and (
        np.all(np.sign(ks) == np.sign(ks[0])) and np.std(ks) <= 0.5 * abs(np.mean(ks))
    )
    info["law_consistent"] = consistent
    if edge_px < MIN_SCALE_EDGE_PX or not consistent:
        info["applied"] = False
        return np.ones(n_e), shifts, info
    info["applied"] = True
    warped = np.stack(
        [
            np.stack([warp_image(x, float(s), 0.0, 0.0) for x in sample[e]])
            for e, s in enumerate(scales)
        ]
    )
    return scales, shifts_from_projections(warped) * scales[:, None], info
