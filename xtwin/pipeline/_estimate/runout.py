"""Per-projection offsets of every energy (the stage's run-out and jitter,
:mod:`xtwin.prep.runout`), and whether they are applied.

The vertical offsets and a quick look at the horizontal ones come from the vertical profiles
and the centre of mass of a central band of rows; where that look is conclusive and finds
nothing (``auto``), that is all. Otherwise the horizontal offsets come from projection
matching on a few rows binned to at most RUNOUT_MATCH_COLS columns (the offsets are wanted
to a tenth of a pixel, not the slices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin._threads import thread_map
from xtwin.memory import READ_THREADS
from xtwin.pipeline._read import RowReader
from xtwin.prep.runout import (
    MIN_RESIDUAL_DROP,
    MIN_RUNOUT_RMS_PX,
    cc_shifts,
    estimate_offsets,
    horizontal_offsets_reprojection,
    quick_look_conclusive,
    reprojection_residual_drop,
    rotation_terms,
    undo_column_shifts,
)
from xtwin.recon.center import center_from_sinograms

#: Detector rows (a central band) whose vertical profiles and centre of mass give the quick
#: look at the run-out and the vertical offsets.
RUNOUT_BAND_ROWS = 96
#: Fewer detector rows than this carry no vertical profile to align: no run-out estimate.
RUNOUT_MIN_ROWS = 16
#: Detector rows read at a time by the quick look (per energy; READ_THREADS energies at once).
RUNOUT_READ_ROWS = 8
#: Detector rows and columns (at most) of the sinograms that projection matching aligns.
RUNOUT_MATCH_ROWS = 16
RUNOUT_MATCH_COLS = 512


@dataclass(frozen=True)
class RunoutEstimate:
    """The per-projection offsets (n_energy, n_angle, 2: rows, cols; px) when applied.

    Attributes
    ----------
    offsets : ndarray or None
        Applied offsets (None: not applied, or not estimated).
    record : dict
        How they were found, per energy (rms, residual drop, what each was matched to).
    """

    offsets: np.ndarray | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def notes(self, energy_eV: np.ndarray) -> list[str]:
        """The applied alignment said in the provenance's notes."""
        if self.offsets is None:
            return []
        per = self.record["per_energy"]
        return [
            "per-projection alignment (run-out): rms offsets "
            + "; ".join(
                f"{e:.1f} eV: {i['rms_rows_px']:.2f} rows, {i['rms_cols_px']:.2f} cols"
                for e, i in zip(energy_eV, per.values())
            )
        ]


