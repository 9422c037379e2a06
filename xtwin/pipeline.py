"""The shared pipeline: scan file -> normalize -> reconstruct -> retrieve -> Li-map.

It never imports the twin (:mod:`xtwin.forward`): real and synthetic data meet only at the
scan file, and the retrieval is calibrated only from reference spectra.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from xtwin import __version__
from xtwin._files import sha256_of
from xtwin._provenance import package_versions
from xtwin.errors import XtwinInputError
from xtwin.io.limap import LiMap
from xtwin.io.scan import ScanData
from xtwin.physics.spectra import normalize, read_spectrum
from xtwin.prep.center import find_rotation_center
from xtwin.prep.normalize import normalize_scan
from xtwin.prep.register import register_energies
from xtwin.recon.fbp import reconstruct
from xtwin.retrieve.three_energy import calibrate, retrieve


def process_scan(
    scan: ScanData,
    lithiated: str | os.PathLike,
    delithiated: str | os.PathLike,
    *,
    center_offset_px: float | str = 0.0,
    min_jump_snr: float = 3.0,
    min_jump_fraction: float = 0.2,
    progress: Callable[[int], None] | None = None,
    inputs: list[str | os.PathLike] | None = None,
    checkpoint: str | os.PathLike | None = None,
    register: bool = True,
) -> LiMap:
    """Run the whole pipeline on one scan.

    Parameters
    ----------
    scan : ScanData
        The acquisition (tomography or 2D XANES).
    lithiated, delithiated : path-like
        Reference spectra of the two end members (two-column text).
    center_offset_px : float or "auto"
        Rotation axis minus detector centre, pixels; ``"auto"`` finds it from the data
        (:func:`xtwin.prep.find_rotation_center`) and records the estimate in provenance.
    min_jump_snr, min_jump_fraction : float
        Ni masking thresholds (see :func:`xtwin.retrieve.retrieve`).
    progress : callable, optional
        Called with the number of reconstructed slices done since the last call.
    inputs : list of path-like, optional
        Input scan files, hashed into the provenance.
    checkpoint : path-like, optional
        A zarr store for finished reconstruction slices, so an interrupted run resumes
        (see :func:`xtwin.recon.reconstruct`); keyed by the input hashes.
    register : bool
        Register the energies to each other before anything else
        (:func:`xtwin.prep.register.register_energies`); the shifts go into provenance.

    Returns
    -------
    LiMap
    """
    if isinstance(center_offset_px, str) and center_offset_px != "auto":
        raise XtwinInputError(f"center offset {center_offset_px!r} is neither a number of "
                              "pixels nor 'auto'")
    ref_l = normalize(read_spectrum(lithiated))
    ref_d = normalize(read_spectrum(delithiated))
    order = np.argsort(scan.energy_eV)
    cal = calibrate(scan.energy_eV[order], ref_l, ref_d)
    absorb = normalize_scan(scan)
    shifts = np.zeros((scan.data.shape[0], 2))
    if register and scan.data.shape[0] > 1:
        absorb, shifts = register_energies(absorb)
    center_note: dict[str, object] = {}
    if center_offset_px == "auto":
        if not scan.is_tomography:
            center_offset_px = 0.0
        else:
            est = find_rotation_center(absorb)
            center_offset_px = est.offset_px
            center_note = {"center_offset_px": est.offset_px, "spread_px": est.spread_px,
                           "rows": est.rows.tolist(), "energy_eV": est.energy_eV}
    hashes = {str(p): sha256_of(p) for p in (inputs or [])}
    if scan.is_tomography:
        vol = reconstruct(absorb, center_offset_px=center_offset_px, progress=progress,
                          checkpoint=checkpoint, checkpoint_key=repr(sorted(hashes.values())))
        mu, mu_sigma, notes = vol.mu_per_m, vol.mu_sigma_per_m, vol.notes
    else:
        mu = absorb.absorbance[:, 0]
        mu_sigma = np.sqrt(absorb.variance[:, 0])
        notes = absorb.notes + ("2D XANES: retrieval on optical density, no reconstruction",)
        if progress is not None:
            progress(scan.data.shape[2])
    mu, mu_sigma = mu[order], mu_sigma[order]
    res = retrieve(mu, mu_sigma, cal, min_jump_snr=min_jump_snr,
                   min_jump_fraction=min_jump_fraction)
    lost = _rows_not_seen_at_all_energies(shifts, scan.data.shape[2])
    if lost.any():
        rows = lost.reshape((-1,) + (1,) * (res.lithiation.ndim - 1))  # row = axis 0
        res = dataclasses.replace(res, lithiation=np.where(rows, np.nan, res.lithiation),
                                  sigma=np.where(rows, np.nan, res.sigma),
                                  mask=res.mask & ~rows)
        notes = tuple(notes) + (f"{int(lost.sum())} detector rows not seen at every energy "
                                "after registration: no lithiation there",)
    prov = {
        "xtwin_version": __version__,
        "inputs": hashes,
        "lithiated_reference": {"path": str(lithiated), "sha256": sha256_of(lithiated),
                                **ref_l.summary()},
        "delithiated_reference": {"path": str(delithiated), "sha256": sha256_of(delithiated),
                                  **ref_d.summary()},
        "options": {"center_offset_px": center_offset_px, "min_jump_snr": min_jump_snr,
                    "min_jump_fraction": min_jump_fraction},
        "rotation_center_search": center_note,
        "energy_registration_px": {f"{e:.2f}": [round(float(x), 3) for x in sh]
                                   for e, sh in zip(scan.energy_eV, shifts)},
        "calibration": cal.as_dict(),
        "notes": list(notes),
        "versions": package_versions("numpy", "h5py", "xraylib", "astra-toolbox"),
        "input_metadata": {str(k): v for k, v in scan.metadata.items()},
    }
    return LiMap(res.lithiation, res.sigma, res.mask, res.edge_jump, mu, mu_sigma,
                 cal.energy_eV, scan.pixel_size_m, prov)


def _rows_not_seen_at_all_energies(shifts: np.ndarray, n_rows: int) -> np.ndarray:
    """Rows that some energy's registration shift moved in from outside the detector."""
    lost = np.zeros(n_rows, dtype=bool)
    for dy in shifts[:, 0]:
        k = int(np.ceil(abs(dy) - 1e-3))
        if k and dy > 0:
            lost[n_rows - k:] = True  # content moved up by dy: the bottom rows came from outside
        elif k:
            lost[:k] = True
    return lost
