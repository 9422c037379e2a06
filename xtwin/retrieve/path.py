"""A measured chemistry path: lithiation on the piecewise-linear path through a calibration
series of spectra, instead of on the straight line between two end members.

Real Ni chemistry is not a mixture of two end members (Ni2+ -> Ni3+ -> Ni4+, an edge that
stops moving near the top of charge), so the two-end-member w can be off from the state of
charge by 0.1. A calibration series (spectra of the same material at three or more known
lithiations) gives the path ``S(w)``: between two measured spectra ``S_k``, ``S_k+1`` at
``w_k < w_k+1``, ``S(w) = S_k + t (S_k+1 - S_k)`` with ``t = (w - w_k) / (w_k+1 - w_k)``.

Three energies. The end-member solve gives ``u = K / J`` (:func:`~xtwin.retrieve.three_energy.
solve`); on segment k the data ``B b + J j S(w)`` give ``J' = J (a + b t)``,
``K' = J (c + d t)`` with ``(a, c)`` and ``(b, d)`` the end-member solve of ``j S_k`` and
``j (S_k+1 - S_k)``, so ``u = (c + d t) / (a + b t)``: one projective map per segment, inverted
exactly: ``t = (c - a u) / (b u - d)``, ``J = J' / (a + b t)``. The nodes' own u must increase
with w; nodes that the energies cannot tell apart (u not increasing) are pooled (their mean u
and mean w), and said so.

Noise bias. w = g(u) is not linear: at each node the slope changes by ``D_k`` and within a
segment the map curves, so a noisy u gives a biased w. With ``s`` the voxel's sigma of u,
``E[g(u + s Z)] - g(u) = sum_k D_k s h((u - u_k) / s) + g''(u) s^2 / 2`` with
``h(z) = phi(z) - |z| Phi(-|z|)`` (the Gaussian smoothing of a kink); this bias, evaluated at the
measured u, is subtracted (first order: exact for a linear path, where it is zero).

Four or more energies: the weighted least-squares fit of each segment (background, ``S_k`` and
``t``); the segment whose t falls in [0, 1] with the smallest chi-square is kept (the end
segments extrapolate beyond the series).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.physics.spectra import NormalizedSpectrum, Spectrum, read_spectrum


@dataclass(frozen=True)
class ChemistryPath:
    """The series at the scan energies: node lithiations (ascending) and flat spectra.

    Attributes
    ----------
    lithiation : ndarray, shape (n_nodes,)
    spectra : ndarray, shape (n_nodes, n_energy)
    pooled : tuple of str
        Nodes pooled because the energies cannot tell them apart (three energies).
    """

    lithiation: np.ndarray
    spectra: np.ndarray
    pooled: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """The path for provenance."""
        return {
            "lithiation": np.round(self.lithiation, 6).tolist(),
            "spectra": np.round(self.spectra, 6).tolist(),
            "pooled": list(self.pooled),
        }


@dataclass(frozen=True)
class CalibrationSeries:
    """Spectra of one material at known lithiations, read from a CSV (ascending lithiation)."""

    csv: Path
    lithiation: np.ndarray
    paths: tuple[Path, ...]
    raw: tuple[Spectrum, ...]


#: Smallest gap between two lithiations of a series.
MIN_LITHIATION_STEP = 1e-3


def read_calibration_series(path: str | os.PathLike) -> CalibrationSeries:
    """Read a calibration series: a CSV with header ``lithiation,path`` and three or more rows
    (paths relative to the CSV; spectra in any format :func:`xtwin.physics.spectra.
    read_spectrum` reads).

    Raises
    ------
    XtwinInputError
        A missing or unreadable file, a wrong header, fewer than three rows, a lithiation
        that is not a finite number, duplicated lithiations, or a spectrum that cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise XtwinInputError(
            f"cannot read the calibration series {path}: {exc.strerror}"
        ) from None
    rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].lstrip().startswith("#")]
    head = [c.strip().lower() for c in rows[0]] if rows else []
    if head[:2] != ["lithiation", "path"]:
        raise XtwinInputError(
            f"{path}: a calibration series is a CSV whose header is 'lithiation,path' (found "
            f"{','.join(head) or 'nothing'}); one row per measured spectrum"
        )
    body = rows[1:]
    if len(body) < 3:
        raise XtwinInputError(
            f"{path}: {len(body)} spectra; a calibration series needs three or more (two are "
            "the end members: give those with --lithiated and --delithiated instead)"
        )
    w, files = [], []
    for i, r in enumerate(body, start=2):
        try:
            value = float(r[0])
        except (ValueError, IndexError):
            raise XtwinInputError(f"{path} line {i}: lithiation {r[:1]} is not a number") from None
        if not np.isfinite(value) or len(r) < 2 or not r[1].strip():
            raise XtwinInputError(f"{path} line {i}: needs a finite lithiation and a path")
        w.append(value)
        files.append((path.parent / r[1].strip()).resolve())
    order = np.argsort(w, kind="stable")
    w_sorted = np.asarray(w)[order]
    close = np.flatnonzero(np.diff(w_sorted) < MIN_LITHIATION_STEP)
    if close.size:
        k = close[0]
        raise XtwinInputError(
            f"{path}: lithiation {w_sorted[k]:g} appears twice ({files[order[k]].name} and "
            f"{files[order[k + 1]].name}); average repeat spectra into one row, or give "
            "each its own lithiation"
        )
    raw = tuple(read_spectrum(files[i]) for i in order)
    return CalibrationSeries(path, w_sorted, tuple(files[i] for i in order), raw)


