"""The acquisition planner: energies, photon split and angles for a target error at least dose.

For a dense NMC voxel the pipeline's estimate of w is, to first order, a linear combination
``w ~ sum_i a_i mu_i`` of the reconstructed attenuations (three energies: the closed form;
more: the weighted fit). With ``N_i`` photons per pixel per projection at energy ``i``,
``var(mu_i) = v_i / N_i`` (:mod:`xtwin.plan.noise`) and the dose is ``sum_i d_i N_i``. The split
that reaches a noise ``sigma`` at the lowest dose is ``N_i ∝ |a_i| sqrt(v_i / d_i)`` (a
Lagrange multiplier), at a dose ``(sum_i |a_i| sqrt(v_i d_i))^2 / sigma^2``; at a fixed dose the
noise does not depend on how it is divided among angles (dose fractionation), so the angles
are set by sampling (Crowther: ``pi / 2`` times the pixels across the sample) and by the
detector's full well.

Systematic terms that depend on the energies are counted, not only noise [1]:

* **model bias**: the noise-free retrieval of the physics model (the pipeline's linear model
  is an approximation of the physics);
* **energy calibration**: the bias of w when the true energies are offset by ``+-dE`` from the
  nominal ones (an energy on the steepest part of the edge is sensitive to it);
* **reference normalization**: the spread of w over common normalization conventions of the
  same reference spectra (:data:`xtwin.retrieve.conventions.CONVENTIONS`).

The plan minimizes the dose to the NMC subject to ``sqrt(noise^2 + systematic^2) <= target``.
The naive plan for comparison takes E0 - 50 eV, the midpoint of the two end members' edges and
E0 + 50 eV with equal photons.

References
----------
.. [1] F. Meirer, J. Cabana, Y. Liu, A. Mehta, J. C. Andrews and P. Pianetta, "Three-
   dimensional imaging of chemical phase transformations at the nanoscale with full-field
   transmission X-ray microscopy," J. Synchrotron Rad. 18, 773-781 (2011).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.spectra import NormalizedSpectrum, Spectrum
from xtwin.physics.xanes import builtin_references, builtin_standards
from xtwin.plan.noise import (
    AcquisitionPlan,
    SampleModel,
    fbp_noise_gain,
    region_factor,
)

#: Least edge-jump signal-to-noise of one dense voxel a plan may have: w = K / J is a ratio, and
#: its first-order statistics (and the pipeline's Ni mask, J / sigma_J >= 3) hold only when J
#: is well determined; below this the particle means of per-voxel w are biased (measured on
#: the twin: a particle-level plan at J / sigma_J ~ 1 gave particle errors 5x the target).
MIN_VOXEL_JUMP_SNR = 10.0

#: Largest per-voxel sigma of w a particle-level plan may leave: the particle means average
#: per-voxel ratios K/J over the voxels the Ni mask kept, which is unbiased only while each
#: voxel's w is well determined. Measured on the twin (validation/noise_campaign): particle
#: RMSE / prediction = 7.6 at voxel sigma 0.25, 2.0 at 0.16, 0.97 at 0.08, 0.68 at 0.05.
MAX_VOXEL_SIGMA_W = 0.12

#: Detector full well used to cap photons per pixel per frame (uint16 counts).
MAX_PHOTONS_PER_FRAME = 6.0e4

#: Energy-scale uncertainty left after a quick-XANES calibration (eV): what
#: ``process --energy-calibration`` reaches on independent phantoms (within 0.03 eV; 0.05 is
#: the stated bound).
CALIBRATED_UNCERTAINTY_EV = 0.05

#: Energies of the quick XANES the planner recommends.
QUICK_XANES_ENERGIES = 25

#: Candidate energies of the search (eV).
PRE_GRID = np.arange(8250.0, 8337.5, 2.5)
EDGE_GRID = np.arange(8337.0, 8360.5, 0.5)
POST_GRID = np.arange(8360.0, 8505.0, 5.0)


@dataclass(frozen=True)
class Plan:
    """An acquisition plan and what it is predicted to give."""

    energies_eV: list[float]
    photons_per_pixel: list[float]
    n_angles: int
    dose_gy: float
    dose_gy_electrolyte: float
    predicted_sigma: float
    predicted_systematic: float
    predicted_total: float
    level: str
    target_sigma: float
    dominant: str
    systematic_terms: dict[str, float] = field(default_factory=dict)
    split: list[float] = field(default_factory=list)
    pixel_size_m: float = 0.4e-6
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def acquisition(self, n_flats: int = 10) -> AcquisitionPlan:
        """As an :class:`AcquisitionPlan` for :func:`xtwin.plan.noise.predict`."""
        return AcquisitionPlan(
            tuple(self.energies_eV),
            tuple(self.photons_per_pixel),
            self.n_angles,
            self.pixel_size_m,
            n_flats,
        )


@dataclass
class _Tables:
    """Everything per energy on a fine grid, shared by all candidates."""

    grid: np.ndarray
    mu_true: np.ndarray  # dense NMC at w, 1/m
    mu_shift: dict[float, np.ndarray]  # true energy offset -> mu at nominal grid
    b: np.ndarray
    j: np.ndarray
    s: list[tuple[np.ndarray, np.ndarray]]  # per convention (S_l, S_d)
    v1: np.ndarray  # var(mu) per unit photon per pixel per projection, 1/m^2
    r1: np.ndarray  # read-noise var(mu) x photons^2
    t: np.ndarray  # transmission through the sample centre
    n_flats: int
    diameter_m: float
    d1: np.ndarray  # NMC dose per photon per pixel per projection (all angles), Gy
    d1_el: np.ndarray
    jump: float
    w: float


def _tables(
    sample: SampleModel,
    n_angles: int,
    pixel_size_m: float,
    n_flats: int,
    references: tuple[Spectrum, Spectrum] | None,
    offsets: tuple[float, ...],
    bandwidth_rel: float,
    read_noise_photons: float = 0.0,
) -> _Tables:
    from xtwin.physics import materials
    from xtwin.physics.attenuation import (
        background_energy_dependence,
        jump_energy_dependence,
        mu_en_rho_cm2_g,
        mu_per_m,
        ni_k_jump_cm2_g,
    )
    from xtwin.physics.dose import EV_TO_J, nmc532_mu_en_rho_cm2_g
    from xtwin.physics.materials import nmc532_partial_densities_g_cm3, x_from_lithiation
    from xtwin.physics.xanes import XanesModel, chemistry_model
    from xtwin.retrieve.conventions import convention_references

    grid = np.arange(8240.0, 8520.0, 0.25)
    w = sample.lithiation
    chem = chemistry_model(sample.ni_chemistry, "parametric")
    xanes = XanesModel(bandwidth_rel=bandwidth_rel, chemistry=chem)
    mu_true = xanes.nmc532_mu_per_m(grid, w)
    shifts = {}
    for dE in offsets:
        shifts[dE] = XanesModel(
            bandwidth_rel=bandwidth_rel, energy_offset_eV=dE, chemistry=chem
        ).nmc532_mu_per_m(grid, w)
    # without references, standards of the sample's own chemistry
    raw_l, raw_d = references or builtin_standards(bandwidth_rel, chem)
    s = [
        (np.interp(grid, ln.energy_eV, ln.flat), np.interp(grid, dn.energy_eV, dn.flat))
        for ln, dn in convention_references(raw_l, raw_d).values()
    ]
    elyte = materials.electrolyte(sample.electrolyte_molarity_mol_l)
    cbd = materials.carbon_binder(electrolyte_material=elyte)
    pore = 1.0 - sample.active_fraction - sample.cbd_fraction
    line = sample.diameter_m * (
        sample.active_fraction * mu_true
        + sample.cbd_fraction * mu_per_m(cbd, grid)
        + pore * mu_per_m(elyte, grid)
    ) + sample.electrolyte_path_m * mu_per_m(elyte, grid)
    t = np.exp(-line)
    gain = fbp_noise_gain(n_angles)
    v1 = (1.0 / t + 1.0 / n_flats) * gain / pixel_size_m**2
    # read noise (photon units) adds var r^2 / (N T)^2: per unit photon^2
    r1 = read_noise_photons**2 * (1.0 / t**2 + 1.0 / n_flats) * gain / pixel_size_m**2
    fluence1 = n_angles / pixel_size_m**2
    d1 = fluence1 * grid * EV_TO_J * nmc532_mu_en_rho_cm2_g(grid, w, xanes) * 0.1
    d1_el = fluence1 * grid * EV_TO_J * mu_en_rho_cm2_g(elyte, grid) * 0.1
    dens = nmc532_partial_densities_g_cm3(float(x_from_lithiation(w)))
    jump = float(dens[28] * ni_k_jump_cm2_g(np.array([8345.0]))[0] * 100.0)
    return _Tables(
        grid,
        mu_true,
        shifts,
        background_energy_dependence(grid),
        jump_energy_dependence(grid),
        s,
        v1,
        r1,
        t,
        n_flats,
        sample.diameter_m,
        d1,
        d1_el,
        jump,
        w,
    )


def _design(tab: _Tables, idx: np.ndarray, k: int = 0) -> np.ndarray:
    """The pipeline's design matrices (n_c, n_e, 3) of candidates ``idx`` (convention k)."""
    s_l, s_d = tab.s[k]
    return np.stack(
        [tab.b[idx], tab.j[idx] * s_d[idx], tab.j[idx] * (s_l[idx] - s_d[idx])], axis=-1
    )


