"""The per-voxel retrieval rules, in one place: solve, the mode's extra maps, what is not
measured, the Ni mask, and the systematic over normalization conventions.

The streamed pipeline applies them to each detector row of a block as it is made
(:func:`retrieve_row`); :func:`xtwin.retrieve.three_energy.retrieve` applies the same function
to every row of an in-memory volume, so both give the same map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from xtwin.retrieve.three_energy import (
    Calibration,
    Retrieval,
    Solution,
    convention_half_range,
    jump_reference,
    mask_in_place,
    solve,
)

#: The solution's per-voxel fields, as :class:`Solution` names them.
FIELDS = ("lithiation", "sigma", "edge_jump", "edge_jump_sigma", "background")

#: Per-voxel outputs beyond the lithiation, by retrieval mode.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "attenuation": (),
    "edge-jump": ("od_ratio",),
    "three-energy": (),
    "multi-energy": (
        "fit_chi2",
        "edge_position_eV",
        "edge_position_sigma_eV",
        "white_line_eV",
        "white_line_sigma_eV",
    ),
}

#: Units of the extra outputs.
EXTRA_UNITS = {
    "systematic": "lithiation fraction (half-range over normalization conventions)",
    "od_ratio": "ratio of the post-edge to the pre-edge attenuation (optical density for 2D)",
    "fit_chi2": "reduced chi-square of the end-member fit",
    "edge_position_eV": "eV",
    "edge_position_sigma_eV": "eV",
    "white_line_eV": "eV",
    "white_line_sigma_eV": "eV",
}


def extra_fields(mode: str, systematic: bool) -> tuple[str, ...]:
    """Extra per-voxel outputs: the mode's maps, and ``systematic`` (the spread of w over
    the reference-normalization conventions) when the references allow it."""
    return EXTRA_FIELDS[mode] + (("systematic",) if systematic else ())


@dataclass(frozen=True)
class VoxelRules:
    """What the retrieval of every voxel needs besides its attenuation.

    Attributes
    ----------
    calibration : Calibration
    jump_reference_per_m : float
        The Ni mask's reference edge jump (dense NMC).
    min_jump_snr, min_jump_fraction : float
        Ni mask thresholds (:func:`xtwin.retrieve.three_energy.apply_mask`).
    alternatives : tuple of Calibration
        Calibrations under the other normalization conventions (for ``systematic``).
    """

    calibration: Calibration
    jump_reference_per_m: float
    min_jump_snr: float = 3.0
    min_jump_fraction: float = 0.2
    alternatives: tuple[Calibration, ...] = ()

    @property
    def extras(self) -> tuple[str, ...]:
        """The extra outputs these rules make."""
        return extra_fields(self.calibration.mode, bool(self.alternatives))


def retrieve_row(
    mu: np.ndarray,
    mu_sigma: np.ndarray,
    rules: VoxelRules,
    out: dict[str, np.ndarray],
    mask: np.ndarray,
    *,
    unseen: bool = False,
    unseen_cols: np.ndarray | None = None,
    outside: np.ndarray | None = None,
) -> None:
    """Retrieve one row of voxels into ``out`` (every field of :data:`FIELDS` and
    ``rules.extras``) and ``mask``, in place.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, ...)
        The row's attenuation per energy and its standard uncertainty.
    rules : VoxelRules
    out : dict of ndarray
        The row's output arrays, each of ``mu.shape[1:]``.
    mask : ndarray of bool
        The row's Ni mask (written).
    unseen : bool
        The row was not seen at every energy: no lithiation (nor mask).
    unseen_cols : ndarray of bool, optional
        Columns not seen at every energy (2D): no lithiation there.
    outside : ndarray of bool, optional
        Voxels that leave the detector at some angle (not measured): NaN.
    """
    cal = rules.calibration
    extras = rules.extras
    s = solve(mu, mu_sigma, cal, out=Solution(*(out[f] for f in FIELDS)))
    _mode_maps(mu, mu_sigma, cal, s, out)
    _blank_unmeasured(out, cal.mode, extras, unseen, unseen_cols, outside)
    mask_in_place(
        s,
        rules.jump_reference_per_m,
        mask,
        min_jump_snr=rules.min_jump_snr,
        min_jump_fraction=rules.min_jump_fraction,
        require_lithiation=cal.mode != "edge-jump",
    )
    no_ni = ~mask
    for f in extras:
        if f != "od_ratio":  # spectral features and systematics only where there is Ni
            np.copyto(out[f], np.float32(np.nan), where=no_ni)
    if rules.alternatives and mask.any():  # w under the other conventions, where there is Ni
        convention_half_range(
            mu, mu_sigma, s, cal, rules.alternatives, where=mask, out=out["systematic"]
        )


def _mode_maps(
    mu: np.ndarray, mu_sigma: np.ndarray, cal: Calibration, s: Solution, out: dict
) -> None:
    """The mode's extra maps: the fit's chi-square and edge features (multi-energy), the
    post/pre attenuation ratio (edge-jump)."""
    if cal.mode == "multi-energy":
        from xtwin.retrieve.features import edge_features

        out["fit_chi2"][...] = s.chi2
        for name, val in edge_features(mu, mu_sigma, cal, s, cal.edge_eV).items():
            out[name][...] = val
    elif cal.mode == "edge-jump":
        with np.errstate(divide="ignore", invalid="ignore"):
            out["od_ratio"][...] = np.where(mu[0] > 0, mu[-1] / mu[0], np.nan)


def _blank_unmeasured(
    out: dict[str, np.ndarray],
    mode: str,
    extras: tuple[str, ...],
    unseen: bool,
    unseen_cols: np.ndarray | None,
    outside: np.ndarray | None,
) -> None:
    """NaN where the voxels were not measured at every energy (before the mask)."""
    nan = np.float32(np.nan)
    if unseen:
        for f in ("lithiation", "sigma") + extras:
            out[f][...] = nan
        if mode == "edge-jump":
            out["edge_jump"][...] = nan
    # np.copyto(..., where=): boolean-index assignment is ten times slower
    if unseen_cols is not None:
        np.copyto(out["lithiation"], nan, where=unseen_cols)
        np.copyto(out["sigma"], nan, where=unseen_cols)
    if outside is not None:
        for f in ("lithiation", "sigma", "edge_jump") + extras:
            np.copyto(out[f], nan, where=outside)


def retrieve(
    mu: np.ndarray,
    mu_sigma: np.ndarray,
    calibration: Calibration,
    *,
    min_jump_snr: float = 3.0,
    min_jump_fraction: float = 0.2,
    jump_reference_per_m: float | None = None,
    outside: np.ndarray | None = None,
) -> Retrieval:
    """Solve for (B, J, w) in every voxel and mask voxels without Ni: the rules of the
    streamed pipeline (:func:`retrieve_row`), applied to every row of an in-memory volume.

    Parameters
    ----------
    mu, mu_sigma : ndarray, shape (n_energy, n_rows, ...)
        Attenuation (or optical density) per energy, in the calibration's energy order, and
        its standard uncertainty.
    calibration : Calibration
        From :func:`xtwin.retrieve.three_energy.calibrate`.
    min_jump_snr, min_jump_fraction : float
        Masking thresholds (:func:`xtwin.retrieve.three_energy.apply_mask`).
    jump_reference_per_m : float, optional
        The mask's reference edge jump; default the 99.5th percentile of the unmasked edge
        jump over the whole volume (the pipeline takes it over 16 rows sampled before its
        blocks, and records it in ``/provenance`` ``mask``: pass that to get its map).
    outside : ndarray of bool, optional
        Voxels of one row (``mu.shape[2:]``) not measured (outside the field of view): NaN.

    Returns
    -------
    Retrieval
    """
    if jump_reference_per_m is None:
        jump_reference_per_m = jump_reference(solve(mu, mu_sigma, calibration).edge_jump)
    if mu.ndim < 3:  # voxels in a flat list (or one voxel): one row
        one = retrieve(
            mu[:, None],
            mu_sigma[:, None],
            calibration,
            min_jump_snr=min_jump_snr,
            min_jump_fraction=min_jump_fraction,
            jump_reference_per_m=jump_reference_per_m,
            outside=outside,
        )
        return Retrieval(*(a[0] for a in dataclasses.astuple(one)))
    rules = VoxelRules(calibration, jump_reference_per_m, min_jump_snr, min_jump_fraction)
    shape = mu.shape[1:]
    out = {f: np.empty(shape, np.float32) for f in FIELDS + rules.extras}
    mask = np.empty(shape, bool)
    for k in range(shape[0]):
        retrieve_row(
            mu[:, k],
            mu_sigma[:, k],
            rules,
            {f: a[k] for f, a in out.items()},
            mask[k],
            outside=outside,
        )
    return Retrieval(out["lithiation"], out["sigma"], mask, out["edge_jump"], out["background"])