def build_path(
    energy_eV: np.ndarray, lithiation: np.ndarray, spectra: tuple[NormalizedSpectrum, ...]
) -> ChemistryPath:
    """The series' flat spectra at ``energy_eV`` (already on the standards' scale).

    Raises
    ------
    XtwinInputError
        A spectrum that does not cover the energies.
    """
    for w, s in zip(lithiation, spectra):
        if energy_eV.min() < s.energy_eV[0] - 1e-6 or energy_eV.max() > s.energy_eV[-1] + 1e-6:
            raise XtwinInputError(
                f"the calibration spectrum at lithiation {w:g} ({s.source}) covers "
                f"{s.energy_eV[0]:.1f}-{s.energy_eV[-1]:.1f} eV, not the scan's "
                f"{energy_eV.min():.1f}-{energy_eV.max():.1f} eV; measure the series over "
                "the scan's energies"
            )
    flat = np.stack([np.interp(energy_eV, s.energy_eV, s.flat) for s in spectra])
    return ChemistryPath(np.asarray(lithiation, dtype=float), flat)


def segment_coefficients(pinv_jk: np.ndarray, jump: np.ndarray, path: ChemistryPath):
    """Per segment, the end-member solve of its start and its step: ``(a, c)`` and
    ``(b, d)`` (see the module docstring), each shape (n_seg,)."""
    start = pinv_jk @ (jump[:, None] * path.spectra[:-1].T)  # (2, n_seg)
    step = pinv_jk @ (jump[:, None] * np.diff(path.spectra, axis=0).T)
    return start[0], start[1], step[0], step[1]


def pool_nodes(path: ChemistryPath, u_nodes: np.ndarray) -> tuple[ChemistryPath, np.ndarray]:
    """Pool adjacent nodes until their u increases strictly (mean u, mean w, mean spectrum)."""
    groups: list[list[int]] = []
    for k in range(u_nodes.size):
        groups.append([k])
        while (
            len(groups) > 1 and np.mean(u_nodes[groups[-1]]) <= np.mean(u_nodes[groups[-2]]) + 1e-9
        ):
            last = groups.pop()
            groups[-1] += last
    if len(groups) == u_nodes.size:
        return path, u_nodes
    w = np.array([path.lithiation[g].mean() for g in groups])
    spectra = np.stack([path.spectra[g].mean(axis=0) for g in groups])
    pooled = tuple(
        "lithiations " + ", ".join(f"{path.lithiation[i]:g}" for i in g)
        for g in groups
        if len(g) > 1
    )
    return ChemistryPath(w, spectra, path.pooled + pooled), np.array(
        [u_nodes[g].mean() for g in groups]
    )


def _h(z: np.ndarray) -> np.ndarray:
    """``phi(z) - |z| Phi(-|z|)``: the Gaussian smoothing of a unit kink, per unit sigma."""
    from scipy.special import ndtr

    a = np.abs(z)
    return np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi) - a * ndtr(-a)


def map_three(
    u: np.ndarray,
    sigma_u: np.ndarray,
    jump: np.ndarray,
    coefficients: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    path: ChemistryPath,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three energies: w on the path from the end-member ``u`` (its sigma ``sigma_u``), the
    noise bias of the non-linear map removed; the factor that turns the end-member edge
    jump into the path's. Returns ``(w, sigma_w, jump_factor)``."""
    a, c, b, d = coefficients
    u_nodes = np.append(c / a, (c[-1] + d[-1]) / (a[-1] + b[-1]))
    w_nodes = path.lithiation
    n_seg = a.size
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.clip(np.searchsorted(u_nodes, u, side="right") - 1, 0, n_seg - 1)
        k = np.where(np.isfinite(u), k, 0)
        ak, bk, ck, dk = a[k], b[k], c[k], d[k]
        dw = (w_nodes[1:] - w_nodes[:-1])[k]
        den = bk * u - dk
        t = (ck - ak * u) / den
        det = ak * dk - bk * ck
        slope = dw * det / (den * den)  # dw/du
        curve = -2 * bk * slope / den  # d2w/du2
        w = w_nodes[:-1][k] + t * dw
        # slopes of every segment at its two ends, for the kinks
        seg_dw = w_nodes[1:] - w_nodes[:-1]
        seg_det = a * d - b * c
        left_end = seg_dw * seg_det / (b * u_nodes[:-1] - d) ** 2
        right_end = seg_dw * seg_det / (b * u_nodes[1:] - d) ** 2
        kinks = left_end[1:] - right_end[:-1]  # slope change at interior nodes
        s = np.maximum(sigma_u, 1e-12)
        bias = 0.5 * curve * s * s
        for knot, dslope in zip(u_nodes[1:-1], kinks):
            bias += dslope * s * _h((u - knot) / s)
        w = w - np.where(np.isfinite(bias), bias, 0.0)
        return w, np.abs(slope) * sigma_u, 1.0 / (ak + bk * t)
