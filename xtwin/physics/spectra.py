"""Reference spectra: read two-column files and normalize them the way XAS people do.

Normalization (Athena-like): E0 at the maximum of the smoothed derivative; a pre-edge line
fitted well below E0 and a post-edge line (quadratic over a long range) fitted well above;
edge jump = post(E0) - pre(E0); ``norm = (mu - pre) / jump``; ``flat`` additionally removes the
post-edge curvature above E0 so that it oscillates about 1.

References
----------
.. [1] B. Ravel and M. Newville, "ATHENA, ARTEMIS, HEPHAESTUS: data analysis for X-ray
   absorption spectroscopy using IFEFFIT," J. Synchrotron Rad. 12, 537-541 (2005).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError


@dataclass(frozen=True)
class Spectrum:
    """A raw spectrum: energy (eV) and absorbance (any scale)."""

    energy_eV: np.ndarray
    absorbance: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class NormalizedSpectrum:
    """A normalized spectrum and the numbers XAS people report.

    Attributes
    ----------
    energy_eV, norm, flat : ndarray
        Energy grid, normalized and flattened absorbance.
    e0_eV : float
        Edge energy at the maximum of the derivative.
    edge_jump : float
        post(E0) - pre(E0), in the units of the raw absorbance.
    e_half_jump_eV : float
        First energy where ``flat`` reaches 0.5.
    e_half_max_eV : float
        First energy where the spectrum reaches half of its maximum (after pre-edge removal).
    white_line_eV, white_line_height : float
        Position and normalized height of the maximum of ``flat``.
    """

    energy_eV: np.ndarray
    norm: np.ndarray
    flat: np.ndarray
    e0_eV: float
    edge_jump: float
    e_half_jump_eV: float
    e_half_max_eV: float
    white_line_eV: float
    white_line_height: float
    source: str = ""
    pre_range_eV: tuple[float, float] = (0.0, 0.0)
    post_range_eV: tuple[float, float] = (0.0, 0.0)
    post_order: int = 1
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """The reported numbers as a dict."""
        return {
            "source": self.source,
            "e0_eV": round(self.e0_eV, 2),
            "edge_jump": float(self.edge_jump),
            "e_half_jump_eV": round(self.e_half_jump_eV, 2),
            "e_half_max_eV": round(self.e_half_max_eV, 2),
            "white_line_eV": round(self.white_line_eV, 2),
            "white_line_height": round(self.white_line_height, 3),
            "pre_edge_range_eV": [round(x, 1) for x in self.pre_range_eV],
            "post_edge_range_eV": [round(x, 1) for x in self.post_range_eV],
            "post_edge_order": self.post_order,
            **({"notes": list(self.notes)} if self.notes else {}),
        }


_NUM = re.compile(r"^[\s]*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def read_spectrum(path: str | os.PathLike) -> Spectrum:
    """Read a two-column spectrum (energy, absorbance).

    Comma- or whitespace-separated; ``#`` comments and one header line are skipped; energy in
    eV or keV (values below 100 are taken as keV and converted).

    Raises
    ------
    XtwinInputError
        If the file is missing or does not hold at least 10 finite, increasing energies.
    """
    path = Path(path)
    if not path.is_file():
        raise XtwinInputError(
            f"reference spectrum {path} does not exist; give the path of a "
            "two-column text file (energy, absorbance)"
        )
    rows: list[tuple[float, float]] = []
    try:
        text = path.read_text(errors="strict")
    except UnicodeDecodeError:
        raise XtwinInputError(
            f"reference spectrum {path} is not a text file; give a two-column "
            "text file (energy, absorbance)"
        ) from None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[,\s;]+", line) if p]
        if len(parts) < 2 or not (_NUM.match(parts[0]) and _NUM.match(parts[1])):
            if rows:
                raise XtwinInputError(f"{path}: line {line!r} is not two numbers")
            continue  # header line
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            if rows:
                raise XtwinInputError(f"{path}: line {line!r} is not two numbers") from None
    data = np.asarray(rows, dtype=float)
    if data.shape[0] < 10 or not np.all(np.isfinite(data)):
        raise XtwinInputError(
            f"{path}: need at least 10 finite (energy, absorbance) rows, got "
            f"{data.shape[0]}; check the file's format"
        )
    energy = data[:, 0]
    if np.nanmax(energy) < 100.0:
        energy = energy * 1000.0  # keV
    order = np.argsort(energy)
    energy, absorb = energy[order], data[order, 1]
    if np.any(np.diff(energy) <= 0):
        raise XtwinInputError(f"{path}: energies repeat; give one absorbance per energy")
    return Spectrum(energy, absorb, str(path))


def _edge_energy(energy: np.ndarray, mu: np.ndarray) -> float:
    grid = np.arange(energy[0], energy[-1], 0.1)
    fine = np.interp(grid, energy, mu)
    k = max(3, int(round(1.0 / 0.1)))
    smooth = np.convolve(fine, np.ones(k) / k, mode="same")
    d = np.gradient(smooth, grid)
    d[: k + 1] = -np.inf
    d[-k - 1 :] = -np.inf
    return float(grid[np.argmax(d)])


#: The post-edge data must reach this far above E0 for the flattening (a post-edge line fitted
#: closer to the edge follows the white line's tail, and extrapolated it bends the edge).
MIN_FLATTEN_REACH_EV = 50.0


def normalize(
    spectrum: Spectrum,
    *,
    e0_eV: float | None = None,
    pre_edge_eV: tuple[float, float] = (-150.0, -25.0),
    post_edge_eV: tuple[float, float] = (150.0, 600.0),
    post_order: int | None = None,
    flatten: bool | None = None,
) -> NormalizedSpectrum:
    """Normalize a spectrum (pre-edge line, post-edge line, edge jump, flattening).

    Parameters
    ----------
    spectrum : Spectrum
        The raw spectrum.
    e0_eV : float, optional
        Edge energy; by default the maximum of the derivative.
    pre_edge_eV, post_edge_eV : tuple of float
        Fit ranges relative to E0. Where the data do not reach them, the first (last) quarter
        of the points below (above) E0 is used instead; a post-edge range shorter than 200 eV
        is fitted with a line, longer with a quadratic. The defaults follow Athena (post-edge
        from E0 + 150 eV), which keeps EXAFS oscillations from biasing the edge jump.
    post_order : int, optional
        Force the post-edge polynomial order (1 linear, 2 quadratic).
    flatten : bool, optional
        Remove the post-edge curvature above E0 (``flat``); by default only when the data
        reach :data:`MIN_FLATTEN_REACH_EV` above E0 (otherwise ``flat = norm``).

    Notes
    -----
    The ranges actually used are recorded; when the data forced the fallback ranges, a note
    says so with the numbers (a normalization over a few eV above the edge is fragile).
    """
    e, mu = spectrum.energy_eV, spectrum.absorbance
    e0 = _edge_energy(e, mu) if e0_eV is None else float(e0_eV)
    notes: list[str] = []
    pre = (e >= e0 + pre_edge_eV[0]) & (e <= e0 + pre_edge_eV[1])
    if pre.sum() < 3:
        below = np.flatnonzero(e < e0 - 5.0)
        pre = np.zeros_like(e, dtype=bool)
        pre[below[: max(3, len(below) // 2)]] = True
        if pre.any():
            notes.append(
                f"pre-edge range E0{pre_edge_eV[0]:+.0f} to {pre_edge_eV[1]:+.0f} eV not covered; "
                f"fell back to {e[pre].min() - e0:+.1f} to {e[pre].max() - e0:+.1f} eV"
            )
    post = (e >= e0 + post_edge_eV[0]) & (e <= e0 + post_edge_eV[1])
    if post.sum() < 3:
        above = np.flatnonzero(e > e0 + 10.0)
        post = np.zeros_like(e, dtype=bool)
        post[above[-max(3, len(above) // 4) :]] = True
        if post.any():
            notes.append(
                f"post-edge range E0{post_edge_eV[0]:+.0f} to {post_edge_eV[1]:+.0f} eV not "
                f"covered (the spectrum ends {e[-1] - e0:+.1f} eV above E0 = {e0:.1f} eV); "
                f"fell back to {e[post].min() - e0:+.1f} to {e[post].max() - e0:+.1f} eV, "
                "where EXAFS and white-line tails bias the edge jump"
            )
    if pre.sum() < 2 or post.sum() < 3:
        raise XtwinInputError(
            f"{spectrum.source}: the spectrum does not extend far enough "
            f"below and above its edge at {e0:.1f} eV to normalize it"
        )
    pre_coef = np.polyfit(e[pre] - e0, mu[pre], 1 if pre.sum() >= 2 else 0)
    span = e[post].max() - e[post].min()
    order = post_order if post_order else (2 if span >= 200.0 and post.sum() >= 6 else 1)
    post_coef = np.polyfit(e[post] - e0, mu[post], order)
    pre_line = np.polyval(pre_coef, e - e0)
    post_line = np.polyval(post_coef, e - e0)
    jump = float(np.polyval(post_coef, 0.0) - np.polyval(pre_coef, 0.0))
    if not np.isfinite(jump) or jump <= 0:
        raise XtwinInputError(
            f"{spectrum.source}: no positive edge jump at {e0:.1f} eV; is "
            "this an absorption spectrum across the Ni K edge?"
        )
    norm = (mu - pre_line) / jump
    flat = norm.copy()
    if flatten is None:
        flatten = bool(e[post].max() - e0 >= MIN_FLATTEN_REACH_EV)
    if flatten:
        above = np.asarray(e > e0)
        flat[above] -= (post_line[above] - pre_line[above] - jump) / jump
    else:  # a post-edge line over a few eV of white-line tail would bend the whole edge
        notes.append(
            f"not flattened: the data end {e[-1] - e0:+.1f} eV above E0 (flattening needs "
            f"{MIN_FLATTEN_REACH_EV:.0f} eV), so flat = norm"
        )
    i_max = int(np.argmax(flat))
    sub = mu - pre_line
    return NormalizedSpectrum(
        energy_eV=e,
        norm=norm,
        flat=flat,
        e0_eV=e0,
        edge_jump=jump,
        e_half_jump_eV=_first_crossing(e, flat, 0.5),
        e_half_max_eV=_first_crossing(e, sub, 0.5 * sub.max()),
        white_line_eV=float(e[i_max]),
        white_line_height=float(flat[i_max]),
        source=spectrum.source,
        pre_range_eV=(float(e[pre].min() - e0), float(e[pre].max() - e0)),
        post_range_eV=(float(e[post].min() - e0), float(e[post].max() - e0)),
        post_order=int(order),
        notes=tuple(notes),
    )


def _first_crossing(e: np.ndarray, y: np.ndarray, level: float) -> float:
    i = int(np.argmax(y >= level))
    if i == 0:
        return float(e[0])
    return float(np.interp(level, [y[i - 1], y[i]], [e[i - 1], e[i]]))


def write_spectrum(path: str | os.PathLike, spectrum: Spectrum, *, header: str = "") -> None:
    """Write a two-column CSV (``energy_eV,absorbance``) atomically."""
    from xtwin._files import write_text_atomic

    lines = [f"# {h}" for h in header.splitlines() if h] + ["energy_eV,absorbance"]
    lines += [f"{e:.3f},{a:.8g}" for e, a in zip(spectrum.energy_eV, spectrum.absorbance)]
    write_text_atomic(path, "\n".join(lines) + "\n")