def _evaluate(tab: _Tables, idx: np.ndarray, energy_uncertainty_eV: float) -> dict[str, np.ndarray]:
    """For candidate energy sets ``idx`` (n_cand, n_e) of grid indices: the gradient of w,
    the model bias, the calibration and normalization terms."""
    n_c, n_e = idx.shape

    def design(k: int) -> np.ndarray:
        return _design(tab, idx, k)

    def w_of(m: np.ndarray, mu: np.ndarray) -> np.ndarray:
        coef = np.einsum("cpe,ce->cp", np.linalg.pinv(m), mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            return coef[:, 2] / coef[:, 1]

    m0 = design(0)
    pinv = np.linalg.pinv(m0)  # (n_c, 3, n_e); exact inverse for three energies
    mu = tab.mu_true[idx]
    coef = np.einsum("cpe,ce->cp", pinv, mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        w0 = coef[:, 2] / coef[:, 1]
        grad = (pinv[:, 2, :] - w0[:, None] * pinv[:, 1, :]) / coef[:, 1][:, None]
    model_bias = w0 - tab.w
    cal = np.zeros(n_c)
    if energy_uncertainty_eV > 0:
        for dE in (-energy_uncertainty_eV, energy_uncertainty_eV):
            cal = np.maximum(cal, np.abs(w_of(m0, tab.mu_shift[dE][idx]) - w0))
    ws = np.stack([w_of(design(k), mu) for k in range(len(tab.s))])
    norm = 0.5 * (ws.max(axis=0) - ws.min(axis=0))
    return {"grad": grad, "model": model_bias, "calibration": cal, "normalization": norm}


def _optimal_split(
    grad: np.ndarray, v1: np.ndarray, d1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Photon split (fractions of the dose-weighted budget) and the dose per unit variance,
    for first-order estimates with gradient ``grad`` (n_c, n_e)."""
    a = np.abs(grad)
    weight = a * np.sqrt(v1 / d1)  # N_i proportional to this
    dose_per_var = np.sum(a * np.sqrt(v1 * d1), axis=-1) ** 2
    return weight, dose_per_var


def make_plan(
    target_sigma: float,
    *,
    level: str = "particle",
    sample: SampleModel | None = None,
    pixel_size_m: float = 0.4e-6,
    particle_diameter_m: float = 7e-6,
    energy_uncertainty_eV: float = 0.0,
    energies_eV: tuple[float, ...] | None = None,
    split: tuple[float, ...] | None = None,
    n_angles: int | None = None,
    max_dose_gy: float | None = None,
    n_flats: int = 10,
    references: tuple[Spectrum, Spectrum] | None = None,
    bandwidth_rel: float = 1.3e-4,
    naive: bool = False,
    include_normalization: bool = False,
    read_noise_photons: float = 3.0,
    quick_xanes_energies: int = 0,
) -> Plan:
    """The acquisition reaching ``target_sigma`` on w at the lowest dose to the NMC.

    Parameters
    ----------
    target_sigma : float
        Wanted total error of w (noise and energy-dependent systematics in quadrature).
    level : {"voxel", "particle"}
        For one voxel of dense NMC at the sample centre, or for the mean of a particle of
        ``particle_diameter_m``.
    sample : SampleModel, optional
        What the beam crosses (default: the default scenario's 23 um pillar).
    pixel_size_m, particle_diameter_m : float
    energy_uncertainty_eV : float
        Energy calibration uncertainty counted as a systematic term.
    energies_eV : tuple of float, optional
        Fix the energies (any number >= 3); otherwise three are chosen.
    split : tuple of float, optional
        Fix the relative photons per energy; otherwise the optimal split.
    n_angles : int, optional
        Fix the projections per energy (default: ``pi/2`` times the pixels across the sample,
        raised where the detector's full well would be exceeded).
    max_dose_gy : float, optional
        Refuse a plan above this dose to the NMC (with the numbers).
    references : (Spectrum, Spectrum), optional
        Raw reference spectra (lithiated, delithiated); default the built-in end members.
    naive : bool
        The naive plan: E0 - 50 eV, the edge midpoint, E0 + 50 eV, equal photons.
    read_noise_photons : float
        Detector read noise in photon units (the twin's default detector: 3 counts at one
        count per photon); it favours more photons per projection.
    include_normalization : bool
        Count the spread of w over reference-normalization conventions in the constraint
        (it is always reported; it is a property of how the standards are processed, which
        the user can fix, so by default it does not drive the plan).
    quick_xanes_energies : int
        Plan a quick 2D XANES of this many energies (8 or more; one projection each at the
        plan's mean photons) to calibrate the energy scale: its dose is added, and the
        calibration term is counted at :data:`CALIBRATED_UNCERTAINTY_EV` instead of
        ``energy_uncertainty_eV``. Without one, a plan whose calibration term takes more than
        half the target recommends one (a note, with its dose).

    Returns
    -------
    Plan

    Raises
    ------
    XtwinInputError
        Impossible targets (the systematic terms alone exceed it), a dose above
        ``max_dose_gy``, bad arguments.
    """
    if not 0 < target_sigma < 1:
        raise XtwinInputError("the target sigma of w must lie in (0, 1), e.g. 0.02")
    if level not in ("voxel", "particle"):
        raise XtwinInputError("level must be voxel or particle")
    if quick_xanes_energies and quick_xanes_energies < 8:
        raise XtwinInputError(
            f"a quick XANES of {quick_xanes_energies} energies cannot calibrate the energy "
            "scale; plan 8 or more across the edge (about 25 is typical)"
        )
    stated_uncertainty_eV = energy_uncertainty_eV
    if quick_xanes_energies:
        energy_uncertainty_eV = CALIBRATED_UNCERTAINTY_EV
    sample = sample or SampleModel()
    n_pix_across = sample.diameter_m / pixel_size_m
    n_a = int(n_angles or max(16, int(np.ceil(np.pi / 2 * n_pix_across))))
    tab_angles = n_a  # the tables' dose per photon is for this many projections
    offsets = (-energy_uncertainty_eV, energy_uncertainty_eV) if energy_uncertainty_eV else ()
    tab = _tables(
        sample, n_a, pixel_size_m, n_flats, references, offsets, bandwidth_rel, read_noise_photons
    )
    notes: list[str] = []
    refs_norm = _normalized(references, bandwidth_rel)
    edge_mid = 0.5 * (refs_norm[0].e_half_jump_eV + refs_norm[1].e_half_jump_eV)
    if naive:
        energies_eV = (edge_mid - 50.0, edge_mid, edge_mid + 50.0)
        split = (1.0, 1.0, 1.0)
    if energies_eV is not None:
        e = np.sort(np.asarray(energies_eV, dtype=float))
        if e.size < 3:
            raise XtwinInputError("the lithiation needs three or more energies")
        if e[0] < tab.grid[0] or e[-1] > tab.grid[-1]:
            raise XtwinInputError(
                f"energies must lie within {tab.grid[0]:.0f}-{tab.grid[-1]:.0f} eV"
            )
        idx = np.searchsorted(tab.grid, e - 1e-9)[None, :]
    else:
        ii, jj, kk = np.meshgrid(
            np.searchsorted(tab.grid, PRE_GRID),
            np.searchsorted(tab.grid, EDGE_GRID),
            np.searchsorted(tab.grid, POST_GRID),
            indexing="ij",
        )
        idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    ev = _evaluate(tab, idx, energy_uncertainty_eV)
    factor = 1.0
    if level == "particle":
        factor = region_factor(n_a, 0.5 * particle_diameter_m / pixel_size_m)
    v1 = tab.v1[idx] * factor
    d1 = tab.d1[idx]
    sys_terms = np.stack(
        [ev["model"], ev["calibration"]] + ([ev["normalization"]] if include_normalization else [])
    )
    systematic = np.sqrt(np.sum(sys_terms**2, axis=0))
    room = target_sigma**2 - systematic**2
    pinv_j = np.linalg.pinv(_design(tab, idx))[:, 1, :]  # (n_c, n_e): the edge jump's row
    if split is not None:
        sp = np.asarray(split, dtype=float)
        if sp.size != idx.shape[1] or np.any(sp <= 0):
            raise XtwinInputError("give one positive split weight per energy")
        splits = [np.broadcast_to(sp / sp.sum(), idx.shape)]
    else:
        # the split that is best for w's noise, the one best for the edge jump's, and equal
        # photons: whichever needs the least dose once every condition is met
        splits = [
            _optimal_split(ev["grad"], v1, d1)[0],
            _optimal_split(pinv_j, v1, d1)[0],
            np.ones(idx.shape),
        ]
    res = None
    for weight in splits:
        r = _dose_for(tab, idx, ev["grad"], pinv_j, weight, v1, d1, factor, room, level)
        if res is None:
            res = r
        else:
            better = r["dose"] < res["dose"]
            res = {
                k: np.where(better[:, None] if v.ndim == 2 else better, r[k], v)
                for k, v in res.items()
            }
    assert res is not None
    dose, weight = res["dose"], res["weight"]
    dose_per_var, read_var, beta2, snr_bound = (
        res["dose_per_var"],
        res["read_var"],
        res["beta2"],
        res["snr_bound"].astype(bool),
    )
    best = int(np.argmin(dose))
    if not np.isfinite(dose[best]):
        raise XtwinInputError(
            f"no plan reaches {target_sigma:g}: the systematic terms alone give at least "
            f"{systematic.min():.4f} (model {abs(ev['model'][np.argmin(systematic)]):.4f}, "
            f"calibration {ev['calibration'][np.argmin(systematic)]:.4f}, normalization "
            f"{ev['normalization'][np.argmin(systematic)]:.4f}); relax the target or the "
            "energy uncertainty"
            + (
                f" (a quick XANES calibrates it to {CALIBRATED_UNCERTAINTY_EV} eV: "
                f"--quick-xanes {QUICK_XANES_ENERGIES})"
                if not quick_xanes_energies and energy_uncertainty_eV > CALIBRATED_UNCERTAINTY_EV
                else ""
            )
        )
    noise = float(np.sqrt(dose_per_var[best] / dose[best] + read_var[best] / dose[best] ** 2))
    if snr_bound[best]:
        notes.append(
            f"the dose is set by the per-voxel conditions (edge-jump SNR >= "
            f"{MIN_VOXEL_JUMP_SNR:g}, voxel sigma of w <= {MAX_VOXEL_SIGMA_W:g}: the ratio "
            f"w = K/J needs them), not by the target: predicted {level} sigma {noise:.4f}"
        )
    low_counts = float(beta2[best] / dose[best] ** 2)
    e_best = tab.grid[idx[best]]
    wgt = weight[best] / np.sum(weight[best] * d1[best]) * dose[best]  # photons per pixel per proj
    photons = wgt
    if photons.max() > MAX_PHOTONS_PER_FRAME and n_angles is None:
        scale = int(np.ceil(photons.max() / MAX_PHOTONS_PER_FRAME))
        notes.append(
            f"{scale}x the angles ({n_a * scale}) so that no frame exceeds "
            f"{MAX_PHOTONS_PER_FRAME:.0f} photons per pixel (same dose and noise)"
        )
        n_a *= scale
        photons = photons / scale
    dose_el = float(np.sum(wgt * tab.d1_el[idx[best]]))
    # one projection of the quick XANES at the plan's mean photons, per energy
    per_projection = float(np.mean(tab.d1[idx[best]])) / tab_angles * float(np.mean(photons))
    calibration = _calibration_record(
        stated_uncertainty_eV,
        energy_uncertainty_eV,
        quick_xanes_energies,
        per_projection,
        float(ev["calibration"][best]),
        target_sigma,
    )
    if calibration.get("recommendation"):
        notes.append(calibration["recommendation"])
    dose_total = float(dose[best]) + calibration["quick_xanes_dose_gy"]
    terms = {
        "noise": noise,
        "low_counts": low_counts,
        "model": float(abs(ev["model"][best])),
        "energy_calibration": float(ev["calibration"][best]),
        "normalization": float(ev["normalization"][best]),
    }
    counted = [k for k in terms if include_normalization or k != "normalization"]
    dominant = max(counted, key=lambda k: terms[k])
    if max_dose_gy is not None and dose[best] > max_dose_gy:
        raise XtwinInputError(
            f"reaching {target_sigma:g} ({level}) needs {dose[best]:.3g} Gy to the NMC, above "
            f"--max-dose-gy {max_dose_gy:g}; relax the target, use larger pixels or the "
            "particle level"
        )
    if idx.shape[1] == 3 and energies_eV is None:
        notes.append(
            "three energies: for the noise of one parameter three support points are optimal "
            "(c-optimal design); more energies guard against model error, not noise"
        )
    return Plan(
        energies_eV=[round(float(x), 2) for x in e_best],
        photons_per_pixel=[round(float(x), 1) for x in photons],
        n_angles=n_a,
        dose_gy=dose_total,
        dose_gy_electrolyte=dose_el,
        predicted_sigma=noise,
        predicted_systematic=float(np.hypot(systematic[best], low_counts)),
        predicted_total=float(np.sqrt(noise**2 + systematic[best] ** 2 + low_counts**2)),
        level=level,
        target_sigma=target_sigma,
        dominant=dominant,
        systematic_terms={k: v for k, v in terms.items() if k != "noise"},
        split=[round(float(x), 4) for x in photons / photons.mean()],
        pixel_size_m=pixel_size_m,
        notes=notes,
        calibration=calibration,
    )


def _calibration_record(
    stated_eV: float,
    counted_eV: float,
    quick: int,
    dose_per_projection_gy: float,
    term: float,
    target: float,
) -> dict[str, Any]:
    """What the plan assumes about the energy scale, and the quick XANES it plans or
    recommends (with its dose)."""
    out: dict[str, Any] = {
        "stated_energy_uncertainty_eV": stated_eV,
        "counted_energy_uncertainty_eV": counted_eV,
        "quick_xanes_energies": quick,
        "quick_xanes_dose_gy": quick * dose_per_projection_gy,
        "energy_calibration_term": term,
    }
    if quick:
        out["assumption"] = (
            f"the energy scale is calibrated by a quick XANES of {quick} energies "
            f"(process --energy-calibration) to {counted_eV} eV; its dose is included"
        )
    elif counted_eV == 0:
        out["assumption"] = (
            "the energy scale is assumed exact (no calibration term): true only when the "
            "standards were measured on the scan's energy scale, or the offset is calibrated "
            "(state it with --energy-uncertainty-ev; plan a quick XANES with --quick-xanes)"
        )
    else:
        out["assumption"] = f"the energy scale is uncertain by +-{counted_eV} eV (not calibrated)"
    if not quick and counted_eV > CALIBRATED_UNCERTAINTY_EV and term > 0.5 * target:
        out["recommendation"] = (
            f"the energy uncertainty of {counted_eV} eV costs {term:.4f} in w (target "
            f"{target:g}): a quick XANES of {QUICK_XANES_ENERGIES} energies (about "
            f"{QUICK_XANES_ENERGIES * dose_per_projection_gy:.3g} Gy) calibrates it to "
            f"{CALIBRATED_UNCERTAINTY_EV} eV: --quick-xanes {QUICK_XANES_ENERGIES}"
        )
    return out


def _dose_for(
    tab: _Tables,
    idx: np.ndarray,
    grad: np.ndarray,
    pinv_j: np.ndarray,
    weight: np.ndarray,
    v1: np.ndarray,
    d1: np.ndarray,
    factor: float,
    room: np.ndarray,
    level: str,
) -> dict[str, np.ndarray]:
    """The least dose of each candidate with photon split ``weight`` that meets the target
    (noise, read noise and the low-count residual within ``room``) and the per-voxel
    conditions (:data:`MIN_VOXEL_JUMP_SNR`, :data:`MAX_VOXEL_SIGMA_W` for particles)."""
    n_unit = weight / np.sum(weight * d1, axis=1, keepdims=True)  # photons at unit dose
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dose_per_var = np.sum(grad**2 * v1 / n_unit, axis=1)
        read_var = np.sum(grad**2 * tab.r1[idx] * factor / n_unit**2, axis=1)
        # low counts: the pipeline removes the 1/(2N) bias of -ln n (xtwin.prep.normalize);
        # about -1/(3 (N T)^2) is left per projection, spread over the sample as dp / D
        dp_unit = -1.0 / (3.0 * (n_unit * tab.t[idx]) ** 2)
        beta2 = np.abs(np.sum(grad * dp_unit / tab.diameter_m, axis=1))
        # the least dose with noise^2 + bias^2 <= room: bisection in log(dose), all at once
        lo = np.log(np.maximum(dose_per_var / np.maximum(room, 1e-300), 1e-12))
        hi = lo + 30.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            d = np.exp(mid)
            ok = dose_per_var / d + read_var / d**2 + (beta2 / d**2) ** 2 <= room
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid)
        dose = np.where(room > 0, np.exp(hi), np.inf)
        # the voxel's edge jump must be well determined (MIN_VOXEL_JUMP_SNR)
        var_j_unit = np.sum(pinv_j**2 * tab.v1[idx] / n_unit, axis=1)
        read_j = np.sum(pinv_j**2 * tab.r1[idx] / n_unit**2, axis=1)
        cap = (tab.jump / MIN_VOXEL_JUMP_SNR) ** 2
        d_snr = (var_j_unit + np.sqrt(var_j_unit**2 + 4 * cap * read_j)) / (2 * cap)
        # and, for particle-level plans, each voxel's w (MAX_VOXEL_SIGMA_W)
        a_v, r_v = dose_per_var / factor, read_var / factor
        cap_w = MAX_VOXEL_SIGMA_W**2
        d_vox = (a_v + np.sqrt(a_v**2 + 4 * cap_w * r_v)) / (2 * cap_w)
        d_floor = np.maximum(d_snr, d_vox) if level == "particle" else d_snr
    return {
        "dose": np.maximum(dose, d_floor),
        "weight": np.asarray(weight, dtype=float),
        "dose_per_var": dose_per_var,
        "read_var": read_var,
        "beta2": beta2,
        "snr_bound": (d_floor > dose).astype(float),
    }


def _normalized(
    references: tuple[Spectrum, Spectrum] | None, bandwidth_rel: float
) -> tuple[NormalizedSpectrum, NormalizedSpectrum]:
    if references is None:
        return builtin_references(bandwidth_rel)
    from xtwin.physics.spectra import normalize

    return normalize(references[0]), normalize(references[1])


__all__ = ["Plan", "make_plan"]