def estimate_runout(
    reader: RowReader, mode: str, recorded: np.ndarray | None = None
) -> RunoutEstimate:
    """Offsets of every energy's projections (``mode``: ``auto`` or ``on``).

    ``recorded`` (n_energy, n_angle, 2), the shifts the acquisition software recorded (the
    shift that aligns each projection), is a starting point and a candidate of the horizontal
    matching: kept where it makes the sinograms the more self-consistent."""
    h = reader.source.header
    n_r = h.shape[2]
    if n_r < RUNOUT_MIN_ROWS:
        return RunoutEstimate(
            None,
            {
                "applied": False,
                "method": f"not estimated: {n_r} detector rows (the vertical profiles need "
                f"{RUNOUT_MIN_ROWS})",
            },
        )
    band = min(n_r, RUNOUT_BAND_ROWS)
    band_rows = ((n_r - band) // 2, (n_r - band) // 2 + band)
    # energies side by side, RUNOUT_READ_ROWS rows' worth of values at a time (the memory
    # model's band); with flats, each angle is normalized on its own: chunks of angles
    looks = thread_map(
        lambda e: estimate_offsets(
            lambda r0, r1, angles: reader.rows(e, r0, r1, angles)[:2],
            band_rows,
            h.shape[3],
            h.theta_deg,
            block=RUNOUT_READ_ROWS,
            per_angle=h.n_flat > 0,
        ),
        range(h.shape[0]),
        READ_THREADS,
    )
    offs = [o for o, _ in looks]
    info = [i for _, i in looks]
    quick = {f"{e:.2f}": dict(i) for e, i in zip(h.energy_eV, info)}
    nothing = all(
        quick_look_conclusive(i)
        and i["rms_rows_px"] < MIN_RUNOUT_RMS_PX
        and i["excess_cols_px"] < MIN_RUNOUT_RMS_PX
        for i in info
    )
    if mode == "auto" and nothing:
        return RunoutEstimate(
            None,
            {
                "applied": False,
                "method": "vertical profiles and horizontal centre of mass of rows "
                f"{band_rows[0]}:{band_rows[1]}: below {MIN_RUNOUT_RMS_PX} px rms beyond their "
                "noise",
                "per_energy": quick,
            },
        )
    return _match(reader, mode, offs, info, quick, band_rows, recorded)


@dataclass
class _Matching:
    """The binned sinograms that projection matching aligns, and their geometry."""

    sinos: list[np.ndarray]
    theta_deg: np.ndarray
    rows: np.ndarray
    binning: int
    ref: int = 0
    centre: float = 0.0
    dx_ref: np.ndarray | None = None
    recorded: list[np.ndarray] | None = None  # the recorded shifts as run-out, binned


def _sinograms(reader: RowReader, offs: list[np.ndarray]) -> _Matching:
    """A few rows of every energy, vertical offsets undone, binned to at most
    RUNOUT_MATCH_COLS columns."""
    h = reader.source.header
    n_r, n_c = h.shape[2:]
    b = max(1, -(-n_c // RUNOUT_MATCH_COLS))
    nb = n_c // b
    rows = np.unique(np.linspace(2, max(n_r - 3, 2), min(RUNOUT_MATCH_ROWS, n_r)).astype(int))
    sinos = []
    for e in range(h.shape[0]):
        dz = offs[e][:, 0]
        off = np.c_[dz, 0 * dz] if np.any(dz) else None
        s = np.stack([reader.aligned_row(e, r, off) for r in rows])
        sinos.append(s[..., : nb * b].reshape(s.shape[0], s.shape[1], nb, b).mean(axis=-1))
    ref = int(np.argmax([float(x.mean()) for x in sinos]))
    return _Matching(sinos, h.theta_deg, rows, b, ref)


def _match(
    reader: RowReader,
    mode: str,
    offs: list[np.ndarray],
    info: list[dict[str, Any]],
    quick: dict[str, Any],
    band_rows: tuple[int, int],
    recorded: np.ndarray | None = None,
) -> RunoutEstimate:
    """Projection matching: the reference energy first, then every energy against it."""
    h = reader.source.header
    m = _sinograms(reader, offs)
    if recorded is not None:  # the run-out is the opposite of the aligning shift (binned)
        m.recorded = [-np.asarray(r[:, 1], dtype=float) / m.binning for r in recorded]
    sref = m.sinos[m.ref]
    # the axis found on sinograms that still carry the run-out is off: two rounds of matching
    # tell run-out from noise (run-out drops the residual by 77-92 % in the first rounds)
    m.centre = float(np.median(center_from_sinograms(sref[:4], m.theta_deg)))
    dx_ref = horizontal_offsets_reprojection(sref, m.theta_deg, m.centre, n_iter=2)
    drop_ref = reprojection_residual_drop(sref, m.theta_deg, m.centre, dx_ref)
    rows_small = all(i["rms_rows_px"] < MIN_RUNOUT_RMS_PX for i in info)
    if mode == "auto" and rows_small and drop_ref < MIN_RESIDUAL_DROP:
        # the stage's run-out is common to the energies: none at the reference, none at all
        return RunoutEstimate(
            None,
            {
                "applied": False,
                "method": f"projection matching of {len(m.rows)} rows binned by {m.binning} at "
                f"{h.energy_eV[m.ref]:.1f} eV: the reprojection residual drops by "
                f"{drop_ref:.4f} (< {MIN_RESIDUAL_DROP}) with the offsets undone; vertical "
                f"profiles below {MIN_RUNOUT_RMS_PX} px rms",
                "quick_look": quick,
                "per_energy": quick,
            },
        )
    # where the sample stays in the field the centre of mass already has the offsets but for
    # their noise, and matching starts from it (an analytic phantom, 512 columns x 721
    # angles: 9 rounds instead of 50)
    com = [o[:, 1] / m.binning if i["mass_rel_std"] < 0.01 else None for o, i in zip(offs, info)]
    aligned = _align_reference(m, _reference_start(m, com[m.ref], dx_ref, drop_ref))
    for e in range(h.shape[0]):
        _align_energy(m, e, aligned, com[e], offs[e], info[e])
    offsets = np.stack(offs)
    worst = max(max(i["rms_rows_px"], i["rms_cols_px"]) for i in info)
    applied = mode == "on" or worst >= MIN_RUNOUT_RMS_PX
    record = {
        "applied": bool(applied),
        "method": f"vertical profiles of rows {band_rows[0]}:{band_rows[1]}; projection "
        f"matching of {len(m.rows)} rows binned by {m.binning} (xtwin.prep.runout)",
        "quick_look": quick,
        "per_energy": {f"{e:.2f}": i for e, i in zip(h.energy_eV, info)},
    }
    if not applied:
        return RunoutEstimate(None, record)
    record["offsets_px"] = np.round(offsets, 3).tolist()
    return RunoutEstimate(offsets, record)


def _reference_start(
    m: _Matching, com_ref: np.ndarray | None, dx_ref: np.ndarray, drop_ref: float
) -> np.ndarray:
    """Where the reference energy's matching starts: the centre of mass where the sample
    stays in the field, else the recorded shifts where they explain more than the first
    matching rounds, else those rounds."""
    if com_ref is not None:
        return com_ref
    if m.recorded is not None:
        rec = m.recorded[m.ref]
        if reprojection_residual_drop(m.sinos[m.ref], m.theta_deg, m.centre, rec) > drop_ref:
            return rec
    return dx_ref


def _align_reference(m: _Matching, dx_ref: np.ndarray) -> np.ndarray:
    """The reference energy's offsets, alternating twice with the axis search (the run-out's
    mean over the angles is an axis offset, which matching leaves to the axis search: an
    analytic phantom with a 1 px mean, 0.040 -> 0.022 px rms); its aligned sinograms."""
    sref = m.sinos[m.ref]
    for _ in range(2):
        per_row = center_from_sinograms(undo_column_shifts(sref, dx_ref), m.theta_deg)
        m.centre = float(np.median(per_row))
        dx_ref = horizontal_offsets_reprojection(sref, m.theta_deg, m.centre, dx0=dx_ref)
    m.dx_ref = dx_ref
    return undo_column_shifts(sref, dx_ref)


def _align_energy(
    m: _Matching,
    e: int,
    aligned: np.ndarray,
    com: np.ndarray | None,
    off: np.ndarray,
    info: dict[str, Any],
) -> None:
    """Energy ``e``'s horizontal offsets into ``off[:, 1]`` and its record into ``info``.

    Each energy is a rotation of its own (its own jitter): matched to the reference energy's
    aligned projections (precise where the chemical contrast is alike) and to its own
    reprojection (immune to contrast differences between particles); the candidate that makes
    its own sinograms the more self-consistent is kept. Its constant (the drift between
    energies) comes along; the registration finds about 0.
    """
    s, theta = m.sinos[e], m.theta_deg
    rec = m.recorded[e] if m.recorded is not None else None
    if e == m.ref and m.dx_ref is not None:
        cands = {"reprojection": m.dx_ref}
    else:
        start = com if com is not None else rec
        cands = {
            "reference energy": cc_shifts(s, aligned),
            "reprojection": horizontal_offsets_reprojection(s, theta, m.centre, dx0=start),
        }
    if rec is not None:
        cands["recorded shifts"] = rec
    drops = {k: reprojection_residual_drop(s, theta, m.centre, v) for k, v in cands.items()}
    best = max(drops, key=lambda k: drops[k])
    dx_e = cands[best]
    if e != m.ref:
        # matching leaves out what a displaced sample does (the rotation's first harmonic);
        # between energies such a displacement is real (jitter, drift in the slice plane)
        # and would misregister the slices: fitted against the reference's aligned sinograms
        resid = cc_shifts(undo_column_shifts(s, dx_e), aligned)
        dx_e = dx_e + rotation_terms(resid, theta)[1]
    off[:, 1] = dx_e * m.binning
    info["residual_drop"] = round(drops[best], 4)
    info["matched_to"] = best
    if drops[best] < MIN_RESIDUAL_DROP:  # not significant: matching noise, not run-out
        off[:, 1] = 0.0
    dcol = off[:, 1] - np.median(off[:, 1])  # the run-out, without the drift
    info["rms_cols_px"] = float(np.sqrt(np.mean(dcol**2)))
    info["max_px"] = float(np.abs(off).max())
