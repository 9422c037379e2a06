"""Registration of the energies to each other: detector shifts, and a magnification change
with energy (zone-plate optics) where one is found and explained by its law."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin.prep.register import scale_estimates, shifts_from_projections, warp_image

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

    def notices(self) -> list[str]:
        """The magnification, applied or refused, for the terminal."""
        m = self.magnification
        if not m or (not m.get("applied") and m.get("edge_displacement_px", 1.0) < 0.1):
            return []  # nothing to correct, nothing to say
        if m.get("applied"):
            return [
                f"magnification with energy corrected ({m['mode']}): k = {m['k_per_eV']:.3e} "
                f"per eV ({m.get('k_over_law', 1.0):.2f} x the pixel-proportional-to-E law)"
            ]
        return [
            f"magnification with energy not corrected: the estimate "
            f"(k = {m.get('k_per_eV', 0.0):.2e} per eV) {m.get('refused', '')}; "
            "--magnification fit or inverse-energy applies one anyway"
        ]

    def notes(self) -> list[str]:
        """The registration said in the provenance's notes."""
        out = []
        m = self.magnification
        if m.get("applied"):
            out.append(
                "magnification changes with energy: law s(E) = 1 + k (E - "
                f"{m['reference_eV']:.1f} eV), k = {m['k_per_eV']:.3e} per eV; scales "
                + ", ".join(f"{e:.1f} eV: {s:.5f}" for e, s in zip(self.energy_eV, self.scales))
                + f" (fitted on {m.get('fitted_on_eV', 'the law')})"
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


#: Energies whose end members differ by less than this (normalized), or by less than a
#: quarter of the largest difference, are lithiation-blind: their images are the same (or
#: nearly) whatever the lithiation, so their scales are not pulled by it.
BLIND_CONTRAST = 0.05
BLIND_FRACTION = 0.25

#: The fitted k is applied (``auto``) when it is at least this many standard uncertainties.
MIN_K_SIGNIFICANCE = 3.0


def register_energies(
    sample: np.ndarray,
    energy_eV: np.ndarray,
    mode: str,
    contrast: np.ndarray | None = None,
) -> EnergyRegistration:
    """Shifts (and, unless ``mode`` is ``off``, magnifications) of every energy against the
    reference, from the estimators' sample (n_energy, n_sample, n_row, n_col).

    ``contrast`` is ``|S_lith - S_delith|`` per energy (the calibration's): the scale law is
    fitted on the energies where it is below :data:`BLIND_CONTRAST`.
    """
    shifts = shifts_from_projections(sample)
    scales = np.ones(sample.shape[0])
    info: dict[str, Any] = {}
    if mode != "off" and sample.shape[0] > 1:
        blind = np.ones(sample.shape[0], bool)
        if contrast is not None:
            blind = contrast < max(BLIND_CONTRAST, BLIND_FRACTION * float(np.max(contrast)))
        scales, info = _magnification(sample, np.asarray(energy_eV, float), mode, blind)
        if info["applied"]:
            warped = np.stack(
                [
                    np.stack([warp_image(x, float(sc), 0.0, 0.0) for x in sample[e]])
                    for e, sc in enumerate(scales)
                ]
            )
            shifts = shifts_from_projections(warped) * scales[:, None]
    # below the estimator's resolution (1/100 px, median of 16 angles): not applied
    shifts = np.where(np.abs(shifts) < MIN_SHIFT_PX, 0.0, shifts)
    return EnergyRegistration(shifts, scales, np.asarray(energy_eV), True, info)


def _magnification(
    sample: np.ndarray, energy_eV: np.ndarray, mode: str, blind: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scale per energy from the law ``s(E) = 1 + k (E - E_ref)`` (E_ref the registration's
    reference), and what was found. ``inverse-energy``: ``k = 1 / E_ref`` (object pixel
    proportional to E). Otherwise k is fitted on pairs of lithiation-blind energies (pre- and
    post-edge), per angle; ``auto`` applies it when it moves the detector edge by at least
    :data:`MIN_SCALE_EDGE_PX` and is significant, ``fit`` always."""
    n_e, _, n_r, n_c = sample.shape
    ref = int(np.argmax(sample.reshape(n_e, -1).mean(axis=1)))
    e_ref = float(energy_eV[ref])
    law_k = 1.0 / e_ref
    info: dict[str, Any] = {"mode": mode, "reference_eV": e_ref, "law_k_per_eV": law_k}
    if mode == "inverse-energy":
        info |= {"k_per_eV": law_k, "applied": True, "source": "law (pixel proportional to E)"}
        return energy_eV / e_ref, info
    k, sigma_k, fitted_on = _fit_k(sample, energy_eV, blind)
    info |= {
        "fitted_on_eV": [round(float(energy_eV[e]), 2) for e in fitted_on],
        "k_per_eV": k,
        "k_sigma_per_eV": sigma_k,
        "k_over_law": round(k / law_k, 3),
    }
    scales = 1.0 + k * (energy_eV - e_ref)
    edge_px = float(np.abs(scales - 1).max() * max(n_r, n_c) / 2)
    info["edge_displacement_px"] = round(edge_px, 3)
    if fitted_on.size < 2:
        info |= {"applied": False, "refused": "fewer than two lithiation-blind energies"}
        return np.ones(n_e), info
    significant = abs(k) >= MIN_K_SIGNIFICANCE * sigma_k
    if mode == "auto" and (edge_px < MIN_SCALE_EDGE_PX or not significant):
        why = (
            f"moves the detector edge by {edge_px:.2f} px (< {MIN_SCALE_EDGE_PX})"
            if edge_px < MIN_SCALE_EDGE_PX
            else f"is not significant (k = {k:.2e} +- {sigma_k:.1e} per eV)"
        )
        info |= {"applied": False, "refused": why}
        return np.ones(n_e), info
    info["applied"] = True
    return scales, info


def _fit_k(
    sample: np.ndarray, energy_eV: np.ndarray, blind: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """k of the law from the lithiation-blind energies (scales of each against the most
    absorbing of them, per angle) and its standard uncertainty from the spread over angles."""
    n_e = sample.shape[0]
    on = np.flatnonzero(blind)
    if on.size < 2:
        return 0.0, float("inf"), on
    ref = int(on[np.argmax(sample[on].reshape(on.size, -1).mean(axis=1))])
    est = scale_estimates(sample, ref, on)  # (n_on, n_angles)
    de = (energy_eV[on] - energy_eV[ref])[:, None]
    use = np.broadcast_to(de != 0, est.shape)
    # one k per angle, then their mean and its standard error
    k_a = np.sum(np.where(use, de * (est - 1), 0), axis=0) / np.sum(
        np.where(use, de * de, 0), axis=0
    )
    k = float(np.mean(k_a))
    sigma = float(np.std(k_a, ddof=1) / np.sqrt(k_a.size)) if k_a.size > 1 else abs(k) / 3
    del n_e
    return k, max(sigma, 1e-9), on
